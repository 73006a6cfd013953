"""UnlearnableClassifier: the SSSE step against brute force and against retraining."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._backends import LinearBackend

LR = LogisticRegression(C=0.1, tol=1e-10, max_iter=10000)


def _theta(est):
    return LinearBackend(est).get_parameters().numpy()


def _brute_step(clf, X_all, y_all, X_S, y_S, eps, n_remaining, n_fisher):
    """theta + eps / (n - k) * F^{-1} sum_S g with F built by numpy from the fit's gradients."""
    be = LinearBackend(clf.estimator_)
    G = LinearBackend(clf.with_parameters(clf.theta_fit_)).per_sample_gradients(X_all, y_all)
    G = G.numpy()
    F = G.T @ G / n_fisher + np.diag(clf.damping_)
    g_S = be.per_sample_gradients(X_S, y_S).numpy().sum(0)
    return be.get_parameters().numpy() + eps / (n_remaining - len(X_S)) * np.linalg.solve(F, g_S)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _npd(theta, theta_ret, theta_orig):
    return np.linalg.norm(theta - theta_ret) / np.linalg.norm(theta_orig - theta_ret)


@pytest.fixture(scope="module")
def small():
    X, y = make_classification(n_samples=120, n_features=5, n_informative=4, n_redundant=0,
                               n_classes=3, random_state=0)
    return X, y


def _brute_leave_out(clf, X_all, y_all, removed, S, eps):
    """theta + eps * (M_{D minus removed})^{-1} sum_S g: the sum-form curvature (the fit's
    gradients at theta_fit, total penalty n_fit * damping) without every row removed so far
    (``removed``, which includes S), solved with numpy."""
    be = LinearBackend(clf.estimator_)
    G = LinearBackend(clf.with_parameters(clf.theta_fit_)).per_sample_gradients(X_all, y_all)
    G = np.delete(G.numpy(), removed, axis=0)
    M = G.T @ G + len(X_all) * np.diag(clf.damping_)
    g_S = be.per_sample_gradients(X_all[S], y_all[S]).numpy().sum(0)
    return be.get_parameters().numpy() + eps * np.linalg.solve(M, g_S)


def test_full_step_matches_brute_force_and_scales_with_n(small):
    """step="full" (the paper): F of all the fit's data, 1 / (n - k) with the remaining n."""
    X, y = small
    clf = UnlearnableClassifier(LR, epsilon=0.7, step="full", curvature="empirical_fisher")
    clf.fit(X, y)
    assert clf.config_.step == "full" and clf.config_.update_curvature
    n = len(X)
    expected = _brute_step(clf, X, y, X[:4], y[:4], 0.7, n, n)
    clf.forget(X[:4], y[:4])
    assert _rel(clf.get_parameters(), expected) < 1e-8
    assert clf.n_samples_ == n - 4
    clf = UnlearnableClassifier(LR, epsilon=0.7, step="full", update_curvature=False,
                                curvature="empirical_fisher").fit(X, y)
    clf.forget(X[:4], y[:4])
    # second call: gradients at the new parameters, 1/(n - 4 - 6), the fit's curvature
    expected = _brute_step(clf, X, y, X[4:10], y[4:10], 2.0, n - 4, n)
    clf.forget(X[4:10], y[4:10], epsilon=2.0)
    assert _rel(clf.get_parameters(), expected) < 1e-8
    assert clf.n_samples_ == n - 10
    assert [e["n_removed"] for e in clf.erasure_log_] == [4, 6]
    assert [e["epsilon"] for e in clf.erasure_log_] == [0.7, 2.0]
    assert [e["step"] for e in clf.erasure_log_] == ["full", "full"]


@pytest.mark.parametrize("curvature", ["empirical_fisher", "ggn"])
def test_default_leave_out_step_matches_brute_force(small, curvature):
    """The default step uses the curvature of what remains: every row forgotten so far (the
    default update_curvature="auto" keeps the downdated curvature) and the current set."""
    X, y = small
    clf = UnlearnableClassifier(LR, epsilon=0.7, curvature=curvature).fit(X, y)
    assert (clf.config_.step, clf.config_.update_curvature) == ("leave_out", True)
    if curvature == "ggn":  # numpy oracle below is for the empirical Fisher only
        clf = UnlearnableClassifier(LR, curvature="ggn").fit(X, y)
        S = np.arange(6)
        delta = clf.forget_direction(X[S], y[S])
        H = _hessian(clf, np.delete(X, S, axis=0))
        g = LinearBackend(clf.estimator_).per_sample_gradients(X[S], y[S]).numpy().sum(0)
        np.testing.assert_allclose(delta, np.linalg.solve(H, g), rtol=1e-8, atol=1e-10)
        return
    expected = _brute_leave_out(clf, X, y, np.arange(4), np.arange(4), 0.7)
    clf.forget(X[:4], y[:4])
    assert _rel(clf.get_parameters(), expected) < 1e-8
    expected = _brute_leave_out(clf, X, y, np.arange(10), np.arange(4, 10), 2.0)
    clf.forget(X[4:10], y[4:10], epsilon=2.0)
    assert _rel(clf.get_parameters(), expected) < 1e-8
    assert [e["step"] for e in clf.erasure_log_] == ["leave_out", "leave_out"]


