"""Every public entry point refuses bad input with a clear message and changes nothing."""

import copy
import math

import numpy as np
import pytest
import scipy.sparse as sp
from _model_state import assert_unchanged, snapshot
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier

from sklearn_ssse import UnlearnableClassifier


def _iris():
    X, y = load_iris(return_X_y=True)
    return X, y


def _make(kind):
    """(unfitted meta-estimator, X, y) for each supported linear family."""
    X, y = _iris()
    if kind == "multinomial":
        return UnlearnableClassifier(LogisticRegression(max_iter=1000)), X, y
    if kind == "binary":
        return UnlearnableClassifier(LogisticRegression(max_iter=1000)), X, (y == 2).astype(int)
    if kind == "sgd":
        return (UnlearnableClassifier(SGDClassifier(loss="log_loss", random_state=0)), X, y)
    if kind == "multioutput":
        Y = np.c_[y, (X[:, 0] > 5.8).astype(int)]
        return UnlearnableClassifier(MultiOutputClassifier(LogisticRegression(max_iter=1000))), X, Y
    raise AssertionError(kind)


KINDS = ["multinomial", "binary", "sgd", "multioutput"]


@pytest.fixture(scope="module")
def _fitted_models():
    out = {}
    for kind in KINDS:
        clf, X, y = _make(kind)
        out[kind] = (clf.fit(X, y), X, y)
    return out


@pytest.fixture(params=KINDS)
def fitted(request, _fitted_models):
    """A fitted model of each family (a deep copy: tests may change it)."""
    clf, X, y = _fitted_models[request.param]
    return copy.deepcopy(clf), X, y


def _bad_inputs(X, y):
    """(name, X, y, expected exception, message pattern)."""
    k = 4
    Xk, yk = X[:k].copy(), y[:k].copy()
    nan = Xk.copy()
    nan[1, 2] = np.nan
    inf = Xk.copy()
    inf[0, 0] = np.inf
    unseen = yk.copy()
    if unseen.ndim == 1:
        unseen[0] = 7
    else:
        unseen[0, 1] = 7
    return [
        ("too few features", Xk[:, :3], yk, ValueError, "3 features, but .* expecting 4"),
        ("too many features", np.c_[Xk, Xk], yk, ValueError, "8 features, but .* expecting 4"),
        ("1-D X", Xk[0], yk[:1], ValueError, "Expected 2D array"),
        ("NaN", nan, yk, ValueError, "NaN"),
        ("inf", inf, yk, ValueError, "infinity"),
        ("length mismatch", Xk, yk[:3], ValueError, "inconsistent numbers of samples"),
        ("unseen label", Xk, unseen, ValueError, "labels never seen at fit"),
        ("empty", Xk[:0], yk[:0], ValueError, "0 sample"),
        # (the linear models take sparse rows: a sparse forget set is checked the same way)
        ("sparse NaN", sp.csr_matrix(nan), yk, ValueError, "NaN"),
        ("text", np.full((k, 4), "a"), yk, ValueError, "could not convert string"),
    ]


@pytest.mark.parametrize("case", range(10))
@pytest.mark.parametrize("method", ["forget", "forget_direction"])
def test_bad_forget_input_is_refused_and_changes_nothing(fitted, case, method):
    clf, X, y = fitted
    name, Xb, yb, exc, match = _bad_inputs(X, y)[case]
    before = snapshot(clf)
    with pytest.raises(exc, match=match):
        getattr(clf, method)(Xb, yb)
    assert_unchanged(clf, before)


def test_wrong_number_of_outputs_is_refused():
    clf, X, Y = _make("multioutput")
    clf.fit(X, Y)
    before = snapshot(clf)
    with pytest.raises(ValueError, match="2-D y"):
        clf.forget(X[:3], Y[:3, 0])
    with pytest.raises(ValueError, match="3 outputs, the model was fitted with 2"):
        clf.forget(X[:3], np.c_[Y[:3], Y[:3, :1]])
    assert_unchanged(clf, before)

    single, X, y = _make("multinomial")
    single.fit(X, y)
    with pytest.raises(ValueError, match="1d array"):
        single.forget(X[:3], np.c_[y[:3], y[:3]])


