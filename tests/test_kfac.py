"""Tests of K-FAC / EK-FAC for torch nets (``sklearn_ssse._curvature._kfac``), against brute-force
constructions from per-sample gradient rows and explicit patch extraction."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch import nn

skorch = pytest.importorskip("skorch")
from skorch import NeuralNetClassifier  # noqa: E402

from sklearn_ssse import UnlearnableClassifier  # noqa: E402
from sklearn_ssse._backends._linear import LinearBackend  # noqa: E402
from sklearn_ssse._backends._torch import TorchBackend  # noqa: E402
from sklearn_ssse._curvature import _kronecker_net  # noqa: E402
from sklearn_ssse._curvature._kfac import KFAC, EKFACNet  # noqa: E402
from sklearn_ssse._curvature._kronecker_net import KroneckerNet, kronecker_memory  # noqa: E402
from sklearn_ssse._streaming import row_uniforms  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


pytestmark = pytest.mark.usefixtures("torch_single_thread")


class MLP(nn.Module):
    def __init__(self, n_in=64, h=12, n_out=10):
        super().__init__()
        self.fc1 = nn.Linear(n_in, h)
        self.fc2 = nn.Linear(h, n_out)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class SoftmaxMLP(MLP):
    def forward(self, x):
        return torch.softmax(super().forward(x), dim=-1)


class CNN(nn.Module):
    """Two convolutions (one strided, one without padding) and a linear read-out, on 8x8."""

    def __init__(self, c1=3, c2=4, n_out=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2)
        self.fc = nn.Linear(c2 * 9, n_out)

    def forward(self, x):
        x = x.reshape(-1, 1, 8, 8)
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        return self.fc(h.flatten(1))


class BNNet(MLP):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(12)

    def forward(self, x):
        return self.fc2(torch.tanh(self.bn(self.fc1(x))))


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 10, (8, 4), groups=2)

    def forward(self, x):
        return self.conv(x.reshape(-1, 2, 8, 4)).flatten(1)


class Shared(MLP):
    def __init__(self):
        super().__init__(n_in=10, h=10)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(torch.tanh(self.fc1(x)))))


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:240], y[:240]


def fit_net(module, X, y, epochs=4, **kwargs):
    torch.manual_seed(0)
    params = dict(module=module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                  lr=0.02, max_epochs=epochs, batch_size=64, train_split=None, verbose=0,
                  optimizer__weight_decay=1e-3)
    params.update(kwargs)
    return NeuralNetClassifier(**params).fit(X, y)


@pytest.fixture(scope="module")
def mlp(data):
    return fit_net(MLP, *data)


@pytest.fixture(scope="module")
def cnn(data):
    return fit_net(CNN, *data)


def config(curvature, **kw):
    # the brute-force comparisons use the exact GGN rows (backend.curvature_rows)
    return {"curvature": curvature, "chunk_size": 64, "fisher_batch_size": 1,
            "kfac_ggn": "exact", **kw}


def build(cls, backend, X, y, curvature, damping=None, seed=0, **kw):
    lam = backend.default_damping(len(X)) if damping is None else damping
    fn = lam if callable(lam) else (lambda n: lam)
    return cls.build(backend, [(X[a:a + 50], y[a:a + 50]) for a in range(0, len(X), 50)],
                     config(curvature, **kw), fn, np.random.RandomState(seed))


def data_term(backend, X, y, curvature, rows=None):
    R = backend.curvature_rows(X, y, curvature) if rows is None else rows
    R = R.reshape(-1, backend.n_params)
    return R.T @ R


def rel(a, b):
    return float((a - b).norm() / b.norm())


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("parameters", [None, ["weight"], ["bias"]])
def test_kfac_exact_for_one_linear_layer_with_constant_output_curvature(data, parameters):
    """A single Linear layer whose softmax is uniform for every sample (zero weights): the GGN's
    output curvature diag(p) - p p^T is the same for all samples, so K-FAC is exact."""
    X, y = data
    net = NeuralNetClassifier(nn.Linear, module__in_features=64, module__out_features=10,
                              criterion=nn.CrossEntropyLoss, max_epochs=1, lr=0.0,
                              train_split=None, verbose=0, optimizer__weight_decay=1e-2)
    net.fit(X, y)
    with torch.no_grad():
        for p in net.module_.parameters():
            p.zero_()
    b = TorchBackend(net, dtype="float64", parameters=parameters)
    state = build(KFAC, b, X, y, "ggn")
    op = state["curvature"]
    expected = data_term(b, X, y, "ggn") + torch.diag(len(X) * state["damping"])
    assert rel(op.matrix(), expected) < 1e-10
    # and the inverse it applies
    v = torch.randn(b.n_params, dtype=torch.float64)
    assert rel(op.solve(v), len(X) * torch.linalg.solve(expected, v)) < 1e-9
    # with trained weights the output curvature varies and K-FAC is an approximation only
    trained = fit_net(nn.Linear, X, y, module__in_features=64, module__out_features=10)
    b2 = TorchBackend(trained, dtype="float64", parameters=parameters)
    op2 = build(KFAC, b2, X, y, "ggn")["curvature"]
    if parameters != ["bias"]:  # a bias alone has no input factor to get wrong
        assert rel(op2.matrix(), data_term(b2, X, y, "ggn")) > 1e-3


# --------------------------------------------------------------------------- factors
def patches(x, conv):
    """Input patches of ``conv`` by explicit slicing (no unfold): shape (N, T, C*kh*kw)."""
    ph, pw = conv.padding
    sh, sw = conv.stride
    kh, kw = conv.kernel_size
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    H, W = xp.shape[2], xp.shape[3]
    out = [xp[:, :, i:i + kh, j:j + kw].reshape(x.shape[0], -1)
           for i in range(0, H - kh + 1, sh) for j in range(0, W - kw + 1, sw)]
    return torch.stack(out, dim=1)


def brute_factors_cnn(net, X, y, curvature):
    """``(G, A)`` of each CNN layer from explicit patches and autograd output gradients."""
    m = net.module_.double()
    try:
        x = torch.as_tensor(X, dtype=torch.float64).reshape(-1, 1, 8, 8)
        z1 = m.conv1(x)
        h1 = torch.relu(z1)
        z2 = m.conv2(h1)
        h2 = torch.relu(z2).flatten(1)
        z3 = m.fc(h2)
        lp = torch.log_softmax(z3, dim=1)
        labels = torch.as_tensor(y)
        rows = ([(labels, None)] if curvature == "empirical_fisher" else
                [(torch.full_like(labels, c), torch.exp(0.5 * lp[:, c]).detach())
                 for c in range(10)])
        one = torch.ones(len(X), 1, 1, dtype=torch.float64)
        inputs = [patches(x, m.conv1), patches(h1, m.conv2), h2.unsqueeze(1)]
        A = [torch.einsum("ntp,ntq->pq", *(2 * [torch.cat([a, one.expand(-1, a.shape[1], 1)],
                                                            2)])) for a in inputs]
        G = [0, 0, 0]
        for lab, w in rows:
            loss = -lp.gather(1, lab[:, None])[:, 0]
            loss = (loss if w is None else loss * w).sum()
            gs = torch.autograd.grad(loss, [z1, z2, z3], retain_graph=True)
            for i, g in enumerate(gs):
                g = g.reshape(len(X), g.shape[1], -1).transpose(1, 2) if g.dim() == 4 else \
                    g.unsqueeze(1)
                G[i] = G[i] + torch.einsum("ntk,ntl->kl", g, g) / g.shape[1]
        return [(Gi.detach(), Ai.detach()) for Gi, Ai in zip(G, A)]
    finally:
        m.float()


@pytest.mark.parametrize("curvature", ["empirical_fisher", "ggn"])
def test_conv_factors_match_explicit_patches(cnn, data, curvature):
    X, y = data
    X, y = X[:60], y[:60]
    b = TorchBackend(cnn, dtype="float64")
    op = build(KFAC, b, X, y, curvature)["curvature"]
    expected = brute_factors_cnn(cnn, X, y, curvature)
    assert len(op.factors) == 3
    for (G, A, _), (Ge, Ae) in zip(op.factors, expected):
        assert rel(A, Ae) < 1e-12
        assert rel(G, Ge) < 1e-12


@pytest.mark.parametrize("curvature", ["empirical_fisher", "ggn"])
def test_mlp_factors_from_bias_gradients(mlp, data, curvature):
    """G is the Gram of the bias gradient rows; A the Gram of [input, 1]; and K-FAC's matrix is
    G (x) A / n plus the damping in the flat order."""
    X, y = data
    b = TorchBackend(mlp, dtype="float64")
    state = build(KFAC, b, X, y, curvature)
    op, n = state["curvature"], len(X)
    R = b.curvature_rows(X, y, curvature).reshape(-1, b.n_params)
    names = b.param_names_
    sl = dict(zip(names, b.natural_blocks))
    m = mlp.module_.double()
    try:
        x = torch.as_tensor(X, dtype=torch.float64)
        h = torch.tanh(m.fc1(x)).detach()
    finally:
        m.float()
    ones = torch.ones(n, 1, dtype=torch.float64)
    for i, (layer, inp) in enumerate([("fc1", x), ("fc2", h)]):
        gb = R[:, sl[f"{layer}.bias"]]
        a = torch.cat([inp, ones], 1)
        G, A, _ = op.factors[i]
        assert rel(G, gb.T @ gb) < 1e-12
        assert rel(A, a.T @ a) < 1e-12
        idx = op.flat_index(i)
        lam = state["damping"][idx]
        expected = torch.kron(G, A) / n + torch.diag(n * lam)
        assert rel(op.matrix()[idx][:, idx], expected) < 1e-10
    # no coupling between layers
    i0, i1 = op.flat_index(0), op.flat_index(1)
    assert float(op.matrix()[i0][:, i1].abs().max()) == 0.0


def test_nonuniform_damping_is_projected_on_the_basis(data):
    """Weight and bias with different damping (optimizer groups): the damping term is the
    diagonal of ``Q^T diag(Lambda) Q`` in the layer's eigenbasis."""
    X, y = data
    net = fit_net(MLP, X, y, epochs=1)
    b = TorchBackend(net, dtype="float64")
    lam = b.default_damping(len(X)).clone()
    lam[b.natural_blocks[1]] = 0.5  # fc1.bias
    op = build(KFAC, b, X, y, "ggn", damping=lam)["curvature"]
    idx = op.flat_index(0)
    o = op.ops[0]
    Q = torch.kron(o.QG, o.QA)
    expected = torch.diag(Q.T @ torch.diag(len(X) * lam[idx]) @ Q)
    assert torch.allclose(o.s_damp.reshape(-1), expected, rtol=1e-12, atol=0)
    # the other layer has a uniform damping: exactly diag(n * lambda) in any basis
    idx = op.flat_index(1)
    o = op.ops[1]
    assert torch.allclose(o.s_damp, torch.full_like(o.s_damp, len(X) * float(lam[idx][0])),
                          rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- EK-FAC
NETS = {
    "mlp": (None, "mlp"),
    "mlp_last": (["fc2.weight", "fc2.bias"], "mlp"),
    "mlp_weight_only": (["fc2.weight"], "mlp"),
    "mlp_mixed": (["fc1.bias", "fc2.weight"], "mlp"),
    "cnn": (None, "cnn"),
    "cnn_conv_weight": (["conv2.weight", "fc.bias"], "cnn"),
}


@pytest.mark.parametrize("curvature", ["empirical_fisher", "ggn"])
@pytest.mark.parametrize("case", list(NETS))
def test_ekfac_eigenvalues_are_the_exact_diagonal_in_the_basis(request, data, case, curvature):
    parameters, which = NETS[case]
    net = request.getfixturevalue(which)
    X, y = data
    X, y = X[:100], y[:100]
    b = TorchBackend(net, dtype="float64", parameters=parameters)
    state = build(EKFACNet, b, X, y, curvature)
    op = state["curvature"]
    B = data_term(b, X, y, curvature)
    kf = build(KFAC, b, X, y, curvature)["curvature"]
    for i, o in enumerate(op.ops):
        idx = op.flat_index(i)
        Q = torch.kron(o.QG, o.QA)
        s = torch.diag(Q.T @ B[idx][:, idx] @ Q).reshape(o.s_data.shape)
        assert rel(o.s_data, s) < 1e-10
        # the basis is the eigenbasis of K-FAC's factors
        G, A, _ = kf.factors[i]
        for M, QM in ((G, o.QG), (A, o.QA)):
            D = QM.T @ M @ QM
            assert float((D - torch.diag(torch.diag(D))).abs().max()) < 1e-9 * float(M.norm())
    # the solve is M^{-1} of the assembled matrix
    v = torch.randn(b.n_params, dtype=torch.float64)
    assert rel(op.matrix() @ op.solve_sum(v), v) < 1e-9


# --------------------------------------------------------------------------- EK-FAC's kept terms
def count_passes(monkeypatch):
    """Calls of the data pass of the Kronecker build (one per pass over the chunks)."""
    calls = []
    real = _kronecker_net._passes

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_kronecker_net, "_passes", spy)
    return calls


