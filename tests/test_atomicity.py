"""forget (and fit) are atomic: injected faults at every stage leave the model bit for bit as it
was (parameters, the wrapped estimator's arrays, n_samples_, the curvature object and its
tensors, erasure_log_, fit_mask_ and the row digests), and the next forget behaves exactly as on
a model that never saw the fault."""

import copy
import warnings

import numpy as np
import pytest
import torch
from _model_state import assert_unchanged, snapshot
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier

import sklearn_ssse._unlearnable as core
from sklearn_ssse import UnlearnableClassifier, UntrackedSampleWarning
from sklearn_ssse._backends._linear import LinearBackend, _SingleLinear


class Injected(Exception):
    """The fault raised by the monkeypatched methods."""


@pytest.fixture(scope="module")
def data():
    X, y = load_iris(return_X_y=True)
    Y = np.c_[y, (X[:, 0] > 5.8).astype(int)]
    return X, y, Y


@pytest.fixture(scope="module")
def _models(data):
    X, y, Y = data
    kw = dict(keep_training_data=True, track_samples=True)
    return {
        "multinomial": UnlearnableClassifier(LogisticRegression(max_iter=1000), **kw).fit(X, y),
        "downdated": UnlearnableClassifier(LogisticRegression(max_iter=1000), curvature="ggn",
                                           update_curvature=True, **kw).fit(X, y),
        "multioutput": UnlearnableClassifier(
            MultiOutputClassifier(LogisticRegression(max_iter=1000)), update_curvature=True,
            **kw).fit(X, Y),
    }


@pytest.fixture
def model(request, _models, data):
    """(a deep copy of a fitted model with every kind of state, X, y) for ``request.param``."""
    X, y, Y = data
    clf = copy.deepcopy(_models[request.param])
    clf.forget(X[[3, 60]], (Y if request.param == "multioutput" else y)[[3, 60]])  # a log entry
    return clf, X, (Y if request.param == "multioutput" else y)


ALL = ["multinomial", "downdated", "multioutput"]


def _check_fault(clf, X, y, exc, match=None, forget_set=(10, 70, 120)):
    """The faulty forget raises ``exc``, changes nothing, and afterwards the model behaves
    exactly like a copy that never saw the fault."""
    idx = list(forget_set)
    reference = copy.deepcopy(clf)
    before = snapshot(clf)
    with pytest.raises(exc, match=match):
        clf.forget(X[idx], y[idx])
    assert_unchanged(clf, before)
    return reference, idx


def _same_after_next_forget(clf, reference, X, y, idx):
    clf.forget(X[idx], y[idx])
    reference.forget(X[idx], y[idx])
    np.testing.assert_array_equal(clf.get_parameters(), reference.get_parameters())
    assert clf.parameters_checksum_ == reference.parameters_checksum_
    assert clf.n_samples_ == reference.n_samples_
    assert len(clf.erasure_log_) == len(reference.erasure_log_)


# ------------------------------------------------------------------ numerical failures
@pytest.mark.parametrize("model", ALL, indirect=True)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradients(model, monkeypatch, bad):
    clf, X, y = model
    backend = type(clf.backend_)

    def poisoned(real):
        def grads(self, X, y):
            G = real(self, X, y).clone()
            G.view(-1)[0] = bad
            return G
        return grads

    with monkeypatch.context() as m:
        # every way the backend hands out gradients: per sample, or their sum in closed form
        for name in ("per_sample_gradients", "gradient_sum"):
            if hasattr(backend, name):
                m.setattr(backend, name, poisoned(getattr(backend, name)))
        reference, idx = _check_fault(clf, X, y, FloatingPointError, "gradients .* not finite")
    _same_after_next_forget(clf, reference, X, y, idx)


@pytest.mark.parametrize("model", ALL, indirect=True)
def test_non_finite_solve(model, monkeypatch):
    """The solve of the step (with the leave-out curvature) returns inf."""
    clf, X, y = model
    real = type(clf)._erasure

    def erasure(self, *args, **kwargs):
        delta, *rest = real(self, *args, **kwargs)
        return (delta * torch.inf, *rest)

    with monkeypatch.context() as m:
        m.setattr(type(clf), "_erasure", erasure)
        reference, idx = _check_fault(clf, X, y, FloatingPointError, "step is not finite")
    _same_after_next_forget(clf, reference, X, y, idx)


