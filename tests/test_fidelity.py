"""What a user gets without options: the leave-out GGN step against retraining and against the
exact Newton step; the memory budget of ``inverse="auto"``; the low-rank inverse's sampled GGN
rows and exact diagonal; the frozen fit-time settings."""


import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._curvature import (
    BlockDiagonal,
    DenseCholesky,
    KroneckerEigen,
    LowRankCorrected,
)
from sklearn_ssse._curvature._registry import estimate_memory, resolve_inverse

LR = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)


def _np(t):
    """A numpy array of a tensor or an array (the public API returns arrays)."""
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def _data(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _theta(est):
    return np.hstack([est.coef_, est.intercept_[:, None]]).ravel()


def _npd(theta, ret, orig):
    return np.linalg.norm(theta - ret) / np.linalg.norm(orig - ret)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine])
def test_default_lands_next_to_retraining(loader):
    """Defaults (GGN, leave-out step, auto inverse, epsilon=1) on random 2% deletions: within
    0.1 of the original's distance from the retrained optimum, where the paper's configuration
    (empirical Fisher, full-data curvature) is further away than not forgetting at all."""
    X, y = _data(loader)
    clf = UnlearnableClassifier(LR).fit(X, y)
    paper = UnlearnableClassifier(LR, curvature="empirical_fisher", step="full").fit(X, y)
    assert (clf.config_.curvature, clf.config_.step, clf.inverse_) == ("ggn", "leave_out",
                                                                       "dense")
    theta0 = clf.get_parameters()
    rng = np.random.default_rng(0)
    for _ in range(3):
        S = rng.choice(len(X), max(2, len(X) // 50), replace=False)
        keep = np.setdiff1d(np.arange(len(X)), S)
        ret = _theta(clone(LR).fit(X[keep], y[keep]))
        d_default = _npd(theta0 + _np(clf.forget_direction(X[S], y[S])), ret, theta0)
        d_paper = _npd(theta0 + _np(paper.forget_direction(X[S], y[S])), ret, theta0)
        assert d_default < 0.1
        assert d_default < d_paper / 5


def test_leave_out_step_equals_the_exact_newton_step_and_beats_the_full_one():
    """Binary model (no intercept floor): the default step is the Newton step of sklearn's
    objective on the remaining rows, computed here from scratch in numpy."""
    X, y = _data(load_breast_cancer)
    clf = UnlearnableClassifier(LR).fit(X, y)
    full = UnlearnableClassifier(LR, step="full").fit(X, y)
    S = np.arange(0, len(X), 40)
    R = np.setdiff1d(np.arange(len(X)), S)
    theta = clf.get_parameters()
    Xa = np.hstack([X, np.ones((len(X), 1))])
    p = 1 / (1 + np.exp(-Xa @ theta))
    pen = np.r_[np.ones(X.shape[1]), 0.0] / LR.C
    pen[-1] = clf.n_samples_fit_ * _np(clf.damping_)[-1]  # the intercept floor
    H = (Xa[R] * (p[R] * (1 - p[R]))[:, None]).T @ Xa[R] + np.diag(pen)
    g_S = Xa[S].T @ (p[S] - y[S])
    # at theta* the remaining objective's gradient is -sum_S g (to the solver's tolerance)
    grad_R = Xa[R].T @ (p[R] - y[R]) + np.r_[theta[:-1], 0.0] / LR.C
    np.testing.assert_allclose(grad_R, -g_S, atol=1e-4 * np.abs(g_S).max())
    newton = np.linalg.solve(H, g_S)
    np.testing.assert_allclose(_np(clf.forget_direction(X[S], y[S])), newton, rtol=1e-8,
                               atol=1e-12)
    ret = _theta(clone(LR).fit(X[R], y[R]))
    d_leave = _npd(theta + newton, ret, theta)
    d_full = _npd(theta + _np(full.forget_direction(X[S], y[S])), ret, theta)
    assert d_leave < 0.06 and d_leave < 0.6 * d_full  # measured .049 vs .087


def test_memory_budget_decides_auto_and_refuses_up_front():
    X, y = _data(load_wine)  # 3 classes x 14 = 42 parameters
    d = 42
    dense = UnlearnableClassifier(LR).fit(X, y)
    assert dense.inverse_ == "dense" and isinstance(dense.curvature_, DenseCholesky)
    assert dense.config_.estimated_memory == 2 * d * d * 8
    # too small for the dense factor, enough for one block per class
    block = UnlearnableClassifier(LR, memory_budget=2 * d * d * 8 - 1).fit(X, y)
    assert block.inverse_ == "block" and isinstance(block.curvature_, BlockDiagonal)
    assert block.config_.estimated_memory == 2 * 3 * 14 * 14 * 8
    # below the blocks: a softmax model gets no low-rank fallback (see test_auto_never_...)
    with pytest.raises(ValueError, match=r"no faithful inverse fits memory_budget=.*dense "
                                         r"27.6 KiB.*memory_budget=9.19 KiB would allow one"):
        UnlearnableClassifier(LR, memory_budget="9000B", fisher_max_samples=5).fit(X, y)
    # a binary model (31 parameters) does: the low-rank kind, with few rows
    Xb, yb = _data(load_breast_cancer)
    low = UnlearnableClassifier(LR, memory_budget="9000B", fisher_max_samples=5).fit(Xb, yb)
    assert low.inverse_ == "woodbury"
    assert low.config_.estimated_memory == (2 * 5 * 31 + 5 * 5) * 8 <= 9000
    with pytest.raises(ValueError, match=r"no inverse fits memory_budget=.*dense 15 KiB"):
        UnlearnableClassifier(LR, memory_budget=1000).fit(Xb, yb)
    with pytest.raises(ValueError, match=r"inverse='dense' for 42 parameters needs about "
                                         r"27.6 KiB, over memory_budget"):
        UnlearnableClassifier(LR, inverse="dense", memory_budget="10 KiB").fit(X, y)
    with pytest.raises(ValueError, match="memory_budget must be"):
        UnlearnableClassifier(LR, memory_budget="lots").fit(X, y)


def test_memory_estimates_match_what_is_built():
    """The estimates bound the operator's own tensors: exactly twice them for the dense kinds
    (Gram + factor), and within the transient copies of the m x q x d factor rows for the
    row-based kinds."""
    X, y = _data(load_wine)
    d, q, m = 42, 3, len(X)
    for kind in ("dense", "block", "woodbury", "sherman_morrison"):
        clf = UnlearnableClassifier(LR, inverse=kind).fit(X, y)
        held = clf.curvature_.nbytes
        need = estimate_memory(kind, clf.backend_, clf._config(), len(X))
        assert held <= need, kind
        if kind in ("dense", "block"):
            assert need == 2 * held
        else:
            assert need <= 4 * held + 2 * m * q * d * 8, kind


def test_woodbury_ggn_keeps_one_sampled_row_per_sample_and_removes_the_same_rows():
    """Sampled GGN rows: one factor row per sample (rank m, not m * C), drawn reproducibly, so
    that removing a sampled row's terms and adding them back restores the operator; the
    downdate equals a rebuild without those rows."""
    X, y = _data(load_wine)
    clf = UnlearnableClassifier(LR, inverse="woodbury", fisher_max_samples=60,
                                random_state=0).fit(X, y)
    op = clf.curvature_
    assert isinstance(op, LowRankCorrected) and op.rank == 60  # not 60 * 3
    again = UnlearnableClassifier(LR, inverse="woodbury", fisher_max_samples=60,
                                  random_state=0).fit(X, y)
    eye = torch.eye(op.dim, dtype=op.dtype)
    np.testing.assert_array_equal(op.solve(eye).numpy(), again.curvature_.solve(eye).numpy())
    # forget every sampled row: the low-rank part is gone, the diagonal base is what remains
    sampled = [i for i in range(len(X)) if clf._curvature_sample["digests"].size and i in
               _sampled_rows(clf, X, y)]
    assert len(sampled) == 60
    down, _ = clf._downdate(X[sampled], y[sampled])
    base = op.base.solve(eye)  # diagonal base alone
    np.testing.assert_allclose(down.solve(eye).numpy() * len(X) / (len(X) - 60),
                               base.numpy(), rtol=1e-6, atol=1e-9)


def _sampled_rows(clf, X, y):
    from sklearn_ssse._rows import row_digests

    rec = clf._curvature_sample
    d = row_digests(X, y, salt=rec["salt"])
    return set(np.flatnonzero(np.isin(d, rec["digests"])))


def test_woodbury_diagonal_base_is_the_exact_diagonal():
    """Linear models: diag(M) of the low-rank operator equals the exact diagonal of the full
    GGN (where the sampled rows do not already exceed it)."""
    X, y = _data(load_wine)
    # (how many coordinates the 40 sampled rows exceed depends on the draw: the rows and their
    # labels, drawn with keys from the row digests; from 3 to 42 of 42 over seeds 0-7 since the
    # digests hash a row by its nonzero entries; seed 3: 6 of 42 clipped, so that both cases
    # are checked)
    clf = UnlearnableClassifier(LR, inverse="woodbury", fisher_max_samples=40,
                                random_state=3).fit(X, y)
    exact = UnlearnableClassifier(LR, inverse="dense").fit(X, y)
    D_exact = (torch.diag(exact.curvature_.matrix()).numpy()
               - len(X) * _np(exact.damping_))  # the data term's exact diagonal
    op = clf.curvature_
    lam = len(X) * _np(clf.damping_)
    base = op.base.diag_sum.numpy() - lam
    assert np.all(base <= D_exact + 1e-9) and np.all(base >= 0)
    M_low = np.linalg.inv(op.solve_sum(torch.eye(op.dim, dtype=op.dtype)).numpy())
    D_low = np.diag(M_low) - lam
    # never below the exact diagonal; equal to it wherever the rows did not exceed it
    assert np.all(D_low >= D_exact - 1e-8 * D_exact.max())
    unclipped = base > 0
    assert unclipped.sum() > len(base) // 2
    np.testing.assert_allclose(D_low[unclipped], D_exact[unclipped], rtol=1e-6)


# ------------------------------------------------------------------------------ EK-FAC

def _centred_distance(W, ret, orig):
    """Normalised parameter distance of softmax models (class rows centred: the softmax is
    invariant to a shift common to every class)."""
    def c(V):
        return (V - V.mean(0)).ravel()
    return np.linalg.norm(c(W) - c(ret)) / np.linalg.norm(c(orig) - c(ret))


def test_auto_picks_the_ekfac_below_the_blocks():
    """Below the per-class blocks' memory, inverse="auto" takes the EK-FAC (coupled, smaller,
    measured less faithful than the blocks), whose estimate bounds what it holds."""
    X, y = _data(load_wine)  # 3 classes x 14
    d = 42
    budget = 2 * 3 * 14 * 14 * 8 - 1  # just below the blocks
    clf = UnlearnableClassifier(LR, memory_budget=budget, chunk_size=4).fit(X, y)
    assert clf.inverse_ == "ekfac" and isinstance(clf.curvature_, KroneckerEigen)
    need = estimate_memory("ekfac", clf.backend_, clf._config(), len(X))
    assert clf.config_.estimated_memory == need <= budget
    assert clf.curvature_.nbytes == (3 * 3 + 14 * 14 + 2 * 3 * 14) * 8 <= need
    # two passes over the data: a one-shot stream of chunks gives the same operator
    stream = ((X[a:a + 25], y[a:a + 25]) for a in range(0, len(X), 25))
    streamed = UnlearnableClassifier.from_fitted(clf.estimator_, stream, memory_budget=budget,
                                                 chunk_size=4)
    eye = torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(streamed.curvature_.solve(eye), clf.curvature_.solve(eye),
                               rtol=1e-10, atol=0)
    clf.forget(X[:4], y[:4])  # the leave-out step and the downdate keep the structure
    assert isinstance(clf.curvature_, KroneckerEigen) and clf.curvature_.n == len(X) - 4


def test_ekfac_lands_closer_to_retraining_than_not_forgetting():
    """Digits (650 parameters), epsilon=1: measured .52-.54 for random 1% / 5% deletions and
    about .84 for removing a whole class (the bounds leave some room)."""
    X, y = load_digits(return_X_y=True)
    X = X / 16
    clf = UnlearnableClassifier(LR, memory_budget="300KiB", chunk_size=32).fit(X, y)
    assert clf.inverse_ == "ekfac"

    def W(est):
        return np.hstack([est.coef_, est.intercept_[:, None]])

    W0 = W(clf.estimator_)
    rng = np.random.default_rng(0)
    for k, bound in ((17, 0.6), (89, 0.6)):
        S = rng.choice(len(X), k, replace=False)
        keep = np.setdiff1d(np.arange(len(X)), S)
        ret = W(clone(LR).fit(X[keep], y[keep]))
        delta = _np(clf.forget_direction(X[S], y[S])).reshape(W0.shape)
        assert _centred_distance(W0 + delta, ret, W0) < bound
    S = np.flatnonzero(y == 1)
    keep = np.flatnonzero(y != 1)
    ret = W(clone(LR).fit(X[keep], y[keep]))
    delta = _np(clf.forget_direction(X[S], y[S])).reshape(W0.shape)
    rows = np.unique(y[keep])
    assert _centred_distance((W0 + delta)[rows], ret, W0[rows]) < 0.9


def test_auto_never_falls_back_to_woodbury_for_softmax():
    """The sampled low-rank inverse of a softmax model lands further from retraining than not
    forgetting: auto refuses instead, naming the budget of the faithful kind it would need."""
    X, y = _data(load_wine)
    with pytest.raises(ValueError, match=r"(?s)no faithful inverse fits memory_budget=2 KiB.*"
                                         r"would allow one.*not fall back to 'woodbury'"):
        UnlearnableClassifier(LR, memory_budget="2KiB", fisher_max_samples=2).fit(X, y)


def test_ekfac_is_refused_without_a_kronecker_structure():
    class NoKronecker:  # e.g. the torch backend
        n_params = 10
        dtype = torch.float64
        kronecker_blocks = None

        def factor_rows_per_sample(self, curvature):
            return 3

    config = {"inverse": "ekfac", "memory_budget": "2GiB", "curvature": "ggn",
              "fisher_batch_size": 1, "block_size": None, "fisher_max_samples": None}
    with pytest.raises(ValueError, match="inverse='ekfac' needs a curvature with a Kronecker"):
        resolve_inverse(config, NoKronecker(), 100)
    X, y = _data(load_wine)
    clf = UnlearnableClassifier(LR).fit(X, y)
    with pytest.raises(ValueError, match="needs fisher_batch_size=1"):
        resolve_inverse(dict(config, fisher_batch_size=4), clf.backend_, len(X))


def test_explicit_ekfac_forgets_and_round_trips():
    import pickle

    X, y = _data(load_wine)
    clf = UnlearnableClassifier(LR, inverse="ekfac").fit(X, y)
    assert clf.inverse_ == "ekfac"
    clf.forget(X[:3], y[:3])
    back = pickle.loads(pickle.dumps(clf))
    assert isinstance(back.curvature_, KroneckerEigen)
    eye = torch.eye(42, dtype=torch.float64)
    assert torch.equal(back.curvature_.solve(eye), clf.curvature_.solve(eye))
    np.testing.assert_array_equal(_np(back.forget_direction(X[5:8], y[5:8])),
                                  _np(clf.forget_direction(X[5:8], y[5:8])))