def assert_same_ekfac(a, b, tol=1e-10):
    for o, t in zip(a.ops, b.ops):
        assert torch.equal(o.QG, t.QG) and torch.equal(o.QA, t.QA)
        assert rel(o.s_data, t.s_data) < tol and torch.equal(o.s_damp, t.s_damp)
    assert a.n == b.n and rel(a.matrix(), b.matrix()) < tol


@pytest.mark.parametrize("curvature, mode", [("empirical_fisher", "exact"), ("ggn", "exact"),
                                             ("ggn", "sampled")])
@pytest.mark.parametrize("case", ["mlp", "cnn", "cnn_conv_weight"])
def test_ekfac_kept_terms_equal_a_second_pass(request, data, monkeypatch, case, curvature, mode):
    """The eigenvalues from the terms kept during the factor pass (one pass over the data)
    equal those of a second pass over the data (no budget left for them), in float64."""
    parameters, which = NETS[case]
    X, y = data
    b = TorchBackend(request.getfixturevalue(which), dtype="float64", parameters=parameters)
    calls = count_passes(monkeypatch)
    kept = build(EKFACNet, b, X, y, curvature, kfac_ggn=mode)
    assert len(calls) == 1
    monkeypatch.setattr(_kronecker_net, "_CACHE_SHARE", 0.0)
    two = build(EKFACNet, b, X, y, curvature, kfac_ggn=mode)
    assert len(calls) == 3
    assert kept["label_salt"] == two["label_salt"]
    assert_same_ekfac(kept["curvature"], two["curvature"])
    # and both are the exact diagonal in the basis (exact rows: the brute-force data term)
    if mode == "exact":
        B = data_term(b, X, y, curvature)
        op = kept["curvature"]
        for i, o in enumerate(op.ops):
            idx = op.flat_index(i)
            Q = torch.kron(o.QG, o.QA)
            assert rel(o.s_data.reshape(-1), torch.diag(Q.T @ B[idx][:, idx] @ Q)) < 1e-10


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_ekfac_kept_terms_fall_back_over_the_memory_budget(request, data, monkeypatch, which):
    """A memory budget that holds the terms of a few chunks only: they are dropped (when
    reached, or after the first chunk when the number of samples is known) and a second pass
    computes the same operator; the kept bytes never exceed the budget's share."""
    X, y = data
    b = TorchBackend(request.getfixturevalue(which), dtype="float64")
    calls = count_passes(monkeypatch)
    full = build(EKFACNet, b, X, y, "ggn", kfac_ggn="sampled")["curvature"]
    assert len(calls) == 1
    cfg = config("ggn", kfac_ggn="sampled")
    est = kronecker_memory("ekfac", True, b, cfg)
    peaks = []
    real_add = _kronecker_net._EigenCache._add

    def add(self, t):
        real_add(self, t)
        if self.entries is not None:
            peaks.append((self.nbytes, self.budget))

    monkeypatch.setattr(_kronecker_net._EigenCache, "_add", add)
    # the kept terms of one 64-row chunk, measured on a build that keeps everything
    cache = _kronecker_net._EigenCache(1 << 40)
    layers = _kronecker_net._collect(b)
    for _, inputs, rows in _kronecker_net._passes(b, layers, [(X[:64], y[:64])], "ggn",
                                                  "sampled", b"k" * 16, 64, torch.float64):
        for _ in cache.record(layers, inputs, rows):
            pass
    per_chunk = cache.nbytes
    assert len(cache.entries) == 1
    for n_known in (None, len(X)):
        peaks.clear()
        budget = est + int(2.5 * per_chunk / _kronecker_net._CACHE_SHARE)
        state = EKFACNet.build(b, [(X, y)], {**cfg, "memory_budget": budget},
                               lambda n: b.default_damping(n), np.random.RandomState(0),
                               n_known=n_known)
        assert_same_ekfac(state["curvature"], full)
        assert peaks and all(nb <= bud for nb, bud in peaks)
        # without n: kept up to the budget (over two chunks); with it: dropped after the first
        peak = max(nb for nb, _ in peaks)
        assert peak >= 2 * per_chunk if n_known is None else peak == per_chunk
    assert len(calls) == 1 + 1 + 2 * 2


