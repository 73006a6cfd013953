"""Scorers ``(estimator, X, y) -> float`` that tune SSSE's ``epsilon`` with scikit-learn's CV tools.

A scorer receives a fitted :class:`~sklearn_ssse.UnlearnableClassifier` (or a
:class:`~sklearn.pipeline.Pipeline` ending in one) and the forget set ``S`` as rows ``(X, y)``,
which :class:`~sklearn_ssse.model_selection.ForgetSplit` hands to ``GridSearchCV`` as the "test"
fold. It then

1. finds ``S`` inside the stored training data (``keep_training_data=True``) by exact multiset
   row matching (:func:`sklearn_ssse._rows.locate_rows`); test rows that are not training rows
   are held-out data (the membership-inference and forget/retain scorers use them);
2. forgets ``S`` *functionally*: ``delta = forget_direction(S)`` and the unlearned model is
   ``with_parameters(theta + epsilon * delta)``, the estimator itself is never modified;
3. fits the retrained reference ``clone(estimator.estimator)`` on the remaining rows ``D \\ S``
   once per forget set: it does not depend on epsilon, so it is cached (in ``estimator.memory``
   when given, and in a small in-process cache);
4. compares the unlearned, original and retrained models with :mod:`sklearn_ssse.metrics`.

Every scorer is "higher is better": distances and ratios are negated. No scorer returns NaN: an
undefined quantity raises a ``ValueError`` (``GridSearchCV`` reports it as a warning and a NaN
score unless ``error_score="raise"``).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import joblib
import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, check_memory

from .._rows import RowIndex
from ._metrics import (
    _kl_ratio,
    _mean_kl,
    _parameters,
    _proba_outputs,
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
    "forget_retain_scorer",
    "make_unlearning_scorer",
    "membership_inference_scorer",
    "normalized_confusion_distance_scorer",
    "parameter_distance_scorer",
    "prediction_distance_scorer",
    "reference_cache_info",
    "similarity_ratio_scorer",
]

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


def _fit_reference(estimator, X, y, sample_weight=None):
    """Fit the retrained reference (module-level so that joblib.Memory can cache it), with
    the rows' sample weights of the fit when the model was fitted with some."""
    with _lock:
        _stats["fits"] += 1
    if sample_weight is None:
        return clone(estimator).fit(X, y)
    return clone(estimator).fit(X, y, sample_weight=sample_weight)


def _with_fit_class_weight(template, fitted):
    """``class_weight="balanced"`` resolved to the weights of the fit: the forget step keeps
    them (they define the objective it steps on), so the reference must too, instead of
    re-balancing on the remaining rows (another objective)."""
    if not (isinstance(getattr(template, "class_weight", None), str)
            and template.class_weight == "balanced"):
        return template
    w = getattr(fitted, "_ssse_class_weight", None)
    if w is None:
        w = getattr(fitted, "_expanded_class_weight", None)
    if w is None or not hasattr(fitted, "classes_"):
        return template
    return template.set_params(class_weight=dict(zip(np.asarray(fitted.classes_).tolist(),
                                                     np.asarray(w, dtype=float).tolist())))


def _reference(clf, remaining: np.ndarray, digest: str):
    """``clone(clf.estimator)`` fitted on the remaining rows, cached (independent of epsilon).

    The unfitted constructor estimator, not ``estimator_``: a skorch net given a module
    *instance* would otherwise start from the trained weights.  For a Pipeline, its last step
    on the kept (transformed) rows: the reference of a forget with frozen preprocessing.
    ``class_weight="balanced"`` keeps the weights of the fit (:func:`_with_fit_class_weight`),
    a model fitted with ``sample_weight`` refits the kept rows with their weights (looked up by
    the backend); the backend keeps the fitted estimator's output layout (a net's
    ``classes=``)."""
    template = clf.estimator[-1] if isinstance(clf.estimator, Pipeline) else clf.estimator
    template = _with_fit_class_weight(clone(template), clf.estimator_)
    template = clf.backend_.reference_estimator(template)  # keeps the output layout (classes)
    X, y = clf.X_fit_[remaining], clf.y_fit_[remaining]
    weights = getattr(clf.backend_, "sample_weights", None)
    weights = weights(X, y) if weights is not None else None
    key = joblib.hash((clone(template), digest, np.packbits(remaining), weights))
    with _lock:
        if key in _references:
            _references.move_to_end(key)
            _stats["hits"] += 1
            return _references[key]
        _stats["misses"] += 1
    fit = _fit_reference
    if getattr(clf, "memory", None) is not None:
        fit = check_memory(clf.memory).cache(_fit_reference)
    model = fit(clone(template), X, y, weights)
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
    pre = getattr(estimator, "preprocessor_", None)  # it wraps a Pipeline: frozen features
    if pre is not None:
        X = pre.transform(X)
    return estimator, X


