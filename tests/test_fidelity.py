"""What a user gets without options: the leave-out GGN step against retraining and against the
exact Newton step; the memory budget of ``inverse="auto"``; the low-rank inverse's sampled GGN
rows and exact diagonal; the frozen fit-time settings."""


import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._curvature import BlockDiagonal, DenseCholesky, LowRankCorrected
from sklearn_ssse._unlearnable import estimate_memory

LR = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)


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
        d_default = _npd(theta0 + clf.forget_direction(X[S], y[S]).numpy(), ret, theta0)
        d_paper = _npd(theta0 + paper.forget_direction(X[S], y[S]).numpy(), ret, theta0)
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
    pen[-1] = clf.n_samples_fit_ * clf.damping_.numpy()[-1]  # the intercept floor
    H = (Xa[R] * (p[R] * (1 - p[R]))[:, None]).T @ Xa[R] + np.diag(pen)
    g_S = Xa[S].T @ (p[S] - y[S])
    # at theta* the remaining objective's gradient is -sum_S g (to the solver's tolerance)
    grad_R = Xa[R].T @ (p[R] - y[R]) + np.r_[theta[:-1], 0.0] / LR.C
    np.testing.assert_allclose(grad_R, -g_S, atol=1e-4 * np.abs(g_S).max())
    newton = np.linalg.solve(H, g_S)
    np.testing.assert_allclose(clf.forget_direction(X[S], y[S]).numpy(), newton, rtol=1e-8,
                               atol=1e-12)
    ret = _theta(clone(LR).fit(X[R], y[R]))
    d_leave = _npd(theta + newton, ret, theta)
    d_full = _npd(theta + full.forget_direction(X[S], y[S]).numpy(), ret, theta)
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
    # below the blocks: the low-rank kind, with few rows
    low = UnlearnableClassifier(LR, memory_budget="9000B", fisher_max_samples=5).fit(X, y)
    assert low.inverse_ == "woodbury"
    assert low.config_.estimated_memory == (4 * 5 * d + 5 * 5) * 8 <= 9000
    with pytest.raises(ValueError, match=r"no inverse fits memory_budget=.*dense 27.6 KiB"):
        UnlearnableClassifier(LR, memory_budget=1000).fit(X, y)
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
    from sklearn_ssse._hashing import row_digests

    rec = clf._curvature_sample
    d = row_digests(X, y, salt=rec["salt"])
    return set(np.flatnonzero(np.isin(d, rec["digests"])))


def test_woodbury_diagonal_base_is_the_exact_diagonal():
    """Linear models: diag(M) of the low-rank operator equals the exact diagonal of the full
    GGN (where the sampled rows do not already exceed it)."""
    X, y = _data(load_wine)
    clf = UnlearnableClassifier(LR, inverse="woodbury", fisher_max_samples=40,
                                random_state=1).fit(X, y)
    exact = UnlearnableClassifier(LR, inverse="dense").fit(X, y)
    D_exact = (torch.diag(exact.curvature_.matrix()).numpy()
               - len(X) * exact.damping_.numpy())  # the data term's exact diagonal
    op = clf.curvature_
    lam = len(X) * clf.damping_.numpy()
    base = op.base.diag_sum.numpy() - lam
    assert np.all(base <= D_exact + 1e-9) and np.all(base >= 0)
    M_low = np.linalg.inv(op.solve_sum(torch.eye(op.dim, dtype=op.dtype)).numpy())
    D_low = np.diag(M_low) - lam
    # never below the exact diagonal; equal to it wherever the rows did not exceed it
    assert np.all(D_low >= D_exact - 1e-8 * D_exact.max())
    unclipped = base > 0
    assert unclipped.sum() > len(base) // 2
    np.testing.assert_allclose(D_low[unclipped], D_exact[unclipped], rtol=1e-6)
