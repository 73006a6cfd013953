"""certify() and refine(): the bound holds against exact retraining, refinement reaches the
retrained optimum, and the pass runs over chunks and dask arrays (a 2-worker LocalCluster)."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.preprocessing import StandardScaler

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._backends._linear import LinearBackend
from sklearn_ssse._certificate import invariant_directions

EXACT = {"solver": "newton-cholesky", "tol": 1e-14, "max_iter": 1000}


def _data(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _theta(est):
    return LinearBackend(est).get_parameters().numpy()


def _distance(clf, a, b):
    """Distance orthogonal to the directions the model does not depend on."""
    U = invariant_directions(clf)
    d = a - b
    return float(np.linalg.norm(d - U @ (U.T @ d)))


CASES = {
    "binary, no intercept (bound)": (load_breast_cancer, dict(fit_intercept=False), "bound"),
    "binary": (load_breast_cancer, {}, "estimate"),
    "multinomial": (load_wine, dict(C=0.5), "estimate"),
    "multinomial, no intercept": (load_wine, dict(fit_intercept=False), "bound"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_certificate_bounds_the_distance_to_retraining(case):
    loader, params, kind = CASES[case]
    X, y = _data(loader)
    rng = np.random.default_rng(0)
    ratios = []
    for trial in range(8):
        clf = UnlearnableClassifier(LogisticRegression(**EXACT, **params),
                                    keep_training_data=True).fit(X, y)
        S = rng.choice(len(X), size=int(rng.integers(3, len(X) // 10)), replace=False)
        keep = np.setdiff1d(np.arange(len(X)), S)
        retrained = _theta(LogisticRegression(**EXACT, **params).fit(X[keep], y[keep]))
        clf.forget(X[S], y[S], epsilon=float(rng.choice([0.0, 0.5, 1.0, 2.0])))
        cert = clf.certify()
        true = _distance(clf, clf.get_parameters(), retrained)
        assert cert.kind == kind and cert.n_remaining == len(keep)
        assert cert.distance >= true * (1 - 1e-6) - 1e-9, (trial, cert, true)
        ratios.append(cert.distance / true)
        original = _distance(clf, clf.theta_fit_, retrained)
        assert cert.original_distance >= original * (1 - 1e-6)
        assert clf.erasure_log_[-1]["event"] == "certify"
        assert clf.erasure_log_[-1]["certificate"]["distance"] == cert.distance
    assert max(ratios) < 40  # tight within a factor of 40 (measured: 3-15)


def test_the_gradient_is_that_of_scikit_learns_objective():
    """At scikit-learn's own optimum (Newton, tol 1e-14) the residual vanishes: the penalty
    scale and the loss match its objective (a wrong scale leaves a residual ~ ||w||)."""
    for loader, est, Y in [
        (load_breast_cancer, LogisticRegression(**EXACT), None),
        (load_wine, LogisticRegression(C=0.3, **EXACT), None),
        (load_wine, MultiOutputClassifier(LogisticRegression(**EXACT)), "multi"),
    ]:
        X, y = _data(loader)
        if Y:
            y = np.c_[y, (X[:, 0] > 0).astype(int)]
        clf = UnlearnableClassifier(est, keep_training_data=True).fit(X, y)
        cert = clf.certify()
        assert cert.residual_norm < 1e-8 * max(1.0, cert.original_distance), cert


def test_sgd_trained_model_refines_to_the_exact_optimum_of_its_objective():
    """SGDClassifier minimises mean log-loss + alpha ||w||^2 / 2, i.e. LogisticRegression with
    C = 1 / (n alpha): the refined SGD model equals that fit on the remaining rows."""
    X, y = _data(load_breast_cancer)
    alpha = 1e-2
    sgd = SGDClassifier(loss="log_loss", alpha=alpha, max_iter=50, tol=None, random_state=0)
    clf = UnlearnableClassifier(sgd, keep_training_data=True).fit(X, y)
    S = np.arange(0, len(X), 17)
    keep = np.setdiff1d(np.arange(len(X)), S)
    exact = LogisticRegression(C=1 / (len(keep) * alpha), **EXACT).fit(X[keep], y[keep])
    clf.forget(X[S], y[S])
    before = clf.certify()
    assert before.distance >= _distance(clf, clf.get_parameters(), _theta(exact)) * (1 - 1e-6)
    clf.refine(tol=1e-10)
    assert _distance(clf, clf.get_parameters(), _theta(exact)) < 1e-7


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine])
def test_refine_reaches_the_retrained_model(loader):
    X, y = _data(loader)
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), keep_training_data=True).fit(X, y)
    S = np.random.default_rng(3).choice(len(X), size=len(X) // 10, replace=False)
    keep = np.setdiff1d(np.arange(len(X)), S)
    retrained = _theta(LogisticRegression(**EXACT).fit(X[keep], y[keep]))
    clf.forget(X[S], y[S])
    n_log = len(clf.erasure_log_)
    clf.refine(tol=1e-10)
    assert _distance(clf, clf.get_parameters(), retrained) < 1e-7
    entry = clf.erasure_log_[-1]
    assert len(clf.erasure_log_) == n_log + 1 and entry["event"] == "refine"
    assert entry["certificate_after"]["distance"] <= 1e-10 < entry["certificate_before"]["distance"]
    assert entry["checksum_after"] == clf.parameters_checksum_ != entry["checksum_before"]
    assert clf.verify_seal()
    np.testing.assert_array_equal(clf.predict(X), LogisticRegression(**EXACT).fit(
        X[keep], y[keep]).predict(X))
    clf.forget(X[keep[:5]], y[keep[:5]])  # the model stays usable


def test_streams_and_errors():
    X, y = _data(load_wine)
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), keep_training_data=True).fit(X, y)
    clf.forget(X[:10], y[:10])
    ref = clf.certify()
    chunks = [(X[a:a + 37], y[a:a + 37]) for a in range(10, len(X), 37)]
    got = clf.certify(chunks)
    assert got.residual_norm == pytest.approx(ref.residual_norm, rel=1e-10, abs=1e-14)
    assert clf.certify(X[10:], y[10:]).residual_norm == pytest.approx(ref.residual_norm,
                                                                      rel=1e-10, abs=1e-14)
    with pytest.raises(ValueError, match="rows but 168 remain"):
        clf.certify(X, y)
    with pytest.raises(TypeError, match="one-shot iterator"):
        clf.refine(iter(chunks))
    plain = UnlearnableClassifier(LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="keep_training_data=True"):
        plain.certify()
    with pytest.raises(ValueError, match="tol"):
        clf.refine(tol=0)
    n_log = len(clf.erasure_log_)
    with pytest.raises(RuntimeError, match="did not reach"):
        clf.refine(tol=1e-300, max_iter=1)
    assert len(clf.erasure_log_) == n_log  # nothing changed


def test_a_net_is_refused_clearly():
    skorch = pytest.importorskip("skorch")
    from torch import nn

    X, y = _data(load_wine)
    net = skorch.NeuralNetClassifier(nn.Sequential(nn.Linear(13, 3)), max_epochs=1,
                                     criterion=nn.CrossEntropyLoss, train_split=None,
                                     verbose=0)
    clf = UnlearnableClassifier(net).fit(X.astype(np.float32), y)
    with pytest.raises(TypeError, match="closed-form objective"):
        clf.certify(X.astype(np.float32), y)


def test_dask_arrays_on_a_two_worker_cluster_equal_in_memory():
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    X, y = _data(load_breast_cancer)
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), keep_training_data=True).fit(X, y)
    clf.forget(X[:20], y[:20])
    twin = UnlearnableClassifier(LogisticRegression(**EXACT), keep_training_data=True).fit(X, y)
    twin.forget(X[:20], y[:20])
    ref = clf.certify()
    Xd, yd = da.from_array(X[20:], chunks=100), da.from_array(y[20:], chunks=100)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        got = clf.certify(Xd, yd)
        twin.refine(Xd, yd, tol=1e-10)
    assert got.residual_norm == pytest.approx(ref.residual_norm, rel=1e-10, abs=1e-16)
    assert got.distance == pytest.approx(ref.distance, rel=1e-10)
    clf.refine(tol=1e-10)
    assert np.abs(twin.get_parameters() - clf.get_parameters()).max() < 1e-10
    np.testing.assert_array_equal(twin.theta_fit_, clf.theta_fit_)


def test_class_removal_refines_to_the_retrained_model_without_the_class():
    """A removed class has no minimiser in the remaining objective (its intercept runs to
    -inf): refine switches its row off and reaches the retrained model on the other rows."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16.0, y[:600]
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), keep_training_data=True).fit(X, y)
    S, keep = np.flatnonzero(y == 4), np.flatnonzero(y != 4)
    retrained = LogisticRegression(**EXACT).fit(X[keep], y[keep])
    clf.forget(X[S], y[S])
    cert = clf.certify()
    assert np.isfinite(cert.distance) and cert.n_remaining == len(keep)
    clf.refine(tol=1e-9)
    W = clf.get_parameters().reshape(10, -1)
    assert np.all(W[4, :-1] == 0) and W[4, -1] == -1e4
    R = np.c_[retrained.coef_, retrained.intercept_]
    kept = W[np.arange(10) != 4]
    np.testing.assert_allclose(kept - kept.mean(0), R - R.mean(0), atol=1e-6)
    assert not np.any(clf.predict(X) == 4)
    np.testing.assert_allclose(np.delete(clf.predict_proba(X), 4, axis=1),
                               retrained.predict_proba(X), atol=1e-8)


def test_class_removal_leaving_two_classes_is_refused():
    X, y = _data(load_wine)
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), keep_training_data=True).fit(X, y)
    clf.forget(X[y == 1], y[y == 1])
    with pytest.raises(ValueError, match="binary"):
        clf.certify()


def test_certificate_scorer_tunes_without_retraining_on_class_removal():
    from sklearn_ssse import certificate_scorer, parameter_distance_scorer
    from sklearn_ssse.model_selection import ForgetSplit, epsilon_sweep

    X, y = _data(load_wine)
    eps = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    res = epsilon_sweep(
        UnlearnableClassifier(LogisticRegression(tol=1e-10, max_iter=5000),
                              keep_training_data=True),
        X, y, epsilons=eps, cv=ForgetSplit(n_splits=3, strategy="class", random_state=0),
        scoring={"certificate": certificate_scorer,
                 "parameter_distance": parameter_distance_scorer})
    cert = res.cv_results["mean_test_certificate"]
    assert np.all(np.isfinite(cert)) and np.argmax(cert) > 0  # forgetting beats doing nothing