def test_estimator_ekfac_budget_fallback_equals_kept_terms(data, monkeypatch):
    """Through ``from_fitted``: a ``memory_budget`` that fits the build but not the kept
    terms gives the same curvature as the default budget, from a second pass."""
    X, y = data
    net = fit_net(MLP, X, y, epochs=2)
    opts = dict(inverse="ekfac", curvature="ggn", dtype="float64", random_state=0,
                chunk_size=64)
    calls = count_passes(monkeypatch)
    big = UnlearnableClassifier.from_fitted(net, X, y, **opts)
    assert len(calls) == 1
    b = TorchBackend(net, dtype="float64")
    est = kronecker_memory("ekfac", True, b, {**config("ggn"), "chunk_size": 64})
    small = UnlearnableClassifier.from_fitted(net, X, y, memory_budget=est + 1000, **opts)
    assert len(calls) == 3
    assert_same_ekfac(small.curvature_, big.curvature_)


# --------------------------------------------------------------------------- subsets
@pytest.mark.parametrize("parameters", [["fc2.weight", "fc2.bias"], ["fc2.weight"],
                                        ["fc2.bias"], ["fc1.bias", "fc2.weight"],
                                        ["fc2.bias", "fc1.weight"]])
def test_kfac_parameter_subsets_are_sub_blocks(mlp, data, parameters):
    X, y = data
    full = TorchBackend(mlp, dtype="float64")
    sub = TorchBackend(mlp, dtype="float64", parameters=parameters)
    M = build(KFAC, full, X, y, "ggn")["curvature"].matrix()
    Ms = build(KFAC, sub, X, y, "ggn")["curvature"].matrix()
    sl = dict(zip(full.param_names_, full.natural_blocks))
    idx = torch.cat([torch.arange(sl[n].start, sl[n].stop) for n in sub.param_names_])
    assert Ms.shape == (sub.n_params, sub.n_params)
    assert rel(Ms, M[idx][:, idx]) < 1e-12


