"""Tests of ForgetSplit, the epsilon sweep, GridSearchCV tuning with caching, and row location."""

import copy
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from joblib import Memory
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import scale
from threadpoolctl import threadpool_limits

import sklearn_ssse._rows as rows_module
from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._rows import locate_rows
from sklearn_ssse.metrics import (
    clear_reference_cache,
    confusion_distance_scorer,
    membership_inference_scorer,
    parameter_distance_scorer,
    reference_cache_info,
    similarity_ratio_scorer,
)
from sklearn_ssse.model_selection import ForgetSplit, epsilon_sweep, plot_epsilon_sweep


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


class CountingLR(LogisticRegression):
    """LogisticRegression counting its fits (class-level, survives clone and joblib.Memory)."""

    n_fits = 0

    def fit(self, X, y, sample_weight=None):
        type(self).n_fits += 1
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return scale(X), y


# ============================================================================ locate_rows
def _brute_force(X_fit, y_fit, X_del, y_del, active):
    used, out = set(), []
    for x, t in zip(X_del, y_del):
        for i in range(len(X_fit)):
            if active[i] and i not in used and np.array_equal(X_fit[i], x) and y_fit[i] == t:
                used.add(i)
                out.append(i)
                break
        else:
            out.append(-1)
    return np.array(out)


def test_locate_rows_matches_brute_force_with_duplicates():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (300, 3)).astype(float)      # only 8 distinct feature rows
    y = rng.integers(0, 2, 300)
    active = rng.random(300) > 0.2
    req = rng.choice(np.flatnonzero(active), 60, replace=False)
    got = locate_rows(X, y, X[req], y[req], active_mask=active)
    assert np.array_equal(got, _brute_force(X, y, X[req], y[req], active))
    assert len(set(got.tolist())) == 60 and active[got].all()
    assert np.array_equal(X[got], X[req]) and np.array_equal(y[got], y[req])


def test_locate_rows_multiset_and_missing():
    X = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
    y = np.array([0, 1, 0])
    assert np.array_equal(locate_rows(X, y, X[[2, 0]], y[[2, 0]]), [0, 2])
    with pytest.raises(ValueError, match="duplicate beyond the copies"):
        locate_rows(X, y, X[[0, 0, 0]], y[[0, 0, 0]])
    with pytest.raises(ValueError, match="not among the remaining training rows"):
        locate_rows(X, y, X[[0]], y[[0]], active_mask=[False, True, False])
    assert np.array_equal(locate_rows(X, y, [[1.0, 2.0], [9.0, 9.0]], [1, 1], missing="ignore"),
                          [-1, -1])           # wrong label, unknown row
    assert np.array_equal(locate_rows(X, None, [[1.0, 2.0]], None), [0])