def _patch_downdates(m, op, wrap):
    """Route every downdate entry point of ``op``'s class through ``wrap(real, *args)``."""
    for name in ("downdate", "downdate_gram"):
        real = getattr(type(op), name, None)
        if real is not None:
            m.setattr(type(op), name,
                      lambda self, *args, _real=real: wrap(_real, self, *args))


@pytest.mark.parametrize("model", ["downdated", "multioutput"], indirect=True)
def test_downdate_raises(model, monkeypatch):
    clf, X, y = model

    def wrap(real, op, *args):
        raise Injected("downdate failed")

    with monkeypatch.context() as m:
        _patch_downdates(m, clf.curvature_, wrap)
        reference, idx = _check_fault(clf, X, y, Injected)
    _same_after_next_forget(clf, reference, X, y, idx)


class _Broken:
    """A curvature operator whose solves are scaled by ``factor`` (NaN or -1)."""

    def __init__(self, op, factor):
        self.op, self.factor = op, factor

    def solve(self, v):
        return self.op.solve(v) * self.factor

    def solve_sum(self, v):
        return self.op.solve_sum(v) * self.factor

    def __getattr__(self, name):
        return getattr(self.op, name)


@pytest.mark.parametrize("model", ["downdated", "multioutput"], indirect=True)
@pytest.mark.parametrize("bad", [np.nan, -1.0])
def test_downdated_curvature_not_finite_or_indefinite(model, monkeypatch, bad):
    """A downdate that breaks the curvature (NaN, or negative definite) is refused."""
    clf, X, y = model

    def wrap(real, op, *args):
        return _Broken(real(op, *args), bad)

    with monkeypatch.context() as m:
        _patch_downdates(m, clf.curvature_, wrap)
        # (the leave-out step solves with the downdated curvature: a NaN one already makes the
        # step itself not finite)
        reference, idx = _check_fault(
            clf, X, y, FloatingPointError,
            "(downdated curvature is not finite or not positive|erasure step is not finite)")
    _same_after_next_forget(clf, reference, X, y, idx)


def test_downdate_of_rows_not_in_the_curvature_is_refused(data):
    """Removing rows that were never part of the curvature (on_untracked='warn' lets such a
    request through) can make it indefinite: refused, nothing changed."""
    X, y, _ = data
    clf = UnlearnableClassifier(LogisticRegression(C=1e4, max_iter=5000), update_curvature=True,
                                curvature="empirical_fisher", track_samples=True,
                                on_untracked="warn")
    clf.fit(X[:-1:2], y[:-1:2])
    before = snapshot(clf)
    # far outside the data and mislabelled: huge gradients that were never terms of F
    foreign = np.repeat(X[[1]] * 50, 20, axis=0)
    assert y[1] != 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrackedSampleWarning)
        with pytest.raises((FloatingPointError, ValueError), match="positive definite"):
            clf.forget(foreign, np.full(20, 2))
    assert_unchanged(clf, before)


# ------------------------------------------------------------------ failures while writing
def _count_writes(clf, X, y, idx, monkeypatch):
    """Number of per-output parameter writes a successful forget makes (on a copy)."""
    probe = copy.deepcopy(clf)
    real = _SingleLinear.set
    calls = []

    def set_(self, est, theta, inplace):
        calls.append(1)
        return real(self, est, theta, inplace)

    with monkeypatch.context() as m:
        m.setattr(_SingleLinear, "set", set_)
        probe.forget(X[idx], y[idx])
    return len(calls)