def test_forgetting_as_many_samples_as_remain_is_refused():
    X, y = _iris()
    idx = np.r_[0:5, 50:55, 100:105]
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000)).fit(X[idx], y[idx])
    before = snapshot(clf)
    with pytest.raises(ValueError, match="cannot forget 15 samples: only 15 remain"):
        clf.forget(X[idx], y[idx])
    assert_unchanged(clf, before)
    clf.forget(X[idx[:10]], y[idx[:10]])  # 10 < 15 is fine
    with pytest.raises(ValueError, match="cannot forget 5 samples: only 5 remain"):
        clf.forget(X[idx[10:]], y[idx[10:]])
    assert clf.n_samples_ == 5


@pytest.mark.parametrize("epsilon", [-1.0, -1e-300, math.inf, -math.inf, math.nan, "1", True,
                                     None])
def test_bad_epsilon_is_refused(fitted, epsilon):
    clf, X, y = fitted
    before = snapshot(clf)
    if epsilon is None:  # the estimator's own epsilon, made invalid after fit
        clf.set_params(epsilon=math.inf)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
        clf.forget(X[:3], y[:3], epsilon=epsilon)
    clf.set_params(epsilon=1.0)
    assert_unchanged(clf, before)


@pytest.mark.parametrize("epsilon", [0, 0.0, 1, np.float32(0.5), np.int64(2)])
def test_numeric_epsilons_of_any_type_are_accepted(epsilon):
    clf, X, y = _make("multinomial")
    clf.fit(X, y).forget(X[:3], y[:3], epsilon=epsilon)
    assert clf.erasure_log_[-1]["epsilon"] == float(epsilon)


# scikit-learn's parameter validation raises InvalidParameterError, a ValueError (the class
# itself is private: sklearn.utils._param_validation)
@pytest.mark.parametrize("epsilon, error", [(math.inf, ValueError), (math.nan, ValueError),
                                            (-1.0, ValueError)])
def test_bad_epsilon_parameter_is_refused_at_fit(epsilon, error):
    clf, X, y = _make("multinomial")
    with pytest.raises(error, match="epsilon"):
        clf.set_params(epsilon=epsilon).fit(X, y)


@pytest.mark.parametrize("params", [{"track_samples": "yes"}, {"on_untracked": "ignore"},
                                    {"on_untracked": None}])
def test_bad_tracking_parameters_are_refused_at_fit(params):
    clf, X, y = _make("multinomial")
    with pytest.raises(ValueError, match=next(iter(params))):
        clf.set_params(**params).fit(X, y)


def test_bad_on_untracked_set_after_fit_is_refused_at_forget(fitted):
    clf, X, y = fitted
    clf.set_params(on_untracked="ignore")
    before = snapshot(clf)
    with pytest.raises(ValueError, match="on_untracked must be 'error' or 'warn'"):
        clf.forget(X[:2], y[:2])
    assert_unchanged(clf, before)


@pytest.mark.parametrize("method", ["forget", "forget_direction", "get_parameters",
                                    "with_parameters", "predict"])
def test_methods_before_fit_raise_not_fitted(method):
    clf, X, y = _make("multinomial")
    args = {"forget": (X[:2], y[:2]), "forget_direction": (X[:2], y[:2]),
            "get_parameters": (), "with_parameters": (np.zeros(15),), "predict": (X[:2],)}
    with pytest.raises(NotFittedError):
        getattr(clf, method)(*args[method])


# ------------------------------------------------------------------ changed behind our back
def _other_data(X, y):
    rng = np.random.default_rng(0)
    return X + rng.normal(scale=0.3, size=X.shape), y


