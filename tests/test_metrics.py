"""Tests of sklearn_ssse.metrics: metric values on hand-made cases, scorers on real models."""

import copy

import numpy as np
import pytest
from joblib import Memory
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, log_loss, roc_auc_score
from sklearn.model_selection import KFold, cross_validate
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, scale
from threadpoolctl import threadpool_limits

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse.metrics import (
    clear_reference_cache,
    confusion_distance,
    confusion_distance_scorer,
    make_unlearning_scorer,
    membership_inference_auc,
    membership_inference_scorer,
    normalized_confusion_distance,
    normalized_confusion_distance_scorer,
    normalized_parameter_distance,
    parameter_distance_scorer,
    performance_score,
    performance_similarity,
    reference_cache_info,
    similarity_ratio,
    similarity_ratio_scorer,
)
from sklearn_ssse.model_selection import ForgetSplit


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # tiny problems: BLAS threads only add contention on a busy 2-core box
    with threadpool_limits(1):
        yield


# ============================================================================ hand-made values
def test_performance_score_matches_sklearn_binary_multiclass():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p = rng.random(50)
    assert performance_score(y, p) == pytest.approx(roc_auc_score(y, p))
    assert performance_score(y, np.c_[1 - p, p]) == pytest.approx(roc_auc_score(y, p))
    y3 = rng.integers(0, 3, 60)
    P3 = rng.dirichlet([1, 1, 1], 60)
    expected = roc_auc_score(y3, P3, multi_class="ovr", average="macro")
    assert performance_score(y3, P3) == pytest.approx(expected)
    assert performance_score(y3, P3, metric="log_loss") == pytest.approx(log_loss(y3, P3))
    pred = P3.argmax(1)
    assert performance_score(y3, pred, metric="accuracy") == pytest.approx(np.mean(pred == y3))


