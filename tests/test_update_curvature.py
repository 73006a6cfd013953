"""update_curvature=True: the downdated curvature is the leave-k-out curvature.

After several sequential deletions the cached operator must equal one rebuilt from scratch on the
remaining rows (brute-force numpy inverse, 1e-8 relative in float64), with the factors taken at
the parameters the curvature was built at (``theta_fit_``), the remaining count ``n - k`` and

* ``damping="auto"`` on ``LogisticRegression``: the damping a fresh fit on the remaining rows
  would use (the sum-form penalty ``1 / C`` does not depend on ``n``);
* mean-form damping (``SGDClassifier``'s ``alpha``, a float ``damping``): the sum-form damping
  ``n_fit * lambda`` is kept (documented in ``sklearn_ssse._curvature``).
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier

from sklearn_ssse import UnlearnableClassifier, _streaming
from sklearn_ssse._backends import LinearBackend
from sklearn_ssse._curvature import BlockDiagonal, DenseCholesky, LowRankCorrected, _lowrank
from sklearn_ssse._curvature._registry import kind_for

LR = LogisticRegression(max_iter=500)  # the curvature does not need a tight optimum
#: three sequential deletions; the middle one is large enough (40 samples) to take the refactor
#: path of the dense operators, the others the k x k Woodbury correction
DELETIONS = [np.arange(0, 5), np.arange(5, 45), np.array([100, 101, 350])]
#: the woodbury and Sherman-Morrison operators keep rows: a smaller problem (150 samples)
SMALL, SMALL_DELETIONS = 120, [np.arange(0, 5), np.arange(5, 25), np.array([100, 101, 110])]


@pytest.fixture(autouse=True)
def _rows_only_low_rank(monkeypatch):
    """This module checks the operators against oracles built from the factor rows alone: the
    low-rank kind's exact-diagonal base (tested in test_fidelity.py) is switched off here."""
    monkeypatch.setattr(_lowrank, "EXACT_DIAGONAL", False)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def _rows_at_fit(clf, X, y):
    """Curvature factor rows of (X, y) at the parameters the curvature was built at."""
    est = clf.backend_.with_parameters(clf._theta_fit)
    # the low-rank kind's GGN rows are drawn (one label per row, keyed by _label_salt)
    R = _streaming.factor_rows(LinearBackend(est), X, y, clf.config_.curvature,
                               clf._label_salt).numpy()
    return R.reshape(-1, R.shape[-1])


def _block_mask(op, d):
    if not isinstance(op, BlockDiagonal):
        return np.ones((d, d), dtype=bool)
    mask = np.zeros((d, d), dtype=bool)
    for s in op.slices:
        mask[s, s] = True
    return mask


def _reference_inverse(clf, X, y, diag_sum, rows_scale=1.0):
    """n_rem * (R^T R + diag(Lambda))^{-1}, restricted to the operator's diagonal blocks."""
    R = _rows_at_fit(clf, X, y)
    M = rows_scale * R.T @ R + np.diag(diag_sum)
    M = np.where(_block_mask(clf.curvature_, M.shape[0]), M, 0.0)
    return clf.n_samples_ * np.linalg.inv(M)


def _free_directions(clf):
    """Unit vectors along which the curvature is only the intercept floor (1e-6 of the penalty):
    equal intercepts of a softmax output, where the data term vanishes exactly. No gradient sum
    has a component there, and the inverse along it is ~1e9 times larger than elsewhere, so
    float64 resolves it only to ~cond * eps (both in the operator and in the numpy reference)."""
    if not isinstance(clf.curvature_, DenseCholesky | LowRankCorrected | BlockDiagonal):
        return []
    out = []
    for part, offset in zip(clf.backend_.parts, clf.backend_.offsets):
        if part.softmax and part.fit_intercept and clf.inverse_ == "dense":
            v = np.zeros(clf.backend_.n_params)
            v[offset + np.arange(part.n_rows) * part.p1 + part.p1 - 1] = 1.0
            out.append(v / np.linalg.norm(v))
    return out