def _hessian(clf, X_rem):
    """Sum-form Hessian of sklearn's objective C sum loss + ||W||^2 / 2 (divided by C) on the
    rows X_rem of a multinomial LogisticRegression, at theta_fit, by numpy: the intercepts get
    the model's damping floor (``n_fit * damping_``)."""
    est = clf.with_parameters(clf.theta_fit_)
    P = est.predict_proba(X_rem)
    Xa = np.hstack([X_rem, np.ones((len(X_rem), 1))])
    C, p1 = P.shape[1], Xa.shape[1]
    H = np.zeros((C * p1, C * p1))
    for i in range(len(X_rem)):
        A = np.diag(P[i]) - np.outer(P[i], P[i])
        H += np.kron(A, np.outer(Xa[i], Xa[i]))
    return H + clf.n_samples_fit_ * np.diag(clf.damping_)


def test_step_is_linear_in_epsilon_and_zero_changes_nothing(small):
    X, y = small
    clf = UnlearnableClassifier(LR).fit(X, y)
    theta0 = clf.get_parameters()
    delta = clf.forget_direction(X[:5], y[:5])
    np.testing.assert_array_equal(clf.get_parameters(), theta0)  # no mutation
    for eps in (0.0, 0.5, 3.0):
        c = clone(clf).fit(X, y).forget(X[:5], y[:5], epsilon=eps)
        np.testing.assert_allclose(c.get_parameters(), theta0 + eps * delta, rtol=1e-10,
                                   atol=1e-12)
    c = clone(clf).fit(X, y).forget(X[:5], y[:5], epsilon=0.0)
    np.testing.assert_array_equal(c.get_parameters(), theta0)


def test_forgetting_raises_the_loss_of_the_forgotten_samples(digits, forget_idx):
    """Sign check: the step moves away from fitting S (gradient ascent on S's loss)."""
    X, y, _, _ = digits
    for curvature in ("empirical_fisher", "ggn"):
        clf = UnlearnableClassifier(LR, curvature=curvature).fit(X, y)
        S = forget_idx
        before = -clf.predict_log_proba(X[S])[np.arange(len(S)), y[S]].mean()
        clf.forget(X[S], y[S])
        after = -clf.predict_log_proba(X[S])[np.arange(len(S)), y[S]].mean()
        assert after > before


def test_ggn_step_with_epsilon_one_matches_retraining(digits, forget_idx):
    X, y, X_test, _ = digits
    keep = np.setdiff1d(np.arange(len(X)), forget_idx)
    retrained = clone(LR).fit(X[keep], y[keep])
    clf = UnlearnableClassifier(LR, curvature="ggn").fit(X, y)
    theta_orig = clf.get_parameters()
    p_orig, p_ret = clf.predict_proba(X_test), retrained.predict_proba(X_test)
    clf.forget(X[forget_idx], y[forget_idx])
    npd = _npd(clf.get_parameters(), _theta(retrained), theta_orig)
    assert npd < 0.15
    gap = np.abs(clf.predict_proba(X_test) - p_ret).max()
    assert gap < 0.2 * np.abs(p_orig - p_ret).max()
    # an obviously wrong scale (n instead of n - k is close; 1 instead of 1/(n-k) is not) fails
    assert _npd(theta_orig + (len(X) - 30) * (clf.get_parameters() - theta_orig),
                _theta(retrained), theta_orig) > 1


def test_empirical_fisher_moves_toward_retrained(digits, forget_idx):
    X, y, _, _ = digits
    keep = np.setdiff1d(np.arange(len(X)), forget_idx)
    theta_ret = _theta(clone(LR).fit(X[keep], y[keep]))
    clf = UnlearnableClassifier(LR).fit(X, y)
    theta0 = clf.get_parameters()
    delta = clf.forget_direction(X[forget_idx], y[forget_idx])
    dists = {eps: _npd(theta0 + eps * delta, theta_ret, theta0)
             for eps in (0.1, 0.25, 0.5, 1.0, 2.0)}
    assert min(dists.values()) < 0.9
    assert dists[0.1] < 1.0


@pytest.mark.parametrize("inverse", ["sherman_morrison", "woodbury", "block"])
def test_inverse_choices(small, inverse):
    X, y = small
    # every row, empirical Fisher: the low-rank operator is then exact (its diagonal base is the
    # damping alone, the rows' diagonal being the exact one)
    kw = dict(damping=0.05, fisher_max_samples=len(X), curvature="empirical_fisher")
    dense = UnlearnableClassifier(LR, inverse="dense", **kw).fit(X, y).forget(X[:3], y[:3])
    other = UnlearnableClassifier(LR, inverse=inverse, **kw).fit(X, y).forget(X[:3], y[:3])
    assert other.inverse_ == inverse
    err = _rel(other.get_parameters() - other.theta_fit_,
               dense.get_parameters() - dense.theta_fit_)
    if inverse == "block":  # block-diagonal approximation: same direction, not the same step
        assert 0 < err < 1
    else:
        assert err < 1e-8