# --------------------------------------------------------------------------- refusals
def test_unsupported_layers_and_options(data):
    X, y = data
    bn = fit_net(BNNet, X, y, epochs=1)
    b = TorchBackend(bn)
    for cls in (KFAC, EKFACNet):
        reason = cls.unsupported(b, config("ggn"))
        assert "'bn'" in reason and "BatchNorm1d" in reason
        with pytest.raises(ValueError, match="BatchNorm1d"):
            build(cls, b, X, y, "ggn")
        # restricting the parameters to the Linear layers works
        ok = TorchBackend(bn, parameters=["fc*"])
        assert cls.unsupported(ok, config("ggn")) is None
        assert build(cls, ok, X, y, "ggn")["curvature"].dim == ok.n_params
        assert "fisher_batch_size" in cls.unsupported(ok, config("ggn") | {
            "fisher_batch_size": 4})
        assert "fisher_max_samples" in cls.unsupported(ok, config("ggn") | {
            "fisher_max_samples": 10})
        assert "factor_dtype" in cls.unsupported(ok, config("ggn") | {"factor_dtype": "half"})
    lin = LinearBackend(LogisticRegression().fit(X, y))
    assert "torch backend" in KFAC.unsupported(lin, config("ggn"))
    grouped = fit_net(Grouped, X, y, epochs=1)
    assert "groups=2" in KFAC.unsupported(TorchBackend(grouped), config("ggn"))
    shared = fit_net(Shared, X[:, :10], y, epochs=1)
    with pytest.raises(ValueError, match="more than once"):
        build(KFAC, TorchBackend(shared), X[:, :10], y, "ggn")