def _check_inverse(clf, ref, tol=1e-8):
    """``curvature_.inverse()`` equals ``ref`` to ``tol`` (relative); along the free directions
    of :func:`_free_directions` to 1e-5, everywhere else (projected) to ``tol``."""
    A = clf.curvature_.inverse().numpy()
    V = _free_directions(clf)
    if not V:
        assert _rel(A, ref) < tol
        return
    V = np.array(V).T
    P = np.eye(len(A)) - V @ V.T
    assert _rel(P @ A @ P, P @ ref @ P) < tol
    assert _rel(V.T @ A @ V, V.T @ ref @ V) < 1e-5


def _forget_sequence(clf, X, y, deletions=DELETIONS, epsilon=None):
    keep = np.ones(len(X), dtype=bool)
    for S in deletions:
        clf.forget(X[S], y[S], epsilon=epsilon)
        keep[S] = False
    return keep


def _fresh_diag_sum(clf, n_rem):
    """Sum-form damping of a fresh ``damping="auto"`` fit on ``n_rem`` rows."""
    lam = kind_for(clf.inverse_, clf.backend_, clf._config()).floor_damping(
        clf.backend_.default_damping(n_rem))
    return (n_rem * lam).numpy()


@pytest.fixture(scope="module")
def mo_data(digits):
    X, y, _, _ = digits
    return X, np.c_[y % 3, (y > 4).astype(int)]


CASES = {  # name: (estimator, inverse, curvature, data); woodbury / SM on SMALL rows
    "dense-ggn": (LR, "dense", "ggn", "multiclass"),
    "dense-ef": (LR, "dense", "empirical_fisher", "multiclass"),
    "block-ggn": (LR, "block", "ggn", "multiclass"),
    "block-ef": (LR, "block", "empirical_fisher", "multiclass"),
    "woodbury-ggn": (LR, "woodbury", "ggn", "multiclass"),
    "woodbury-ef": (LR, "woodbury", "empirical_fisher", "multiclass"),
    "sherman_morrison-ggn": (LR, "sherman_morrison", "ggn", "multiclass"),
    "sherman_morrison-ef": (LR, "sherman_morrison", "empirical_fisher", "multiclass"),
    "binary-dense-ggn": (LR, "dense", "ggn", "binary"),
    "multioutput-dense-ggn": (MultiOutputClassifier(LR), "dense", "ggn", "multioutput"),
    "multioutput-block-ef": (MultiOutputClassifier(LR), "block", "empirical_fisher",
                             "multioutput"),
}


def _data(kind, digits, mo_data):
    X, y, _, _ = digits
    if kind == "binary":
        return X, (y > 4).astype(int)
    if kind == "multioutput":
        return mo_data
    return X, y


#: dense kinds run twice: with the closed-form Gram downdate and with factor rows only
RUNS = [(c, g) for c in CASES for g in ((True, False) if CASES[c][1] in ("dense", "block")
                                        else (True,))]


@pytest.mark.parametrize(("case", "use_gram"), RUNS,
                         ids=[f"{c}-{'gram' if g else 'rows'}" for c, g in RUNS])
def test_sequential_downdates_equal_a_rebuild(case, use_gram, digits, mo_data, monkeypatch):
    monkeypatch.setattr(_streaming, "USE_GRAM_HOOK", use_gram)
    est, inverse, curvature, data = CASES[case]
    X, y = _data(data, digits, mo_data)
    deletions = DELETIONS
    if inverse in ("woodbury", "sherman_morrison"):
        X, y, deletions = X[:SMALL], y[:SMALL], SMALL_DELETIONS
    clf = UnlearnableClassifier(est, inverse=inverse, curvature=curvature,
                                update_curvature=True, random_state=0).fit(X, y)
    assert clf.n_curvature_samples_ == len(X)  # woodbury: default m=1024 > n, all rows
    before = clf.curvature_
    keep = _forget_sequence(clf, X, y, deletions)
    n_rem = int(keep.sum())
    assert clf.n_samples_ == clf.curvature_.n == n_rem
    assert before.n == len(X)  # operators are immutable
    _check_inverse(clf, _reference_inverse(clf, X[keep], y[keep], _fresh_diag_sum(clf, n_rem)))
    # the same thing through the library: a fresh curvature on the remaining rows at theta_fit
    rebuilt = UnlearnableClassifier.from_fitted(
        clf.backend_.with_parameters(clf._theta_fit), X[keep], y[keep], inverse=inverse,
        curvature=curvature, random_state=0)  # the same drawn GGN labels
    _check_inverse(clf, rebuilt.curvature_.inverse().numpy())


