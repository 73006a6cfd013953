"""The curvature registry (issue 12, item 1): every ``inverse=`` kind is a class behind one
contract; the estimator, the CLI and the parameter validation read the registry, so a new kind is
one class plus one registration."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._cli import build_parser
from sklearn_ssse._curvature import DiagonalOperator
from sklearn_ssse._curvature._base import InverseKind
from sklearn_ssse._curvature._registry import (
    INVERSES,
    auto_order,
    choices,
    kind_for,
    register,
    resolve_inverse,
)


class Jacobi(InverseKind):
    """A kind written only against the contract: the diagonal of the damped curvature."""

    name = "jacobi"
    diagonal_base = True
    calls: list = []

    @classmethod
    def estimate_memory(cls, backend, config, n=None):
        return 2 * backend.n_params * 8

    @classmethod
    def _diagonal(cls, backend, X, y, config):
        R = backend.curvature_rows(X, y, config["curvature"]).reshape(-1, backend.n_params)
        return (R * R).sum(0)

    @classmethod
    def build(cls, backend, chunks, config, damping, rng, n_known=None):
        cls.calls.append("build")
        diag, n = 0, 0
        for Xc, yc in chunks:
            diag = diag + cls._diagonal(backend, Xc, yc, config)
            n += len(Xc)
        lam = damping(n)
        return {"curvature": DiagonalOperator(diag + n * lam, n), "damping": lam, "n": n,
                "n_curvature_samples": n, "sample": None, "label_salt": None}

    @classmethod
    def downdate(cls, op, state, backend, X, y, config):
        cls.calls.append("downdate")
        return DiagonalOperator(op.diag_sum - cls._diagonal(backend, X, y, config),
                                op.n - len(X)), None


@pytest.fixture
def jacobi(monkeypatch):
    monkeypatch.setitem(INVERSES, "jacobi", ())
    register(Jacobi)
    Jacobi.calls = []
    return Jacobi


def _data():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_new_kind_is_one_class_and_one_registration(jacobi):
    """A registered kind is accepted by the estimator and the CLI, built and downdated through
    its own class, and the step is what its operator says: theta + (M - B_S)^{-1} g with
    ``M`` the damped diagonal of the GGN (checked against numpy)."""
    X, y = _data()
    assert "jacobi" in choices()
    args = build_parser().parse_args(["evaluate", "digits", "--inverse", "jacobi"])
    assert args.inverse == "jacobi"
    assert "jacobi" not in auto_order()  # auto_rank None: never chosen automatically
    clf = UnlearnableClassifier(LogisticRegression(C=1.0, tol=1e-10, max_iter=1000),
                                inverse="jacobi").fit(X, y)
    assert clf.inverse_ == "jacobi" and clf.config_.inverse == "jacobi"
    theta0 = clf.get_parameters().copy()
    forget = np.arange(0, 150, 15)
    # brute force: the sum-form diagonal without the forgotten rows, and their summed gradient
    R = clf.backend_.curvature_rows(X, y, "ggn").reshape(-1, clf.backend_.n_params).numpy()
    R_s = clf.backend_.curvature_rows(X[forget], y[forget], "ggn")
    R_s = R_s.reshape(-1, clf.backend_.n_params).numpy()
    lam = clf.damping_
    M = (R * R).sum(0) + len(X) * lam
    g = clf.backend_.per_sample_gradients(X[forget], y[forget]).sum(0).numpy()
    expected = theta0 + g / (M - (R_s * R_s).sum(0))
    clf.forget(X[forget], y[forget])
    assert jacobi.calls == ["build", "downdate"]
    np.testing.assert_allclose(clf.get_parameters(), expected, rtol=1e-10, atol=1e-12)


def test_auto_follows_the_registered_ranks():
    """``auto`` takes the first kind by rank that fits the budget; an explicit kind over the
    budget is refused with its estimate, before any work."""
    assert auto_order()[:2] == ["dense", "block"]
    X, y = _data()
    clf = UnlearnableClassifier(LogisticRegression()).fit(X, y)
    config = dict(clf._config(), inverse="auto")
    kind, need = resolve_inverse(config, clf.backend_, len(X))
    assert kind.name == "dense" and need == kind.estimate_memory(clf.backend_, config, len(X))
    tight = dict(config, memory_budget=need - 1)
    assert resolve_inverse(tight, clf.backend_, len(X))[0].name != "dense"
    with pytest.raises(ValueError, match="inverse='dense' .* needs about"):
        resolve_inverse(dict(tight, inverse="dense"), clf.backend_, len(X))


def test_one_name_one_implementation_per_family(monkeypatch):
    """A name may have several implementations: the first that supports the backend serves
    it, and a backend none supports gets every reason."""
    X, y = _data()
    clf = UnlearnableClassifier(LogisticRegression()).fit(X, y)

    class Never(InverseKind):
        name = "ekfac"

        @classmethod
        def unsupported(cls, backend, config):
            return "not this family"

    monkeypatch.setitem(INVERSES, "ekfac", (Never,) + INVERSES["ekfac"])
    assert kind_for("ekfac", clf.backend_, clf._config()) is INVERSES["ekfac"][1]
    monkeypatch.setitem(INVERSES, "ekfac", (Never,))
    with pytest.raises(ValueError, match="not this family"):
        kind_for("ekfac", clf.backend_, clf._config())
    with pytest.raises(ValueError, match="unknown inverse 'nope'"):
        kind_for("nope", clf.backend_, clf._config())


def test_floor_damping_by_kind():
    """Unpenalised parameters get a tiny floor, or (diagonal-base kinds) the largest damping;
    a diagonal-base kind refuses a model without any penalty."""
    lam = torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64)
    assert kind_for("dense", None, {}).floor_damping(lam)[1] == pytest.approx(0.5e-6)
    assert INVERSES["woodbury"][0].floor_damping(lam)[1] == 0.5
    with pytest.raises(ValueError, match="needs a positive damping"):
        INVERSES["woodbury"][0].floor_damping(torch.zeros(3, dtype=torch.float64))


def test_net_memory_is_estimated_before_any_work(monkeypatch):
    """Issue 12, item 6: a net whose curvature cannot fit the budget is refused from the
    estimates alone (no per-sample gradient or factor row is computed), with the figures; an
    explicit dense inverse names what it would need."""
    skorch = pytest.importorskip("skorch")
    from torch import nn

    from sklearn_ssse._backends._torch import TorchBackend

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = skorch.NeuralNetClassifier(
        nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 3)),
        criterion=nn.CrossEntropyLoss, max_epochs=2, train_split=None, verbose=0)

    def no_work(*args, **kwargs):
        raise AssertionError("curvature work before the memory check")

    for name in ("curvature_rows", "iter_curvature_rows", "per_sample_gradients"):
        monkeypatch.setattr(TorchBackend, name, no_work)
    d = 4 * 64 + 64 + 64 * 3 + 3
    with pytest.raises(ValueError, match=r"no inverse fits memory_budget=1 KiB for "
                                         rf"{d} parameters \(estimated: dense "):
        UnlearnableClassifier(net, memory_budget="1KiB").fit(X, y)
    with pytest.raises(ValueError, match=rf"inverse='dense' for {d} parameters needs about "
                                         r"2.02 MiB, over memory_budget=1 MiB"):  # 2 d^2 float32
        UnlearnableClassifier(net, inverse="dense", memory_budget="1MiB").fit(X, y)


def test_block_size_cuts_the_built_operator_as_estimated():
    """``inverse="block"`` with ``block_size`` builds blocks of that size (regression: the
    registry once built one dense block over every parameter while estimating the small ones),
    and the operator is what the estimate counted."""
    from sklearn.datasets import load_digits

    from sklearn_ssse._curvature import BlockDiagonal

    X, y = load_digits(return_X_y=True)
    clf = UnlearnableClassifier(LogisticRegression(max_iter=300), inverse="block",
                                block_size=100).fit(X / 16, y)
    d = clf.backend_.n_params
    assert isinstance(clf.curvature_, BlockDiagonal)
    widths = [s.stop - s.start for s in clf.curvature_.slices]
    assert max(widths) <= 100 and sum(widths) == d
    # the dense-kind Gram and factor per block: twice the factors the operator holds
    assert clf.config_.estimated_memory == 2 * clf.curvature_.nbytes