class _Context:
    """Everything a scorer needs for one (estimator, forget set), independent of epsilon."""

    def __init__(self, estimator, X, y, *, name: str, reference: bool):
        clf, X = _unwrap(estimator, X)
        if not hasattr(clf, "X_fit_"):
            raise ValueError(_NEEDS_DATA.format(name=name))
        self.clf, self.name = clf, name
        X_fit, y_fit = clf.X_fit_, clf.y_fit_
        if sp.issparse(X):  # sparse rows stay sparse (CSR: row masks)
            X = sp.csr_matrix(X, dtype=X_fit.dtype)
            finite = np.isfinite(X.data)
            if not finite.all():
                owner = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
                bad = np.unique(owner[~finite])
            else:
                bad = np.zeros(0, dtype=int)
        else:
            X = np.asarray(X, dtype=X_fit.dtype)
            bad = np.zeros(0, dtype=int)
            if X.dtype.kind in "fc" and not np.isfinite(X).all():
                bad = np.flatnonzero(~np.isfinite(X.reshape(len(X), -1)).all(axis=1))
        y = np.asarray(y)
        if len(bad):
            raise ValueError(
                f"{name}: {len(bad)} test rows contain NaN or infinity (rows {bad[:5].tolist()}"
                f"{', ...' if len(bad) > 5 else ''}): such a row is neither a training row to "
                "forget nor a valid held-out row. Drop or impute them before scoring.")
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
        delta = clf._direction(self.X_S, self.y_S, transformed=True)  # rows of X_fit_
        # a net's direction stays a tensor on its device: every epsilon's parameters are
        # formed there (no round trip through NumPy per epsilon)
        self._device_step = None
        if hasattr(delta, "detach"):
            self._device_step = (clf.backend_.get_parameters(), delta.detach())
        self.delta = delta.detach().cpu().numpy() if hasattr(delta, "detach") else np.asarray(delta)
        self.original = clf.estimator_
        self.remaining = np.asarray(clf.fit_mask_, dtype=bool).copy()
        self.remaining[self.rows] = False
        self.retrained = None
        if reference:
            self._check_remaining_classes(y_fit[self.remaining])
            self.retrained = _reference(clf, self.remaining, digest)

    def _check_remaining_classes(self, y_rem) -> None:
        Y = y_rem.reshape(len(y_rem), -1)
        for j in range(Y.shape[1]):
            if len(np.unique(Y[:, j])) < 2:
                where = f" (output {j})" if Y.shape[1] > 1 else ""
                raise ValueError(
                    f"{self.name}: without the forget set the training data holds a single "
                    f"class{where}, so no reference can be retrained. Removing a whole class "
                    "needs at least 3 classes; for a binary problem forget part of a class "
                    "(ForgetSplit(strategy='class', forget_size < 1)).")

    def unlearned(self, epsilon: float):
        if self._device_step is not None:
            theta, delta = self._device_step
            return self.clf.with_parameters(theta + float(epsilon) * delta.to(theta.dtype))
        theta = self.theta + float(epsilon) * self.delta.astype(self.theta.dtype, copy=False)
        return self.clf.with_parameters(theta)

    def retrained_parameters(self) -> np.ndarray:
        backend = type(self.clf.backend_)(self.retrained, **self.clf._backend_kwargs)
        return _parameters(backend.get_parameters())

    def softmax_invariant(self) -> bool:
        """Whether the model's predictions ignore a common shift of its class rows (softmax).

        Probed on the model itself (no knowledge of the model family): every class row of each
        output with more than two classes is shifted by the same random vector.
        """
        classes = self.clf.classes_
        classes = classes if isinstance(classes, list) else [classes]
        rows = [1 if len(c) == 2 else len(c) for c in classes]
        p1 = len(self.theta) // sum(rows)
        if p1 * sum(rows) != len(self.theta) or max(rows) < 3:
            return True        # not a class-row layout: the metric reports it
        shift = np.random.RandomState(0).normal(size=p1)
        theta, off = self.theta.astype(np.float64, copy=True), 0
        for r in rows:
            if r > 2:
                theta[off:off + r * p1] += np.tile(shift, r)
            off += r * p1
        X = self.X_S[:20]
        a, b = self.clf.with_parameters(self.theta).predict_proba(X), \
            self.clf.with_parameters(theta).predict_proba(X)
        a, b = (a, b) if isinstance(a, list) else ([a], [b])
        return all(np.allclose(p, q, rtol=1e-6, atol=1e-9) for p, q in zip(a, b))

    def retained(self, n: int) -> np.ndarray:
        """Rows to check what is kept: the held-out rows of the test fold if any, else up to
        ``n`` remaining training rows drawn with a fixed seed."""
        if len(self.X_H):
            return self.X_H
        idx = np.flatnonzero(self.remaining)
        if len(idx) > n:
            idx = np.sort(np.random.RandomState(0).choice(idx, size=n, replace=False))
        return self.clf.X_fit_[idx]