def test_estimator_refuses_kfac_for_linear_models(data):
    X, y = data
    with pytest.raises(ValueError, match="torch backend"):
        UnlearnableClassifier(LogisticRegression(), inverse="kfac").fit(X, y)


# --------------------------------------------------------------------------- downdates
@pytest.mark.parametrize("mode", ["exact", "sampled"])
@pytest.mark.parametrize("curvature", ["empirical_fisher", "ggn"])
def test_kfac_downdate_equals_rebuild(cnn, data, curvature, mode):
    X, y = data
    b = TorchBackend(cnn, dtype="float64")
    n, k = len(X), 15
    lam = b.default_damping(n)
    state = build(KFAC, b, X, y, curvature, kfac_ggn=mode)
    op = state["curvature"]
    new, rec = KFAC.downdate(op, state, b, X[:k], y[:k], config(curvature, kfac_ggn=mode))
    assert rec is None and new.n == n - k and op.n == n
    # the rebuild keeps the total damping n * lambda (see _curvature's module docstring)
    ref = build(KFAC, b, X[k:], y[k:], curvature, damping=lambda m: lam * n / m,
                kfac_ggn=mode)["curvature"]
    assert rel(new.matrix(), ref.matrix()) < 1e-10
    if curvature == "ggn" and mode == "sampled":
        assert state["label_salt"] is not None
        # a different salt draws different labels: the downdate must use the fit's
        other = dict(state, label_salt=b"x" * 16)
        wrong, _ = KFAC.downdate(op, other, b, X[:k], y[:k], config(curvature, kfac_ggn=mode))
        assert rel(wrong.matrix(), ref.matrix()) > 1e-8
        # the rows' kind follows the state (its salt), not a default that may have changed
        with pytest.raises(ValueError, match="built with 'sampled'"):
            KFAC.downdate(op, state, b, X[:k], y[:k], config(curvature, kfac_ggn="exact"))
        same, _ = KFAC.downdate(op, state, b, X[:k], y[:k], {"curvature": curvature,
                                                            "chunk_size": 64})
        assert rel(same.matrix(), ref.matrix()) < 1e-10


@pytest.mark.parametrize("curvature", ["empirical_fisher", "ggn"])
def test_ekfac_downdate_refits_eigenvalues_in_the_same_basis(mlp, data, curvature):
    X, y = data
    b = TorchBackend(mlp, dtype="float64")
    k = 20
    state = build(EKFACNet, b, X, y, curvature)
    op = state["curvature"]
    new, _ = EKFACNet.downdate(op, state, b, X[:k], y[:k], config(curvature))
    B = data_term(b, X[k:], y[k:], curvature)
    for i, (o, o2) in enumerate(zip(op.ops, new.ops)):
        assert o2.QG is o.QG and o2.QA is o.QA and torch.equal(o2.s_damp, o.s_damp)
        idx = op.flat_index(i)
        Q = torch.kron(o.QG, o.QA)
        s = torch.diag(Q.T @ B[idx][:, idx] @ Q).reshape(o.s_data.shape)
        assert rel(o2.s_data, s) < 1e-9
    assert new.n == len(X) - k


@pytest.mark.parametrize("cls", [KFAC, EKFACNet])
def test_downdate_refuses_rows_never_added(mlp, data, cls):
    X, y = data
    b = TorchBackend(mlp, dtype="float64")
    state = build(cls, b, X, y, "empirical_fisher")
    op = state["curvature"]
    before = [t.clone() for t in op._tensors()]
    bogus = X[:5] * 40.0
    with pytest.raises(ValueError, match="not positive definite"):
        cls.downdate(op, state, b, bogus, y[:5], config("empirical_fisher"))
    assert all(torch.equal(t, u) for t, u in zip(op._tensors(), before))
    other = KFAC if cls is EKFACNet else EKFACNet
    with pytest.raises(TypeError, match="other kind"):
        other.downdate(op, state, b, X[:2], y[:2], config("empirical_fisher"))


