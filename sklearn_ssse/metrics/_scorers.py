"""Scorers ``(estimator, X, y) -> float`` that tune SSSE's ``epsilon`` with scikit-learn's CV tools.

A scorer receives a fitted :class:`~sklearn_ssse.UnlearnableClassifier` (or a
:class:`~sklearn.pipeline.Pipeline` ending in one) and the forget set ``S`` as rows ``(X, y)``,
which :class:`~sklearn_ssse.model_selection.ForgetSplit` hands to ``GridSearchCV`` as the "test"
fold. It then

1. finds ``S`` inside the stored training data (``keep_training_data=True``) by exact multiset
   row matching (:func:`sklearn_ssse._rows.locate_rows`); test rows that are not training rows
   are held-out data (only the membership-inference scorer uses them);
2. forgets ``S`` *functionally*: ``delta = forget_direction(S)`` and the unlearned model is
   ``with_parameters(theta + epsilon * delta)``, the estimator itself is never modified;
3. fits the retrained reference ``clone(estimator.estimator)`` on the remaining rows ``D \\ S``
   once per forget set: it does not depend on epsilon, so it is cached (in ``estimator.memory``
   when given, and in a small in-process cache);
4. compares the unlearned, original and retrained models with :mod:`sklearn_ssse.metrics`.

Every scorer is "higher is better": distances and ratios are negated.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, check_memory

from .._rows import RowIndex
from ._metrics import (
    _parameters,
    confusion_distance,
    membership_inference_auc,
    normalized_confusion_distance,
    normalized_parameter_distance,
    similarity_ratio,
)

__all__ = [
    "UnlearningScorer",
    "clear_reference_cache",
    "confusion_distance_scorer",
    "make_unlearning_scorer",
    "membership_inference_scorer",
    "normalized_confusion_distance_scorer",
    "parameter_distance_scorer",
    "reference_cache_info",
    "similarity_ratio_scorer",
]

_KINDS = ("similarity_ratio", "confusion_distance", "normalized_confusion_distance",
          "parameter_distance", "membership_inference")

# ============================================================================== caches
_REFERENCE_CACHE_SIZE = 16
_lock = threading.Lock()
_references: OrderedDict = OrderedDict()
_stats = {"hits": 0, "misses": 0, "fits": 0}
_index_memo: dict = {}  # id(X_fit_) -> (weakref to X_fit_, weakref to y_fit_, RowIndex, digest)


def reference_cache_info() -> dict:
    """Counters of the in-process cache of retrained reference models.

    Returns
    -------
    info : dict
        ``hits`` and ``misses`` of the in-process cache, ``fits``: references actually fitted in
        this process (a miss served by ``estimator.memory`` from disk is not a fit), ``size``.

    Examples
    --------
    >>> from sklearn_ssse.metrics import clear_reference_cache, reference_cache_info
    >>> clear_reference_cache()
    >>> reference_cache_info()
    {'hits': 0, 'misses': 0, 'fits': 0, 'size': 0}
    """
    with _lock:
        return {**_stats, "size": len(_references)}


def clear_reference_cache() -> None:
    """Empty the in-process cache of retrained references and reset its counters.

    Examples
    --------
    >>> from sklearn_ssse.metrics import clear_reference_cache
    >>> clear_reference_cache()
    """
    with _lock:
        _references.clear()
        _index_memo.clear()
        for k in _stats:
            _stats[k] = 0


def _training_index(X_fit, y_fit) -> tuple[RowIndex, str]:
    """Row index and content digest of a stored training set, memoised per array object."""
    key = id(X_fit)
    with _lock:
        hit = _index_memo.get(key)
        if hit is not None and hit[0]() is X_fit and hit[1]() is y_fit:
            return hit[2], hit[3]
    index = RowIndex(X_fit, y_fit)
    digest = joblib.hash((X_fit, y_fit))
    with _lock:
        for k in [k for k, v in _index_memo.items() if v[0]() is None or v[1]() is None]:
            del _index_memo[k]
        try:
            _index_memo[key] = (weakref.ref(X_fit), weakref.ref(y_fit), index, digest)
        except TypeError:  # not weak-referenceable: no memo
            pass
    return index, digest


def _fit_reference(estimator, X, y):
    """Fit the retrained reference (module-level so that joblib.Memory can cache it)."""
    with _lock:
        _stats["fits"] += 1
    return clone(estimator).fit(X, y)


def _reference(clf, remaining: np.ndarray, digest: str):
    """``clone(clf.estimator)`` fitted on the remaining rows, cached (independent of epsilon)."""
    key = joblib.hash((clone(clf.estimator), digest, np.packbits(remaining)))
    with _lock:
        if key in _references:
            _references.move_to_end(key)
            _stats["hits"] += 1
            return _references[key]
        _stats["misses"] += 1
    X, y = clf.X_fit_[remaining], clf.y_fit_[remaining]
    fit = _fit_reference
    if getattr(clf, "memory", None) is not None:
        fit = check_memory(clf.memory).cache(_fit_reference)
    model = fit(clone(clf.estimator), X, y)
    with _lock:
        _references[key] = model
        while len(_references) > _REFERENCE_CACHE_SIZE:
            _references.popitem(last=False)
    return model


# ============================================================================== context
class _Outputs:
    """A model's outputs on one set, computed once (quacks like a fitted classifier)."""

    def __init__(self, model, X):
        self.model, self.X = model, X
        self.classes_ = getattr(model, "classes_", None)
        self._proba = self._pred = None

    def predict_proba(self, X=None):
        if self._proba is None:
            self._proba = self.model.predict_proba(self.X)
        return self._proba

    def predict(self, X=None):
        if self._pred is None:
            self._pred = self.model.predict(self.X)
        return self._pred