@pytest.mark.parametrize("model", ["multioutput", "downdated"], indirect=True)
def test_every_parameter_write_failing_is_rolled_back(model, monkeypatch):
    """Whichever per-output write fails (e.g. the second output's, after the first output's
    parameters were written), the parameters already written are put back."""
    clf, X, y = model
    idx = [10, 70, 120]
    n_writes = _count_writes(clf, X, y, idx, monkeypatch)
    assert n_writes >= 1
    real = _SingleLinear.set
    for fail_at in range(1, n_writes + 1):
        calls = []

        def set_(self, est, theta, inplace, fail_at=fail_at, calls=calls):
            calls.append(1)
            if len(calls) == fail_at:
                raise Injected("disk full")
            return real(self, est, theta, inplace)

        with monkeypatch.context() as m:
            m.setattr(_SingleLinear, "set", set_)
            reference, _ = _check_fault(clf, X, y, Injected, "disk full", forget_set=idx)
    _same_after_next_forget(clf, reference, X, y, idx)


@pytest.mark.parametrize("model", ALL, indirect=True)
@pytest.mark.parametrize("fault", [KeyboardInterrupt, Injected])
def test_interrupted_write(model, monkeypatch, fault):
    clf, X, y = model
    real = LinearBackend.set_parameters
    calls = []

    def set_parameters(self, theta):
        calls.append(1)
        real(self, theta)
        if len(calls) == 1:
            raise fault()  # after the write: the parameters were changed

    with monkeypatch.context() as m:
        m.setattr(LinearBackend, "set_parameters", set_parameters)
        reference, idx = _check_fault(clf, X, y, fault)
    _same_after_next_forget(clf, reference, X, y, idx)


@pytest.mark.parametrize("model", ALL, indirect=True)
def test_corrupt_write_is_detected(model, monkeypatch):
    """A committing write that lands non-finite numbers is detected by the read-back and
    undone."""
    clf, X, y = model
    real = LinearBackend.set_parameters
    n_writes = _count_writes(clf, X, y, [10, 70, 120], monkeypatch) // len(
        clf.backend_.parts)
    calls = []

    def set_parameters(self, theta):
        calls.append(1)
        real(self, theta * np.nan if len(calls) == n_writes else theta)

    with monkeypatch.context() as m:
        m.setattr(LinearBackend, "set_parameters", set_parameters)
        reference, idx = _check_fault(clf, X, y, FloatingPointError, "not finite")
    _same_after_next_forget(clf, reference, X, y, idx)


@pytest.mark.parametrize("model", ALL, indirect=True)
def test_failure_after_the_write(model, monkeypatch):
    """The diagnostics are computed after the write; a failure there rolls the write back."""
    clf, X, y = model
    calls = []
    real = core._set_diagnostics

    def diagnostics(*args):
        calls.append(1)
        if len(calls) == 2:
            raise Injected("predict_proba failed")
        return real(*args)

    with monkeypatch.context() as m:
        m.setattr(core, "_set_diagnostics", diagnostics)
        reference, idx = _check_fault(clf, X, y, Injected)
    _same_after_next_forget(clf, reference, X, y, idx)


@pytest.mark.parametrize("model", ["multinomial"], indirect=True)
def test_failed_restore_is_reported(model, monkeypatch):
    """If even the rollback fails the error says that the model state is unknown."""
    clf, X, y = model

    real = LinearBackend.set_parameters
    calls = []

    def set_parameters(self, theta):  # the first write lands, then every write fails
        calls.append(1)
        if len(calls) == 1:
            real(self, theta)
        raise Injected("device lost")

    monkeypatch.setattr(LinearBackend, "set_parameters", set_parameters)
    with pytest.raises(RuntimeError, match="could not be restored") as info:
        clf.forget(X[[10]], y[[10]])
    assert isinstance(info.value.__cause__, Injected)


# ------------------------------------------------------------------ failures before the step
@pytest.mark.parametrize("model", ALL, indirect=True)
def test_row_location_fails(model, monkeypatch):
    clf, X, y = model
    import sklearn_ssse._rows as rows

    def locate(*args, **kwargs):
        raise Injected("index corrupted")

    with monkeypatch.context() as m:
        m.setattr(rows.RowIndex, "locate", locate)
        reference, idx = _check_fault(clf, X, y, Injected)
    _same_after_next_forget(clf, reference, X, y, idx)