# ============================================================================== registry
# one function per scorer kind: (scorer, context, epsilon, per-call cache) -> score (higher better)
def _on_forget_set(ctx: _Context, cache: dict) -> tuple:
    if "orig" not in cache:
        cache["orig"] = _Outputs(ctx.original, ctx.X_S)
        cache["re"] = _Outputs(ctx.retrained, ctx.X_S)
    return cache["orig"], cache["re"]


def _score_similarity_ratio(scorer, ctx, epsilon, cache) -> float:
    orig, re = _on_forget_set(ctx, cache)
    return -similarity_ratio(ctx.y_S, ctx.unlearned(epsilon), orig, re, X=ctx.X_S,
                             metric=scorer.metric)


def _score_confusion_distance(scorer, ctx, epsilon, cache) -> float:
    _, re = _on_forget_set(ctx, cache)
    return -confusion_distance(ctx.y_S, ctx.unlearned(epsilon), re, X=ctx.X_S)


def _score_normalized_confusion_distance(scorer, ctx, epsilon, cache) -> float:
    orig, re = _on_forget_set(ctx, cache)
    return -normalized_confusion_distance(ctx.y_S, ctx.unlearned(epsilon), orig, re, X=ctx.X_S)


def _score_parameter_distance(scorer, ctx, epsilon, cache) -> float:
    if "theta_re" not in cache:
        cache["theta_re"] = ctx.retrained_parameters()
        cache["centre"] = len(cache["theta_re"]) == len(ctx.theta) or ctx.softmax_invariant()
    theta_hat = ctx.theta + float(epsilon) * ctx.delta
    return -normalized_parameter_distance(
        theta_hat, ctx.theta, cache["theta_re"], classes=ctx.clf.classes_,
        retrained_classes=getattr(ctx.retrained, "classes_", None), centre=cache["centre"])


def _score_membership_inference(scorer, ctx, epsilon, cache) -> float:
    if len(ctx.y_H) == 0:
        raise ValueError("membership_inference_scorer needs held-out rows next to the "
                         "forget set: use ForgetSplit(holdout_size=...).")
    auc = membership_inference_auc(ctx.unlearned(epsilon), ctx.X_S, ctx.y_S, ctx.X_H, ctx.y_H,
                                   attack=scorer.attack)
    if scorer.target == "retrained":
        if "auc_re" not in cache:
            cache["auc_re"] = membership_inference_auc(ctx.retrained, ctx.X_S, ctx.y_S, ctx.X_H,
                                                       ctx.y_H, attack=scorer.attack)
        target = cache["auc_re"]
    else:
        target = float(scorer.target)
    return -abs(auc - target)


