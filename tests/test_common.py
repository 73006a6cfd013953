"""scikit-learn's estimator checks over the supported inner models."""

from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ssse import UnlearnableClassifier

#: checks expected to fail, with the reason (none for single-output models: sample_weight is
#: refused with a TypeError naming it, which the sample-weight checks accept)
EXPECTED_FAILED_CHECKS: dict[str, str] = {}
#: a MultiOutputClassifier inner model keeps its own API, which scikit-learn's classifier checks
#: do not expect (scikit-learn skips every check of MultiOutputClassifier itself through its
#: ``_skip_test`` tag); all the other checks run and pass
_TWO_D = "MultiOutputClassifier needs a 2-D y; this check fits a 1-D y"
MULTI_OUTPUT_FAILED_CHECKS: dict[str, str] = {
    "check_classifiers_classes": _TWO_D,
    "check_classifiers_train": _TWO_D + " and expects predictions of shape (n_samples,)",
    "check_methods_sample_order_invariance": "predict_proba of a MultiOutputClassifier is a "
                                             "list of arrays, one per output",
    # sparse X is supported (tests/test_sparse.py); the check reads predict_proba's shape
    "check_estimator_sparse_array": "expects predict_proba of shape (n_samples, n_classes); a "
                                    "MultiOutputClassifier's is a list of arrays",
    "check_estimator_sparse_matrix": "expects predict_proba of shape (n_samples, n_classes); a "
                                     "MultiOutputClassifier's is a list of arrays",
}


def _expected_failed_checks(estimator):
    if isinstance(estimator.estimator, MultiOutputClassifier):  # (a Pipeline passes them all)
        return MULTI_OUTPUT_FAILED_CHECKS
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(
    [
        UnlearnableClassifier(LogisticRegression()),
        UnlearnableClassifier(LogisticRegression(), curvature="ggn", inverse="woodbury"),
        UnlearnableClassifier(SGDClassifier(loss="log_loss", random_state=0)),
        UnlearnableClassifier(MultiOutputClassifier(LogisticRegression())),
        UnlearnableClassifier(make_pipeline(StandardScaler(), LogisticRegression())),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
