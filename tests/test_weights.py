"""Class weights and LogisticRegressionCV in the linear backend.

scikit-learn minimises ``C * sum_i w_i l_i + ||w||^2 / 2`` (LogisticRegression) or
``(1/n) sum_i w_i l_i + alpha ||w||^2 / 2`` (SGDClassifier) with ``w_i`` the weight of the
sample's class: every gradient and curvature term of a sample carries its weight, and the
leave-out step lands on the retrained *weighted* model.  LogisticRegressionCV is the refit model
at its selected ``C_``.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine, make_classification
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, SGDClassifier
from sklearn.metrics import log_loss
from sklearn.multioutput import MultiOutputClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from sklearn_ssse import UnlearnableClassifier, _streaming
from sklearn_ssse._backends._linear import CLASS_WEIGHT_ATTR, LinearBackend
from sklearn_ssse._curvature import BlockDiagonal

EXACT = {"solver": "newton-cholesky", "tol": 1e-14, "max_iter": 1000}


def _np(t):
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def _theta(est):
    return LinearBackend(est).get_parameters().numpy()


def _npd(theta, retrained, original):
    return np.linalg.norm(theta - retrained) / np.linalg.norm(original - retrained)


def _matrix(op):
    """The operator's sum-form curvature M (block-diagonal zeros included)."""
    if isinstance(op, BlockDiagonal):
        M = torch.zeros((op.dim, op.dim), dtype=op.dtype)
        for s, sub in zip(op.slices, op.ops):
            M[s, s] = sub.matrix()
        return M.numpy()
    return op.matrix().numpy()


@pytest.fixture(scope="module")
def imbalanced():
    """An imbalanced binary problem (about 12% positives) and 20 minority rows to forget."""
    X, y = make_classification(600, 8, n_informative=5, weights=[0.88, 0.12], flip_y=0.02,
                               random_state=0)
    X = StandardScaler().fit_transform(X)
    S = np.flatnonzero(y == 1)[:20]
    keep = np.setdiff1d(np.arange(len(y)), S)
    return X, y, S, keep


def _balanced(y):
    classes = np.unique(y)
    return dict(zip(classes.tolist(), compute_class_weight("balanced", classes=classes, y=y)))


def _weights_of(est, y):
    """Per-sample class weights of a fitted model (None: all ones)."""
    cw = est.class_weight
    if cw is None:
        return np.ones(len(y))
    if cw == "balanced":
        cw = _balanced(y)
    return np.array([cw.get(c, 1.0) for c in np.asarray(y).tolist()])


def _objective(est, X, y, w):
    """scikit-learn's objective of a class-weighted LogisticRegression in its sum form,
    ``sum_i w_i l_i + ||W||^2 / (2 C)``, as a torch function of the flat parameters."""
    backend = LinearBackend(est)
    part = backend.parts[0]
    Xa = torch.from_numpy(np.c_[X, np.ones(len(X))])
    idx = torch.from_numpy(np.searchsorted(part.classes, y))
    wt = torch.from_numpy(w)

    def f(theta):
        W = theta.reshape(part.n_rows, part.p1)
        Z = Xa @ W.T
        if part.softmax:
            nll = -torch.log_softmax(Z, 1)[torch.arange(len(X)), idx]
        else:
            nll = torch.nn.functional.binary_cross_entropy_with_logits(
                Z[:, 0], (idx == 1).double(), reduction="none")
        return (wt * nll).sum() + 0.5 * (W[:, :-1] ** 2).sum() / est.C

    return f, backend