def _kl_to_reference(ctx: _Context, X, key: str, cache: dict, epsilon: float) -> float:
    """``KL(re || hat) / KL(re || orig)`` on rows ``X`` (reference outputs cached under key).

    A row where the unlearned model's probabilities are not finite (an epsilon large enough to
    overflow the net) counts as the largest divergence the clipping allows: such an epsilon
    scores below every finite model instead of failing the whole sweep."""
    if key not in cache:
        re = _proba_outputs(ctx.retrained, X, None)
        cache[key] = (re, _mean_kl(re, _proba_outputs(ctx.original, X, None)))
    re, to_original = cache[key]
    hat = _proba_outputs(ctx.unlearned(epsilon), X, None, finite=False)
    return _kl_ratio(_mean_kl(re, hat, diverged="max"), to_original)


def _score_prediction_distance(scorer, ctx, epsilon, cache) -> float:
    return -_kl_to_reference(ctx, ctx.X_S, "kl_S", cache, epsilon)


def _score_forget_retain(scorer, ctx, epsilon, cache) -> float:
    if "X_R" not in cache:
        cache["X_R"] = ctx.retained(scorer.n_retained)
    on_forget = _kl_to_reference(ctx, ctx.X_S, "kl_S", cache, epsilon)
    on_retained = _kl_to_reference(ctx, cache["X_R"], "kl_R", cache, epsilon)
    return -(on_forget + on_retained) / 2


def _score_certificate(scorer, ctx, epsilon, cache) -> float:
    from .._certificate import certificate

    if not getattr(ctx.clf.backend_, "certifiable", False):
        raise ValueError("certificate_scorer needs a convex model with a closed-form objective "
                         "(the scikit-learn linear models)")
    theta_hat = ctx.theta + float(epsilon) * ctx.delta
    cert, _, original, absent = certificate(
        ctx.clf, theta_hat, reference=ctx.theta, remaining=ctx.remaining, mu=cache.get("mu"),
        original=cache.get("original"), absent=cache.get("absent"))
    cache["mu"], cache["original"], cache["absent"] = cert.mu, original, absent
    if not np.isfinite(cert.relative):
        raise ValueError("certificate_scorer: the model before forgetting is already at the "
                         "optimum of the remaining rows, so the relative certificate is "
                         "undefined")
    return -cert.relative


_SCORE_FUNCS = {
    "similarity_ratio": _score_similarity_ratio,
    "confusion_distance": _score_confusion_distance,
    "normalized_confusion_distance": _score_normalized_confusion_distance,
    "parameter_distance": _score_parameter_distance,
    "membership_inference": _score_membership_inference,
    "prediction_distance": _score_prediction_distance,
    "forget_retain": _score_forget_retain,
    "certificate": _score_certificate,
}
_KINDS = tuple(_SCORE_FUNCS)