@pytest.mark.parametrize("method", ["forget", "forget_direction"])
def test_refit_behind_our_back_is_refused(fitted, method):
    clf, X, y = fitted
    X2, y2 = _other_data(X, y)
    clf.estimator_.fit(X2, y2)  # new parameters, the cached curvature belongs to the old ones
    before = snapshot(clf)
    with pytest.raises(RuntimeError, match="checksum no longer matches parameters_checksum_"):
        getattr(clf, method)(X[:3], y[:3])
    assert_unchanged(clf, before)


def test_in_place_parameter_edit_is_refused(fitted):
    clf, X, y = fitted
    est = clf.estimator_.estimators_[0] if hasattr(clf.estimator_, "estimators_") \
        else clf.estimator_
    est.coef_[0, 0] = np.nextafter(est.coef_[0, 0], np.inf)  # one ulp is enough
    with pytest.raises(RuntimeError, match="changed outside forget"):
        clf.forget(X[:3], y[:3])


def test_replaced_estimator_is_refused(fitted):
    clf, X, y = fitted
    X2, y2 = _other_data(X, y)
    clf.estimator_ = clone(clf.estimator).fit(X2, y2)
    with pytest.raises(RuntimeError, match="changed outside forget"):
        clf.forget(X[:3], y[:3])


def test_replaced_estimator_of_another_family_is_refused(fitted):
    clf, X, y = fitted
    clf.estimator_ = object()
    with pytest.raises(RuntimeError, match="cannot be read; call fit again"):
        clf.forget(X[:3], y[:3])


def test_identical_refit_of_multioutput_is_detected_when_writing():
    """MultiOutputClassifier.fit builds new sub-estimators: a deterministic refit on the same
    data has the same parameters, so the checksum matches, but the backend would write into the
    discarded sub-estimators. The write is verified through a fresh backend and undone."""
    clf, X, Y = _make("multioutput")
    clf.fit(X, Y)
    clf.estimator_.fit(X, Y)
    before = snapshot(clf)
    proba = clf.predict_proba(X)
    with pytest.raises(RuntimeError, match="did not reach the wrapped estimator"):
        clf.forget(X[:3], Y[:3])
    assert_unchanged(clf, before)
    for a, b in zip(proba, clf.predict_proba(X)):
        np.testing.assert_array_equal(a, b)


def test_refit_through_the_meta_estimator_is_fine(fitted):
    clf, X, y = fitted
    clf.forget(X[:3], y[:3])
    X2, y2 = _other_data(X, y)
    clf.fit(X2, y2).forget(X2[:3], y2[:3])
    assert clf.n_samples_ == len(X2) - 3
    assert len(clf.erasure_log_) == 1


# ------------------------------------------------------------------ rows not in the model
def test_rows_never_trained_on_are_refused_with_tracking():
    X, y = _iris()
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), track_samples=True)
    clf.fit(X[::2], y[::2])  # the odd rows were never trained on
    before = snapshot(clf)
    with pytest.raises(ValueError, match="1 of the 3 rows to forget are not among the rows still"):
        clf.forget(X[[0, 2, 121]], y[[0, 2, 121]])
    assert_unchanged(clf, before)
    with pytest.raises(ValueError, match="not among the rows still"):  # right row, wrong label
        clf.forget(X[:1], [1])
    assert_unchanged(clf, before)


def test_rows_already_forgotten_are_refused_with_tracking():
    X, y = _iris()
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), track_samples=True).fit(X, y)
    clf.forget(X[:2], y[:2])
    before = snapshot(clf)
    with pytest.raises(ValueError, match="never trained on, or already forgotten"):
        clf.forget(X[1:3], y[1:3])
    assert_unchanged(clf, before)


def test_rows_not_in_kept_training_data_are_refused():
    X, y = _iris()
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), keep_training_data=True)
    clf.fit(X[::2], y[::2])
    before = snapshot(clf)
    with pytest.raises(ValueError, match="not among the remaining training rows"):
        clf.forget(X[121:122], y[121:122])
    assert_unchanged(clf, before)