# ------------------------------------------------------------------ sample-level gradients
@pytest.mark.parametrize("case", ["lr-binary", "lr-multinomial", "sgd-binary", "sgd-ovr"])
def test_per_sample_gradients_are_those_of_the_weighted_loss(case):
    """Row i of per_sample_gradients is the gradient of w_i * log_loss(y_i, p(x_i)) (central
    finite differences of scikit-learn's log_loss through the model's predict_proba); SGD's
    one-vs-rest rows weigh the class's own rows by w_c and the rest by 1, as SGD trains them."""
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if case.endswith("binary"):
        y = (y == 1).astype(int)
    cw = {0: 0.5, 1: 3.0} if case.endswith("binary") else {0: 0.5, 1: 3.0, 2: 1.7}
    est = (LogisticRegression(class_weight=cw) if case.startswith("lr") else
           SGDClassifier(loss="log_loss", class_weight=cw, max_iter=20, tol=None,
                         random_state=0)).fit(X, y)
    backend = LinearBackend(est)
    rows = [0, 7, 60, 100, 150]
    G = backend.per_sample_gradients(X[rows], y[rows]).numpy()
    theta = backend.get_parameters().numpy()
    classes = est.classes_
    h = 1e-6
    for r, i in enumerate(rows):
        def loss(t, i=i):
            m = backend.with_parameters(t)
            if case == "sgd-ovr":  # OvR: each class row's own binary log-loss and weight
                S = X[i:i + 1] @ m.coef_.T + m.intercept_
                total = 0.0
                for c in range(len(classes)):
                    p = 1.0 / (1.0 + np.exp(-S[0, c]))
                    t_c = float(y[i] == classes[c])
                    wc = cw[c] if y[i] == classes[c] else 1.0
                    total += wc * log_loss([t_c], [[1 - p, p]], labels=[0.0, 1.0])
                return total
            return cw[y[i]] * log_loss(y[i:i + 1], m.predict_proba(X[i:i + 1]),
                                       labels=classes)

        fd = np.array([(loss(theta + h * e) - loss(theta - h * e)) / (2 * h)
                       for e in np.eye(len(theta))])
        np.testing.assert_allclose(G[r], fd, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(backend.gradient_sum(X, y),
                               backend.per_sample_gradients(X, y).sum(0))


@pytest.mark.parametrize("class_weight", [{0: 1.0, 1: 4.0}, "balanced", {1: 5}])
def test_objective_gradient_vanishes_at_scikit_learns_weighted_optimum(imbalanced, class_weight):
    """gradient_sum + theta / C (weights) is zero at a tight weighted fit: the weights and the
    penalty scale are scikit-learn's (a model whose weights were ignored would leave a
    residual of the size of the minority gradients); certify() reports it."""
    X, y, _, _ = imbalanced
    clf = UnlearnableClassifier(LogisticRegression(class_weight=class_weight, **EXACT),
                                keep_training_data=True).fit(X, y)
    cert = clf.certify()
    assert cert.residual_norm < 1e-9, cert
    unweighted = LinearBackend(LogisticRegression(**EXACT).fit(X, y))
    unweighted.set_parameters(clf.backend_.get_parameters())
    g = unweighted.gradient_sum(X, y).numpy() + _np(clf.theta_fit_) * np.r_[
        np.ones(X.shape[1]), 0.0]
    assert np.linalg.norm(g) > 1.0  # the unweighted objective is far from stationary there


# ------------------------------------------------------------------ curvature terms
@pytest.mark.parametrize("est", [
    LogisticRegression(class_weight={0: 1.0, 1: 4.0}),
    LogisticRegression(class_weight={0: 0.5, 1: 2.0, 2: 3.0}),
    SGDClassifier(loss="log_loss", class_weight={0: 0.5, 1: 2.0, 2: 3.0}, max_iter=5, tol=None,
                  random_state=0),
    MultiOutputClassifier(LogisticRegression(class_weight="balanced")),
], ids=["binary", "multinomial", "sgd-ovr", "multioutput-balanced"])
def test_every_curvature_path_carries_the_weights(est):
    """Factor rows, closed-form Gram, diagonal, Kronecker terms and sampled rows agree with
    each other and with w_i times the unweighted terms, for both curvatures."""
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :6]
    if isinstance(est, LogisticRegression) and len(est.class_weight) == 2:
        y = (y == 1).astype(int)
    if isinstance(est, MultiOutputClassifier):
        y = np.c_[y, (X[:, 0] > 0).astype(int)]
    est.fit(X, y)
    backend = LinearBackend(est)
    backend.fit_indices(X, y)  # resolves "balanced" from the training labels
    plain = LinearBackend(est)
    for p in plain.parts:
        p.class_weight = None
    d = backend.n_params
    cols = backend._columns(y)
    W = np.hstack([np.repeat(p.weights(c), p.p1, axis=1) for p, c in zip(backend.parts, cols)])
    assert not np.allclose(W, 1.0)
    for curvature in ("ggn", "empirical_fisher"):
        R = backend.curvature_rows(X, y, curvature).numpy()
        R0 = plain.curvature_rows(X, y, curvature).numpy()
        # a factor row is sqrt(w) times the unweighted one (per class row for SGD's OvR)
        np.testing.assert_allclose(R, R0 * np.sqrt(W)[:, None, :], rtol=1e-12, atol=1e-14)
        R = R.reshape(-1, d)
        slices = backend.blocks or [slice(0, d)]
        for G, s in zip(backend.curvature_gram(X, y, curvature, slices), slices):
            assert _rel(G.numpy(), R[:, s].T @ R[:, s]) < 1e-12
        assert _rel(backend.curvature_diagonal(X, y, curvature).numpy(),
                    (R * R).sum(0)) < 1e-12
        for (s, _, _), (Xa, A) in zip(backend.kronecker_blocks,
                                      backend.kronecker_terms(X, y, curvature)):
            G = sum(torch.kron(a, torch.outer(x, x)) for x, a in zip(Xa, A)).numpy()
            for b in backend.blocks or [s]:  # OvR rows are independent blocks
                if s.start <= b.start and b.stop <= s.stop:
                    bb = slice(b.start - s.start, b.stop - s.start)
                    assert _rel(G[bb, bb], (R[:, b].T @ R[:, b])) < 1e-12
    # gradients carry w, the empirical Fisher rows sqrt(w)
    G, G0 = backend.per_sample_gradients(X, y).numpy(), plain.per_sample_gradients(X, y).numpy()
    np.testing.assert_allclose(G, G0 * W, rtol=1e-12, atol=1e-14)
    # sampled GGN rows (inverse="woodbury"): E[r r^T] over the draw is the weighted GGN term
    u = np.random.default_rng(0).random(len(X))
    Rs, Rs0 = backend.ggn_sample_rows(X, u, y).numpy(), plain.ggn_sample_rows(X, u).numpy()
    np.testing.assert_allclose(Rs, Rs0 * np.sqrt(W)[:, None, :], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="labels"):
        backend.ggn_sample_rows(X, u)