# ============================================================================== scorer
class UnlearningScorer:
    """A GridSearchCV scorer comparing an SSSE-unlearned model with the retrained reference.

    Build instances with :func:`make_unlearning_scorer`; see the module docstring for what a call
    does. Calling it returns a "higher is better" float for the estimator's own ``epsilon``;
    :meth:`score_epsilons` evaluates many epsilons in closed form from one erasure direction.
    It never returns NaN: a quantity that is undefined raises a ``ValueError`` instead.

    Parameters
    ----------
    kind : {"similarity_ratio", "confusion_distance", "normalized_confusion_distance", \
"parameter_distance", "membership_inference", "prediction_distance", "forget_retain", \
"certificate"}
        The quantity (see :func:`make_unlearning_scorer`).
    metric : {"log_loss", "roc_auc", "accuracy"}, default="log_loss"
        Performance measure of the similarity ratio.
    attack : {"loss", "confidence"}, default="loss"
        Membership-inference attack.
    target : float or "retrained", default="retrained"
        Membership-inference AUC aimed at.
    n_retained : int, default=1000
        Remaining training rows sampled by the ``"forget_retain"`` scorer.
    """

    def __init__(self, kind: str, *, metric: str = "log_loss", attack: str = "loss",
                 target: float | str = "retrained", n_retained: int = 1000):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
        if metric not in ("roc_auc", "accuracy", "log_loss"):
            raise ValueError(f"metric must be 'roc_auc', 'accuracy' or 'log_loss', got {metric!r}.")
        if attack not in ("loss", "confidence"):
            raise ValueError(f"attack must be 'loss' or 'confidence', got {attack!r}.")
        if not (target == "retrained" or isinstance(target, (int, float))):
            raise ValueError(f"target must be a number or 'retrained', got {target!r}.")
        if isinstance(n_retained, bool) or not isinstance(n_retained, (int, np.integer)) \
                or n_retained < 1:
            raise ValueError(f"n_retained must be a positive int, got {n_retained!r}.")
        self.kind, self.metric, self.attack, self.target = kind, metric, attack, target
        self.n_retained = int(n_retained)

    def __repr__(self) -> str:
        opts = {"similarity_ratio": f", metric={self.metric!r}",
                "membership_inference": f", attack={self.attack!r}, target={self.target!r}",
                "forget_retain": f", n_retained={self.n_retained}"}
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
            The forget set (plus held-out rows for membership inference and ``forget_retain``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its labels.
        **kwargs : dict
            Ignored (metadata such as ``sample_weight`` routed by scikit-learn).

        Returns
        -------
        score : float
            Higher is better; never NaN.
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
            The forget set (plus held-out rows for membership inference and ``forget_retain``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its labels.
        epsilons : array-like of float
            Step sizes to evaluate.

        Returns
        -------
        scores : ndarray of shape (n_epsilons,)
            ``scores[i]`` equals ``self(estimator with epsilon=epsilons[i], X, y)``.

        Raises
        ------
        ValueError
            When the score is undefined (see the metric functions); never returns NaN.
        """
        epsilons = np.asarray(epsilons, dtype=float).reshape(-1)
        need_ref = (self.kind not in ("membership_inference", "certificate")
                    or (self.kind == "membership_inference" and self.target == "retrained"))
        ctx = _Context(estimator, X, y, name=self._name, reference=need_ref)
        cache: dict = {}
        score = _SCORE_FUNCS[self.kind]
        out = np.array([score(self, ctx, e, cache) for e in epsilons], dtype=float) + 0.0  # no -0
        if np.isnan(out).any():   # a safety net: every metric is meant to raise instead
            bad = epsilons[np.isnan(out)].tolist()
            raise ValueError(f"{self._name} is undefined (NaN) for epsilon={bad}.")
        return out


def make_unlearning_scorer(kind: str, *, metric: str = "log_loss", attack: str = "loss",
                           target: float | str = "retrained",
                           n_retained: int = 1000) -> UnlearningScorer:
    """Make a scorer ``(estimator, X, y) -> float`` for tuning SSSE (higher is better).

    ``X, y`` is the forget set ``S`` (the "test" fold of
    :class:`~sklearn_ssse.model_selection.ForgetSplit`); the estimator must be a fitted
    :class:`~sklearn_ssse.UnlearnableClassifier` with ``keep_training_data=True`` (or a Pipeline
    ending in one; the preprocessing is then not refitted for the reference). The estimator is
    never modified: ``S`` is forgotten on a functional copy with parameters
    ``theta + epsilon * delta``. Scores are never NaN: an undefined quantity raises a
    ``ValueError``. Note that ``GridSearchCV`` turns an exception raised while scoring into a
    warning and a NaN score unless ``error_score="raise"``; pass it to see the error.

    Parameters
    ----------
    kind : str
        What is scored (``hat``: the unlearned model, ``orig``: the original, ``re``: the
        reference retrained on ``D \\ S``):

        - ``"similarity_ratio"``: ``-similarity_ratio(hat, orig, re)`` on ``S``;
        - ``"confusion_distance"``: ``-confusion_distance(hat, re)`` on ``S``;
        - ``"normalized_confusion_distance"``: ``-normalized_confusion_distance(hat, orig, re)``
          on ``S``;
        - ``"parameter_distance"``: ``-normalized_parameter_distance(hat, orig, re)``; on a
          class removal only the classes the reference still knows are compared (centred rows,
          see :func:`~sklearn_ssse.metrics.normalized_parameter_distance`);
        - ``"membership_inference"``: ``-|membership_inference_auc(hat, S, H) - target|`` with
          the held-out rows ``H`` of the test fold (``ForgetSplit(holdout_size=...)``);
        - ``"prediction_distance"``: ``-r_S`` with ``r_A = KL_A(re || hat) / KL_A(re || orig)``
          (:func:`~sklearn_ssse.metrics.normalized_prediction_distance` on ``A``);
        - ``"forget_retain"``: ``-(r_S + r_R) / 2`` where ``R`` are the held-out rows of the
          test fold when there are any, else up to ``n_retained`` remaining training rows
          (``D \\ S``) drawn with a fixed seed. 0 = predicts like the reference on the forget
          set and on the rows that stay; ``epsilon = 0`` scores exactly -1 (both ratios are 1,
          barring the ``0/0 = 0`` convention).
          Since ``r_S >= 0``, an epsilon that wrecks the model, i.e. predicts the kept rows more
          than twice as far from the reference as the original does (``r_R > 2``; a huge
          epsilon gives ``r_R`` in the hundreds or thousands), always scores below
          ``epsilon = 0``, however well it fits ``S``. On a class removal this is what stops the
          overshoot that scores on ``S`` alone reward. It is the default of
          :func:`~sklearn_ssse.model_selection.epsilon_sweep` for nets.
          In both prediction scorers, a row where the unlearned model's probabilities are not
          finite (an epsilon that overflows a net) counts as the largest KL the ``1e-12``
          clipping allows, ``-log(1e-12)``, so such an epsilon ranks below every finite model
          instead of stopping the sweep.
        - ``"certificate"``: ``-c(hat) / c(orig)`` with ``c`` the certificate of
          :meth:`~sklearn_ssse.UnlearnableClassifier.certify` on the rows that remain without
          ``S`` (``||grad J_{D\\S}|| / mu``): no reference model is retrained, so it costs one
          gradient pass per epsilon. Linear models only.
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
    n_retained : int, default=1000
        Number of remaining training rows ``"forget_retain"`` checks when the test fold has no
        held-out rows.

    Returns
    -------
    scorer : UnlearningScorer
        Callable ``(estimator, X, y)``; also has ``score_epsilons(estimator, X, y, epsilons)``.

    See Also
    --------
    UnlearningScorer : The scorer class returned.
    sklearn_ssse.model_selection.ForgetSplit : The splits these scorers expect.
    sklearn_ssse.model_selection.epsilon_sweep : Scores a grid of epsilons in closed
        form, from one fit.
    sklearn.metrics.make_scorer : scikit-learn's scorer factory.

    Notes
    -----
    The measures are those of SSSE [1]_ (similarity ratio, parameter distance,
    confusion distance, membership inference) and prediction-space ones; all
    compare with the model retrained without the forget set, the target of exact
    unlearning.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

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
    >>> scorer = make_unlearning_scorer("forget_retain")
    >>> s0, s1, s100 = scorer.score_epsilons(clf, X[:20], y[:20], [0.0, 1.0, 100.0])
    >>> float(s0), bool(s1 > -0.3), bool(s100 < s0)
    (-1.0, True, True)
    """
    return UnlearningScorer(kind, metric=metric, attack=attack, target=target,
                            n_retained=n_retained)


similarity_ratio_scorer = make_unlearning_scorer("similarity_ratio")
confusion_distance_scorer = make_unlearning_scorer("confusion_distance")
normalized_confusion_distance_scorer = make_unlearning_scorer("normalized_confusion_distance")
parameter_distance_scorer = make_unlearning_scorer("parameter_distance")
membership_inference_scorer = make_unlearning_scorer("membership_inference")
prediction_distance_scorer = make_unlearning_scorer("prediction_distance")
forget_retain_scorer = make_unlearning_scorer("forget_retain")
certificate_scorer = make_unlearning_scorer("certificate")
