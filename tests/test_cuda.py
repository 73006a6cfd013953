"""The torch path on a CUDA device (issue 12, item 3: GPU first).

Everything here needs a CUDA device and is skipped without one (``benchmarks/gpu_check.sh`` runs
it on a GPU machine).  What it checks:

* fit / forget / save / load of a skorch net on ``cuda`` for every inverse a net can use, with
  the curvature, the gradients of the forget set and the step on the device, and the same
  result as the CPU run to float32 tolerance;
* no host round trip where none is needed: the Sherman-Morrison recursion and the one-pass
  GGN accumulation run without a device synchronisation per row, a forget copies the
  parameters to the host once;
* bounded device memory: streamed GGN rows, the low-rank build (one copy of its rows);
* portability: the pickled state and the ``memory=`` cache hold CPU arrays only, and a model
  saved on the GPU loads and forgets on a CPU-only host.
"""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

skorch = pytest.importorskip("skorch")
from _nets import saved_copies  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402

from sklearn_ssse import UnlearnableClassifier  # noqa: E402
from sklearn_ssse._backends._torch import TorchBackend  # noqa: E402
from sklearn_ssse._curvature import OperatorBuilder, sherman_morrison_inverse  # noqa: E402
from sklearn_ssse._streaming import iter_factor_rows  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

#: every inverse a net can use (kfac / ekfac: the per-layer Kronecker factors of nn.Linear/Conv2d)
INVERSES = ["dense", "block", "woodbury", "sherman_morrison", "kfac", "ekfac"]


class MLP(nn.Module):
    def __init__(self, n_in=64, h=16, n_out=10):
        super().__init__()
        self.fc1 = nn.Linear(n_in, h)
        self.fc2 = nn.Linear(h, n_out)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def make_net(device="cuda", max_epochs=2, **kwargs):
    params = dict(module=MLP, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                  lr=0.02, max_epochs=max_epochs, batch_size=128, train_split=None, verbose=0,
                  device=device)
    params.update(kwargs)
    return NeuralNetClassifier(**params)


@pytest.fixture(scope="module")
def small():
    X, y = load_digits(return_X_y=True)
    X, y = (X / 16.0).astype(np.float32), y.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(X))[:300]
    return X[idx], y[idx]


def _to_cpu(net):
    """The same fitted net on the CPU (parameters copied bit for bit)."""
    cpu = copy.deepcopy(net)
    cpu.set_params(device="cpu")
    cpu.module_.to("cpu")
    return cpu


def _tensors(obj, path="state"):
    """``(path, tensor)`` of every tensor in a nested state (the net itself excluded)."""
    if torch.is_tensor(obj):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in ("estimator", "estimator_"):
                yield from _tensors(v, f"{path}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{path}[{i}]")
    elif hasattr(obj, "_tensors"):  # a curvature operator
        yield from _tensors(dict(vars(obj)), path + "<op>")


def _kwargs(inverse):
    kw = dict(inverse=inverse, curvature="ggn", update_curvature=True, random_state=0,
              parameters=["fc2.*"] if inverse in ("dense", "sherman_morrison") else None)
    if inverse == "block":
        kw["block_size"] = 256
    return kw


# ------------------------------------------------------------------ fit / forget / save / load
@pytest.mark.parametrize("inverse", INVERSES)
def test_fit_forget_save_load_on_cuda(small, tmp_path, inverse):
    X, y = small
    torch.manual_seed(0)
    net = make_net().fit(X, y)
    clf = UnlearnableClassifier.from_fitted(net, X, y, **_kwargs(inverse))
    cpu = UnlearnableClassifier.from_fitted(_to_cpu(net), X, y, **_kwargs(inverse))
    assert clf.backend_.device.type == "cuda"
    # the curvature, the damping and the parameters live on the net's device
    for path, t in _tensors(dict(vars(clf))):
        assert t.device.type == "cuda", path
    g = clf._gradient_sum(X[:10], y[:10])
    assert g.device.type == "cuda"
    delta = clf.forget_direction(X[:10], y[:10])
    assert torch.is_tensor(delta) and delta.device.type == "cuda"
    theta0 = clf.get_parameters()
    clf.forget(X[:10], y[:10])
    cpu.forget(X[:10], y[:10])
    for path, t in _tensors(dict(vars(clf))):
        assert t.device.type == "cuda", path
    theta = clf.get_parameters()
    # the same step as on the CPU, to the float32 rounding of an ill-conditioned solve
    step, step_cpu = theta - theta0, cpu.get_parameters() - theta0
    assert np.linalg.norm(step) > 0
    assert np.linalg.norm(step - step_cpu) <= 1e-2 * np.linalg.norm(step_cpu) + 1e-6
    np.testing.assert_allclose(clf.predict_proba(X), cpu.predict_proba(X), atol=1e-3)
    # save / load: the model comes back on the GPU and continues exactly where it was
    for back in saved_copies(clf, tmp_path):
        assert back.backend_.device.type == "cuda"
        for path, t in _tensors(dict(vars(back))):
            assert t.device.type == "cuda", path
        np.testing.assert_array_equal(back.get_parameters(), theta)
        expected = copy.deepcopy(clf).forget(X[10:20], y[10:20]).get_parameters()
        back.forget(X[10:20], y[10:20])
        np.testing.assert_allclose(back.get_parameters(), expected, rtol=1e-5, atol=1e-6)