def test_ggn_is_the_hessian_of_the_weighted_objective(imbalanced):
    """The cached sum-form GGN equals torch's Hessian of sum_i w_i l_i + ||w||^2 / (2C)
    (plus the documented damping floor on the unpenalised intercept)."""
    X, y, _, _ = imbalanced
    for cw in ({0: 1.0, 1: 5.0}, "balanced"):
        clf = UnlearnableClassifier(LogisticRegression(class_weight=cw, **EXACT),
                                    inverse="dense").fit(X, y)
        f, backend = _objective(clf.estimator_, X, y, _weights_of(clf.estimator_, y))
        H = torch.func.hessian(f)(backend.get_parameters()).numpy()
        n = len(X)
        H += n * np.diag(_np(clf.damping_) - backend.default_damping(n).numpy())
        assert _rel(_matrix(clf.curvature_), H) < 1e-10


@pytest.mark.parametrize("inverse", ["dense", "block", "ekfac"])
@pytest.mark.parametrize("curvature", ["ggn", "empirical_fisher"])
def test_streamed_paths_agree(inverse, curvature, monkeypatch):
    """The closed-form Gram and the factor-row paths build one weighted operator, and the
    erasure direction is the same whichever inverse holds it exactly (multinomial)."""
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    lr = LogisticRegression(class_weight={0: 0.5, 1: 2.0, 2: 3.0}, **EXACT).fit(X, y)
    dirs = {}
    for use_gram in (True, False):
        monkeypatch.setattr(_streaming, "USE_GRAM_HOOK", use_gram)
        clf = UnlearnableClassifier.from_fitted(lr, X, y, curvature=curvature, inverse=inverse,
                                                block_size=14)
        dirs[use_gram] = _np(clf.forget_direction(X[:9], y[:9]))
    # (the solve amplifies rounding along the free softmax-intercept shift: 1e-7, not 1e-12)
    assert _rel(dirs[True], dirs[False]) < 1e-7