_NEEDS_DATA = ("{name} needs the training data to locate the forget set and retrain the "
               "reference model, but the estimator did not keep it: fit "
               "UnlearnableClassifier(..., keep_training_data=True).")


def _unwrap(estimator, X):
    """The UnlearnableClassifier and X in its input space (a Pipeline's last step)."""
    if isinstance(estimator, Pipeline):
        X = estimator[:-1].transform(X) if len(estimator) > 1 else X
        estimator = estimator[-1]
    if not hasattr(estimator, "forget_direction"):
        raise TypeError(f"unlearning scorers need an UnlearnableClassifier (or a Pipeline ending "
                        f"in one), got {type(estimator).__name__}.")
    check_is_fitted(estimator)
    return estimator, X


class _Context:
    """Everything a scorer needs for one (estimator, forget set), independent of epsilon."""

    def __init__(self, estimator, X, y, *, name: str, reference: bool):
        clf, X = _unwrap(estimator, X)
        if not hasattr(clf, "X_fit_"):
            raise ValueError(_NEEDS_DATA.format(name=name))
        self.clf = clf
        X_fit, y_fit = clf.X_fit_, clf.y_fit_
        X = np.asarray(X, dtype=X_fit.dtype)
        y = np.asarray(y)
        index, digest = _training_index(X_fit, y_fit)
        rows = index.locate(X, y, clf.fit_mask_, missing="ignore")
        found = rows >= 0
        if not found.any():
            raise ValueError(
                f"{name}: none of the {len(rows)} test rows is a (remaining) training row of the "
                "estimator. The test fold must be a forget set inside the training data: use "
                "cv=ForgetSplit(...)."
            )
        self.rows = rows[found]
        self.X_S, self.y_S = X_fit[self.rows], y_fit[self.rows]
        self.X_H, self.y_H = X[~found], y[~found]
        self.theta = clf.get_parameters()
        delta = clf.forget_direction(self.X_S, self.y_S)
        self.delta = delta.detach().cpu().numpy() if hasattr(delta, "detach") else np.asarray(delta)
        self.original = clf.estimator_
        self.retrained = None
        if reference:
            remaining = np.asarray(clf.fit_mask_, dtype=bool).copy()
            remaining[self.rows] = False
            self.retrained = _reference(clf, remaining, digest)

    def unlearned(self, epsilon: float):
        theta = self.theta + float(epsilon) * self.delta.astype(self.theta.dtype, copy=False)
        return self.clf.with_parameters(theta)

    def retrained_parameters(self) -> np.ndarray:
        backend = type(self.clf.backend_)(self.retrained, parameters=self.clf.parameters,
                                          dtype=self.clf.dtype)
        return _parameters(backend.get_parameters())