def test_performance_score_hand_values_and_string_labels():
    # positives 0.4, 0.9 vs negatives 0.1, 0.6: 3 of 4 pairs ordered -> 0.75
    assert performance_score([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == 0.75
    assert performance_score(["a", "a", "b", "b"], [0.1, 0.6, 0.4, 0.9]) == 0.75
    # log-loss by hand
    P = np.array([[0.8, 0.2], [0.4, 0.6]])
    assert performance_score([0, 1], P, metric="log_loss") == pytest.approx(
        -(np.log(0.8) + np.log(0.6)) / 2)


def test_auc_skips_absent_classes_and_raises_on_single_class():
    y = np.array([0, 0, 1, 1])            # class 2 absent from the set
    P = np.array([[.7, .2, .1], [.5, .3, .2], [.2, .7, .1], [.1, .6, .3]])
    auc0 = roc_auc_score(y == 0, P[:, 0])
    auc1 = roc_auc_score(y == 1, P[:, 1])
    assert performance_score(y, P, labels=[0, 1, 2]) == pytest.approx((auc0 + auc1) / 2)
    with pytest.raises(ValueError, match="single class.*metric='accuracy'"):
        performance_score([1, 1, 1], P[:3], labels=[0, 1, 2])
    # accuracy and log-loss stay defined on a single-class set
    assert performance_score([1, 1, 1], P[:3], metric="log_loss", labels=[0, 1, 2]) == \
        pytest.approx(-np.mean(np.log(P[:3, 1])))


def test_multi_output_averages_over_attributes():
    rng = np.random.default_rng(1)
    Y = rng.integers(0, 2, (40, 3))
    Pos = rng.random((40, 3))
    expected = np.mean([roc_auc_score(Y[:, j], Pos[:, j]) for j in range(3)])
    assert performance_score(Y, Pos) == pytest.approx(expected)
    as_list = [np.c_[1 - Pos[:, j], Pos[:, j]] for j in range(3)]
    assert performance_score(Y, as_list) == pytest.approx(expected)
    pred = (Pos > 0.5).astype(int)
    assert performance_score(Y, pred, metric="accuracy") == pytest.approx(np.mean(pred == Y))


def test_performance_similarity_and_similarity_ratio_by_hand():
    y = [0, 0, 1, 1]
    orig = [0.1, 0.2, 0.8, 0.9]     # AUC 1
    re = [0.1, 0.6, 0.4, 0.9]       # AUC 0.75
    mid = [0.1, 0.6, 0.6, 0.9]      # AUC 0.875 (one tie)
    q = [0.1, 0.6, 0.55, 0.9]       # 0.55 < 0.6: 3 of 4 pairs -> AUC 0.75, like re
    assert performance_similarity(y, orig, re) == 0.25
    assert similarity_ratio(y, mid, orig, re) == 0.5
    assert similarity_ratio(y, re, orig, re) == 0.0
    assert similarity_ratio(y, orig, orig, re) == 1.0
    assert similarity_ratio(y, q, orig, re) == 0.0
    # 0/0: all three perform the same -> 0.5 by definition
    assert similarity_ratio(y, orig, orig, orig) == 0.5
    # overshooting (performance below the reference) stays in [0, 1)
    worse = [0.9, 0.6, 0.4, 0.1]    # AUC 0: d(hat, re) = .75, d(hat, orig) = 1
    assert similarity_ratio(y, worse, orig, re) == pytest.approx(0.75 / 1.75)


def test_confusion_distance_on_hand_made_matrices():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([0, 0, 0, 1, 1, 1, 1, 1])   # [[3, 1], [0, 4]]
    b = np.array([0, 0, 1, 1, 0, 1, 1, 1])   # [[2, 2], [1, 3]]
    Ca, Cb = confusion_matrix(y, a), confusion_matrix(y, b)
    assert np.array_equal(Ca, [[3, 1], [0, 4]]) and np.array_equal(Cb, [[2, 2], [1, 3]])
    assert confusion_distance(y, a, b, normalize=False) == 4.0
    assert confusion_distance(y, a, b) == 0.5
    assert confusion_distance(y, a, a) == 0.0
    # multiclass against sklearn, with a label never predicted
    rng = np.random.default_rng(2)
    y3, p, q = rng.integers(0, 3, 30), rng.integers(0, 3, 30), rng.integers(0, 3, 30)
    lab = [0, 1, 2, 3]
    expected = np.abs(confusion_matrix(y3, p, labels=lab) - confusion_matrix(y3, q, labels=lab))
    assert confusion_distance(y3, p, q, labels=lab, normalize=False) == expected.sum()
    assert confusion_distance(y3, p, q) == pytest.approx(expected.sum() / 30)
    # multi-output: mean over outputs
    Y = np.c_[y, 1 - y]
    A, B = np.c_[a, 1 - a], np.c_[b, 1 - a]
    assert confusion_distance(Y, A, B) == pytest.approx((0.5 + 0.0) / 2)


def test_normalized_confusion_distance_by_hand():
    y = [0, 0, 1, 1]
    orig, re = [0, 0, 1, 1], [1, 1, 1, 1]
    assert normalized_confusion_distance(y, [0, 1, 1, 1], orig, re) == 0.5
    assert normalized_confusion_distance(y, re, orig, re) == 0.0
    assert normalized_confusion_distance(y, orig, orig, re) == 1.0
    assert normalized_confusion_distance(y, orig, orig, orig) == 0.5   # 0/0


def test_normalized_parameter_distance_cases():
    assert normalized_parameter_distance([1.0, 1.0], [0.0, 0.0], [2.0, 2.0]) == 0.5
    assert normalized_parameter_distance([3.0, 4.0], [0.0, 0.0], [0.0, 0.0]) == np.inf
    assert normalized_parameter_distance([1.0], [1.0], [1.0]) == 0.0
    assert normalized_parameter_distance([4.0, 2.0], [0.0, 0.0], [2.0, 2.0]) == pytest.approx(
        2.0 / np.sqrt(8.0))
    with pytest.raises(ValueError, match="different lengths"):
        normalized_parameter_distance([1.0], [1.0, 2.0], [1.0])
    with pytest.raises(TypeError, match="parameter vector"):
        normalized_parameter_distance(LogisticRegression(), [1.0], [1.0])


def test_membership_inference_auc_matches_roc_auc():
    rng = np.random.default_rng(3)
    yf, yh = rng.integers(0, 3, 20), rng.integers(0, 3, 30)
    Pf, Ph = rng.dirichlet([2, 2, 2], 20), rng.dirichlet([1, 1, 1], 30)
    member = np.r_[np.ones(20), np.zeros(30)]
    loss_scores = np.r_[np.log(Pf[np.arange(20), yf]), np.log(Ph[np.arange(30), yh])]
    assert membership_inference_auc(None, Pf, yf, Ph, yh) == pytest.approx(
        roc_auc_score(member, loss_scores))
    conf_scores = np.r_[Pf.max(1), Ph.max(1)]
    assert membership_inference_auc(None, Pf, yf, Ph, yh, attack="confidence") == pytest.approx(
        roc_auc_score(member, conf_scores))
    with pytest.raises(ValueError, match="attack"):
        membership_inference_auc(None, Pf, yf, Ph, yh, attack="shadow")


def test_models_and_their_outputs_give_the_same_values():
    X, y = make_classification(n_samples=120, n_features=5, n_classes=3, n_informative=3,
                               random_state=0)
    a = LogisticRegression(C=0.1).fit(X, y)
    b = LogisticRegression(C=10.0).fit(X, y)
    c = LogisticRegression(C=1.0).fit(X[:60], y[:60])
    Pa, Pb, Pc = a.predict_proba(X), b.predict_proba(X), c.predict_proba(X)
    assert similarity_ratio(y, a, b, c, X=X) == similarity_ratio(y, Pa, Pb, Pc)
    assert similarity_ratio(y, a, b, c, X=X, metric="log_loss") == \
        similarity_ratio(y, Pa, Pb, Pc, metric="log_loss")
    assert confusion_distance(y, a, b, X=X) == confusion_distance(y, a.predict(X), b.predict(X))
    assert membership_inference_auc(c, X[:60], y[:60], X[60:], y[60:]) == \
        membership_inference_auc(None, Pc[:60], y[:60], Pc[60:], y[60:])
    with pytest.raises(ValueError, match="X is required"):
        similarity_ratio(y, a, b, c)


def test_classes_are_aligned_when_the_reference_lost_a_class():
    X, y = make_classification(n_samples=150, n_features=5, n_classes=3, n_informative=3,
                               random_state=1)
    full = LogisticRegression().fit(X, y)
    keep = y != 2
    lost = LogisticRegression().fit(X[keep], y[keep])   # knows classes 0, 1 only
    P = np.zeros((150, 3))
    P[:, :2] = lost.predict_proba(X)
    assert performance_similarity(y, full, lost, X=X) == pytest.approx(
        abs(roc_auc_score(y, full.predict_proba(X), multi_class="ovr")
            - roc_auc_score(y, P, multi_class="ovr")))


def test_multi_output_estimators():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 4))
    Y = np.c_[X[:, 0] > 0, X[:, 1] + 0.3 * rng.normal(size=100) > 0].astype(int)
    m = MultiOutputClassifier(LogisticRegression()).fit(X, Y)
    P = m.predict_proba(X)
    expected = np.mean([roc_auc_score(Y[:, j], P[j][:, 1]) for j in range(2)])
    assert performance_score(Y, m, X=X) == pytest.approx(expected)


