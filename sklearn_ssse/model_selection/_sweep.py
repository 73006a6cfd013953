"""Closed-form epsilon sweep: every epsilon of a grid from one fit and one direction per split."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping

import joblib
import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch, _safe_indexing

from ..metrics._scorers import (
    _KINDS,
    UnlearningScorer,
    make_unlearning_scorer,
    parameter_distance_scorer,
    similarity_ratio_scorer,
)
from ._split import ForgetSplit

__all__ = ["epsilon_sweep", "plot_epsilon_sweep"]

DEFAULT_EPSILONS = np.logspace(-2, 1, 13)


def _default_scoring(fitted) -> dict[str, Callable]:
    """The default scorers of the fitted estimator's model family (its backend's
    ``default_scoring``): for linear models the similarity ratio and the parameter distance,
    for nets ``forget_retain`` first (see :func:`epsilon_sweep`)."""
    clf = fitted[-1] if isinstance(fitted, Pipeline) else fitted
    names = getattr(getattr(clf, "backend_", None), "default_scoring", None)
    if names is None:
        return {"similarity_ratio": similarity_ratio_scorer,
                "parameter_distance": parameter_distance_scorer}
    return {name: make_unlearning_scorer(name) for name in names}


def _check_scoring(scoring) -> dict[str, Callable] | None:
    if scoring is None:
        return None  # the model family's default, known once a split is fitted
    if isinstance(scoring, str):
        scoring = [scoring]
    if callable(scoring):
        return {"score": scoring}
    if isinstance(scoring, Mapping):
        out = {}
        for name, s in scoring.items():
            out[name] = make_unlearning_scorer(s) if isinstance(s, str) else s
            if not callable(out[name]):
                raise TypeError(f"scorer {name!r} is not callable.")
        return out
    out = {}
    for name in scoring:
        if name not in _KINDS:
            raise ValueError(f"unknown scorer name {name!r}; known: {_KINDS}.")
        out[name] = make_unlearning_scorer(name)
    return out


def _check_refit(refit, names: list[str]) -> str:
    """The name of the scorer that selects epsilon (``True``/``False``: the first)."""
    if refit is True or refit is False:
        return names[0]
    if refit in names:
        return refit
    raise ValueError(f"refit={refit!r} is not one of the scorer names {names}.")


def _epsilon_param(estimator) -> str:
    if isinstance(estimator, Pipeline):
        return f"{estimator.steps[-1][0]}__epsilon"
    if "epsilon" not in estimator.get_params(deep=False):
        raise TypeError(f"{type(estimator).__name__} has no epsilon parameter; pass an "
                        "UnlearnableClassifier or a Pipeline ending in one.")
    return "epsilon"


def _with_epsilon(fitted, epsilon: float):
    """A shallow copy of a fitted estimator whose ``epsilon`` is changed (original untouched)."""
    if isinstance(fitted, Pipeline):
        pipe = copy.copy(fitted)
        name, last = fitted.steps[-1]
        pipe.steps = list(fitted.steps[:-1]) + [(name, _with_epsilon(last, epsilon))]
        return pipe
    c = copy.copy(fitted)
    c.epsilon = float(epsilon)
    return c


def _rank(means: np.ndarray) -> np.ndarray:
    """scikit-learn's ranking of cv results (NaN ties with the worst; 1 = best)."""
    if np.isnan(means).all():
        return np.ones_like(means, dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32, copy=False)