# ============================================================================== scorer
class UnlearningScorer:
    """A GridSearchCV scorer comparing an SSSE-unlearned model with the retrained reference.

    Build instances with :func:`make_unlearning_scorer`; see the module docstring for what a call
    does. Calling it returns a "higher is better" float for the estimator's own ``epsilon``;
    :meth:`score_epsilons` evaluates many epsilons in closed form from one erasure direction.

    Parameters
    ----------
    kind : {"similarity_ratio", "confusion_distance", "normalized_confusion_distance", \
"parameter_distance", "membership_inference"}
        The quantity (see :func:`make_unlearning_scorer`).
    metric : {"log_loss", "roc_auc", "accuracy"}, default="log_loss"
        Performance measure of the similarity ratio.
    attack : {"loss", "confidence"}, default="loss"
        Membership-inference attack.
    target : float or "retrained", default="retrained"
        Membership-inference AUC aimed at.
    """

    def __init__(self, kind: str, *, metric: str = "log_loss", attack: str = "loss",
                 target: float | str = "retrained"):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
        if metric not in ("roc_auc", "accuracy", "log_loss"):
            raise ValueError(f"metric must be 'roc_auc', 'accuracy' or 'log_loss', got {metric!r}.")
        if attack not in ("loss", "confidence"):
            raise ValueError(f"attack must be 'loss' or 'confidence', got {attack!r}.")
        if not (target == "retrained" or isinstance(target, (int, float))):
            raise ValueError(f"target must be a number or 'retrained', got {target!r}.")
        self.kind, self.metric, self.attack, self.target = kind, metric, attack, target

    def __repr__(self) -> str:
        opts = {"similarity_ratio": f", metric={self.metric!r}",
                "membership_inference": f", attack={self.attack!r}, target={self.target!r}"}
        return f"make_unlearning_scorer({self.kind!r}{opts.get(self.kind, '')})"

    @property
    def _name(self) -> str:
        return f"{self.kind}_scorer"

    def __call__(self, estimator, X, y, **kwargs) -> float:
        """Score ``estimator`` (with its own ``epsilon``) on the forget set ``(X, y)``.

        Parameters
        ----------
        estimator : UnlearnableClassifier or Pipeline
            Fitted with ``keep_training_data=True``; not modified.
        X : array-like of shape (n_samples, n_features)
            The forget set (plus held-out rows for membership inference).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its labels.
        **kwargs : dict
            Ignored (metadata such as ``sample_weight`` routed by scikit-learn).

        Returns
        -------
        score : float
            Higher is better.
        """
        clf = estimator[-1] if isinstance(estimator, Pipeline) else estimator
        epsilon = getattr(clf, "epsilon", 1.0)  # a non-unlearnable estimator fails in the context
        return float(self.score_epsilons(estimator, X, y, [epsilon])[0])

    def score_epsilons(self, estimator, X, y, epsilons) -> np.ndarray:
        """Scores for several epsilons from one erasure direction and one reference.

        Parameters
        ----------
        estimator : UnlearnableClassifier or Pipeline
            Fitted with ``keep_training_data=True``; not modified.
        X : array-like of shape (n_samples, n_features)
            The forget set (plus held-out rows for membership inference).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its labels.
        epsilons : array-like of float
            Step sizes to evaluate.

        Returns
        -------
        scores : ndarray of shape (n_epsilons,)
            ``scores[i]`` equals ``self(estimator with epsilon=epsilons[i], X, y)``.
        """
        epsilons = np.asarray(epsilons, dtype=float).reshape(-1)
        need_ref = self.kind != "membership_inference" or self.target == "retrained"
        ctx = _Context(estimator, X, y, name=self._name, reference=need_ref)
        cache: dict = {}
        return np.array([self._score(ctx, e, cache) for e in epsilons], dtype=float)

    def _score(self, ctx: _Context, epsilon: float, cache: dict) -> float:
        kind = self.kind
        hat = ctx.unlearned(epsilon)
        if kind == "parameter_distance":
            if "theta_re" not in cache:
                cache["theta_re"] = ctx.retrained_parameters()
            theta_hat = ctx.theta + float(epsilon) * ctx.delta
            return -normalized_parameter_distance(theta_hat, ctx.theta, cache["theta_re"])
        if kind == "membership_inference":
            if len(ctx.y_H) == 0:
                raise ValueError("membership_inference_scorer needs held-out rows next to the "
                                 "forget set: use ForgetSplit(holdout_size=...).")
            auc = membership_inference_auc(hat, ctx.X_S, ctx.y_S, ctx.X_H, ctx.y_H,
                                           attack=self.attack)
            if self.target == "retrained":
                if "auc_re" not in cache:
                    cache["auc_re"] = membership_inference_auc(
                        ctx.retrained, ctx.X_S, ctx.y_S, ctx.X_H, ctx.y_H, attack=self.attack)
                target = cache["auc_re"]
            else:
                target = float(self.target)
            return -abs(auc - target)
        if "orig" not in cache:
            cache["orig"] = _Outputs(ctx.original, ctx.X_S)
            cache["re"] = _Outputs(ctx.retrained, ctx.X_S)
        orig, re = cache["orig"], cache["re"]
        if kind == "similarity_ratio":
            return -similarity_ratio(ctx.y_S, hat, orig, re, X=ctx.X_S, metric=self.metric)
        if kind == "confusion_distance":
            return -confusion_distance(ctx.y_S, hat, re, X=ctx.X_S)
        return -normalized_confusion_distance(ctx.y_S, hat, orig, re, X=ctx.X_S)


