"""scikit-learn's estimator checks over the supported inner models."""

from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ssse import UnlearnableClassifier

#: checks expected to fail, with the reason
_DUPLICATES = ("identical rows (features and label) with different sample weights are refused "
               "at fit: a row's weight is kept by its content, and a deletion request naming "
               "one of them would be ambiguous (tests/test_sample_weight.py)")
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_sample_weights_not_overwritten": _DUPLICATES,
}
#: SGDClassifier: stochastic, so weights 2 and duplicated rows give different models
#: (scikit-learn marks this check as an expected failure of SGDClassifier too)
SGD_FAILED_CHECKS: dict[str, str] = {
    **EXPECTED_FAILED_CHECKS,
    "check_sample_weight_equivalence_on_dense_data": "SGDClassifier is stochastic: a weight of "
                                                     "2 is not two visits of the row",
    "check_sample_weight_equivalence_on_sparse_data": "SGDClassifier is stochastic: a weight "
                                                      "of 2 is not two visits of the row",
}
#: a Pipeline's transformers are fitted unweighted (as Pipeline.fit(X, y,
#: <last step>__sample_weight=w) does): a duplicated row moves the scaler, a weight does not
PIPELINE_FAILED_CHECKS: dict[str, str] = {
    **EXPECTED_FAILED_CHECKS,
    "check_sample_weight_equivalence_on_dense_data": "the transformers of a Pipeline are "
                                                     "fitted without the sample weights",
}
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
    if isinstance(estimator.estimator, MultiOutputClassifier):
        return {**MULTI_OUTPUT_FAILED_CHECKS, **EXPECTED_FAILED_CHECKS}
    if isinstance(estimator.estimator, SGDClassifier):
        return SGD_FAILED_CHECKS
    if isinstance(estimator.estimator, Pipeline):
        return PIPELINE_FAILED_CHECKS
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