def test_sampled_ggn_labels_are_keyed_by_rows(mlp, data):
    """Chunking and order do not change the sampled-GGN operator (labels keyed by the rows)."""
    X, y = data
    b = TorchBackend(mlp, dtype="float64")
    a = build(KFAC, b, X, y, "ggn", kfac_ggn="sampled", seed=3)
    perm = np.random.RandomState(0).permutation(len(X))
    c = KFAC.build(b, [(X[perm], y[perm])], config("ggn", kfac_ggn="sampled", chunk_size=17),
                   lambda n: b.default_damping(n), np.random.RandomState(3))
    assert a["label_salt"] == c["label_salt"]
    assert rel(c["curvature"].matrix(), a["curvature"].matrix()) < 1e-12
    # and the sampled labels are the inverse-CDF draw of p(.|x) at the row uniforms
    u = row_uniforms(X, y, a["label_salt"])
    P = torch.softmax(mlp.module_.double()(torch.as_tensor(X, dtype=torch.float64)), 1)
    mlp.module_.float()
    cdf = np.cumsum(P.detach().numpy(), 1)
    labels = np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(1), 9)
    rows = b.curvature_rows(X, labels, "empirical_fisher")
    B = data_term(b, X, y, "ggn", rows=rows)
    e = build(EKFACNet, b, X, y, "ggn", kfac_ggn="sampled", seed=3)["curvature"]
    for i, o in enumerate(e.ops):
        idx = e.flat_index(i)
        Q = torch.kron(o.QG, o.QA)
        assert rel(o.s_data.reshape(-1), torch.diag(Q.T @ B[idx][:, idx] @ Q)) < 1e-10


# --------------------------------------------------------------------------- operator
def test_operator_pickle_dtype_and_nll_nets(data):
    X, y = data
    net = fit_net(SoftmaxMLP, X, y, epochs=2, criterion=nn.NLLLoss)
    b = TorchBackend(net)  # float32
    for cls in (KFAC, EKFACNet):
        op = build(cls, b, X, y, "ggn")["curvature"]
        assert op.dtype == torch.float32 and isinstance(op, KroneckerNet)
        v = torch.randn(b.n_params)
        back = pickle.loads(pickle.dumps(op))
        assert torch.equal(back.solve(v), op.solve(v))
        op64 = build(cls, b, X, y, "ggn", factor_dtype="float64")["curvature"]
        assert op64.dtype == torch.float64
        assert rel(op.solve(v).double(), op64.solve(v.double())) < 1e-3
        assert op.nbytes == sum(t.numel() * 4 for t in op._tensors())
    # the NLL convention: the same curvature as the backend's own rows
    b64 = TorchBackend(net, dtype="float64")
    e = build(EKFACNet, b64, X, y, "ggn")["curvature"]
    B = data_term(b64, X, y, "ggn")
    o = e.ops[1]
    idx = e.flat_index(1)
    Q = torch.kron(o.QG, o.QA)
    assert rel(o.s_data.reshape(-1), torch.diag(Q.T @ B[idx][:, idx] @ Q)) < 1e-10


def test_estimate_memory_counts_conv_positions(cnn):
    b = TorchBackend(cnn)
    plain = KFAC.estimate_memory(b, config("ggn"), 100)
    shaped = KFAC.estimate_memory(b, config("ggn", input_shape=(64,)), 100)
    assert shaped > plain > 0
    assert EKFACNet.estimate_memory(b, config("ggn", input_shape=(64,)), 100) > 0


@pytest.mark.parametrize("curvature, fisher_type", [("ggn", "type-2"),
                                                    ("empirical_fisher", "empirical")])
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_curvlinops_kfac_agrees(request, data, net, curvature, fisher_type):
    """Our K-FAC against curvlinops' ``KFACLinearOperator`` (an independent implementation),
    float64, MLP and CNN (one padded, one strided convolution).

    Conventions matched: the exact GGN (``kfac_ggn="exact"``, C backward passes) is curvlinops'
    ``fisher_type="type-2"`` (the exact loss Hessian's square root; an MC Fisher draws other
    labels) and our empirical Fisher its ``"empirical"``; conv layers use Grosse & Martens'
    expanded factors (curvlinops' ``kfac_approx="expand"``: ``A`` over every patch divided by
    the positions ``T``, ``G`` summed over them; ours ``A`` summed and ``G`` divided by ``T``:
    the same product); weight and bias form one Kronecker block (``separate_weight_and_bias=
    False``: the bias column of ones appended to ``A``, as in our ``K x p`` layout). With
    ``reduction="mean"`` over batches of another size than our chunks, curvlinops rescales each
    batch to the mean over the data set, so it equals our sum-form data term divided by ``n``.
    """
    curvlinops = pytest.importorskip("curvlinops")
    X, y = data
    fitted = request.getfixturevalue(net)
    b = TorchBackend(fitted, dtype="float64")
    state = build(KFAC, b, X, y, curvature)
    op, n = state["curvature"], len(X)
    # the data term: our sum-form operator less its (uniform weight-decay) damping n * lambda
    ours = (op.matrix() - torch.diag(n * state["damping"])) / n
    model = fitted.module_.double()
    try:
        names = [name for name, _ in model.named_parameters()]
        assert names == b.param_names_  # one flat order for both
        loader = [(torch.as_tensor(X[a:a + 80], dtype=torch.float64),
                   torch.as_tensor(y[a:a + 80])) for a in range(0, n, 80)]
        kfac = curvlinops.KFACLinearOperator(
            model, nn.CrossEntropyLoss(reduction="mean"), list(model.parameters()), loader,
            fisher_type=fisher_type, kfac_approx="expand", separate_weight_and_bias=False,
            check_deterministic=False)
        theirs = kfac @ torch.eye(b.n_params, dtype=torch.float64)
        assert rel(ours, theirs) < 1e-12  # measured: 2e-15
        # and per layer the factors' product, ours sum-form ``G (x) A / n`` over ``n`` (the
        # layer names are curvlinops' keys)
        for i, name in enumerate(dict.fromkeys(p.rsplit(".", 1)[0] for p in names)):
            G, A, _ = op.factors[i]
            Gc, Ac = kfac._gradient_covariances[name], kfac._input_covariances[name]
            assert rel(torch.kron(G, A) / n**2, torch.kron(Gc, Ac)) < 1e-12
    finally:
        model.float()