# ------------------------------------------------------------------ fidelity
@pytest.mark.parametrize("weights", ["balanced-dict", "pos5"])
def test_leave_out_step_lands_on_the_weighted_retrained_model(imbalanced, weights):
    """Forgetting 20 minority rows: the default GGN leave-out step lands close to the model
    retrained with the same class weights (before: 1.02 / 0.46, worse than not forgetting),
    and equals the exact Newton step of the weighted objective on the remaining rows."""
    X, y, S, keep = imbalanced
    cw = _balanced(y) if weights == "balanced-dict" else {1: 5}
    clf = UnlearnableClassifier(LogisticRegression(class_weight=cw, **EXACT)).fit(X, y)
    theta0 = _np(clf.theta_fit_)
    delta = _np(clf.forget_direction(X[S], y[S]))
    clf.forget(X[S], y[S])
    retrained = _theta(LogisticRegression(class_weight=cw, **EXACT).fit(X[keep], y[keep]))
    dist = _npd(clf.get_parameters(), retrained, theta0)
    assert dist < 0.15, dist
    # the exact Newton step of the weighted remaining objective (numpy), damping floor included
    w = _weights_of(clf.estimator_, y)
    f, backend = _objective(clf.estimator_, X[keep], y[keep], w[keep])
    backend.set_parameters(torch.from_numpy(theta0))
    H = torch.func.hessian(f)(torch.from_numpy(theta0)).numpy()
    n = len(X)
    H += n * np.diag(_np(clf.damping_) - backend.default_damping(n).numpy())
    Xa = np.c_[X[S], np.ones(len(S))]
    p = 1.0 / (1.0 + np.exp(-Xa @ theta0))
    g = ((p - y[S]) * w[S]) @ Xa  # sum_S w_i grad l_i
    assert _rel(delta, np.linalg.solve(H, g)) < 1e-8
    # and the gradient of the remaining objective at theta0 is indeed -g
    assert _rel(torch.func.grad(f)(torch.from_numpy(theta0)).numpy(), -g) < 1e-6


def test_weights_ignored_would_land_far(imbalanced, monkeypatch):
    """The measurement behind the issue: with the weights left out of the gradients and the
    curvature the step is no better than not forgetting."""
    from sklearn_ssse._backends import _linear

    X, y, S, keep = imbalanced
    cw = _balanced(y)
    retrained = _theta(LogisticRegression(class_weight=cw, **EXACT).fit(X[keep], y[keep]))
    monkeypatch.setattr(_linear, "_fit_class_weight", lambda est: None)
    clf = UnlearnableClassifier(LogisticRegression(class_weight=cw, **EXACT)).fit(X, y)
    clf.forget(X[S], y[S])
    assert _npd(clf.get_parameters(), retrained, _np(clf.theta_fit_)) > 0.5


def test_balanced_weights_are_those_of_the_fit(imbalanced):
    """class_weight="balanced" is resolved once from the training labels and kept: a forget
    does not recompute it from the remaining rows.  refine() therefore reaches the optimum with
    the FIT weights, which differs from LogisticRegression("balanced") retrained on the
    remaining rows (it recomputes the weights from them)."""
    X, y, S, keep = imbalanced
    clf = UnlearnableClassifier(LogisticRegression(class_weight="balanced", **EXACT),
                                keep_training_data=True).fit(X, y)
    fit_weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    np.testing.assert_array_equal(getattr(clf.estimator_, CLASS_WEIGHT_ATTR), fit_weights)
    theta0 = _np(clf.theta_fit_)
    clf.forget(X[S], y[S])
    np.testing.assert_array_equal(getattr(clf.estimator_, CLASS_WEIGHT_ATTR), fit_weights)
    np.testing.assert_array_equal(clf.backend_.parts[0].class_weight, fit_weights)
    again = pickle.loads(pickle.dumps(clf))  # the weights travel with the fitted estimator
    np.testing.assert_array_equal(again.backend_.parts[0].class_weight, fit_weights)
    same_weights = _theta(LogisticRegression(class_weight=dict(enumerate(fit_weights)),
                                             **EXACT).fit(X[keep], y[keep]))
    rebalanced = _theta(LogisticRegression(class_weight="balanced", **EXACT).fit(X[keep],
                                                                                  y[keep]))
    assert _npd(clf.get_parameters(), same_weights, theta0) < 0.15
    clf.refine(tol=1e-11)
    assert np.linalg.norm(clf.get_parameters() - same_weights) < 1e-7
    # the retrained "balanced" reference recomputes w_1 = n_R / (2 n_R1): another objective
    assert np.linalg.norm(rebalanced - same_weights) > 0.05 * np.linalg.norm(theta0 - rebalanced)