@pytest.mark.parametrize("model", ALL, indirect=True)
def test_untracked_warning_turned_into_error(model):
    clf, X, y = model
    clf.set_params(on_untracked="warn")
    before = snapshot(clf)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrackedSampleWarning)
        with pytest.raises(UntrackedSampleWarning):
            clf.forget(X[[3, 5]], y[[3, 5]])  # 3 was forgotten by the fixture
    assert_unchanged(clf, before)


# ------------------------------------------------------------------ fit
@pytest.mark.parametrize("model", ALL, indirect=True)
def test_failed_refit_keeps_the_fitted_model(model, monkeypatch):
    clf, X, y = model
    before = snapshot(clf)
    params = clf.get_params()
    proba = clf.predict_proba(X)

    def fit_and_build(*args, **kwargs):
        raise Injected("out of memory")

    with monkeypatch.context() as m:
        m.setattr(core, "_fit_and_build", fit_and_build)
        with pytest.raises(Injected):
            clf.fit(X[:, :3], y)  # would also reset n_features_in_ to 3
    assert_unchanged(clf, before)
    assert clf.n_features_in_ == 4
    assert clf.get_params() == params
    after = clf.predict_proba(X)
    for a, b in zip(*(p if isinstance(p, list) else [p] for p in (proba, after))):
        np.testing.assert_array_equal(a, b)
    clf.forget(X[[10]], y[[10]])


def test_failed_first_fit_leaves_an_unfitted_estimator(data, monkeypatch):
    X, y, _ = data
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000))
    monkeypatch.setattr(core, "_fit_and_build",
                        lambda *a, **k: (_ for _ in ()).throw(Injected("boom")))
    with pytest.raises(Injected):
        clf.fit(X, y)
    assert sorted(vars(clf)) == sorted(clf.get_params(deep=False))


# ------------------------------------------------------------------ torch backend
def test_torch_set_parameters_fails_halfway(monkeypatch):
    skorch = pytest.importorskip("skorch")
    from torch import nn

    from sklearn_ssse._backends._torch import TorchBackend

    X, y = load_iris(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)),
        criterion=nn.CrossEntropyLoss, max_epochs=5, lr=0.1, train_split=None, verbose=0)
    clf = UnlearnableClassifier(net, track_samples=True).fit(X, y)
    clf.forget(X[[0]], y[[0]])
    reference = copy.deepcopy(clf)
    before = snapshot(clf)
    module = clf.estimator_.module_
    weights = [p.detach().clone() for p in module.parameters()]
    real = TorchBackend.set_parameters
    calls = []

    def set_parameters(self, theta):
        calls.append(1)
        if len(calls) == 1:  # write the first tensor only, then fail
            with torch.no_grad():
                first = next(iter(module.parameters()))
                first.copy_(torch.as_tensor(theta)[: first.numel()].view(first.shape))
            raise Injected("halfway")
        return real(self, theta)

    with monkeypatch.context() as m:
        m.setattr(TorchBackend, "set_parameters", set_parameters)
        with pytest.raises(Injected):
            clf.forget(X[[5, 60]], y[[5, 60]])
    assert_unchanged(clf, before)
    for w, p in zip(weights, module.parameters()):
        assert torch.equal(w, p.detach())
    clf.forget(X[[5, 60]], y[[5, 60]])
    reference.forget(X[[5, 60]], y[[5, 60]])
    np.testing.assert_array_equal(clf.get_parameters(), reference.get_parameters())


def test_torch_float64_curvature_on_a_float32_net_forgets_repeatedly():
    """The step is computed in float64 and rounded when written into the float32 net: the
    checksum is of what the net holds, so the next forget is not mistaken for a refit."""
    skorch = pytest.importorskip("skorch")
    from torch import nn

    X, y = load_iris(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(nn.Linear(4, 3), criterion=nn.CrossEntropyLoss,
                                     max_epochs=5, lr=0.1, train_split=None, verbose=0)
    clf = UnlearnableClassifier(net, dtype="float64").fit(X, y)
    for i in range(3):
        clf.forget(X[[i]], y[[i]])
    assert clf.n_samples_ == 147
    assert clf.erasure_log_[1]["checksum_before"] == clf.erasure_log_[0]["checksum_after"]