# --------------------------------------------------------------------------- end to end
def kl_on(p_ref, p):
    p = np.clip(p, 1e-12, 1)
    return float(np.mean(np.sum(p_ref * (np.log(np.clip(p_ref, 1e-12, 1)) - np.log(p)), 1)))


@pytest.mark.parametrize("module", [MLP, CNN])
def test_end_to_end_forget_against_woodbury(data, module, capsys):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.RandomState(0)
    perm = rng.permutation(len(X))
    X, y = X[perm][:1200], y[perm][:1200]
    kw = dict(module=module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
              lr=0.01, max_epochs=15, batch_size=64, train_split=None, verbose=0,
              optimizer__weight_decay=1e-3)
    cases = {"random 1%": rng.choice(len(X), 12, replace=False),
             "class 3": np.flatnonzero(y == 3)}
    results = {}
    for label, forget in cases.items():
        keep = np.setdiff1d(np.arange(len(X)), forget)
        torch.manual_seed(1)
        retrained = NeuralNetClassifier(**kw).fit(X[keep], y[keep])
        p_ref = retrained.predict_proba(X[forget])
        for inverse in ("kfac", "ekfac", "woodbury"):
            torch.manual_seed(1)
            est = UnlearnableClassifier(NeuralNetClassifier(**kw), inverse=inverse,
                                        curvature="ggn", random_state=0).fit(X, y)
            kl0 = kl_on(p_ref, est.predict_proba(X[forget]))
            try:
                est.forget(X[forget], y[forget], epsilon=1.0)
            except ValueError as exc:  # float32 woodbury downdate: a known definiteness failure
                assert inverse == "woodbury" and "positive definite" in str(exc)
                results[label, inverse] = (kl0, float("nan"), float("nan"))
                continue
            kl1 = kl_on(p_ref, est.predict_proba(X[forget]))
            assert np.isfinite(kl1)
            if inverse != "woodbury" and label.startswith("class"):
                assert kl1 < kl0  # closer to the retrained net than before forgetting
            results[label, inverse] = (kl0, kl1, float(est.score(X[keep], y[keep])))
            if inverse != "woodbury":
                assert isinstance(est.curvature_, KroneckerNet)
                assert est.inverse_ == inverse
                assert est.n_samples_ == len(X) - len(forget)
    with capsys.disabled():
        for (label, inverse), (kl0, kl1, acc) in results.items():
            print(f"\n{module.__name__} {label:9s} {inverse:8s} KL(retrained || model) on forget "
                  f"set: before {kl0:.3f} after {kl1:.3f}; retained acc {acc:.3f}", end="")


@cuda
@pytest.mark.parametrize("cls", [KFAC, EKFACNet])
def test_cuda_matches_cpu(data, cls):
    X, y = data
    net = fit_net(CNN, X, y, epochs=1)
    b = TorchBackend(net, dtype="float64")
    cpu = build(cls, b, X, y, "ggn")["curvature"]
    net.module_.to("cuda")
    try:
        bg = TorchBackend(net, dtype="float64")
        state = build(cls, bg, X, y, "ggn")
        gpu = state["curvature"]
        assert gpu.device.type == "cuda"
        assert rel(gpu.matrix().cpu(), cpu.matrix()) < 1e-8
        down, _ = cls.downdate(gpu, state, bg, X[:5], y[:5], config("ggn"))
        assert down.device.type == "cuda"
        back = pickle.loads(pickle.dumps(gpu.to("cpu")))
        assert back.device.type == "cpu"
    finally:
        net.module_.to("cpu")


@pytest.mark.parametrize("inverse", ["kfac", "ekfac"])
def test_estimator_pickle_round_trip_and_sealed_forget(data, inverse):
    X, y = data
    kw = dict(module=MLP, criterion=nn.CrossEntropyLoss, max_epochs=3, lr=0.02,
              train_split=None, verbose=0, optimizer__weight_decay=1e-3)
    torch.manual_seed(0)
    est = UnlearnableClassifier(NeuralNetClassifier(**kw), inverse=inverse, curvature="ggn",
                                random_state=0).fit(X, y)
    assert est.inverse_ == inverse and isinstance(est.curvature_, KroneckerNet)
    back = pickle.loads(pickle.dumps(est))
    assert type(back.curvature_) is KroneckerNet
    for e in (est, back):
        e.forget(X[:5], y[:5])
    np.testing.assert_array_equal(est.predict_proba(X), back.predict_proba(X))
    assert est.curvature_.n == len(X) - 5