def epsilon_sweep(estimator, X, y, *, epsilons=None, scoring=None, cv=None,
                  refit: str | bool = True) -> Bunch:
    """Score a whole grid of epsilons per split in closed form, like ``GridSearchCV`` would.

    For each split of ``cv`` the estimator is fitted once (splits with the same training indices
    share the fit; ``memory=`` shares it across calls), each unlearning scorer computes the
    erasure direction ``delta`` and the retrained reference once, and every epsilon is then
    evaluated as ``theta + epsilon * delta``. The scores, means, standard deviations and ranks
    equal those of ``GridSearchCV(estimator, {"epsilon": epsilons}, scoring=..., cv=cv)`` (same
    scorers, same splits), at the cost of one fit per distinct training set instead of one per
    candidate and split.

    Parameters
    ----------
    estimator : UnlearnableClassifier or Pipeline
        Unfitted; use ``keep_training_data=True`` (the scorers need the training data).
    X : array-like of shape (n_samples, n_features)
        Data.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Labels.
    epsilons : array-like of float, default=None
        The grid; ``None`` uses ``np.logspace(-2, 1, 13)``.
    scoring : callable, str, list of str or dict, default=None
        Scorers as in ``GridSearchCV``: a callable ``(estimator, X, y)``, names of unlearning
        scorers (``"similarity_ratio"``, ``"confusion_distance"``,
        ``"normalized_confusion_distance"``, ``"parameter_distance"``,
        ``"membership_inference"``, ``"prediction_distance"``, ``"forget_retain"``), or a dict
        name -> scorer. ``None``: the defaults of the model family, the first selecting
        epsilon. Linear models: ``{"similarity_ratio": similarity_ratio_scorer,
        "parameter_distance": parameter_distance_scorer}``. Torch nets (skorch):
        ``{"forget_retain": forget_retain_scorer, "similarity_ratio": similarity_ratio_scorer}``
        -- on a net the similarity ratio keeps improving toward its 0.5 saturation as the net
        is wrecked and the parameter distance is meaningless (two retrains are as far apart as
        the original), while ``forget_retain`` also compares the predictions on the rows that
        stay, so an epsilon that wrecks the net scores below ``epsilon = 0``. Scorers without
        ``score_epsilons`` are called once per epsilon on a shallow copy of the fitted model.
    cv : int, ForgetSplit or splitter, default=None
        ``None``: ``ForgetSplit(n_splits=3, forget_size=0.05, random_state=0)``; an int: that
        many ``ForgetSplit`` splits (``random_state=0``).
    refit : str or bool, default=True
        Name of the scorer that selects the best epsilon (``True``: the first one), as
        ``GridSearchCV``'s ``refit`` for several metrics; ties go to the smallest index.

    Returns
    -------
    result : Bunch
        ``cv_results``: dict in the format of ``GridSearchCV.cv_results_`` (``params``,
        ``param_epsilon``, ``split<i>_test_<name>``, ``mean_/std_/rank_test_<name>``,
        ``mean_/std_fit_time``, ``mean_/std_score_time``); ``best_index``, ``best_epsilon``,
        ``best_score``, ``refit_metric``; ``n_fits``: estimator fits performed.

    See Also
    --------
    plot_epsilon_sweep : Plots the result.
    ForgetSplit : The forget sets.
    sklearn_ssse.metrics.make_unlearning_scorer : The scorers.
    sklearn.model_selection.GridSearchCV : The same search, one fit per candidate.

    Notes
    -----
    SSSE [1]_ erases ``S`` with ``theta* + epsilon * delta``: the direction
    ``delta`` does not depend on epsilon, so one fit and one direction per forget set
    serve the whole grid. With ``curvature="ggn"`` on a convex model,
    ``epsilon = 1`` is the influence-function (Newton) step [2]_ [3]_.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860
    .. [2] P. W. Koh and P. Liang, "Understanding Black-box Predictions via Influence
       Functions", ICML 2017. https://arxiv.org/abs/1703.04730
    .. [3] C. Guo, T. Goldstein, A. Hannun and L. van der Maaten, "Certified Data Removal from
       Machine Learning Models", ICML 2020. https://arxiv.org/abs/1911.03030

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import scale
    >>> from sklearn_ssse import UnlearnableClassifier
    >>> from sklearn_ssse.model_selection import ForgetSplit, epsilon_sweep
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = UnlearnableClassifier(LogisticRegression(), curvature="ggn", keep_training_data=True)
    >>> res = epsilon_sweep(clf, scale(X), y, epsilons=np.logspace(-1, 1, 9),
    ...                     cv=ForgetSplit(n_splits=2, forget_size=0.05, random_state=0))
    >>> res.n_fits, res.refit_metric
    (1, 'similarity_ratio')
    >>> float(res.best_epsilon)   # the Newton step (GGN curvature) is epsilon = 1
    1.0
    """
    epsilons = DEFAULT_EPSILONS if epsilons is None else np.asarray(epsilons, dtype=float)
    epsilons = epsilons.reshape(-1)
    if epsilons.size == 0:
        raise ValueError("epsilons is empty.")
    scorers = _check_scoring(scoring)
    if cv is None:
        cv = ForgetSplit(n_splits=3, forget_size=0.05, random_state=0)
    elif isinstance(cv, int) and not isinstance(cv, bool):
        cv = ForgetSplit(n_splits=cv, forget_size=0.05, random_state=0)
    if not (refit is True or refit is False or isinstance(refit, str)):
        raise ValueError(f"refit must be a bool or a scorer name, got {refit!r}.")
    if scorers is not None:
        _check_refit(refit, list(scorers))
    param = _epsilon_param(estimator)

    splits = list(cv.split(X, y))
    if not splits:
        raise ValueError("cv yielded no split.")
    n_eps, n_splits = len(epsilons), len(splits)
    scores: dict[str, np.ndarray] = {}
    fit_times = np.zeros(n_splits)
    score_times = np.zeros(n_splits)
    fitted: dict[str, object] = {}
    n_fits = 0
    for i, (train, test) in enumerate(splits):
        key = joblib.hash(np.asarray(train))
        if key not in fitted:
            start = time.perf_counter()
            fitted[key] = clone(estimator).fit(_safe_indexing(X, train), _safe_indexing(y, train))
            fit_times[i] = time.perf_counter() - start
            n_fits += 1
        model = fitted[key]
        if scorers is None:
            scorers = _default_scoring(model)
            _check_refit(refit, list(scorers))
        if not scores:
            scores = {name: np.empty((n_eps, n_splits)) for name in scorers}
        X_test, y_test = _safe_indexing(X, test), _safe_indexing(y, test)
        start = time.perf_counter()
        for name, scorer in scorers.items():
            if isinstance(scorer, UnlearningScorer) or hasattr(scorer, "score_epsilons"):
                scores[name][:, i] = scorer.score_epsilons(model, X_test, y_test, epsilons)
            else:
                scores[name][:, i] = [scorer(_with_epsilon(model, e), X_test, y_test)
                                      for e in epsilons]
        score_times[i] = (time.perf_counter() - start) / n_eps

    names = list(scorers)
    refit_metric = _check_refit(refit, names)
    results: dict = {
        "mean_fit_time": np.full(n_eps, fit_times.mean()),
        "std_fit_time": np.full(n_eps, fit_times.std()),
        "mean_score_time": np.full(n_eps, score_times.mean()),
        "std_score_time": np.full(n_eps, score_times.std()),
        f"param_{param}": np.ma.MaskedArray(epsilons.copy(), mask=np.zeros(n_eps, dtype=bool)),
        "params": [{param: float(e)} for e in epsilons],
    }
    for name in names:
        arr = scores[name]
        for i in range(n_splits):
            results[f"split{i}_test_{name}"] = arr[:, i].copy()
        means = np.average(arr, axis=1)
        results[f"mean_test_{name}"] = means
        results[f"std_test_{name}"] = np.sqrt(np.average((arr - means[:, None]) ** 2, axis=1))
        results[f"rank_test_{name}"] = _rank(means)
    best = int(results[f"rank_test_{refit_metric}"].argmin())
    return Bunch(cv_results=results, best_index=best, best_epsilon=float(epsilons[best]),
                 best_score=float(results[f"mean_test_{refit_metric}"][best]),
                 refit_metric=refit_metric, n_fits=n_fits)


