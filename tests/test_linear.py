"""Linear backend: closed-form gradients, GGN and damping checked against scikit-learn itself.

Ground truth is the wrapped estimator's own ``predict_log_proba`` / ``decision_function``
evaluated at perturbed parameters (central finite differences), so a wrong formula, a wrong
parameter layout or a wrong sign is caught.
"""

import numpy as np
import pytest
from scipy.special import log_expit
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, Perceptron, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from sklearn_ssse._backends import LinearBackend, select_backend


def _nll(est, X, y):
    """Per-sample -log p(y|x) computed by scikit-learn from the estimator's parameters."""
    if isinstance(est, MultiOutputClassifier):
        return sum(_nll(e, X, y[:, j]) for j, e in enumerate(est.estimators_))
    if isinstance(est, SGDClassifier) and len(est.classes_) > 2:  # one-vs-rest sigmoids
        S = est.decision_function(X)
        T = (y[:, None] == est.classes_[None, :]) * 2.0 - 1.0
        return -log_expit(S * T).sum(1)
    lp = est.predict_log_proba(X)
    return -lp[np.arange(len(y)), np.searchsorted(est.classes_, y)]


def _data(n_classes, n=80, p=4, seed=0, multi_output=False):
    X, y = make_classification(n_samples=n, n_features=p, n_informative=3, n_redundant=0,
                               n_classes=n_classes, n_clusters_per_class=1, random_state=seed)
    if multi_output:
        y2 = (X[:, 0] + 0.3 * np.random.default_rng(seed).normal(size=n) > 0).astype(int)
        y = np.column_stack([y, y2])
    return X, y


CASES = {
    "lr-binary": (LogisticRegression(C=0.5, tol=1e-12, max_iter=10000), 2, False),
    "lr-binary-nointercept": (LogisticRegression(C=0.5, fit_intercept=False, tol=1e-12,
                                                 max_iter=10000), 2, False),
    "lr-multinomial": (LogisticRegression(C=0.5, tol=1e-12, max_iter=10000), 3, False),
    "lr-multinomial-nointercept": (LogisticRegression(C=2.0, fit_intercept=False, tol=1e-12,
                                                      max_iter=10000), 3, False),
    "sgd-binary": (SGDClassifier(loss="log_loss", alpha=0.01, random_state=0), 2, False),
    "sgd-ovr": (SGDClassifier(loss="log_loss", alpha=0.01, random_state=0), 3, False),
    "multioutput": (MultiOutputClassifier(LogisticRegression(C=0.5, tol=1e-12, max_iter=10000)),
                    3, True),
}


@pytest.fixture(params=list(CASES))
def fitted(request):
    est, n_classes, mo = CASES[request.param]
    X, y = _data(n_classes, multi_output=mo)
    est = est.fit(X, y)
    return request.param, est, LinearBackend(est), X, y


def _fd_grad(backend, X, y, h=1e-6):
    theta = backend.get_parameters().numpy()
    G = np.empty((len(X), len(theta)))
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        G[:, j] = (_nll(backend.with_parameters(theta + e), X, y)
                   - _nll(backend.with_parameters(theta - e), X, y)) / (2 * h)
    return G


def test_per_sample_gradients_match_finite_differences(fitted):
    _, est, backend, X, y = fitted
    G = backend.per_sample_gradients(X, y).numpy()
    assert G.shape == (len(X), backend.n_params)
    np.testing.assert_allclose(G, _fd_grad(backend, X, y), atol=1e-6, rtol=1e-5)


def _proba(est, X):
    P = est.predict_proba(X)
    return np.hstack(P) if isinstance(P, list) else P


def test_parameter_roundtrip_and_with_parameters_does_not_mutate(fitted):
    _, est, backend, X, y = fitted
    theta = backend.get_parameters()
    proba = _proba(est, X)
    other = backend.with_parameters(theta * 0.5)
    assert not np.allclose(_proba(other, X), proba)
    np.testing.assert_array_equal(backend.get_parameters(), theta)  # original untouched
    np.testing.assert_array_equal(_proba(est, X), proba)
    backend.set_parameters(theta * 0.5)
    np.testing.assert_allclose(_proba(est, X), _proba(other, X))
    backend.set_parameters(theta)
    np.testing.assert_array_equal(backend.get_parameters(), theta)


def test_auto_damping_makes_the_fit_stationary(fitted):
    """(1/n) sum g_i + lambda * theta = 0 at the optimum of sklearn's own objective."""
    name, est, backend, X, y = fitted
    if name.startswith("sgd"):
        pytest.skip("SGD stops near, not at, the optimum")
    theta = backend.get_parameters().numpy()
    lam = backend.default_damping(len(X)).numpy()
    grad = backend.per_sample_gradients(X, y).numpy().mean(0) + lam * theta
    assert np.abs(grad).max() < 1e-6 * max(1.0, np.abs(theta).max())
    # and a wrong damping (e.g. forgetting the 1/n) would not be stationary
    wrong = backend.per_sample_gradients(X, y).numpy().mean(0) + lam * len(X) * theta
    assert np.abs(wrong).max() > 1e-3