@pytest.mark.parametrize("inverse", ["kfac", "ekfac"])
@pytest.mark.parametrize("curvature", ["empirical_fisher", "ggn"])
@pytest.mark.parametrize("net", ["mlp_nll", "cnn"])
def test_forget_reads_the_gradient_from_the_downdate_pass(data, net, curvature, inverse):
    """At the fitted parameters the forget set's gradient and probabilities come from the
    downdate's own passes (weight gradients from the captured inputs and output gradients):
    equal in float64 to TorchBackend's gradient_sum_and_proba (autograd of the loss), and the
    forget it drives equal to the two-pass one (the sink switched off) to 1e-10."""
    X, y = data
    module, kw = (CNN, {}) if net == "cnn" else \
        (SoftmaxMLP, {"criterion": nn.NLLLoss})  # NLLLoss on probabilities
    est = UnlearnableClassifier.from_fitted(fit_net(module, X, y, **kw), X, y, inverse=inverse,
                                            curvature=curvature, dtype="float64",
                                            random_state=0)
    S = np.r_[0:7, 100:113]
    sink = {}
    est._downdate(X[S], y[S], sink)
    g, P = est.backend_.gradient_sum_and_proba(X[S], y[S])
    assert sink["g"].dtype == torch.float64 and rel(sink["g"], g) < 1e-12
    torch.testing.assert_close(torch.cat(sink["proba"]), P, rtol=1e-12, atol=1e-14)

    two_pass = pickle.loads(pickle.dumps(est))
    fused = UnlearnableClassifier._downdate
    try:  # the two-pass order: the downdate leaves nothing in the sink
        UnlearnableClassifier._downdate = lambda self, X, y, sink=None: fused(self, X, y)
        two_pass.forget(X[S], y[S])
    finally:
        UnlearnableClassifier._downdate = fused
    calls = []
    real = est.backend_.gradient_sum_and_proba
    est.backend_.gradient_sum_and_proba = lambda *a: calls.append(1) or real(*a)
    est.forget(X[S], y[S])
    assert calls == []  # one pass: the downdate's
    a, b = est.get_parameters(), two_pass.get_parameters()
    assert np.abs(a - b).max() <= 1e-10 * np.abs(b - est.theta_fit_.numpy()).max()
    for key in ("loss_before", "accuracy_before", "predicted_loss_change"):
        assert est.erasure_log_[-1][key] == pytest.approx(two_pass.erasure_log_[-1][key],
                                                          rel=1e-10)
    assert rel(est.curvature_.matrix(), two_pass.curvature_.matrix()) < 1e-10
    # after a step the parameters are no longer those of the curvature: two passes again
    assert not bool(torch.equal(est._theta, est._theta_fit))
    est.forget(X[S + 20], y[S + 20])
    assert calls == [1] and est.n_samples_ == len(X) - 2 * len(S)


def test_faults_of_the_one_pass_gradient(mlp, data, monkeypatch):
    """A non-finite gradient from the downdate's pass is refused as in the two-pass order
    (FloatingPointError, nothing changed); a downdate that fails is reported as the two-pass
    order would: a non-finite gradient first, else the downdate's own error."""
    from sklearn_ssse._curvature import _kronecker_net

    X, y = data
    est = UnlearnableClassifier.from_fitted(mlp, X, y, inverse="ekfac", dtype="float64",
                                            random_state=0)
    theta, n = est.get_parameters(), est.n_samples_
    real = _kronecker_net._gradient_into

    def poisoned(sink, *args):
        real(sink, *args)
        sink["g"][3] = np.nan

    def unchanged():
        np.testing.assert_array_equal(est.get_parameters(), theta)
        assert est.n_samples_ == n and est.erasure_log_ == [] and est.verify_seal()

    with monkeypatch.context() as m:
        m.setattr(_kronecker_net, "_gradient_into", poisoned)
        with pytest.raises(FloatingPointError, match="gradients .* not finite"):
            est.forget(X[:6], y[:6])
    unchanged()

    def failing(*args):
        raise ValueError("the downdate failed")

    with monkeypatch.context() as m:
        m.setattr(_kronecker_net, "_gradient_into", failing)
        with pytest.raises(ValueError, match="the downdate failed"):
            est.forget(X[:6], y[:6])
        unchanged()
        grads = est.backend_.gradient_sum
        m.setattr(type(est.backend_), "gradient_sum",
                  lambda self, X, y: grads(X, y) * np.inf)
        with pytest.raises(FloatingPointError, match="gradients .* not finite"):
            est.forget(X[:6], y[:6])
    unchanged()
    est.forget(X[:6], y[:6])
    assert est.n_samples_ == n - 6