def test_locate_rows_dtypes_signed_zero_nan_sparse_and_2d_labels():
    X = np.array([[0.0, np.nan, 1.0], [-0.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    Y = np.array([["a", "x"], ["b", "y"], ["a", "y"]])
    req = np.array([[-0.0, 2.0, 3.0], [0.0, np.nan, 1.0]])
    assert np.array_equal(locate_rows(X, Y, req, Y[[1, 0]]), [1, 0])
    assert np.array_equal(locate_rows(sp.csr_matrix(np.nan_to_num(X)), Y,
                                      np.nan_to_num(req), Y[[1, 0]]), [1, 0])
    Xi = np.arange(12).reshape(4, 3)
    assert np.array_equal(locate_rows(Xi, [0, 1, 0, 1], Xi[[3]].astype(np.float32), [1]), [3])
    with pytest.raises(ValueError, match="features"):
        locate_rows(Xi, [0, 1, 0, 1], [[1.0, 2.0]], [0])


def test_locate_rows_survives_hash_collisions(monkeypatch):
    monkeypatch.setattr(rows_module, "_hash_dense", lambda X: np.zeros(len(X), np.uint64))
    rng = np.random.default_rng(1)
    X = rng.integers(0, 3, (50, 2)).astype(float)
    y = rng.integers(0, 2, 50)
    req = rng.choice(50, 15, replace=False)
    got = locate_rows(X, y, X[req], y[req])
    assert np.array_equal(X[got], X[req]) and np.array_equal(y[got], y[req])
    assert len(set(got.tolist())) == 15


def test_locate_rows_is_fast_on_large_data():
    X = np.random.default_rng(2).normal(size=(20000, 200))
    y = np.zeros(20000, int)
    start = time.perf_counter()
    got = locate_rows(X, y, X[::-50], y[::-50])
    assert np.array_equal(got, np.arange(20000)[::-50])
    assert time.perf_counter() - start < 5.0


# ============================================================================ ForgetSplit
def test_forget_split_random():
    X, y = np.zeros((101, 2)), np.arange(101) % 3
    cv = ForgetSplit(n_splits=4, forget_size=0.1, random_state=0)
    assert cv.get_n_splits() == 4
    splits = list(cv.split(X, y))
    for train, test in splits:
        assert np.array_equal(train, np.arange(101))
        assert len(test) == 11 and len(np.unique(test)) == 11 and np.isin(test, train).all()
    assert len({tuple(t) for _, t in splits}) == 4
    again = list(ForgetSplit(n_splits=4, forget_size=0.1, random_state=0).split(X, y))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    _, test = next(ForgetSplit(1, forget_size=7, random_state=0).split(X))
    assert len(test) == 7


def test_forget_split_stratified_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [100, 60, 40])
    cv = ForgetSplit(n_splits=3, forget_size=0.1, strategy="stratified", random_state=0)
    for _, test in cv.split(np.zeros((200, 1)), y):
        assert Counter(y[test].tolist()) == {0: 10, 1: 6, 2: 4}


def test_forget_split_single_class_removal():
    y = np.repeat([0, 1, 2], [100, 60, 40])
    X = np.zeros((200, 1))
    cv = ForgetSplit(n_splits=2, forget_size=0.5, strategy="class", forget_class=1,
                     random_state=0)
    for train, test in cv.split(X, y):
        assert len(train) == 200 and set(y[test].tolist()) == {1} and len(test) == 30
    chosen = {int(y[t][0]) for _, t in ForgetSplit(20, forget_size=0.1, strategy="class",
                                                   random_state=0).split(X, y)}
    assert chosen == {0, 1, 2}
    Y = np.c_[y, y % 2]
    _, test = next(ForgetSplit(1, forget_size=5, strategy="class", class_column=1,
                               forget_class=0, random_state=0).split(X, Y))
    assert len(test) == 5 and (Y[test, 1] == 0).all()
    with pytest.raises(ValueError, match="not a class"):
        next(ForgetSplit(1, strategy="class", forget_class=7).split(X, y))
    with pytest.raises(ValueError, match="needs y"):
        next(ForgetSplit(1, strategy="class").split(X))
    with pytest.raises(ValueError, match="strategy"):
        next(ForgetSplit(1, strategy="kfold").split(X, y))


def test_forget_split_refuses_to_leave_a_single_class():
    X = np.zeros((40, 1))
    y = np.repeat([0, 1], 20)
    with pytest.raises(ValueError, match="single class"):
        next(ForgetSplit(1, forget_size=1.0, strategy="class", random_state=0).split(X, y))
    with pytest.raises(ValueError, match=r"single class \(column 1\)"):
        next(ForgetSplit(1, forget_size=1.0, strategy="class", class_column=1,
                         random_state=0).split(X, np.c_[np.arange(40) % 3, y]))
    # held-out rows count as removed too: 38 of the 39 other rows held out leave one row
    with pytest.raises(ValueError, match="single class"):
        next(ForgetSplit(1, forget_size=1, strategy="class", forget_class=1, holdout_size=38,
                         random_state=0).split(X, y))
    # part of a class, or a whole class of three, is fine
    _, test = next(ForgetSplit(1, forget_size=0.5, strategy="class", forget_class=1,
                               random_state=0).split(X, y))
    assert len(test) == 10
    y3 = np.arange(40) % 3
    _, test = next(ForgetSplit(1, forget_size=1.0, strategy="class", forget_class=2,
                               random_state=0).split(X, y3))
    assert np.array_equal(test, np.flatnonzero(y3 == 2))


def test_forget_split_holdout():
    X, y = np.zeros((100, 1)), np.arange(100) % 2
    cv = ForgetSplit(n_splits=3, forget_size=0.1, holdout_size=0.2, random_state=0)
    for train, test in cv.split(X, y):
        S, H = test[:10], test[10:]
        assert len(H) == 20 and len(train) == 80
        assert np.isin(S, train).all() and not np.isin(H, train).any()
        assert np.array_equal(np.sort(np.r_[train, H]), np.arange(100))


# ============================================================================ GridSearchCV
def _search(memory, cv=None, scoring=None, refit="sim"):
    return GridSearchCV(
        UnlearnableClassifier(CountingLR(), keep_training_data=True, memory=memory),
        {"epsilon": np.logspace(-2, 1, 13)},
        scoring=scoring or {"sim": similarity_ratio_scorer, "conf": confusion_distance_scorer},
        refit=refit, cv=cv or ForgetSplit(n_splits=3, forget_size=0.05, random_state=0),
        error_score="raise")


def _cache_entries(location) -> Counter:
    """Results stored by joblib.Memory, per cached function."""
    return Counter(p.parent.parent.name for p in Path(location).rglob("output.pkl"))


def test_grid_search_snippet_agrees_with_the_sweep_and_counts_fits(cancer, tmp_path):
    X, y = cancer
    # without memory: one fit per candidate and split + the refit; references cached in-process
    clear_reference_cache()
    CountingLR.n_fits = 0
    plain = _search(None).fit(X, y)
    assert reference_cache_info()["fits"] == 3                # one reference per split
    assert CountingLR.n_fits == 13 * 3 + 1 + 3

    # with memory: every candidate, split and the refit share one fit (ForgetSplit trains on
    # all rows), and the references are cached on disk too
    clear_reference_cache()
    CountingLR.n_fits = 0
    cached = _search(Memory(tmp_path, verbose=0)).fit(X, y)
    assert CountingLR.n_fits == 1 + 3
    assert _cache_entries(tmp_path) == {"_fit_and_build_portable": 1, "_fit_reference": 3}
    clear_reference_cache()
    CountingLR.n_fits = 0
    _search(Memory(tmp_path, verbose=0)).fit(X, y)
    assert CountingLR.n_fits == 0                            # a second search fits nothing

    # the fast path: one fit in all, same numbers as GridSearchCV
    CountingLR.n_fits = 0
    sweep = epsilon_sweep(UnlearnableClassifier(CountingLR(), keep_training_data=True), X, y,
                          epsilons=np.logspace(-2, 1, 13),
                          scoring={"sim": similarity_ratio_scorer,
                                   "conf": confusion_distance_scorer},
                          refit="sim", cv=ForgetSplit(n_splits=3, forget_size=0.05,
                                                      random_state=0))
    assert sweep.n_fits == 1 and CountingLR.n_fits == 1       # references come from the cache
    for search in (plain, cached):
        assert search.best_params_["epsilon"] == sweep.best_epsilon
        assert search.best_index_ == sweep.best_index
        assert search.best_score_ == sweep.best_score
        for key, value in sweep.cv_results.items():
            if key.startswith(("split", "mean_test", "std_test", "rank_test")):
                assert np.array_equal(search.cv_results_[key], value), key
    assert np.array_equal(sweep.cv_results["param_epsilon"], np.logspace(-2, 1, 13))
    # a meaningful optimum: inside the grid, and far better than epsilon -> 0 or the largest
    means = sweep.cv_results["mean_test_sim"]
    assert 0 < sweep.best_index < 12
    assert means[sweep.best_index] > means[0] + 0.5 and means[sweep.best_index] > means[-1]


def test_sweep_best_epsilon_is_the_newton_step_for_ggn(cancer):
    X, y = cancer
    eps = np.logspace(-1, 1, 9)
    res = epsilon_sweep(UnlearnableClassifier(LogisticRegression(), curvature="ggn",
                                              keep_training_data=True),
                        X, y, epsilons=eps, scoring=["parameter_distance", "similarity_ratio"],
                        cv=2)
    assert res.refit_metric == "parameter_distance" and res.best_epsilon == 1.0
    assert list(res.cv_results["rank_test_parameter_distance"]).index(1) == 4


def test_sweep_plain_callable_scorers_and_errors(cancer):
    X, y = cancer
    clf = UnlearnableClassifier(LogisticRegression(), keep_training_data=True)
    eps = [0.1, 1.0]

    def plain(estimator, X, y):              # no score_epsilons: called per epsilon
        return similarity_ratio_scorer(estimator, X, y)

    a = epsilon_sweep(clf, X, y, epsilons=eps, scoring=plain, cv=2)
    b = epsilon_sweep(clf, X, y, epsilons=eps, scoring=similarity_ratio_scorer, cv=2)
    assert np.array_equal(a.cv_results["mean_test_score"], b.cv_results["mean_test_score"])
    assert clf.epsilon == 1.0 and not hasattr(clf, "estimator_")
    with pytest.raises(ValueError, match="refit"):
        epsilon_sweep(clf, X, y, epsilons=eps, scoring=["similarity_ratio"], refit="auc", cv=2)
    with pytest.raises(ValueError, match="unknown scorer"):
        epsilon_sweep(clf, X, y, epsilons=eps, scoring=["auc"], cv=2)
    with pytest.raises(TypeError, match="epsilon"):
        epsilon_sweep(LogisticRegression(), X, y, epsilons=eps, cv=2)


def test_sweep_with_the_prediction_scorers_by_name(cancer):
    X, y = cancer
    eps = np.logspace(-1, 1, 9)
    res = epsilon_sweep(UnlearnableClassifier(LogisticRegression(), curvature="ggn",
                                              keep_training_data=True),
                        X, y, epsilons=eps, scoring=["forget_retain", "prediction_distance"],
                        cv=ForgetSplit(n_splits=2, forget_size=0.02, random_state=0))
    assert res.refit_metric == "forget_retain" and res.best_epsilon == 1.0
    assert np.argmax(res.cv_results["mean_test_prediction_distance"]) == 4
    assert np.all(res.cv_results["mean_test_forget_retain"][[0, -1]] < -0.5)


def test_membership_scorer_with_holdout_in_grid_search(cancer):
    X, y = cancer
    cv = ForgetSplit(n_splits=2, forget_size=0.05, holdout_size=0.1, random_state=0)
    search = GridSearchCV(UnlearnableClassifier(LogisticRegression(), curvature="ggn",
                                                keep_training_data=True),
                          {"epsilon": [0.0, 1.0, 30.0]}, cv=cv, error_score="raise",
                          scoring={"mia": membership_inference_scorer,
                                   "par": parameter_distance_scorer}, refit="par").fit(X, y)
    assert search.best_params_ == {"epsilon": 1.0}
    assert np.all(search.cv_results_["mean_test_mia"] <= 0)


def test_plot_epsilon_sweep(cancer):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = cancer
    res = epsilon_sweep(UnlearnableClassifier(LogisticRegression(), keep_training_data=True),
                        X, y, epsilons=[0.1, 1.0, 10.0], cv=2)
    ax = plot_epsilon_sweep(res)
    assert ax.get_xscale() == "log"
    sim_line, = ax.get_lines()[:1]
    assert np.allclose(sim_line.get_ydata(), -res.cv_results["mean_test_similarity_ratio"])
    assert np.allclose(ax.right_ax.get_lines()[0].get_ydata(),
                       -res.cv_results["mean_test_parameter_distance"])
    ax2 = plot_epsilon_sweep(res.cv_results, distance=None)
    assert not hasattr(ax2, "right_ax")
    with pytest.raises(KeyError, match="auc"):
        plot_epsilon_sweep(res, similarity="auc")
    plt.close("all")


def test_sweep_and_grid_search_on_a_pipeline():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), UnlearnableClassifier(LogisticRegression(),
                                                                 keep_training_data=True))
    cv = ForgetSplit(n_splits=2, forget_size=0.05, random_state=1)
    eps = [0.1, 0.5, 2.0]
    res = epsilon_sweep(pipe, X, y, epsilons=eps, cv=cv)
    search = GridSearchCV(pipe, {"unlearnableclassifier__epsilon": eps}, cv=cv,
                          scoring=similarity_ratio_scorer, error_score="raise").fit(X, y)
    assert res.cv_results["params"][0] == {"unlearnableclassifier__epsilon": 0.1}
    assert np.array_equal(search.cv_results_["mean_test_score"],
                          res.cv_results["mean_test_similarity_ratio"])