def plot_epsilon_sweep(results, *, similarity: str = "similarity_ratio",
                       distance: str | None = "parameter_distance", ax=None):
    """Plot the similarity ratio and the normalized parameter distance against epsilon.

    Needs matplotlib (``pip install sklearn-ssse[plot]``). The scores stored in the results are
    "higher is better" (negated); the plot shows the metric values themselves (lower is better)
    with a band of one standard deviation across splits, and marks the best epsilon of the
    similarity ratio.

    Parameters
    ----------
    results : Bunch or dict
        The result of :func:`epsilon_sweep`, or a ``cv_results_`` dict of a ``GridSearchCV`` over
        ``epsilon`` with unlearning scorers.
    similarity : str, default="similarity_ratio"
        Scorer name of the similarity ratio (left axis).
    distance : str or None, default="parameter_distance"
        Scorer name of the normalized parameter distance (right axis); ``None`` omits it.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when ``None``.

    Returns
    -------
    ax : matplotlib Axes
        The axes of the similarity ratio (the parameter distance is on ``ax.right_ax``).

    See Also
    --------
    epsilon_sweep : Computes the result plotted.
    sklearn_ssse.metrics.similarity_ratio, sklearn_ssse.metrics.normalized_parameter_distance
        The measures plotted.

    Notes
    -----
    The two measures of the SSSE paper's figures [1]_.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ssse.model_selection import plot_epsilon_sweep
    >>> eps = np.array([0.1, 1.0, 10.0])
    >>> cv_results = {"param_epsilon": eps,
    ...               "mean_test_similarity_ratio": np.array([-0.9, -0.1, -0.5]),
    ...               "std_test_similarity_ratio": np.zeros(3)}
    >>> ax = plot_epsilon_sweep(cv_results, distance=None)  # doctest: +SKIP
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plot_epsilon_sweep needs matplotlib: pip install "
                          "'sklearn-ssse[plot]'") from exc
    cv_results = results["cv_results"] if "cv_results" in results else results
    keys = [k for k in cv_results if k.startswith("param_") and k.endswith("epsilon")]
    if not keys:
        raise ValueError("the results hold no epsilon parameter (param_...epsilon).")
    eps = np.asarray(cv_results[keys[0]], dtype=float)
    order = np.argsort(eps)
    eps = eps[order]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))

    def series(name):
        if f"mean_test_{name}" not in cv_results:
            raise KeyError(f"no scores named {name!r} in the results.")
        mean = -np.asarray(cv_results[f"mean_test_{name}"], dtype=float)[order]
        std = np.asarray(cv_results.get(f"std_test_{name}", np.zeros_like(mean)), float)[order]
        return mean, std

    mean, std = series(similarity)
    line = ax.plot(eps, mean, "o-", color="C0", label="similarity ratio")[0]
    ax.fill_between(eps, mean - std, mean + std, color="C0", alpha=0.2)
    ax.axvline(eps[int(np.argmin(mean))], color="C0", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("epsilon")
    ax.set_ylabel("similarity ratio (0 = retrained, 1 = original)")
    handles = [line]
    if distance is not None:
        right = ax.twinx()
        dmean, dstd = series(distance)
        handles.append(right.plot(eps, dmean, "s--", color="C1",
                                  label="normalized parameter distance")[0])
        right.fill_between(eps, dmean - dstd, dmean + dstd, color="C1", alpha=0.2)
        right.set_ylabel("normalized parameter distance")
        ax.right_ax = right
    ax.legend(handles=handles, loc="best")
    ax.set_title("SSSE epsilon sweep")
    return ax
