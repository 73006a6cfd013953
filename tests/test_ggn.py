"""curvature="ggn": the true Fisher / generalized Gauss-Newton matrix.

For the linear models it is the exact Hessian of the wrapped model's own training objective, so
``epsilon=1`` is the Newton / influence-function step (times ``n / (n - k)``, the SSSE
normalisation), and it lands far closer to the retrained model than the empirical Fisher.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier

from sklearn_ssse import UnlearnableClassifier, _streaming
from sklearn_ssse._backends import LinearBackend
from sklearn_ssse._curvature import BlockDiagonal

LR = LogisticRegression(max_iter=5000, tol=1e-10)
EPSILONS = np.logspace(-2, 1.5, 71)


def _np(t):
    """A numpy array of a tensor or an array (the public API returns arrays)."""
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def _matrix(op):
    """The operator's mean-form curvature F = M / n (dense operators), block-diagonal zeros
    included.  Compared as matrices: their inverses are dominated by the free softmax-intercept
    direction, where F is only the 1e-6 damping floor."""
    if isinstance(op, BlockDiagonal):
        F = torch.zeros((op.dim, op.dim), dtype=op.dtype)
        for s, sub in zip(op.slices, op.ops):
            F[s, s] = sub.matrix()
        return F.numpy() / op.n
    return op.matrix().numpy() / op.n


def _objective(est, X, y):
    """scikit-learn's training objective of a fitted linear model in mean form, as a function
    of the backend's flat parameters: (1/n) sum_i -log p(y_i | x_i) + penalty."""
    backend = LinearBackend(est)
    parts = []
    for part, offset in zip(backend.parts, backend.offsets):
        parts.append((part, int(offset)))
    Xt = torch.from_numpy(X)
    Xa = torch.cat([Xt, torch.ones(len(X), 1, dtype=Xt.dtype)], 1)
    Y = np.asarray(y).reshape(len(X), -1)
    n = len(X)

    def f(theta):
        total = 0.0
        for j, (part, offset) in enumerate(parts):
            W = theta[offset:offset + part.n_params].reshape(part.n_rows, part.p1)
            Z = Xa[:, :part.p1] @ W.T
            idx = torch.from_numpy(np.searchsorted(part.classes, Y[:, j]))
            if part.softmax:
                nll = -torch.log_softmax(Z, 1)[torch.arange(n), idx]
            else:  # sigmoid per class row (binary: one row, OvR: one per class)
                T = (idx[:, None] == torch.arange(part.n_rows)[None, :]).double()
                if part.n_rows == 1:
                    T = (idx[:, None] == 1).double()
                nll = torch.nn.functional.binary_cross_entropy_with_logits(
                    Z, T, reduction="none").sum(1)
            est_j = part.est
            if isinstance(est_j, LogisticRegression):
                lam = 1.0 / (est_j.C * n)
            else:
                lam = est_j.alpha
            total = total + nll.mean() + 0.5 * lam * (W[:, :-1] ** 2).sum()
        return total

    return f, backend


@pytest.mark.parametrize("case", ["multinomial", "binary", "sgd-ovr", "multioutput"])
def test_ggn_curvature_is_the_hessian_of_the_objective(case, digits):
    """F = curvature_.matrix() / n equals torch.func.hessian of the objective (plus the
    documented 1e-6 damping floor on the unpenalised intercepts)."""
    X, y, _, _ = digits
    X, y = X[:300], y[:300]
    est = {"multinomial": LR, "binary": LR,
           "sgd-ovr": SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0),
           "multioutput": MultiOutputClassifier(LR)}[case]
    y = {"binary": (y > 4).astype(int), "multioutput": np.c_[y % 3, y > 4]}.get(case, y)
    clf = UnlearnableClassifier(est, curvature="ggn", inverse="dense").fit(X, y)
    f, backend = _objective(clf.estimator_, X, y)
    H = torch.func.hessian(f)(backend.get_parameters()).numpy()
    op = clf.curvature_
    if isinstance(op, BlockDiagonal):  # independent outputs / OvR classes: exactly block-diagonal
        mask = np.zeros_like(H, dtype=bool)
        for s in op.slices:
            mask[s, s] = True
        assert np.abs(H[~mask]).max() < 1e-12
    F = _matrix(op)
    floor = np.diag(_np(clf.damping_) - LinearBackend(clf.estimator_).default_damping(
        len(X)).numpy())  # the intercept floor, zero elsewhere
    assert np.count_nonzero(floor) == sum(p.n_rows for p in backend.parts)
    assert _rel(F, H + floor) < 1e-10
    # the empirical Fisher is a different matrix
    ef = UnlearnableClassifier(est, curvature="empirical_fisher", inverse="dense").fit(X, y)
    ef = ef.curvature_
    assert _rel(_matrix(ef), H + floor) > 0.1