def test_from_fitted_resolves_balanced_in_memory_and_refuses_a_stream(imbalanced):
    X, y, S, _ = imbalanced
    lr = LogisticRegression(class_weight="balanced", **EXACT).fit(X, y)
    a = UnlearnableClassifier.from_fitted(lr, X, y)
    b = UnlearnableClassifier(LogisticRegression(class_weight="balanced", **EXACT)).fit(X, y)
    np.testing.assert_allclose(_np(a.forget_direction(X[S], y[S])),
                               _np(b.forget_direction(X[S], y[S])), rtol=1e-9, atol=1e-12)
    chunks = ((X[i:i + 100], y[i:i + 100]) for i in range(0, len(X), 100))
    with pytest.raises(ValueError, match="balanced"):
        UnlearnableClassifier.from_fitted(lr, chunks)
    # a dict needs no labels: a stream is fine
    lr = LogisticRegression(class_weight={1: 5}, **EXACT).fit(X, y)
    chunks = ((X[i:i + 100], y[i:i + 100]) for i in range(0, len(X), 100))
    c = UnlearnableClassifier.from_fitted(lr, chunks)
    d = UnlearnableClassifier.from_fitted(lr, X, y)
    np.testing.assert_allclose(_np(c.forget_direction(X[S], y[S])),
                               _np(d.forget_direction(X[S], y[S])), rtol=1e-9, atol=1e-12)


def test_sgd_class_weights_refine_to_the_weighted_optimum(imbalanced):
    """SGDClassifier scales each sample's loss gradient by its class weight: its objective is
    (1/n) sum_i w_i l_i + alpha ||w||^2 / 2, i.e. LogisticRegression(C = 1 / (n alpha)) with
    the same class weights; refine() from the forgotten SGD model reaches it."""
    X, y, S, keep = imbalanced
    alpha, cw = 1e-2, {0: 1.0, 1: 4.0}
    sgd = SGDClassifier(loss="log_loss", alpha=alpha, class_weight=cw, max_iter=30, tol=None,
                        random_state=0)
    clf = UnlearnableClassifier(sgd, keep_training_data=True).fit(X, y)
    clf.forget(X[S], y[S])
    exact = LogisticRegression(C=1 / (len(keep) * alpha), class_weight=cw, **EXACT)
    exact = _theta(exact.fit(X[keep], y[keep]))
    clf.refine(tol=1e-10)
    assert np.linalg.norm(clf.get_parameters() - exact) < 1e-7


# ------------------------------------------------------------------ LogisticRegressionCV
def test_logistic_regression_cv_forgets_like_retraining_at_its_C():
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    cv = LogisticRegressionCV(Cs=[0.1, 1, 10], cv=3, l1_ratios=(0,), use_legacy_attributes=True,
                              scoring="neg_log_loss", tol=1e-12, max_iter=5000)
    clf = UnlearnableClassifier(cv, keep_training_data=True).fit(X, y)
    C = float(clf.estimator_.C_[0])  # legacy attributes: one per class, all equal
    assert np.all(clf.estimator_.C_ == C)
    np.testing.assert_allclose(_np(clf.damping_)[0], 1.0 / (C * len(X)))
    S = np.random.default_rng(0).choice(len(X), 10, replace=False)
    keep = np.setdiff1d(np.arange(len(X)), S)
    retrained = _theta(LogisticRegression(C=C, **EXACT).fit(X[keep], y[keep]))
    theta0 = _np(clf.theta_fit_)
    # the same step as a LogisticRegression(C=C_) wrapper (up to the CV refit's tolerance)
    plain = UnlearnableClassifier(LogisticRegression(C=C, **EXACT)).fit(X, y)
    np.testing.assert_allclose(_np(clf.damping_), _np(plain.damping_), rtol=1e-12)
    assert _rel(_np(clf.forget_direction(X[S], y[S])),
                _np(plain.forget_direction(X[S], y[S]))) < 1e-3
    clf.forget(X[S], y[S])
    from sklearn_ssse._certificate import invariant_directions

    U = invariant_directions(clf)

    def orth(v):
        return v - U @ (U.T @ v)  # the softmax intercept shift is free

    dist = (np.linalg.norm(orth(clf.get_parameters() - retrained))
            / np.linalg.norm(orth(theta0 - retrained)))
    assert dist < 0.15, dist
    cert = clf.certify()
    assert np.isfinite(cert.distance) and cert.n_remaining == len(keep)
    assert cert.distance >= np.linalg.norm(orth(clf.get_parameters() - retrained)) * (1 - 1e-6)
    clf.refine(tol=1e-10)
    assert np.linalg.norm(orth(clf.get_parameters() - retrained)) < 1e-6