def test_ggn_is_the_hessian_of_the_objective(fitted):
    """For softmax / sigmoid linear models the GGN equals the exact Hessian of the mean NLL."""
    name, est, backend, X, y = fitted
    R = backend.curvature_rows(X, y, "ggn").numpy()
    R = R.reshape(-1, R.shape[-1])
    ggn = R.T @ R / len(X)
    theta = backend.get_parameters().numpy()
    h = 1e-5
    H = np.empty_like(ggn)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        gp = LinearBackend(backend.with_parameters(theta + e)).per_sample_gradients(X, y).numpy()
        gm = LinearBackend(backend.with_parameters(theta - e)).per_sample_gradients(X, y).numpy()
        H[:, j] = (gp - gm).mean(0) / (2 * h)
    if backend.blocks is not None:  # outputs / one-vs-rest classes are independent models
        mask = np.zeros_like(H, dtype=bool)
        for s in backend.blocks:
            mask[s, s] = True
        assert np.abs(H[~mask]).max() < 1e-8
        ggn[~mask] = 0  # factor rows of independent blocks share a row; operators ignore that
    np.testing.assert_allclose(ggn, H, atol=1e-6, rtol=1e-5)


def test_empirical_fisher_rows_are_the_gradients(fitted):
    _, est, backend, X, y = fitted
    np.testing.assert_array_equal(backend.curvature_rows(X, y, "empirical_fisher")[:, 0],
                                  backend.per_sample_gradients(X, y))


def test_blocks_partition_the_parameters(fitted):
    name, est, backend, X, y = fitted
    for blocks in (backend.blocks, backend.natural_blocks):
        if blocks is None:
            continue
        assert blocks[0].start == 0 and blocks[-1].stop == backend.n_params
        assert all(a.stop == b.start for a, b in zip(blocks[:-1], blocks[1:]))
    if name == "lr-multinomial":
        assert backend.blocks is None and len(backend.natural_blocks) == 3
    if name == "sgd-ovr":
        assert len(backend.blocks) == 3
    if name == "multioutput":
        assert len(backend.blocks) == 2  # one per output (multinomial output 1, binary output 2)


def test_damping_values():
    X, y = _data(3)
    lr = LogisticRegression(C=0.25).fit(X, y)
    lam = LinearBackend(lr).default_damping(len(X)).numpy().reshape(3, -1)
    np.testing.assert_allclose(lam[:, :-1], 1 / (0.25 * len(X)))
    np.testing.assert_array_equal(lam[:, -1], 0)  # intercept unpenalised
    sgd = SGDClassifier(loss="log_loss", alpha=0.03, random_state=0).fit(X, y)
    lam = LinearBackend(sgd).default_damping(len(X)).numpy().reshape(3, -1)
    np.testing.assert_allclose(lam[:, :-1], 0.03)
    unpen = LogisticRegression(C=np.inf).fit(X, y)
    assert np.all(LinearBackend(unpen).default_damping(len(X)).numpy() == 0)
    Xb, yb = _data(2)
    lib = LogisticRegression(C=0.5, solver="liblinear", intercept_scaling=2.0).fit(Xb, yb)
    lam = LinearBackend(lib).default_damping(len(Xb)).numpy()
    np.testing.assert_allclose(lam, [1 / (0.5 * len(Xb))] * 4 + [1 / (0.5 * len(Xb) * 4)])


# an L1-penalised LogisticRegression: `l1_ratio=1` since scikit-learn 1.8 deprecated `penalty`;
# before, `l1_ratio` is ignored without penalty="elasticnet" (the model is L2, and supported)
_L1_LOGISTIC = (LogisticRegression(l1_ratio=1.0, solver="saga")
                if LogisticRegression().penalty == "deprecated"
                else LogisticRegression(penalty="l1", solver="saga"))


@pytest.mark.parametrize("est, exc, match", [
    (SGDClassifier(loss="hinge"), ValueError, "does not model p"),
    (LinearSVC(), ValueError, "does not model p"),
    (Perceptron(), ValueError, "does not model p"),
    (_L1_LOGISTIC, ValueError, "twice-differentiable"),
    (SGDClassifier(loss="log_loss", penalty="l1"), ValueError, "twice-differentiable"),
    (MultiOutputClassifier(SGDClassifier(loss="modified_huber")), ValueError, "does not model"),
    (DecisionTreeClassifier(), TypeError, "not supported"),
])
def test_unsupported_models_are_refused(est, exc, match):
    with pytest.raises(exc, match=match):
        select_backend(est)