def test_predictions_use_the_new_parameters(small):
    X, y = small
    clf = UnlearnableClassifier(LR, epsilon=5.0).fit(X, y)
    before = clf.predict_proba(X)
    clf.forget(X[:10], y[:10])
    after = clf.predict_proba(X)
    assert not np.allclose(before, after)
    ref = clf.with_parameters(clf.get_parameters())
    np.testing.assert_allclose(after, ref.predict_proba(X))
    np.testing.assert_allclose(clf.decision_function(X), ref.decision_function(X))
    assert clf.score(X, y) == ref.score(X, y)
    assert clf.estimator_.coef_ is clf.backend_.parts[0].est.coef_  # updated in place


def test_binary_sgd_and_multioutput_follow_the_formula(small):
    X, y = small
    yb = (y == 0).astype(int)
    sgd = UnlearnableClassifier(SGDClassifier(loss="log_loss", alpha=0.01, random_state=0),
                                curvature="empirical_fisher")
    sgd.fit(X, yb)
    expected = _brute_leave_out(sgd, X, yb, np.arange(5), np.arange(5), 1.0)
    sgd.forget(X[:5], yb[:5])
    assert _rel(sgd.get_parameters(), expected) < 1e-8
    sgd = UnlearnableClassifier(SGDClassifier(loss="log_loss", alpha=0.01, random_state=0),
                                step="full", curvature="empirical_fisher").fit(X, yb)
    expected = _brute_step(sgd, X, yb, X[:5], yb[:5], 1.0, len(X), len(X))
    sgd.forget(X[:5], yb[:5])
    assert _rel(sgd.get_parameters(), expected) < 1e-8

    Y = np.column_stack([y, yb])
    mo = UnlearnableClassifier(MultiOutputClassifier(LR)).fit(X, Y)
    assert mo.backend_.blocks is not None and len(mo.backend_.blocks) == 2
    F_inv = mo.curvature_.inverse().numpy()
    s0, s1 = mo.backend_.blocks
    assert np.abs(F_inv[s0, s1]).max() == 0  # one Fisher block per output
    theta0 = mo.get_parameters()
    mo.forget(X[:5], Y[:5])
    # each output moves exactly like a model fitted on that output alone
    single = UnlearnableClassifier(LR).fit(X, y).forget(X[:5], y[:5])
    np.testing.assert_allclose(mo.get_parameters()[s0] - theta0[s0],
                               single.get_parameters() - single.theta_fit_, rtol=1e-6,
                               atol=1e-10)
    assert mo.predict(X[:3]).shape == (3, 2)


def test_bad_input_is_refused_and_leaves_the_model_unchanged(small):
    X, y = small
    with pytest.raises(NotFittedError):
        UnlearnableClassifier(LR).forget(X[:2], y[:2])
    clf = UnlearnableClassifier(LR).fit(X, y)
    theta, n = clf.get_parameters(), clf.n_samples_
    bad = [
        ((X[:2, :3], y[:2]), {}, "features"),
        ((np.where(np.eye(2, 5) > 0, np.nan, X[:2]), y[:2]), {}, "NaN"),
        ((X[:2], np.array([0, 7])), {}, "never seen"),
        ((X[:0], y[:0]), {}, "empty|0 sample"),
        ((X, y), {}, "only 120 remain"),
        ((X[:2], y[:2]), {"epsilon": np.inf}, "finite"),
        ((X[:2], y[:2]), {"epsilon": -1.0}, ">= 0"),
    ]
    for args, kw, match in bad:
        with pytest.raises(ValueError, match=match):
            clf.forget(*args, **kw)
        np.testing.assert_array_equal(clf.get_parameters(), theta)
        assert clf.n_samples_ == n and clf.erasure_log_ == []


def test_refit_behind_our_back_is_detected(small):
    X, y = small
    clf = UnlearnableClassifier(LR).fit(X, y)
    clf.estimator_.fit(X[:60], y[:60])
    with pytest.raises(RuntimeError, match="changed outside forget"):
        clf.forget(X[:2], y[:2])


def test_public_vectors_are_numpy_for_linear_models():
    """Linear models show every fitted vector as a NumPy array (a copy); nets keep tensors on
    their device (tests/test_torch_backend.py)."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000)).fit(X, y)
    for value in (clf.theta_fit_, clf.damping_, clf.get_parameters(),
                  clf.forget_direction(X[:3], y[:3])):
        assert isinstance(value, np.ndarray) and value.shape == (15,)
    clf.theta_fit_[:] = 0.0  # a copy: the fitted state is untouched
    assert np.any(clf.theta_fit_ != 0) and clf.verify_seal()
    assert not hasattr(UnlearnableClassifier(LogisticRegression()), "theta_fit_")