# ============================================================================ scorers
@pytest.fixture(scope="module")
def noisy():
    """Overlapping classes: the original and the retrained model differ on the forget set."""
    X, y = make_classification(n_samples=200, n_features=20, n_informative=10, class_sep=0.5,
                               flip_y=0.05, random_state=0)
    train, test = next(ForgetSplit(1, forget_size=0.1, holdout_size=0.1,
                                   random_state=0).split(X, y))
    return X, y, train, test


def _fit(X, y, **kw):
    kw.setdefault("curvature", "ggn")
    return UnlearnableClassifier(LogisticRegression(C=10), keep_training_data=True,
                                 **kw).fit(X, y)


@pytest.mark.parametrize("scorer", [similarity_ratio_scorer, confusion_distance_scorer,
                                    normalized_confusion_distance_scorer,
                                    parameter_distance_scorer, membership_inference_scorer,
                                    make_unlearning_scorer("similarity_ratio", metric="roc_auc")],
                         ids=repr)
def test_scorers_rank_bad_epsilons_below_a_good_one(noisy, scorer):
    X, y, train, test = noisy
    clf = _fit(X[train], y[train])
    s_zero, s_good, s_huge = scorer.score_epsilons(clf, X[test], y[test], [0.0, 1.0, 100.0])
    assert s_good > s_zero
    assert s_good > s_huge