def make_unlearning_scorer(kind: str, *, metric: str = "log_loss", attack: str = "loss",
                           target: float | str = "retrained") -> UnlearningScorer:
    """Make a scorer ``(estimator, X, y) -> float`` for tuning SSSE (higher is better).

    ``X, y`` is the forget set ``S`` (the "test" fold of
    :class:`~sklearn_ssse.model_selection.ForgetSplit`); the estimator must be a fitted
    :class:`~sklearn_ssse.UnlearnableClassifier` with ``keep_training_data=True`` (or a Pipeline
    ending in one; the preprocessing is then not refitted for the reference). The estimator is
    never modified: ``S`` is forgotten on a functional copy with parameters
    ``theta + epsilon * delta``.

    Parameters
    ----------
    kind : str
        What is scored, always on ``S``:

        - ``"similarity_ratio"``: ``-similarity_ratio(hat, original, retrained)``;
        - ``"confusion_distance"``: ``-confusion_distance(hat, retrained)``;
        - ``"normalized_confusion_distance"``: ``-normalized_confusion_distance(hat, original,
          retrained)``;
        - ``"parameter_distance"``: ``-normalized_parameter_distance(hat, original, retrained)``;
        - ``"membership_inference"``: ``-|membership_inference_auc(hat, S, H) - target|`` with
          the held-out rows ``H`` of the test fold (``ForgetSplit(holdout_size=...)``).
    metric : {"log_loss", "roc_auc", "accuracy"}, default="log_loss"
        Performance measure ``P_S`` of the similarity ratio. The scorer defaults to the log-loss
        (unlike :func:`~sklearn_ssse.metrics.similarity_ratio`, which follows the design's ROC
        AUC) because the forget set is *training* data: on well separated data the original and
        the retrained model both rank it perfectly (AUC 1 on ``S``), so an AUC-based ratio is
        ``0/0 = 0.5`` for every epsilon and cannot select one, while the log-loss still moves
        continuously with epsilon. ``"accuracy"`` and ``"roc_auc"`` remain available; ROC AUC
        is undefined on a single-class forget set (``ForgetSplit(strategy="class")``).
    attack : {"loss", "confidence"}, default="loss"
        Membership-inference attack score.
    target : float or "retrained", default="retrained"
        Membership-inference AUC aimed at: the retrained model's AUC on the same sets (what
        exact unlearning would give; it is near, not at, 0.5), or a number such as 0.5.

    Returns
    -------
    scorer : UnlearningScorer
        Callable ``(estimator, X, y)``; also has ``score_epsilons(estimator, X, y, epsilons)``.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import scale
    >>> from sklearn_ssse import UnlearnableClassifier
    >>> from sklearn_ssse.metrics import make_unlearning_scorer
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> X = scale(X)
    >>> clf = UnlearnableClassifier(LogisticRegression(), curvature="ggn",
    ...                             keep_training_data=True).fit(X, y)
    >>> scorer = make_unlearning_scorer("parameter_distance")
    >>> s0, s1 = scorer.score_epsilons(clf, X[:20], y[:20], [0.0, 1.0])
    >>> float(s0)               # epsilon = 0: the original model, distance 1
    -1.0
    >>> bool(s1 > -0.3)         # the Newton step lands much closer to the retrained model
    True
    """
    return UnlearningScorer(kind, metric=metric, attack=attack, target=target)


similarity_ratio_scorer = make_unlearning_scorer("similarity_ratio")
confusion_distance_scorer = make_unlearning_scorer("confusion_distance")
normalized_confusion_distance_scorer = make_unlearning_scorer("normalized_confusion_distance")
parameter_distance_scorer = make_unlearning_scorer("parameter_distance")
membership_inference_scorer = make_unlearning_scorer("membership_inference")
