"""scikit-learn's estimator checks over the supported inner models."""

from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ssse import UnlearnableClassifier

#: checks expected to fail, with the reason (none at present: sample_weight is refused with a
#: TypeError naming it, which the sample-weight checks accept)
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(
    [
        UnlearnableClassifier(LogisticRegression()),
        UnlearnableClassifier(LogisticRegression(), curvature="ggn", inverse="woodbury"),
        UnlearnableClassifier(SGDClassifier(loss="log_loss", random_state=0)),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