def test_scorer_equals_metrics_on_a_really_forgotten_copy(noisy):
    X, y, train, test = noisy
    clear_reference_cache()
    forget = test[:20]                    # ForgetSplit puts S first, then the held-out rows
    clf = _fit(X[train], y[train], epsilon=0.7)
    before = (clf.get_parameters(), clf.n_samples_, clf.fit_mask_.copy(), clf.epsilon)

    hat = copy.deepcopy(clf).forget(X[forget], y[forget])          # epsilon 0.7
    remaining = np.setdiff1d(train, forget)
    re = LogisticRegression(C=10).fit(X[remaining], y[remaining])
    Xs, ys = X[forget], y[forget]
    assert similarity_ratio_scorer(clf, Xs, ys) == pytest.approx(
        -similarity_ratio(ys, hat, clf, re, X=Xs, metric="log_loss"), abs=1e-6)
    assert confusion_distance_scorer(clf, Xs, ys) == -confusion_distance(ys, hat, re, X=Xs)
    assert normalized_confusion_distance_scorer(clf, Xs, ys) == \
        -normalized_confusion_distance(ys, hat, clf, re, X=Xs)
    theta_re = np.r_[re.coef_.ravel(), re.intercept_]
    assert parameter_distance_scorer(clf, Xs, ys) == pytest.approx(
        -normalized_parameter_distance(hat, clf, theta_re), rel=1e-4)
    # the membership scorer uses the held-out rows of the test fold
    Xh, yh = X[test[20:]], y[test[20:]]
    target = membership_inference_auc(re, Xs, ys, Xh, yh)
    assert membership_inference_scorer(clf, X[test], y[test]) == pytest.approx(
        -abs(membership_inference_auc(hat, Xs, ys, Xh, yh) - target))
    # nothing was mutated
    after = (clf.get_parameters(), clf.n_samples_, clf.fit_mask_, clf.epsilon)
    assert np.array_equal(before[0], after[0]) and before[1] == after[1]
    assert np.array_equal(before[2], after[2]) and before[3] == after[3]
    assert len(clf.erasure_log_) == 0
    # one reference for S (shared by all the scorers), one for S + held-out-free MIA call
    info = reference_cache_info()
    assert info["fits"] == 1 and info["hits"] == 4


def test_call_equals_score_epsilons(noisy):
    X, y, train, test = noisy
    clf = _fit(X[train], y[train], epsilon=0.3)
    for scorer in (similarity_ratio_scorer, parameter_distance_scorer):
        many = scorer.score_epsilons(clf, X[test], y[test], [0.1, 0.3, 2.0])
        assert scorer(clf, X[test], y[test]) == many[1]