def test_pickled_state_holds_cpu_arrays_only(small):
    """What pickle / joblib store for the meta-estimator: NumPy containers, no CUDA tensor
    (the net itself is pickled by skorch, which maps it to the CPU where CUDA is missing)."""
    X, y = small
    torch.manual_seed(0)
    clf = UnlearnableClassifier(make_net(), inverse="woodbury", random_state=0).fit(X, y)
    clf.forget(X[:5], y[:5])
    state = clf.__getstate__()
    assert not list(_tensors(state))
    # what skorch does for the net on a host without CUDA: load its tensors with map_location
    buf = io.BytesIO()
    torch.save(clf.estimator_.module_.state_dict(), buf)
    buf.seek(0)
    weights = torch.load(buf, map_location="cpu")
    assert all(t.device.type == "cpu" for t in weights.values())
    restored = UnlearnableClassifier.__new__(UnlearnableClassifier)
    restored.__setstate__(copy.deepcopy(state))  # back on the net's device
    assert restored.curvature_.device.type == "cuda"


def test_cuda_model_loads_and_forgets_on_a_cpu_only_host(small, tmp_path):
    X, y = small
    torch.manual_seed(0)
    clf = UnlearnableClassifier(make_net(), inverse="woodbury", random_state=0).fit(X, y)
    clf.forget(X[:5], y[:5])
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "proba.npy", clf.predict_proba(X))
    expected = copy.deepcopy(clf).forget(X[5:10], y[5:10]).get_parameters()
    np.save(tmp_path / "expected.npy", expected)
    np.save(tmp_path / "before.npy", clf.get_parameters())
    script = textwrap.dedent(f"""
        import warnings, joblib, numpy as np, torch
        assert not torch.cuda.is_available()
        X, y = np.load({str(tmp_path / 'X.npy')!r}), np.load({str(tmp_path / 'y.npy')!r})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skorch: "cuda not available, using cpu"
            clf = joblib.load({str(path)!r})
        assert clf.backend_.device.type == "cpu"
        assert clf.curvature_.device.type == "cpu"
        np.testing.assert_allclose(clf.predict_proba(X),
                                   np.load({str(tmp_path / 'proba.npy')!r}), atol=1e-5)
        before = clf.get_parameters()
        np.testing.assert_array_equal(before, np.load({str(tmp_path / 'before.npy')!r}))
        clf.forget(X[5:10], y[5:10])
        # the GPU's step, to the float32 rounding of the solve
        expected = np.load({str(tmp_path / 'expected.npy')!r})
        step, gpu_step = clf.get_parameters() - before, expected - before
        assert np.linalg.norm(step - gpu_step) <= 1e-2 * np.linalg.norm(gpu_step) + 1e-6
    """)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    # the net pickles its module class by reference: the test module must be importable there
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), here, env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", script], check=True, env=env)


def test_memory_cache_written_on_cuda_is_portable(small, tmp_path):
    from joblib import Memory

    X, y = small
    torch.manual_seed(0)
    params = dict(inverse="woodbury", random_state=0, memory=Memory(tmp_path, verbose=0))
    first = UnlearnableClassifier(make_net(), **params).fit(X, y)
    (output,) = tmp_path.rglob("output.pkl")
    assert not list(_tensors(joblib.load(output)))
    second = UnlearnableClassifier(make_net(), **params).fit(X, y)
    assert second.curvature_.device.type == "cuda"
    np.testing.assert_array_equal(second.get_parameters(), first.get_parameters())