def test_logistic_regression_cv_binary_with_class_weight(imbalanced):
    X, y, S, keep = imbalanced
    cv = LogisticRegressionCV(Cs=[0.1, 1, 10], cv=3, l1_ratios=(0,), use_legacy_attributes=False,
                              scoring="neg_log_loss", class_weight="balanced", tol=1e-12,
                              max_iter=5000)
    clf = UnlearnableClassifier(cv).fit(X, y)
    C = float(clf.estimator_.C_)  # new attributes: a float
    theta0 = _np(clf.theta_fit_)
    clf.forget(X[S], y[S])
    retrained = _theta(LogisticRegression(C=C, class_weight=_balanced(y), **EXACT).fit(
        X[keep], y[keep]))
    assert _npd(clf.get_parameters(), retrained, theta0) < 0.15


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_logistic_regression_cv_with_its_defaults():
    """The reported failure: UnlearnableClassifier(LogisticRegressionCV()) raised
    AttributeError ('C').  Default l1_ratios (None: L2) and legacy attributes."""
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = UnlearnableClassifier(LogisticRegressionCV(), keep_training_data=True).fit(X, y)
    clf.forget(X[:5], y[:5])
    assert np.isfinite(clf.certify().distance)


@pytest.mark.parametrize(("params", "match"), [
    (dict(l1_ratios=(0.0, 0.5), solver="saga"), "elastic-net"),
    (dict(refit=False), "refit"),
])
def test_logistic_regression_cv_refusals(params, match):
    X, y = load_wine(return_X_y=True)
    with pytest.raises(ValueError, match=match):
        UnlearnableClassifier(LogisticRegressionCV(**params)).fit(X, y)


@pytest.mark.parametrize("curvature", ["ggn", "empirical_fisher"])
def test_downdated_curvature_is_that_of_the_remaining_rows(imbalanced, curvature):
    """update_curvature=True removes the erased rows' weighted terms: the cached curvature then
    equals the one built from the remaining rows (same weights, at the fitted parameters;
    inverse="dense", where a downdate is exact)."""
    inverse = "dense"
    from copy import deepcopy

    X, y, S, keep = imbalanced
    cw = {0: 1.0, 1: 4.0}
    clf = UnlearnableClassifier(LogisticRegression(class_weight=cw, **EXACT), inverse=inverse,
                                curvature=curvature, update_curvature=True).fit(X, y)
    at_fit = deepcopy(clf.estimator_)
    clf.forget(X[S], y[S])
    ref = UnlearnableClassifier.from_fitted(at_fit, X[keep], y[keep], inverse=inverse,
                                            curvature=curvature)
    v = np.random.default_rng(0).standard_normal(ref.curvature_.dim)
    v = torch.from_numpy(v).to(ref.curvature_.dtype)
    assert _rel(clf.curvature_.solve_sum(v).numpy(), ref.curvature_.solve_sum(v).numpy()) < 1e-8