# ============================================================================ nets
@pytest.fixture(scope="module")
def digits_nets():
    """Digits split, and the small skorch MLP fitted on the training part (SSSE, auto inverse)."""
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    from _nets import digits_net, fitted_digits_net

    return (*fitted_digits_net(), digits_net)


def test_sweep_default_scoring_follows_the_model_family(cancer, digits_nets):
    X, _, y, _, clf, _ = digits_nets
    cv = ForgetSplit(n_splits=1, forget_size=0.05, random_state=0)
    lin = epsilon_sweep(UnlearnableClassifier(LogisticRegression(), keep_training_data=True),
                        *cancer, epsilons=[0.0, 1.0], cv=cv)
    assert lin.refit_metric == "similarity_ratio"
    assert "mean_test_parameter_distance" in lin.cv_results
    net = epsilon_sweep(clone(clf), X, y, epsilons=[0.0, 1.0], cv=cv)
    assert net.refit_metric == "forget_retain"
    assert "mean_test_similarity_ratio" in net.cv_results
    assert net.cv_results["mean_test_forget_retain"][0] == -1.0    # epsilon = 0: the original
    with pytest.raises(ValueError, match="refit='parameter_distance'"):
        epsilon_sweep(clone(clf), X, y, epsilons=[0.0], cv=cv, refit="parameter_distance")