# ------------------------------------------------------------------ no needless host round trips
def test_sherman_morrison_adds_rows_without_synchronising():
    rows = torch.randn(64, 200, device="cuda")
    lam = torch.full((200,), 0.5, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        A = sherman_morrison_inverse(rows, 64 * lam)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    M = rows.double().T @ rows.double() + torch.diag(64 * lam.double())
    torch.testing.assert_close(A.double(), torch.linalg.inv(M), rtol=1e-3, atol=1e-5)


def test_streamed_ggn_rows_stay_on_the_device_and_bounded():
    torch.manual_seed(0)
    net = NeuralNetClassifier(nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 10)),
                              criterion=nn.CrossEntropyLoss, max_epochs=0, train_split=None,
                              classes=list(range(10)), device="cuda")
    net.initialize()
    backend = TorchBackend(net, chunk_size=512)
    d = backend.n_params
    X = torch.randn(512, 784, device="cuda")
    y = torch.randint(0, 10, (512,), device="cuda")
    next(iter_factor_rows(backend, X[:8], y[:8], "ggn"))  # warm-up (kernels, workspaces)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    rows = 0
    for R in iter_factor_rows(backend, X, y, "ggn"):
        assert R.device.type == "cuda"
        rows += R.shape[0] * R.shape[1]
    assert rows == 512 * 10
    peak = torch.cuda.max_memory_allocated() - base
    # the docstring's promise: about 2 * chunk_size * d numbers plus the activations (2.5x
    # measured on the CPU); the whole (512, 10, d) block alone is 10 times chunk_size * d
    assert peak < 4 * 512 * d * 4, f"{peak / 2**30:.2f} GiB"


def test_woodbury_build_peak_on_cuda():
    m, d = 2048, 200_000
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    builder = OperatorBuilder("woodbury", d, torch.float32, torch.device("cuda"))
    for _ in range(0, m, 512):
        builder.add_rows(torch.randn(512, d, device="cuda"))
    op = builder.finalize(m, torch.full((d,), 1e-3, device="cuda"), scale=2.0)
    peak = torch.cuda.max_memory_allocated() - base
    assert op.device.type == "cuda"
    assert peak < 2.2 * op.nbytes, f"peak {peak / op.nbytes:.2f}x the operator"


def test_forget_copies_the_parameters_to_the_host_once(small):
    X, y = small
    torch.manual_seed(0)
    clf = UnlearnableClassifier(make_net(module__h=4096, max_epochs=1), inverse="woodbury",
                                curvature="empirical_fisher", fisher_max_samples=16,
                                random_state=0).fit(X, y)
    d = clf.backend_.n_params
    copies = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("cpu", "numpy") and args and \
                    torch.is_tensor(args[0]) and args[0].numel() == d and args[0].is_cuda:
                copies.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with Spy():
        clf.forget(X[:5], y[:5])
    assert len(copies) == 1
    assert clf.verify_seal()


def test_with_parameters_stays_on_the_device(small):
    X, y = small
    torch.manual_seed(0)
    net = make_net().fit(X, y)
    backend = TorchBackend(net)
    theta = backend.get_parameters() * 1.01
    copy_ = backend.with_parameters(theta)
    assert next(copy_.module_.parameters()).device.type == "cuda"
    assert len(copy_.optimizer_.state) == 0 and len(net.optimizer_.state) > 0
    torch.testing.assert_close(TorchBackend(copy_).get_parameters(), theta, rtol=0, atol=0)


def test_float64_factor_inversion_option(small):
    """``dtype="float64"``: the curvature is built and inverted in double precision on the
    device (the float32 default matches it to float32 tolerance)."""
    X, y = small
    torch.manual_seed(0)
    net = make_net().fit(X, y)
    c64 = UnlearnableClassifier.from_fitted(net, X, y, inverse="block", block_size=256,
                                            dtype="float64")
    c32 = UnlearnableClassifier.from_fitted(net, X, y, inverse="block", block_size=256)
    assert c64.curvature_.dtype == torch.float64 and c64.curvature_.device.type == "cuda"
    d64 = c64.forget_direction(X[:10], y[:10])
    d32 = c32.forget_direction(X[:10], y[:10])
    assert d32.dtype == torch.float32 and d32.device.type == "cuda"
    assert float(torch.linalg.vector_norm(d32.double() - d64)) <= \
        5e-2 * float(torch.linalg.vector_norm(d64))


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv(x.reshape(-1, 1, 8, 8))), 2)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("inverse", ["kfac", "ekfac"])
def test_kronecker_conv_net_on_cuda_matches_cpu(small, inverse):
    """K-FAC / EK-FAC of a conv net: the hooks, the unfolded patches, the factors and their
    eigenbases are built on the device, and the step equals the CPU one (float32 tolerance)."""
    X, y = small
    torch.manual_seed(0)
    net = make_net(module=_CNN).fit(X, y)
    kw = dict(inverse=inverse, curvature="ggn", random_state=0)
    clf = UnlearnableClassifier.from_fitted(net, X, y, **kw)
    cpu = UnlearnableClassifier.from_fitted(_to_cpu(net), X, y, **kw)
    for path, t in _tensors(dict(vars(clf))):
        assert t.device.type == "cuda", path
    theta0 = clf.get_parameters()
    clf.forget(X[:20], y[:20])
    cpu.forget(X[:20], y[:20])
    step, step_cpu = clf.get_parameters() - theta0, cpu.get_parameters() - theta0
    assert np.linalg.norm(step_cpu) > 0
    assert np.linalg.norm(step - step_cpu) <= 1e-2 * np.linalg.norm(step_cpu) + 1e-6