def test_operator_types_along_the_way(digits):
    """Small deletions add Woodbury corrections, a large one refactors the dense block."""
    X, y, _, _ = digits
    clf = UnlearnableClassifier(LR, inverse="dense", curvature="ggn",
                                update_curvature=True).fit(X, y)
    assert isinstance(clf.curvature_, DenseCholesky)
    clf.forget(X[:2], y[:2])  # 20 GGN rows < 650 / 3: k x k system
    assert isinstance(clf.curvature_, LowRankCorrected) and clf.curvature_.rank == 20
    clf.forget(X[2:40], y[2:40])  # 380 rows: refactored
    assert isinstance(clf.curvature_, DenseCholesky)


@pytest.mark.parametrize("inverse", ["dense", "block", "woodbury", "sherman_morrison"])
def test_mean_form_damping_keeps_the_total_regularisation(inverse, digits):
    """SGDClassifier (alpha) and a float damping: sum-form damping stays n_fit * lambda."""
    X, y, _, _ = digits
    deletions = DELETIONS
    if inverse in ("woodbury", "sherman_morrison"):
        X, y, deletions = X[:SMALL], y[:SMALL], SMALL_DELETIONS
    for est, kw in [(SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0), {}),
                    (LR, {"damping": 0.05})]:
        clf = UnlearnableClassifier(est, inverse=inverse, update_curvature=True,
                                    curvature="ggn", **kw).fit(X, y)
        diag_sum = len(X) * clf.damping_
        keep = _forget_sequence(clf, X, y, deletions)
        ref = _reference_inverse(clf, X[keep], y[keep], diag_sum)
        assert _rel(clf.curvature_.inverse().numpy(), ref) < 1e-8
        # i.e. the mean-form damping grew to lambda * n_fit / (n_fit - k)
        assert clf.curvature_.n == int(keep.sum())


def test_downdate_uses_the_fit_parameters(digits):
    """Large steps move the parameters; the removed terms are still those that were added."""
    X, y, _, _ = digits
    clf = UnlearnableClassifier(LR, inverse="dense", curvature="empirical_fisher",
                                update_curvature=True, epsilon=3.0).fit(X, y)
    keep = _forget_sequence(clf, X, y)
    assert not np.allclose(clf.get_parameters(), clf.theta_fit_)
    _check_inverse(clf, _reference_inverse(clf, X[keep], y[keep],
                                           _fresh_diag_sum(clf, int(keep.sum()))))
    # the live parameters are untouched by the downdate (computed at theta_fit_ and restored)
    np.testing.assert_array_equal(clf.get_parameters(), clf._theta.numpy())


def test_next_step_uses_the_leave_k_out_curvature(digits):
    """The second forget's step is eps / (n - k1 - k2) * F_{-k1}^{-1} sum g at the current
    parameters, F_{-k1} the curvature without the first set."""
    X, y, _, _ = digits
    clf = UnlearnableClassifier(LR, inverse="dense", curvature="ggn", step="full",
                                update_curvature=True).fit(X, y)
    S1, S2 = DELETIONS[0], DELETIONS[2]
    clf.forget(X[S1], y[S1])
    keep = np.ones(len(X), dtype=bool)
    keep[S1] = False
    F_inv = _reference_inverse(clf, X[keep], y[keep], _fresh_diag_sum(clf, int(keep.sum())))
    theta = clf.get_parameters()
    g = clf.backend_.per_sample_gradients(X[S2], y[S2]).numpy().sum(0)
    expected = theta + F_inv @ g / (len(X) - len(S1) - len(S2))
    clf.forget(X[S2], y[S2])
    # the step (orthogonal to the free intercept direction) is resolved to 1e-8
    assert _rel(clf.get_parameters() - theta, expected - theta) < 1e-8