@pytest.mark.parametrize("strategy", ["random", "class"])
def test_tuned_epsilon_on_a_net_costs_at_most_two_points_of_test_accuracy(digits_nets, strategy):
    """Tune epsilon with the default scorer on the training data only, then forget a new set
    and compare with the net retrained without it on the untouched test rows (issue 12, 5)."""
    import torch

    X, X_test, y, y_test, clf, digits_net = digits_nets
    eps = np.concatenate([[0.0], np.logspace(-2, 4, 13)])
    if strategy == "random":
        cv = ForgetSplit(n_splits=2, forget_size=0.05, random_state=0)
        S = np.random.default_rng(1).choice(len(X), 60, replace=False)
        kept = np.ones(len(y_test), dtype=bool)
    else:   # the class to remove at evaluation is never one tuned on
        cv = ForgetSplit(n_splits=2, strategy="class", forget_size=1.0, random_state=0)
        tuned = {int(y[test][0]) for _, test in cv.split(X, y)}
        c = min(set(range(10)) - tuned)
        S = np.flatnonzero(y == c)
        kept = y_test != c
    sweep = epsilon_sweep(clone(clf), X, y, epsilons=eps, cv=cv)
    assert sweep.refit_metric == "forget_retain"
    unlearned = copy.deepcopy(clf).forget(X[S], y[S], epsilon=sweep.best_epsilon)
    keep = np.setdiff1d(np.arange(len(y)), S)
    torch.manual_seed(0)
    retrained = digits_net(classes=np.arange(10)).fit(X[keep], y[keep])
    acc_hat = unlearned.score(X_test[kept], y_test[kept])
    acc_re = retrained.score(X_test[kept], y_test[kept])
    assert acc_hat >= acc_re - 0.02, (sweep.best_epsilon, acc_hat, acc_re)
    # the sweep itself ranks the wrecking end of the grid below epsilon = 0
    fr = sweep.cv_results["mean_test_forget_retain"]
    assert np.all(fr[-3:] < fr[0])