@pytest.mark.parametrize("inverse", ["dense", "block"])
@pytest.mark.parametrize("curvature", ["ggn", "empirical_fisher"])
def test_closed_form_gram_equals_the_factor_rows(inverse, curvature, digits, monkeypatch):
    """The backend's closed-form Gram path and the generic factor-row path give one operator."""
    X, y, _, _ = digits
    lr = clone(LR).set_params(tol=1e-4).fit(X, y)
    ops = {}
    for use_gram in (True, False):
        monkeypatch.setattr(_streaming, "USE_GRAM_HOOK", use_gram)
        ops[use_gram] = UnlearnableClassifier.from_fitted(lr, X, y, curvature=curvature,
                                                          inverse=inverse, block_size=50)
    assert _rel(_matrix(ops[True].curvature_), _matrix(ops[False].curvature_)) < 1e-12


def test_curvature_gram_slices(digits):
    """curvature_gram on arbitrary slices (across class rows) equals R[:, s]^T R[:, s], and
    gradient_sum equals the sum of the per-sample gradients."""
    X, y, _, _ = digits
    X, y = X[:200], y[:200]
    for est, yy in [(clone(LR).set_params(tol=1e-3), y),
                    (SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0), y),
                    (MultiOutputClassifier(clone(LR).set_params(tol=1e-3)), np.c_[y % 3, y > 4])]:
        backend = LinearBackend(est.fit(X, yy))
        d = backend.n_params
        slices = [slice(a, min(a + 47, d)) for a in range(0, d, 47)]
        if backend.blocks is not None:  # slices must stay inside one output / OvR class
            slices = [slice(s.start + 2, s.stop - 3) for s in backend.blocks]
        for curvature in ("ggn", "empirical_fisher"):
            R = backend.curvature_rows(X, yy, curvature).reshape(-1, d)
            for G, s in zip(backend.curvature_gram(X, yy, curvature, slices), slices):
                ref = R[:, s].T @ R[:, s]
                assert _rel(G, ref) < 1e-12
        # the closed-form gradient sum used by forget
        torch.testing.assert_close(backend.gradient_sum(X, yy),
                                   backend.per_sample_gradients(X, yy).sum(0))
        if isinstance(est, MultiOutputClassifier):  # a slice across two outputs: no closed form
            assert backend.curvature_gram(X, yy, "ggn", [slice(0, d)]) is None


def test_kronecker_terms_equal_the_factor_rows(digits):
    """The Kronecker structure behind inverse="ekfac": per output, sum_i A_i (x) xa_i xa_i^T
    equals the factor rows' Gram matrix on that output's parameters (softmax, binary, OvR,
    multi-output; both curvatures)."""
    X, y, _, _ = digits
    X, y = X[:60, :20], y[:60]
    for est, yy in [(clone(LR).set_params(tol=1e-3), y),
                    (clone(LR).set_params(tol=1e-3), y > 4),
                    (SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0), y % 3),
                    (MultiOutputClassifier(clone(LR).set_params(tol=1e-3)), np.c_[y % 3, y > 4])]:
        backend = LinearBackend(est.fit(X, yy))
        d = backend.n_params
        blocks = backend.kronecker_blocks
        assert blocks[-1][0].stop == d
        for curvature in ("ggn", "empirical_fisher"):
            R = backend.curvature_rows(X, yy, curvature).reshape(-1, d)
            for (s, K, p), (Xa, A) in zip(blocks, backend.kronecker_terms(X, yy, curvature)):
                assert Xa.shape == (len(X), p) and A.shape == (len(X), K, K)
                G = sum(torch.kron(a, torch.outer(x, x)) for x, a in zip(Xa, A))
                ref = R[:, s].T @ R[:, s]
                # one-vs-rest sigmoids are independent blocks (their single factor row per
                # sample would couple them): compare inside each
                for b in backend.blocks or [s]:
                    b = slice(b.start - s.start, b.stop - s.start)
                    if 0 <= b.start < b.stop <= s.stop - s.start:
                        assert _rel(G[b, b], ref[b, b]) < 1e-12