def test_subsampled_curvature_removes_only_sampled_rows(digits):
    """With fisher_max_samples=m < n the curvature is (n/m) sum_{sample} r r^T + Lambda; a
    deletion removes the sampled rows among the forgotten ones (weight n/m), so the result is
    the same estimator on the remaining rows and stays positive definite."""
    X, y, _, _ = digits
    m = 150
    clf = UnlearnableClassifier(LR, inverse="woodbury", curvature="ggn", fisher_max_samples=m,
                                update_curvature=True, random_state=0).fit(X, y)
    assert clf.n_curvature_samples_ == m
    sample = clf._curvature_sample
    digests = _streaming.row_digests(X, y, salt=sample["salt"])
    in_sample = np.isin(digests, sample["digests"])
    assert in_sample.sum() == m
    n_fit = len(X)
    diag_sum = n_fit * clf.damping_
    ref = _reference_inverse(clf, X[in_sample], y[in_sample], diag_sum, rows_scale=n_fit / m)
    assert _rel(clf.curvature_.inverse().numpy(), ref) < 1e-8
    # forget 10 sampled and 10 unsampled rows, then 5 unsampled ones only
    sampled, unsampled = np.flatnonzero(in_sample), np.flatnonzero(~in_sample)
    S1 = np.r_[sampled[:10], unsampled[:10]]
    S2 = unsampled[10:15]
    clf.forget(X[S1], y[S1]).forget(X[S2], y[S2])
    left = in_sample.copy()
    left[S1] = False
    assert len(clf._curvature_sample["digests"]) == m - 10
    assert clf.curvature_.n == clf.n_samples_ == n_fit - 25
    ref = _reference_inverse(clf, X[left], y[left], diag_sum, rows_scale=n_fit / m)
    assert _rel(clf.curvature_.inverse().numpy(), ref) < 1e-8


def test_rows_that_were_never_added_are_refused_atomically(digits):
    """Downdating terms that are not in the curvature would make it indefinite: ValueError,
    and nothing changes."""
    X, y, _, _ = digits
    clf = UnlearnableClassifier(LR, inverse="dense", curvature="empirical_fisher",
                                update_curvature=True).fit(X, y)
    fake_X = np.full((3, X.shape[1]), 40.0)  # far outside the data: huge gradients
    fake_y = np.array([0, 1, 2])
    theta, op, n = clf.get_parameters(), clf.curvature_, clf.n_samples_
    with pytest.raises(ValueError, match="not positive definite"):
        clf.forget(fake_X, fake_y)
    assert clf.curvature_ is op and clf.n_samples_ == n
    np.testing.assert_array_equal(clf.get_parameters(), theta)
    assert clf.erasure_log_ == []


def test_mini_batch_curvature_cannot_be_downdated(digits):
    X, y, _, _ = digits
    with pytest.raises(ValueError, match="fisher_batch_size=1"):
        UnlearnableClassifier(LR, update_curvature=True, fisher_batch_size=8).fit(X, y)


def test_without_update_the_curvature_is_kept(digits):
    X, y, _, _ = digits
    clf = UnlearnableClassifier(clone(LR), inverse="dense", update_curvature=False).fit(X, y)
    op = clf.curvature_
    clf.forget(X[:5], y[:5])  # the leave-out step downdates a copy; the cached one is kept
    assert clf.erasure_log_[-1]["step"] == "leave_out"
    assert clf.curvature_ is op and op.n == len(X) and clf.n_samples_ == len(X) - 5
    assert torch.equal(op.inverse(), clf.curvature_.inverse())