# ------------------------------------------------------------------ whole-class removal
def test_forgetting_a_whole_class_of_a_binary_model_is_refused(imbalanced):
    """With the training rows kept, forget() refuses to leave a single class (no retrained
    counterpart exists: scikit-learn cannot fit a one-class LogisticRegression); the scorers
    and ForgetSplit(strategy="class") already refuse the same split with their own message."""
    from sklearn_ssse.metrics import parameter_distance_scorer
    from sklearn_ssse.model_selection import ForgetSplit

    X, y, _, _ = imbalanced
    clf = UnlearnableClassifier(LogisticRegression(), keep_training_data=True).fit(X, y)
    theta = clf.get_parameters().copy()
    with pytest.raises(ValueError, match="one-class"):
        clf.forget(X[y == 1], y[y == 1])
    np.testing.assert_array_equal(clf.get_parameters(), theta)
    assert clf.n_samples_ == len(X) and clf.verify_seal()
    first = np.flatnonzero(y == 1)[:-1]  # all but one: allowed, then the last one is refused
    clf.forget(X[first], y[first])
    with pytest.raises(ValueError, match="only class"):
        clf.forget(X[y == 1][-1:], y[y == 1][-1:])
    with pytest.raises(ValueError, match="single class"):
        parameter_distance_scorer(UnlearnableClassifier(LogisticRegression(),
                                                        keep_training_data=True).fit(X, y),
                                  X[y == 1], y[y == 1])
    with pytest.raises(ValueError, match="single class"):
        list(ForgetSplit(n_splits=1, forget_size=1.0, strategy="class",
                         forget_class=1).split(X, y))
    # a multiclass model may lose a whole class (its row is switched off by certify/refine)
    Xw, yw = load_wine(return_X_y=True)
    Xw = StandardScaler().fit_transform(Xw)
    multi = UnlearnableClassifier(LogisticRegression(), keep_training_data=True).fit(Xw, yw)
    multi.forget(Xw[yw == 1], yw[yw == 1])
    with pytest.raises(ValueError, match="only class"):
        multi.forget(Xw[yw == 2], yw[yw == 2])


def test_sampled_ggn_rows_of_a_class_weighted_softmax_model():
    """inverse='woodbury' with the GGN draws one row per sample, scaled by sqrt(w_i): the
    weights reach it through the labels (fit, forget and the downdate use the same rows)."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    from sklearn_ssse import _streaming

    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    lr = LogisticRegression(class_weight=weights, tol=1e-10, max_iter=5000)
    clf = UnlearnableClassifier(lr, inverse="woodbury", fisher_max_samples=len(X),
                                update_curvature=True).fit(X, y)
    salt = clf._label_salt
    rows = _streaming.factor_rows(clf.backend_, X[:6], y[:6], "ggn", label_salt=salt)
    plain = LinearBackend(LogisticRegression(tol=1e-10, max_iter=5000).fit(X, y))
    plain.set_parameters(clf.backend_.get_parameters())
    rows0 = _streaming.factor_rows(plain, X[:6], y[:6], "ggn", label_salt=salt)
    w = np.array([weights[c] for c in y[:6]])
    np.testing.assert_allclose(rows.numpy(), rows0.numpy() * np.sqrt(w)[:, None, None],
                               rtol=1e-12, atol=1e-14)
    n = clf.n_samples_
    clf.forget(X[:6], y[:6])  # the downdate removes exactly the rows that were added
    assert clf.n_samples_ == n - 6 and np.all(np.isfinite(clf.get_parameters()))


def test_scorers_reference_keeps_the_balanced_weights_of_the_fit(imbalanced):
    """With class_weight="balanced" the step keeps the fit's weights; the scorers' reference
    must too (re-balancing on the remaining rows is another objective, 1.1 away)."""
    from sklearn_ssse import ForgetSplit, parameter_distance_scorer
    from sklearn_ssse.model_selection import epsilon_sweep

    X, y = imbalanced[:2]
    clf = UnlearnableClassifier(LogisticRegression(class_weight="balanced", tol=1e-10,
                                                   max_iter=5000), keep_training_data=True)
    res = epsilon_sweep(clf, X, y, epsilons=[0.0, 1.0], scoring=parameter_distance_scorer,
                        cv=ForgetSplit(n_splits=2, forget_size=0.03, random_state=0))
    scores = res.cv_results["mean_test_score"]
    assert scores[0] == pytest.approx(-1.0) and scores[1] > -0.3


def test_the_seal_covers_the_class_weights_of_the_fit(imbalanced):
    import pickle

    from sklearn_ssse import SealError

    X, y = imbalanced[:2]
    clf = UnlearnableClassifier(LogisticRegression(class_weight="balanced", tol=1e-10,
                                                   max_iter=5000)).fit(X, y)
    clf.forget(X[:3], y[:3])
    back = pickle.loads(pickle.dumps(clf))
    assert back.verify_seal()
    weights = getattr(back.estimator_, CLASS_WEIGHT_ATTR)
    setattr(back.estimator_, CLASS_WEIGHT_ATTR, weights * np.array([1.0, 2.0]))
    with pytest.raises(SealError):
        back.forget(X[3:6], y[3:6])  # the weights were rebound: checked before the step
