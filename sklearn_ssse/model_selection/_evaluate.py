"""Forget part of a data set over a grid of epsilons and compare with retraining (one call)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch

from .._backends._base import BaseBackend
from ..metrics import (
    make_unlearning_scorer,
    membership_inference_auc,
    normalized_confusion_distance,
    similarity_ratio,
)
from ..metrics._scorers import _Context, _reference, _training_index, _unwrap
from ._split import ForgetSplit
from ._sweep import epsilon_sweep

__all__ = ["evaluate_forgetting", "plot_forgetting_evaluation"]

#: default epsilon grids of the linear models (random removal / single-class removal); a model
#: family may have its own (its backend's ``evaluation_epsilons``: nets use a log grid)
DEFAULT_EPSILONS_RATE = BaseBackend.evaluation_epsilons("rate")
DEFAULT_EPSILONS_CLASS = BaseBackend.evaluation_epsilons("class")

#: measures per epsilon, in the order of the result's arrays
MEASURES = ("similarity_ratio", "parameter_distance", "confusion_distance", "forget_retain",
            "certificate", "log_loss_forget", "accuracy_forget", "accuracy_test", "mia_auc")

#: the unlearning scorer (a backend's ``evaluation_scoring``) -> the measure of the result
_SELECTION_MEASURES = {"parameter_distance": "parameter_distance",
                       "normalized_confusion_distance": "confusion_distance",
                       "forget_retain": "forget_retain", "similarity_ratio": "similarity_ratio"}

#: what each measure that can select epsilon is (figure axes, the command line's report)
SELECTION_LABELS = {
    "parameter_distance": "normalized parameter distance",
    "confusion_distance": "normalized confusion distance on S",
    "forget_retain": "forget/retain prediction distance (S and kept rows)",
    "similarity_ratio": "similarity ratio on S",
}


def _mia(model, X_S, y_S, X_H, y_H) -> float:
    """Loss-attack membership-inference AUC, NaN where undefined (a model without the class)."""
    if len(y_H) == 0:
        return float("nan")
    try:
        return membership_inference_auc(model, X_S, y_S, X_H, y_H)
    except ValueError:
        return float("nan")


def _log_loss(model, X, y) -> float:
    """Mean log-loss, NaN where undefined (labels the model does not know)."""
    try:
        return float(log_loss(y, model.predict_proba(X), labels=model.classes_))
    except ValueError:
        return float("nan")


class _EpsilonScorer:
    """A scorer of the closed-form sweep: ``score_epsilons``; a call scores the own epsilon."""

    def __call__(self, estimator, X, y):
        clf = estimator[-1] if isinstance(estimator, Pipeline) else estimator
        return float(self.score_epsilons(estimator, X, y, [clf.epsilon])[0])


class _OrNaN(_EpsilonScorer):
    """An unlearning scorer whose undefined scores are NaN instead of a ValueError."""

    def __init__(self, scorer):
        self.scorer = scorer

    def score_epsilons(self, estimator, X, y, epsilons):
        try:
            return self.scorer.score_epsilons(estimator, X, y, epsilons)
        except ValueError:
            return np.full(len(epsilons), np.nan)


class _ModelMeasures:
    """The measures that are not unlearning scorers: accuracies and membership inference.

    :func:`epsilon_sweep` calls :meth:`column` objects like scorers; the first call builds the
    scorers' context (forget set located in the training data, erasure direction, retrained
    reference, timed separately) and keeps it for the rows of the original and retrained models.
    """

    def __init__(self, X_test, y_test, heldout, progress):
        self.X_test, self.y_test, self.heldout = X_test, y_test, heldout
        self.progress = progress
        self.values: dict | None = None
        self.ctx = None
        self.timings: dict = {}

    def _compute(self, estimator, X, y, epsilons) -> dict:
        self.progress.update()  # the fit is done
        clf, X_test = _unwrap(estimator, self.X_test)  # in the model's input space
        X_H, y_H = X_test[self.heldout], self.y_test[self.heldout]
        self.progress.set_description(f"erasure direction (k={len(y)})")
        digest = _training_index(clf.X_fit_, clf.y_fit_)[1]  # memoised: not in the timing
        t0 = time.perf_counter()
        ctx = _Context(estimator, X, y, name="evaluate_forgetting", reference=False)
        self.timings["forget"] = time.perf_counter() - t0
        self.progress.update()
        self.progress.set_description(f"retrain without S ({int(ctx.remaining.sum())} samples)")
        ctx._check_remaining_classes(clf.y_fit_[ctx.remaining])
        t0 = time.perf_counter()
        ctx.retrained = _reference(clf, ctx.remaining, digest)
        self.timings["retrain"] = time.perf_counter() - t0
        self.progress.update()
        self.ctx, self.X_test_in, self.X_H, self.y_H = ctx, X_test, X_H, y_H
        self.progress.set_description(f"epsilon grid ({len(epsilons)} values)")
        out = {"log_loss_forget": [], "accuracy_forget": [], "accuracy_test": [], "mia_auc": []}
        for eps in epsilons:
            model = ctx.unlearned(eps)
            for key, value in self.measure(model).items():
                out[key].append(value)
            self.progress.update()
        return {k: np.array(v, dtype=float) for k, v in out.items()}

    def measure(self, model) -> dict:
        ctx = self.ctx
        return {"log_loss_forget": _log_loss(model, ctx.X_S, ctx.y_S),
                "accuracy_forget": float(model.score(ctx.X_S, ctx.y_S)),
                "accuracy_test": float(model.score(self.X_test_in, self.y_test)),
                "mia_auc": _mia(model, ctx.X_S, ctx.y_S, self.X_H, self.y_H)}

    def column(self, key: str):
        measures = self

        class _Column(_EpsilonScorer):
            def score_epsilons(self, estimator, X, y, epsilons):
                if measures.values is None:
                    measures.values = measures._compute(estimator, X, y, epsilons)
                return measures.values[key]

        return _Column()


class _NoProgress:
    def set_description(self, _):
        pass

    def update(self, n=1):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoProgress()
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluate", unit="step", leave=False, file=sys.stderr)


def _family(estimator):
    """The backend class of the model an unfitted estimator (or pipeline) wraps."""
    from .._backends import select_backend
    from .._unlearnable import _final

    clf = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    return select_backend(_final(clf.estimator))


def _default_epsilons(estimator, mode: str) -> np.ndarray:
    """The model family's default grid (its backend's ``evaluation_epsilons``)."""
    return np.asarray(_family(estimator).evaluation_epsilons(mode), dtype=float)


def _selection(estimator, mode: str) -> str:
    """The measure that selects epsilon: the model family's choice (its backend's
    ``evaluation_scoring``), read from the unfitted estimator."""
    kind = _family(estimator).evaluation_scoring(mode)
    if kind not in _SELECTION_MEASURES:
        raise ValueError(f"the model family selects epsilon by {kind!r}, which "
                         f"evaluate_forgetting does not compute ({sorted(_SELECTION_MEASURES)})")
    return _SELECTION_MEASURES[kind]


def evaluate_forgetting(estimator, X, y, X_test=None, y_test=None, *,
                        forget_rate: float | None = 0.05, forget_class=None, epsilons=None,
                        metric: str = "auto", test_size: float = 0.25, random_state: int = 0,
                        progress: bool = False) -> Bunch:
    """Forget part of a data set with SSSE over a grid of epsilons and compare with retraining.

    The estimator is fitted once on the training data; the forget set ``S`` is a random share of
    it (``forget_rate``) or every training sample of one class (``forget_class``), drawn by
    :class:`ForgetSplit`. The reference is retrained from scratch without ``S``. Every epsilon
    is evaluated in closed form from one erasure direction (``theta* + epsilon * delta``) by
    :func:`epsilon_sweep` with the unlearning scorers of :mod:`sklearn_ssse.metrics`; on top, the
    accuracies on ``S`` and on the test set and a membership-inference AUC are reported, for
    every epsilon and for the original and the retrained model. ``sklearn-ssse evaluate`` prints
    this result as a table.

    The best epsilon is selected by the measure the model family names (its backend's
    ``evaluation_scoring``). Linear models: the normalized parameter distance to the retrained
    model (one optimum, so the distance measures forgetting), or on a class removal the
    normalized confusion distance on ``S``. Nets (skorch): ``forget_retain``, their default
    scorer of :func:`epsilon_sweep`, which compares the predictions with the retrained net's on
    ``S`` *and* on rows that stay. A net's parameter distance measures nothing (two retrains
    with different seeds are as far apart as the original), and the confusion distance on
    ``S`` alone rewards a step that wrecks the net (on the digits MLP, forgetting class 3: it
    picks epsilon = 5, test accuracy 0.73 against the retrained net's 0.87; ``forget_retain``
    picks 2, 0.88).

    Parameters
    ----------
    estimator : UnlearnableClassifier or Pipeline
        Unfitted; a :class:`~sklearn.pipeline.Pipeline` ending in an
        :class:`~sklearn_ssse.UnlearnableClassifier` has its preprocessing fitted once on the
        training data (``S`` included) and frozen for the retrained reference. It is cloned,
        with ``keep_training_data=True``.
    X, y : array-like
        Data. Without ``X_test`` a stratified ``test_size`` share is held out as test set.
    X_test, y_test : array-like, default=None
        Test set (held-out data; also the non-members of the membership-inference attack).
    forget_rate : float, default=0.05
        Share of the training samples to forget (ignored when ``forget_class`` is given).
    forget_class : object, default=None
        Forget every training sample of this class instead (single-class removal); matched
        against the classes of ``y`` by value or by its string form.
    epsilons : array-like of float, default=None
        The grid; ``None``: the model family's default. Linear models: 0 to 2 in steps of 0.25
        (random removal) or 0, 0.5, 1, 2, 5, 10, 20, 50, 100 (class removal, which needs larger
        steps). Nets: 0 and six values per decade from 0.01 to 10 (their useful steps are
        smaller, see the user guide's section on nets).
    metric : {"auto", "log_loss", "accuracy", "roc_auc"}, default="auto"
        Performance measure of the similarity ratio on ``S``. ``"auto"``: log-loss for random
        removal (the original and retrained models often both classify ``S`` perfectly, so
        accuracy and AUC cannot tell them apart), accuracy for class removal (the retrained model
        never predicts the class, so its log-loss on ``S`` is infinite).
    test_size : float, default=0.25
        Held-out share when no test set is given.
    random_state : int, default=0
        Seed of the test split and of the forget set.
    progress : bool, default=False
        Show a tqdm progress bar on stderr.

    Returns
    -------
    result : Bunch
        Per epsilon (arrays in the order of ``epsilons``): ``similarity_ratio`` on ``S`` (0
        = behaves like the retrained model, 1 = like the original), ``parameter_distance``
        (normalized; on a class removal only the classes the reference still knows are
        compared), ``confusion_distance`` (normalized confusion distance on ``S``),
        ``forget_retain`` (the mean of the prediction distances to the retrained model on ``S``
        and on up to 1000 remaining training rows, each ``KL(re || hat) / KL(re || orig)``; 0 =
        predicts like the retrained model, 1 = like the original), ``certificate`` (the
        relative certificate of :meth:`~sklearn_ssse.UnlearnableClassifier.certify`: computed
        without the retrained model, to compare with ``parameter_distance``; linear models),
        ``log_loss_forget`` (mean log-loss on ``S``), ``accuracy_forget``, ``accuracy_test``
        and ``mia_auc`` (loss-attack membership-inference AUC of ``S`` against the test set, or
        the test samples of the class); NaN where undefined. ``reference``: the same measures
        for ``"original"`` and ``"retrained"`` (dict of dicts). ``best_epsilon``,
        ``best_index`` and ``selected_by``: the name of the measure whose lowest value selected
        it (``"parameter_distance"``, ``"confusion_distance"`` or ``"forget_retain"``, see
        above); ``mode`` (``"rate"`` or ``"class"``), ``metric``, ``forget_rate``,
        ``forget_class``, ``n_train``, ``n_forget``, ``n_test``,
        ``timings`` (seconds: ``fit_curvature``, ``retrain``, ``forget``), ``estimator``
        (the fitted :class:`~sklearn_ssse.UnlearnableClassifier`), ``retrained`` (the
        reference model), ``inverse`` (the estimator's ``inverse_``) and ``cv_results`` of
        :func:`epsilon_sweep`.

    Raises
    ------
    ValueError
        If ``forget_rate`` is not in (0, 1), ``forget_class`` is not a class of ``y``, or the
        data without ``S`` holds a single class.
    TypeError
        If the wrapped model belongs to no supported family.

    See Also
    --------
    epsilon_sweep : the same grid as scores, over several forget sets.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_ssse import UnlearnableClassifier
    >>> from sklearn_ssse.model_selection import evaluate_forgetting
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> est = make_pipeline(StandardScaler(), UnlearnableClassifier(LogisticRegression(C=0.1)))
    >>> res = evaluate_forgetting(est, X, y, forget_rate=0.05, epsilons=[0, 0.5, 1, 1.5])
    >>> res.n_train, res.n_forget, res.best_epsilon   # GGN curvature: epsilon = 1 is Newton's
    (426, 22, 1.0)
    >>> res.selected_by   # a linear model: the distance to the retrained parameters
    'parameter_distance'
    >>> float(res.parameter_distance[0])   # epsilon = 0 is the original model
    1.0
    """
    X, y = np.asarray(X), np.asarray(y)
    if X_test is None:
        X, X_test, y, y_test = train_test_split(X, y, test_size=test_size,
                                                random_state=random_state, stratify=y)
    X_test, y_test = np.asarray(X_test), np.asarray(y_test)
    mode = "rate" if forget_class is None else "class"
    if mode == "class":
        classes = np.unique(y)
        match = [c for c in classes.tolist() if c == forget_class or str(c) == str(forget_class)]
        if not match:
            raise ValueError(f"forget_class={forget_class!r} is not a class of y "
                             f"({classes.tolist()})")
        forget_class = match[0]
        forget_rate = None
        cv = ForgetSplit(n_splits=1, forget_size=1.0, strategy="class",
                         forget_class=forget_class, random_state=random_state)
        heldout = np.flatnonzero(y_test == forget_class)
    else:
        if forget_rate is None or not 0 < forget_rate < 1:
            raise ValueError(f"forget_rate must be in (0, 1), got {forget_rate}")
        cv = ForgetSplit(n_splits=1, forget_size=forget_rate, random_state=random_state)
        heldout = np.arange(len(y_test))
    if metric == "auto":
        metric = "log_loss" if mode == "rate" else "accuracy"
    if epsilons is None:
        epsilons = _default_epsilons(estimator, mode)
    epsilons = np.unique(np.asarray(epsilons, dtype=float))
    estimator = clone(estimator)
    last = f"{estimator.steps[-1][0]}__" if isinstance(estimator, Pipeline) else ""
    estimator.set_params(**{f"{last}keep_training_data": True})
    selected_by = _selection(estimator, mode)

    with _progress_bar(3 + len(epsilons), progress) as bar:
        measures = _ModelMeasures(X_test, y_test, heldout, bar)
        scoring = {
            # first: it times the erasure direction and the retrain, which the scorers reuse
            "log_loss_forget": measures.column("log_loss_forget"),
            "accuracy_forget": measures.column("accuracy_forget"),
            "accuracy_test": measures.column("accuracy_test"),
            "mia_auc": measures.column("mia_auc"),
            "similarity_ratio": _OrNaN(make_unlearning_scorer("similarity_ratio",
                                                              metric=metric)),
            "parameter_distance": _OrNaN(make_unlearning_scorer("parameter_distance")),
            "confusion_distance": _OrNaN(make_unlearning_scorer(
                "normalized_confusion_distance")),
            "forget_retain": _OrNaN(make_unlearning_scorer("forget_retain")),
            # no retraining: the residual gradient on the remaining rows (linear models)
            "certificate": _OrNaN(make_unlearning_scorer("certificate")),
        }
        curvature = estimator.get_params().get(f"{last}curvature", "")
        bar.set_description(f"fit + {curvature} curvature ({len(X)} samples)")
        sweep = epsilon_sweep(estimator, X, y, epsilons=epsilons, scoring=scoring, cv=cv,
                              refit=selected_by)
    ctx = measures.ctx
    cv_results = sweep.cv_results
    # the scorers are "higher is better": distances and ratios are negated
    sign = {"similarity_ratio": -1, "parameter_distance": -1, "confusion_distance": -1,
            "forget_retain": -1, "certificate": -1}
    per_eps = {k: sign.get(k, 1) * np.asarray(cv_results[f"split0_test_{k}"], dtype=float) + 0.0
               for k in MEASURES}
    orig, re = ctx.original, ctx.retrained
    y_S, X_S = ctx.y_S, ctx.X_S

    def defined(fn):
        try:
            return float(fn())
        except ValueError:
            return float("nan")

    reference = {
        "original": {"similarity_ratio": 1.0, "parameter_distance": 1.0,
                     "confusion_distance": 1.0, "forget_retain": 1.0, "certificate": 1.0,
                     **measures.measure(orig)},
        "retrained": {
            "similarity_ratio": defined(lambda: similarity_ratio(y_S, re, orig, re, X=X_S,
                                                                 metric=metric)),
            "parameter_distance": 0.0,
            "forget_retain": 0.0,
            "certificate": 0.0,
            "confusion_distance": defined(lambda: normalized_confusion_distance(
                y_S, re, orig, re, X=X_S)),
            **measures.measure(re)},
    }
    timings = {"fit_curvature": float(cv_results["mean_fit_time"][0]), **measures.timings}
    return Bunch(epsilons=epsilons, **per_eps, reference=reference,
                 best_index=sweep.best_index, best_epsilon=sweep.best_epsilon,
                 selected_by=selected_by, mode=mode, metric=metric, forget_rate=forget_rate,
                 forget_class=forget_class, n_train=len(X), n_forget=len(y_S),
                 n_test=len(y_test), timings=timings, estimator=ctx.clf, retrained=re,
                 inverse=getattr(ctx.clf, "inverse_", None), cv_results=cv_results)


def plot_forgetting_evaluation(result, path=None, *, title: str | None = None):
    """Plot an :func:`evaluate_forgetting` result: similarity ratio and distance against epsilon.

    Needs matplotlib (``pip install 'sklearn-ssse[plot]'``). Left panel: the similarity ratio
    on ``S`` (0 = like the retrained model, 1 = like the original). Right panel: the measure
    that selected the best epsilon (``result.selected_by``): for linear models the normalized
    parameter distance to the retrained model (random removal) or the normalized confusion
    distance on ``S`` (class removal), for nets the forget/retain prediction distance. The
    best epsilon is marked.

    Parameters
    ----------
    result : Bunch
        Returned by :func:`evaluate_forgetting`.
    path : str or path-like, default=None
        Write the figure there (PNG); ``None`` only returns it.
    title : str, default=None
        Figure title.

    Returns
    -------
    fig : matplotlib Figure
        The figure.
    """
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plot_forgetting_evaluation needs matplotlib: pip install "
                          "'sklearn-ssse[plot]'") from exc
    if path is not None and matplotlib.get_backend().lower() not in (
            "agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    eps = np.asarray(result.epsilons)
    class_mode = result.mode == "class"
    dist = result[result.selected_by]
    dist_label = SELECTION_LABELS[result.selected_by]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    pos = eps[eps > 0]
    log_x = pos.size > 1 and pos.max() / pos.min() > 50
    for ax, values, label in ((axes[0], result.similarity_ratio,
                               f"similarity ratio on S ({result.metric})"),
                              (axes[1], dist, dist_label)):
        ax.plot(eps, values, "o-", color="C0", label="SSSE")
        ax.axhline(0, color="C2", lw=1, ls="--", label="retrained (target)")
        ax.axhline(1, color="C3", lw=1, ls=":", label="original")
        ax.axvline(result.best_epsilon, color="0.5", lw=1, ls="-.",
                   label=f"best epsilon = {result.best_epsilon:g}")
        if log_x:  # 0 then log-spaced values: linear up to the first positive epsilon
            ax.set_xscale("symlog", linthresh=float(pos.min()), linscale=0.5)
            ax.set_xlim(0 if eps.min() == 0 else pos.min() / 1.5, eps.max() * 1.5)
            lo, hi = np.ceil(np.log10(pos.min())), np.floor(np.log10(pos.max()))
            ticks = ([0.0] if eps.min() == 0 else []) + [10.0 ** k for k in
                                                         np.arange(lo, hi + 1)]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("epsilon")
        ax.set_ylabel(label)
        top = np.nanmax(values) if np.isfinite(values).any() else 1.0
        ax.set_ylim(-0.05, max(1.1, min(float(top) * 1.05, 5.0)))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title or f"SSSE: forget {result.n_forget} of {result.n_train} samples "
                 f"({'one class' if class_mode else 'random'})")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