def test_scorer_errors():
    X, y = load_breast_cancer(return_X_y=True)
    X = scale(X)
    no_data = UnlearnableClassifier(LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="keep_training_data=True"):
        similarity_ratio_scorer(no_data, X[:10], y[:10])
    with pytest.raises(TypeError, match="UnlearnableClassifier"):
        similarity_ratio_scorer(LogisticRegression().fit(X, y), X[:10], y[:10])
    clf = UnlearnableClassifier(LogisticRegression(), keep_training_data=True).fit(X[:400],
                                                                                   y[:400])
    with pytest.raises(ValueError, match="ForgetSplit"):          # KFold-style test fold
        similarity_ratio_scorer(clf, X[400:420], y[400:420])
    with pytest.raises(ValueError, match="holdout_size"):         # MIA without held-out rows
        membership_inference_scorer(clf, X[:10], y[:10])
    with pytest.raises(ValueError, match="kind"):
        make_unlearning_scorer("accuracy")
    # cross_validate with a plain KFold fails loudly (error_score="raise")
    with pytest.raises(ValueError, match="ForgetSplit"):
        cross_validate(UnlearnableClassifier(LogisticRegression(), keep_training_data=True),
                       X, y, cv=KFold(2), scoring=similarity_ratio_scorer, error_score="raise")


def test_scorers_in_cross_validate_and_pipeline():
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(),
                         UnlearnableClassifier(LogisticRegression(), curvature="ggn",
                                               keep_training_data=True))
    cv = ForgetSplit(n_splits=2, forget_size=0.05, random_state=0)
    out = cross_validate(pipe, X, y, cv=cv, error_score="raise",
                         scoring={"sim": similarity_ratio_scorer,
                                  "par": parameter_distance_scorer})
    assert np.all((-1 <= out["test_sim"]) & (out["test_sim"] <= 0))
    assert np.all(out["test_par"] > -0.5)          # epsilon = 1 Newton step: close to retrain


def test_duplicated_rows_are_forgotten_as_a_multiset():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] > 0).astype(int)
    X = np.r_[X, X[:5], X[:5]]           # rows 0..4 appear three times
    y = np.r_[y, y[:5], y[:5]]
    clear_reference_cache()
    clf = UnlearnableClassifier(LogisticRegression(), keep_training_data=True).fit(X, y)
    S = np.r_[0, 1, 80, 2]               # row 0 twice (as 0 and its copy 80)
    score = parameter_distance_scorer(clf, X[S], y[S])
    remaining = np.ones(len(X), bool)
    remaining[[0, 80, 1, 2]] = False     # the scorer takes the lowest-index copies
    re = LogisticRegression().fit(X[remaining], y[remaining])
    hat = copy.deepcopy(clf).forget(X[S], y[S])
    assert score == pytest.approx(
        -normalized_parameter_distance(hat, clf, np.r_[re.coef_.ravel(), re.intercept_]),
        rel=1e-4)
    with pytest.raises(ValueError, match="ForgetSplit"):
        similarity_ratio_scorer(clf, X[[0]] + 1e-9, y[[0]])


def test_reference_cache_and_memory(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    X = scale(X)
    memory = Memory(tmp_path, verbose=0)
    clf = UnlearnableClassifier(LogisticRegression(), keep_training_data=True,
                                memory=memory).fit(X, y)
    clear_reference_cache()
    eps = np.logspace(-2, 1, 13)
    for e in eps:                                   # like GridSearchCV: one call per epsilon
        similarity_ratio_scorer(clf.set_params(epsilon=e), X[:25], y[:25])
    assert reference_cache_info() == {"hits": 12, "misses": 1, "fits": 1, "size": 1}
    clear_reference_cache()                         # a new process: memory still has it
    similarity_ratio_scorer(clf, X[:25], y[:25])
    assert reference_cache_info()["fits"] == 0
    similarity_ratio_scorer(clf, X[25:50], y[25:50])  # another forget set: another reference
    assert reference_cache_info()["fits"] == 1