@pytest.fixture(scope="module")
def fitted_digits(digits):
    """One tight LogisticRegression fit on the 600 digits, wrapped with both curvatures."""
    X, y, _, _ = digits
    lr = clone(LR).fit(X, y)
    clfs = {c: UnlearnableClassifier.from_fitted(lr, X, y, curvature=c, inverse="dense")
            for c in ("empirical_fisher", "ggn")}
    return X, y, lr, clfs


def _theta(est):
    return np.hstack([est.coef_, est.intercept_[:, None]]).ravel()


def _retrained(lr, X, y):
    """The exact optimum on (X, y), warm-started at the original parameters (same unique
    optimum of the strictly convex objective, reached in a fraction of the iterations)."""
    ret = clone(lr).set_params(warm_start=True)
    ret.coef_, ret.intercept_ = lr.coef_.copy(), lr.intercept_.copy()
    return _theta(ret.fit(X, y))


def _npd(theta, ret, orig):
    return np.linalg.norm(theta - ret) / np.linalg.norm(orig - ret)


@pytest.mark.parametrize(("seed", "k"), [(1, 30), (2, 60)])
def test_ggn_step_is_much_closer_to_retraining(fitted_digits, seed, k):
    """The measured gap: at its best epsilon the empirical Fisher step stays at about half the
    original distance from the retrained model, the GGN (Hessian) step gets within ~0.1-0.2."""
    X, y, lr, clfs = fitted_digits
    S = np.random.default_rng(seed).choice(len(X), k, replace=False)
    keep = np.setdiff1d(np.arange(len(X)), S)
    theta0, ret = _theta(lr), _retrained(lr, X[keep], y[keep])
    best = {}
    for c, clf in clfs.items():
        delta = _np(clf.forget_direction(X[S], y[S]))
        dists = np.array([_npd(theta0 + e * delta, ret, theta0) for e in EPSILONS])
        best[c] = (dists.min(), EPSILONS[dists.argmin()], _npd(theta0 + delta, ret, theta0))
    ggn, ef = best["ggn"], best["empirical_fisher"]
    assert ggn[0] < 0.25 and ef[0] > 0.35
    assert ggn[0] < ef[0] / 2.5
    assert 0.7 < ggn[1] < 2.0  # the Newton scale: best epsilon near 1
    assert ggn[2] < 0.35  # epsilon=1 itself is already close


def test_epsilon_one_is_the_newton_step(fitted_digits):
    """With the GGN and the default leave-out step, epsilon=1 moves by H_R^{-1} sum_S g with
    H_R the Hessian (sum form) of scikit-learn's objective on the REMAINING rows: the exact
    Newton step from theta* toward the retrained optimum (the gradient of the remaining
    objective at theta* is -sum_S g)."""
    X, y, lr, clfs = fitted_digits
    clf = clfs["ggn"]
    n, S = len(X), np.arange(12)
    R = np.arange(len(S), n)
    f, backend = _objective(lr, X[R], y[R])  # mean loss + ||W||^2 / (2 C (n - k))
    H = len(R) * torch.func.hessian(f)(backend.get_parameters()).numpy()
    H += n * np.diag(_np(clf.damping_) - backend.default_damping(n).numpy())  # floor
    g = backend.per_sample_gradients(X[S], y[S]).numpy().sum(0)
    delta = _np(clf.forget_direction(X[S], y[S]))
    assert _rel(delta, np.linalg.solve(H, g)) < 1e-8
    # the gradient of the remaining objective at theta* is indeed -sum_S g (sum form)
    grad_R = len(R) * torch.func.grad(f)(backend.get_parameters()).numpy()
    assert _rel(grad_R, -g) < 1e-5


def test_full_step_is_the_rescaled_influence_step(fitted_digits):
    """step="full": epsilon=1 moves by n / (n - k) * H^{-1} sum_S g (H the objective's Hessian
    on all the data, sum form), i.e. the influence-function step rescaled."""
    X, y, lr, _ = fitted_digits
    clf = UnlearnableClassifier.from_fitted(lr, X, y, curvature="ggn", inverse="dense",
                                            step="full")
    n, S = len(X), np.arange(12)
    f, backend = _objective(clf.estimator_, X, y)
    H = n * torch.func.hessian(f)(backend.get_parameters()).numpy()
    H += n * np.diag(_np(clf.damping_) - backend.default_damping(n).numpy())  # floor
    g = backend.per_sample_gradients(X[S], y[S]).numpy().sum(0)
    delta = _np(clf.forget_direction(X[S], y[S]))
    assert _rel(delta, n / (n - len(S)) * np.linalg.solve(H, g)) < 1e-8
