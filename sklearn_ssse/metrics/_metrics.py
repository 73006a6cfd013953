"""Unlearning metrics: how close an unlearned model is to the model retrained without ``S``.

Three models are compared on a set ``A`` (usually the forget set ``S``):

* ``hat``: the unlearned model (SSSE step with some epsilon),
* ``original``: the model before the erasure (trained on ``D``),
* ``retrained``: the reference retrained from scratch on ``D \\ S``.

Every function accepts, for each model, either a fitted estimator (then ``X`` is required and the
function calls ``predict_proba`` / ``predict``) or the model's outputs on ``A`` (probabilities for
``metric="roc_auc"`` / ``"log_loss"``, predicted labels for ``metric="accuracy"`` and the
confusion distances). Multi-output binary targets (one column per attribute) are scored per
attribute and averaged; multiclass targets use macro one-vs-rest.

The exact formulas of the SSSE paper are not public here; the definitions below are the
library's, documented in each docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

__all__ = [
    "confusion_distance",
    "membership_inference_auc",
    "normalized_confusion_distance",
    "normalized_parameter_distance",
    "normalized_prediction_distance",
    "performance_score",
    "performance_similarity",
    "prediction_kl",
    "similarity_ratio",
]

_METRICS = ("roc_auc", "accuracy", "log_loss")


# ============================================================================== output handling
def _is_model(obj) -> bool:
    return hasattr(obj, "predict_proba") or hasattr(obj, "predict")


def _to_numpy(a):
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _y_columns(y_true) -> list[np.ndarray]:
    y = np.asarray(y_true)
    if y.ndim in (1, 2) and y.shape[0] == 0:
        raise ValueError("the set is empty: the metric needs at least one sample.")
    if y.ndim == 1:
        return [y]
    if y.ndim == 2:
        return [y[:, j] for j in range(y.shape[1])]
    raise ValueError(f"y_true must be 1-D or 2-D, got shape {y.shape}.")


def _model_classes(model) -> list[np.ndarray] | None:
    classes = getattr(model, "classes_", None)
    if classes is None:
        return None
    if isinstance(classes, list):
        return [np.asarray(c) for c in classes]
    return [np.asarray(classes)]


def _labels_list(labels, n_outputs: int) -> list[np.ndarray] | None:
    if labels is None:
        return None
    if n_outputs == 1 and not (len(labels) and isinstance(labels[0], (list, np.ndarray, tuple))):
        return [np.asarray(labels)]
    labels = [np.asarray(lab) for lab in labels]
    if len(labels) != n_outputs:
        raise ValueError(f"labels has {len(labels)} entries for {n_outputs} outputs.")
    return labels


def _infer_classes(y_col: np.ndarray, n_columns: int, j: int) -> np.ndarray:
    uniq = np.unique(y_col)
    if len(uniq) == n_columns:
        return uniq
    if n_columns == 2 and set(uniq.tolist()) <= {0, 1}:
        return np.array([0, 1])
    raise ValueError(
        f"cannot tell which classes the {n_columns} probability columns of output {j} stand for "
        f"(y_true has {len(uniq)} distinct labels): pass labels=..."
    )


def _model_proba(obj, X):
    """``(predict_proba(X), classes)`` of a model, or ``(obj, None)`` for given probabilities."""
    if not _is_model(obj):
        return obj, None
    if X is None:
        raise ValueError("X is required when models (not their outputs) are given.")
    if not hasattr(obj, "predict_proba"):
        raise TypeError(f"{type(obj).__name__} has no predict_proba, needed by this metric.")
    return obj.predict_proba(X), _model_classes(obj)


def _proba_columns(obj, X, ys: list[np.ndarray], labels) -> tuple[list, list]:
    """Per-output probability matrices (n, K_j) and their classes."""
    n_out = len(ys)
    out, classes = _model_proba(obj, X)
    if _is_model(obj):
        per_output = isinstance(out, (list, tuple))
    else:
        n = len(ys[0])
        per_output = (isinstance(out, (list, tuple)) and n_out > 1 and len(out) == n_out
                      and all(np.ndim(p) >= 1 and len(p) == n for p in out))
    if per_output:
        probas = [_to_numpy(p) for p in out]
    else:
        P = _to_numpy(out).astype(np.float64, copy=False)
        if n_out > 1:  # (n, n_outputs) positive-class probabilities
            if P.ndim != 2 or P.shape[1] != n_out:
                raise ValueError(f"expected probabilities of shape (n, {n_out}) or a list of "
                                 f"{n_out} arrays, got shape {P.shape}.")
            probas = [np.column_stack([1 - P[:, j], P[:, j]]) for j in range(n_out)]
        else:
            probas = [np.column_stack([1 - P, P]) if P.ndim == 1 else P]
    if len(probas) != n_out:
        raise ValueError(f"the model has {len(probas)} outputs but y_true has {n_out}.")
    probas = [np.column_stack([1 - p, p]) if p.ndim == 1 else p.astype(np.float64, copy=False)
              for p in probas]
    if not all(np.all(np.isfinite(p)) for p in probas):
        raise ValueError("the predicted probabilities are not finite (a diverged model, e.g. an "
                         "epsilon far too large for this model).")
    given = _labels_list(labels, n_out) if classes is None else None
    if classes is None:
        classes = given or [_infer_classes(y, p.shape[1], j)
                            for j, (y, p) in enumerate(zip(ys, probas))]
    for j, (p, c) in enumerate(zip(probas, classes)):
        if p.shape != (len(ys[j]), len(c)):
            raise ValueError(f"output {j}: probabilities of shape {p.shape} for {len(ys[j])} "
                             f"samples and {len(c)} classes.")
    return probas, classes


def _align(P: np.ndarray, cls_from: np.ndarray, cls_to: np.ndarray) -> np.ndarray:
    """Columns of ``P`` (classes ``cls_from``) re-ordered to ``cls_to``; missing classes get 0."""
    if len(cls_from) == len(cls_to) and np.array_equal(cls_from, cls_to):
        return P
    out = np.zeros((P.shape[0], len(cls_to)))
    pos = {c: i for i, c in enumerate(cls_to.tolist())}
    for i, c in enumerate(cls_from.tolist()):
        out[:, pos[c]] = P[:, i]
    return out


def _union_classes(all_classes: Sequence[list], ys) -> list[np.ndarray]:
    out = []
    for j in range(len(ys)):
        out.append(np.unique(np.concatenate([np.asarray(c[j]) for c in all_classes])))
    return out


def _predictions(obj, X, n_out: int) -> list[np.ndarray]:
    if _is_model(obj):
        if X is None:
            raise ValueError("X is required when models (not their outputs) are given.")
        pred = np.asarray(obj.predict(X))
    else:
        pred = _to_numpy(obj)
    if n_out == 1:
        return [pred.reshape(-1)]
    if pred.ndim != 2 or pred.shape[1] != n_out:
        raise ValueError(f"expected predictions of shape (n, {n_out}), got {pred.shape}.")
    return [pred[:, j] for j in range(n_out)]


# ============================================================================== performance
def _auc_ovr(y: np.ndarray, P: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes for which it is defined (nan if none)."""
    aucs = []
    if len(classes) == 2:
        pos = y == classes[1]
        if pos.any() and not pos.all():
            aucs.append(roc_auc_score(pos, P[:, 1]))
    else:
        for i, c in enumerate(classes):
            pos = y == c
            if pos.any() and not pos.all():
                aucs.append(roc_auc_score(pos, P[:, i]))
    return float(np.mean(aucs)) if aucs else float("nan")


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}.")


def _performances(y_true, models: Sequence, X, metric: str, labels) -> list[float]:
    """P_A of each model on the same set, with class columns aligned across models."""
    _check_metric(metric)
    ys = _y_columns(y_true)
    if metric == "accuracy":
        out = []
        for m in models:
            preds = _predictions(m, X, len(ys))
            out.append(float(np.mean([np.mean(p == y) for p, y in zip(preds, ys)])))
        return out
    cols = [_proba_columns(m, X, ys, labels) for m in models]
    classes = _union_classes([c for _, c in cols], ys)
    out = []
    for probas, cls in cols:
        per_output = []
        for j, y in enumerate(ys):
            P = _align(probas[j], cls[j], classes[j])
            unknown = ~np.isin(y, classes[j])
            if unknown.any():
                raise ValueError(f"y_true (output {j}) has labels the models do not know: "
                                 f"{np.unique(y[unknown]).tolist()}")
            if metric == "roc_auc":
                per_output.append(_auc_ovr(y, P, classes[j]))
            else:
                P = P / np.clip(P.sum(axis=1, keepdims=True), 1e-300, None)
                per_output.append(float(log_loss(y, P, labels=classes[j])))
        vals = [v for v in per_output if not np.isnan(v)]
        if not vals:
            raise ValueError(
                "ROC AUC is undefined on this set: it holds a single class (for every output). "
                "This happens with a single-class forget set (ForgetSplit(strategy='class')); "
                "use metric='accuracy' or metric='log_loss' instead."
            )
        out.append(float(np.mean(vals)))
    return out


def performance_score(y_true, model, *, X=None, metric: str = "roc_auc", labels=None) -> float:
    """Performance ``P_A`` of one model on a set ``A``.

    ``"roc_auc"``: binary -> ROC AUC of the positive class; multiclass -> macro average of the
    one-vs-rest ROC AUCs (classes absent from ``A``, whose AUC is undefined, are skipped);
    multi-output binary targets -> mean of the per-attribute AUCs. ``"accuracy"``: fraction of
    correct labels (mean over attributes). ``"log_loss"``: mean negative log-likelihood (mean over
    attributes).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        True labels on ``A``.
    model : estimator or array-like
        A fitted classifier, or its outputs on ``A``: probabilities (``(n,)`` positive-class,
        ``(n, n_classes)``, or for multi-output a list of ``(n, 2)`` arrays / an
        ``(n, n_outputs)`` array) for ``roc_auc`` / ``log_loss``, predicted labels for
        ``accuracy``.
    X : array-like of shape (n_samples, n_features), default=None
        Features of ``A``; required when ``model`` is an estimator.
    metric : {"roc_auc", "accuracy", "log_loss"}, default="roc_auc"
        Performance measure.
    labels : array-like or list of array-like, default=None
        Classes of the probability columns when outputs are given (default: inferred from
        ``y_true``); ignored for estimators (their ``classes_`` is used).

    Returns
    -------
    score : float
        ``P_A(model)``.

    Raises
    ------
    ValueError
        If ROC AUC is undefined on ``A`` (a single class for every output).

    See Also
    --------
    performance_similarity : Difference of this performance between two models.
    similarity_ratio : Where the unlearned model lies between the original and the
        retrained one, from this performance.
    sklearn.metrics.roc_auc_score, sklearn.metrics.log_loss, sklearn.metrics.accuracy_score
        The measures behind ``metric``.

    Notes
    -----
    ``P_A`` is the performance measure of the similarity ratio of SSSE [1]_.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> from sklearn_ssse.metrics import performance_score
    >>> performance_score([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    0.75
    >>> performance_score([0, 1, 1, 1], [0, 1, 0, 1], metric="accuracy")
    0.75
    """
    return _performances(y_true, [model], X, metric, labels)[0]


def performance_similarity(y_true, model_a, model_b, *, X=None, metric: str = "roc_auc",
                           labels=None) -> float:
    """Performance distance ``d_A(a, b) = |P_A(a) - P_A(b)|`` (0 = same performance on ``A``).

    ``P_A`` is :func:`performance_score`; the class columns of the two models are aligned (a
    class one model never saw gets probability 0), so a model retrained without a class can be
    compared with the original.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        True labels on ``A``.
    model_a, model_b : estimator or array-like
        Fitted classifiers or their outputs on ``A`` (see :func:`performance_score`).
    X : array-like of shape (n_samples, n_features), default=None
        Features of ``A``; required when estimators are given.
    metric : {"roc_auc", "accuracy", "log_loss"}, default="roc_auc"
        Performance measure.
    labels : array-like or list of array-like, default=None
        Classes of probability columns given as outputs.

    Returns
    -------
    distance : float
        ``>= 0``; lower is more similar.

    See Also
    --------
    performance_score : The performance ``P_A`` of one model.
    similarity_ratio : Normalizes two such distances between 0 and 1.

    Notes
    -----
    The distance ``d_A`` of the similarity ratio of SSSE [1]_.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> from sklearn_ssse.metrics import performance_similarity
    >>> y = [0, 0, 1, 1]
    >>> performance_similarity(y, [0.1, 0.6, 0.4, 0.9], [0.1, 0.2, 0.8, 0.9])  # 0.75 vs 1.0
    0.25
    """
    pa, pb = _performances(y_true, [model_a, model_b], X, metric, labels)
    return abs(pa - pb)


def _ratio(to_retrained: float, to_original: float) -> float:
    total = to_retrained + to_original
    return 0.5 if total == 0 else float(to_retrained / total)


def similarity_ratio(y_true, unlearned, original, retrained, *, X=None, metric: str = "roc_auc",
                     labels=None) -> float:
    """Similarity ratio ``gamma_A = d_A(hat, re) / (d_A(hat, orig) + d_A(hat, re))``.

    ``d_A`` is :func:`performance_similarity`. ``gamma`` lies in ``[0, 1]``: 0 means the
    unlearned model performs on ``A`` exactly like the retrained reference, 1 exactly like the
    original model. If both distances are 0 (all three models perform identically on ``A``) the
    ratio is defined as ``0.5``: the unlearned model is then as close to one as to the other.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        True labels on ``A`` (usually the forget set).
    unlearned, original, retrained : estimator or array-like
        Fitted classifiers or their outputs on ``A`` (see :func:`performance_score`).
    X : array-like of shape (n_samples, n_features), default=None
        Features of ``A``; required when estimators are given.
    metric : {"roc_auc", "accuracy", "log_loss"}, default="roc_auc"
        Performance measure ``P_A``.
    labels : array-like or list of array-like, default=None
        Classes of probability columns given as outputs.

    Returns
    -------
    gamma : float
        In ``[0, 1]``; lower is better.

    See Also
    --------
    normalized_parameter_distance : The same comparison in parameter space.
    normalized_confusion_distance : The same ratio on confusion matrices.
    normalized_prediction_distance : The same comparison on predicted distributions.
    make_unlearning_scorer : This ratio as a scorer for ``GridSearchCV``.

    Notes
    -----
    The similarity ratio is the verification measure of SSSE [1]_: the unlearned
    model against the model retrained from scratch without ``S``, the target of exact
    unlearning.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> from sklearn_ssse.metrics import similarity_ratio
    >>> y = [0, 0, 1, 1]
    >>> original = [0.1, 0.2, 0.8, 0.9]    # AUC 1.0
    >>> retrained = [0.1, 0.6, 0.4, 0.9]   # AUC 0.75
    >>> unlearned = [0.1, 0.6, 0.6, 0.9]   # AUC 0.875 (one tie)
    >>> similarity_ratio(y, unlearned, original, retrained)
    0.5
    >>> similarity_ratio(y, retrained, original, retrained)
    0.0
    >>> similarity_ratio(y, original, original, original)  # 0/0
    0.5
    """
    p_hat, p_orig, p_re = _performances(y_true, [unlearned, original, retrained], X, metric,
                                        labels)
    return _ratio(abs(p_hat - p_re), abs(p_hat - p_orig))


# ============================================================================== confusion
def _confusions(y_true, models: Sequence, X, labels, normalize: bool) -> list[list[np.ndarray]]:
    ys = _y_columns(y_true)
    preds = [_predictions(m, X, len(ys)) for m in models]
    given = _labels_list(labels, len(ys))
    out = [[] for _ in models]
    for j, y in enumerate(ys):
        if given is not None:
            cls = given[j]
        else:
            cls = np.unique(np.concatenate([y] + [p[j] for p in preds]))
        index = {c: i for i, c in enumerate(cls.tolist())}
        t = np.array([index.get(v, -1) for v in y.tolist()])
        for m, p in enumerate(preds):
            q = np.array([index.get(v, -1) for v in p[j].tolist()])
            if (t < 0).any() or (q < 0).any():
                raise ValueError(f"labels (output {j}) do not cover every true/predicted label.")
            C = np.zeros((len(cls), len(cls)))
            np.add.at(C, (t, q), 1.0)
            out[m].append(C / max(len(y), 1) if normalize else C)
    return out


def confusion_distance(y_true, model_a, model_b, *, X=None, labels=None,
                       normalize: bool = True) -> float:
    """L1 distance between the confusion matrices of two models on a set ``A``.

    ``CD_A(a, b) = sum_{i,j} |C_a[i, j] - C_b[i, j]|`` where ``C[i, j]`` counts the samples of
    true class ``i`` predicted as ``j``. With ``normalize=True`` the matrices are divided by
    ``|A|``, so the distance lies in ``[0, 2]`` (it is twice the fraction of samples whose
    prediction differs, counted per true class). Multi-output targets: mean over outputs.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        True labels on ``A``.
    model_a, model_b : estimator or array-like
        Fitted classifiers (``predict`` is called on ``X``) or their predicted labels.
    X : array-like of shape (n_samples, n_features), default=None
        Features of ``A``; required when estimators are given.
    labels : array-like or list of array-like, default=None
        Classes indexing the matrices; default: every label in ``y_true`` and the predictions.
    normalize : bool, default=True
        Divide the matrices by ``|A|``; ``False`` compares raw counts.

    Returns
    -------
    distance : float
        ``>= 0``; 0 when both models' confusion matrices are equal.

    See Also
    --------
    normalized_confusion_distance : This distance normalized between the original
        and the retrained model.
    sklearn.metrics.confusion_matrix : The matrices compared.

    Notes
    -----
    The measure of single-class removal in SSSE [1]_.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> from sklearn_ssse.metrics import confusion_distance
    >>> y = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> a = [0, 0, 0, 1, 1, 1, 1, 1]    # C_a = [[3, 1], [0, 4]]
    >>> b = [0, 0, 1, 1, 0, 1, 1, 1]    # C_b = [[2, 2], [1, 3]]
    >>> confusion_distance(y, a, b, normalize=False)
    4.0
    >>> confusion_distance(y, a, b)
    0.5
    """
    Ca, Cb = _confusions(y_true, [model_a, model_b], X, labels, normalize)
    return float(np.mean([np.abs(a - b).sum() for a, b in zip(Ca, Cb)]))


def normalized_confusion_distance(y_true, unlearned, original, retrained, *, X=None,
                                  labels=None) -> float:
    """Confusion distance in the form of the similarity ratio.

    ``CD_A(hat, re) / (CD_A(hat, orig) + CD_A(hat, re))`` with :func:`confusion_distance`;
    in ``[0, 1]``, 0 = the unlearned model confuses classes on ``A`` exactly like the retrained
    one, 1 = exactly like the original. ``0/0`` (all three confusion matrices equal) is ``0.5``.
    Multi-output targets: the distances are averaged over outputs first.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        True labels on ``A``.
    unlearned, original, retrained : estimator or array-like
        Fitted classifiers or their predicted labels on ``A``.
    X : array-like of shape (n_samples, n_features), default=None
        Features of ``A``; required when estimators are given.
    labels : array-like or list of array-like, default=None
        Classes indexing the matrices.

    Returns
    -------
    ratio : float
        In ``[0, 1]``; lower is better.

    See Also
    --------
    confusion_distance : The unnormalized distance.
    similarity_ratio : The same normalization on a performance measure.

    Notes
    -----
    The confusion distance of SSSE [1]_, put in the form of its similarity ratio.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> from sklearn_ssse.metrics import normalized_confusion_distance
    >>> y = [0, 0, 1, 1]
    >>> normalized_confusion_distance(y, [0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1])
    0.5
    >>> normalized_confusion_distance(y, [1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1])
    0.0
    """
    Ch, Co, Cr = _confusions(y_true, [unlearned, original, retrained], X, labels, True)
    to_re = float(np.mean([np.abs(a - b).sum() for a, b in zip(Ch, Cr)]))
    to_orig = float(np.mean([np.abs(a - b).sum() for a, b in zip(Ch, Co)]))
    return _ratio(to_re, to_orig)


# ============================================================================== prediction space
_KL_CLIP = 1e-12


def _proba_outputs(obj, X, labels, *, finite: bool = True
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-output probability matrices ``(n, K_j)`` and their classes, without ``y``.

    ``finite=False`` lets non-finite probabilities (a diverged model) through for
    :func:`_mean_kl` with ``diverged="max"``; otherwise they raise a ``ValueError``."""
    out, classes = _model_proba(obj, X)
    if isinstance(out, (list, tuple)) and len(out) and all(np.ndim(p) == 2 for p in out):
        probas = [_to_numpy(p).astype(np.float64, copy=False) for p in out]
    else:
        probas = [_to_numpy(out).astype(np.float64, copy=False)]
    probas = [np.column_stack([1 - p, p]) if p.ndim == 1 else p for p in probas]
    if classes is None:
        given = _labels_list(labels, len(probas))
        classes = given or [np.arange(p.shape[1]) for p in probas]
    if len(classes) != len(probas):
        raise ValueError(f"{len(probas)} probability outputs for {len(classes)} class lists.")
    for j, (p, c) in enumerate(zip(probas, classes)):
        if p.ndim != 2 or p.shape[1] != len(c):
            raise ValueError(f"output {j}: probabilities of shape {p.shape} for {len(c)} classes.")
        if p.shape[0] == 0:
            raise ValueError("the set is empty: prediction distances need at least one row.")
        if finite and not np.all(np.isfinite(p)):
            raise ValueError(f"output {j}: the predicted probabilities are not finite (a diverged "
                             "model, e.g. an epsilon far too large for this model).")
    return probas, classes


#: KL(p || q) of a row where q is not finite (a diverged model) under ``diverged="max"``: the
#: largest value the clipping allows, ``-log(_KL_CLIP)`` (q = 1e-12 wherever p has its mass)
_KL_MAX = float(-np.log(_KL_CLIP))


def _mean_kl(a: tuple, b: tuple, *, diverged: str = "raise") -> float:
    """Mean over rows of ``KL(p_a || p_b)``, averaged over outputs (``_proba_outputs`` pairs).

    ``diverged="max"``: a row whose ``p_b`` is not finite counts as ``_KL_MAX``, the largest
    divergence the clipping allows (farther than any finite model), instead of NaN."""
    (Pa, ca), (Pb, cb) = a, b
    if len(Pa) != len(Pb):
        raise ValueError(f"the models have different numbers of outputs: {len(Pa)} and {len(Pb)}.")
    kls = []
    for j in range(len(Pa)):
        if Pa[j].shape[0] != Pb[j].shape[0]:
            raise ValueError(f"output {j}: {Pa[j].shape[0]} and {Pb[j].shape[0]} rows.")
        classes = np.unique(np.concatenate([np.asarray(ca[j]), np.asarray(cb[j])]))
        p = np.clip(_align(Pa[j], np.asarray(ca[j]), classes), _KL_CLIP, None)
        q = _align(Pb[j], np.asarray(cb[j]), classes)
        bad = ~np.isfinite(q).all(axis=1)
        if bad.any():
            if diverged != "max":
                raise ValueError(f"output {j}: the predicted probabilities are not finite.")
            q = np.where(bad[:, None], 1.0, q)
        q = np.clip(q, _KL_CLIP, None)
        p /= p.sum(axis=1, keepdims=True)
        q /= q.sum(axis=1, keepdims=True)
        row = np.sum(p * (np.log(p) - np.log(q)), axis=1)
        row[bad] = _KL_MAX
        kls.append(float(np.mean(row)))
    return max(0.0, float(np.mean(kls)))  # KL >= 0; clamp rounding below 0


def prediction_kl(model_a, model_b, X=None, *, labels=None) -> float:
    """Mean Kullback-Leibler divergence ``KL(p_a || p_b)`` of two models' predicted distributions.

    ``KL = (1/n) sum_i sum_c p_a(c|x_i) log(p_a(c|x_i) / p_b(c|x_i))`` over the rows ``x_i`` of
    ``X``. Probabilities are clipped at ``1e-12`` (and each row renormalised) so that the value is
    always finite. Class columns are aligned by label: a class one model does not know (e.g. a
    reference retrained without that class) gets probability 0 there, hence ``1e-12`` after
    clipping. Multi-output models (``predict_proba`` returns a list): mean over outputs.

    Unlike performance-based measures, this compares the whole predicted distribution row by
    row, so it stays informative when the models are equally accurate (random deletions).

    Parameters
    ----------
    model_a, model_b : estimator or array-like
        Fitted classifiers with ``predict_proba`` (their ``classes_`` label the columns), or their
        probabilities on the rows: ``(n,)`` positive-class probabilities, ``(n, n_classes)``, or a
        list of ``(n, n_classes_j)`` arrays for multi-output models.
    X : array-like of shape (n_samples, n_features), default=None
        The rows; required when estimators are given.
    labels : array-like or list of array-like, default=None
        Classes of the columns of probabilities given as arrays (default: ``0 .. K-1``).

    Returns
    -------
    kl : float
        ``>= 0``; 0 when both models predict the same distributions.

    Raises
    ------
    ValueError
        On an empty set, non-finite probabilities or mismatched shapes.

    See Also
    --------
    normalized_prediction_distance : This divergence normalized between the original
        and the retrained model.
    sklearn.metrics.log_loss : The cross-entropy of predicted distributions and
        labels.

    Examples
    --------
    >>> from sklearn_ssse.metrics import prediction_kl
    >>> p = [[0.5, 0.5], [0.9, 0.1]]
    >>> q = [[0.5, 0.5], [0.5, 0.5]]
    >>> round(prediction_kl(p, q), 3)        # (0 + 0.9 log 1.8 + 0.1 log 0.2) / 2
    0.184
    >>> prediction_kl(p, p)
    0.0
    """
    return _mean_kl(_proba_outputs(model_a, X, labels), _proba_outputs(model_b, X, labels))


def _kl_ratio(to_retrained: float, original_to_retrained: float) -> float:
    if original_to_retrained == 0:
        return 0.0 if to_retrained == 0 else float("inf")
    return float(to_retrained / original_to_retrained)


def normalized_prediction_distance(unlearned, original, retrained, X=None, *,
                                   labels=None) -> float:
    """``KL(retrained || unlearned) / KL(retrained || original)`` of predicted distributions.

    Both divergences are :func:`prediction_kl` on the same rows (usually the forget set ``S``).
    0 means the unlearned model predicts exactly like the retrained reference, 1 that it is as far
    from it as the original model, above 1 that it is farther (overshoot, or a wrecked model);
    there is no upper bound. Convention: ``0/0 = 0`` (the original already predicts like the
    reference, and so does the unlearned model); ``x/0 = inf`` for ``x > 0``. The result is never
    NaN.

    The KL is taken from the reference (``KL(re || .)``, the expected log-likelihood ratio under
    the reference's predictions), so a model that puts little mass where the reference puts a
    lot is penalised strongly.

    Parameters
    ----------
    unlearned, original, retrained : estimator or array-like
        Fitted classifiers or their probabilities on the rows (see :func:`prediction_kl`).
    X : array-like of shape (n_samples, n_features), default=None
        The rows; required when estimators are given.
    labels : array-like or list of array-like, default=None
        Classes of the columns of probabilities given as arrays.

    Returns
    -------
    distance : float
        ``>= 0`` (possibly ``inf``); lower is better.

    See Also
    --------
    prediction_kl : The divergence normalized here.
    similarity_ratio, normalized_parameter_distance : The measures of SSSE [1]_.

    Notes
    -----
    Unlike the similarity ratio of SSSE [1]_, it compares whole predicted
    distributions row by row, so it stays informative when the three models predict
    the same labels (random deletions).

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> from sklearn_ssse.metrics import normalized_prediction_distance
    >>> original = [[0.9, 0.1], [0.2, 0.8]]
    >>> retrained = [[0.6, 0.4], [0.4, 0.6]]
    >>> normalized_prediction_distance(retrained, original, retrained)
    0.0
    >>> normalized_prediction_distance(original, original, retrained)
    1.0
    >>> normalized_prediction_distance(original, original, original)   # 0/0
    0.0
    """
    re = _proba_outputs(retrained, X, labels)
    return _kl_ratio(_mean_kl(re, _proba_outputs(unlearned, X, labels)),
                     _mean_kl(re, _proba_outputs(original, X, labels)))


# ============================================================================== parameters
def _parameters(obj) -> np.ndarray:
    if hasattr(obj, "get_parameters"):
        obj = obj.get_parameters()
    elif _is_model(obj):
        raise TypeError(f"cannot read a parameter vector from {type(obj).__name__}: pass an "
                        "UnlearnableClassifier (get_parameters) or the flat vectors.")
    return _to_numpy(obj).astype(np.float64, copy=False).reshape(-1)


def _class_lists(classes) -> list[np.ndarray] | None:
    if classes is None:
        return None
    if isinstance(classes, list) and len(classes) and np.ndim(classes[0]) == 1:
        return [np.asarray(c) for c in classes]
    return [np.asarray(classes)]


def _remaining_class_rows(hat, orig, re, classes, re_classes, centre: bool):
    """The three vectors restricted to the classes the reference still knows (class-row layout).

    Layout (that of the linear backend): per output, one row of ``p1`` parameters per class, one
    row only for a binary output; outputs one after the other.
    """
    cls_o, cls_r = _class_lists(classes), _class_lists(re_classes)
    if cls_o is None or cls_r is None:
        raise ValueError(
            f"parameter vectors of different lengths: {hat.shape[0]}, {orig.shape[0]}, "
            f"{re.shape[0]} (did the reference lose a class?). Pass classes= and "
            "retrained_classes= (or UnlearnableClassifier objects) to compare the classes "
            "the reference still knows.")
    if len(cls_o) != len(cls_r):
        raise ValueError(f"the original has {len(cls_o)} outputs, the reference {len(cls_r)}.")
    for j, (co, cr) in enumerate(zip(cls_o, cls_r)):
        unknown = np.setdiff1d(cr, co)
        if unknown.size:
            raise ValueError(f"output {j}: the reference knows classes the original does not: "
                             f"{unknown.tolist()}.")
        if len(co) == 2 and len(cr) < 2:
            raise ValueError(
                f"output {j}: the original model is binary and the reference lost one of its two "
                "classes; a single-class model has no parameters to compare. Class removal needs "
                "at least 3 classes (or remove only part of a class: forget_size < 1).")
    rows_o = [1 if len(c) == 2 else len(c) for c in cls_o]
    rows_r = [1 if len(c) == 2 else len(c) for c in cls_r]
    p1 = orig.shape[0] // sum(rows_o)
    if p1 * sum(rows_o) != orig.shape[0] or p1 * sum(rows_r) != re.shape[0] \
            or hat.shape != orig.shape:
        raise ValueError(
            f"parameter vectors of lengths {hat.shape[0]}, {orig.shape[0]}, {re.shape[0]} do not "
            f"follow a class-row layout for classes {[c.tolist() for c in cls_o]} and "
            f"{[c.tolist() for c in cls_r]}: cannot align them.")
    out = ([], [], [])
    o_off = r_off = 0
    for j, (co, cr, ro, rr) in enumerate(zip(cls_o, cls_r, rows_o, rows_r)):
        W = [v[o_off:o_off + ro * p1].reshape(ro, p1) for v in (hat, orig)]
        Wr = re[r_off:r_off + rr * p1].reshape(rr, p1)
        o_off, r_off = o_off + ro * p1, r_off + rr * p1
        if len(co) == len(cr) and np.array_equal(co, cr):
            for acc, w in zip(out, (*W, Wr)):
                acc.append(w.ravel())
            continue
        keep = np.searchsorted(co, cr)
        W = [w[keep] for w in W]
        if len(cr) == 2:
            if not centre:
                raise ValueError(
                    f"output {j}: the reference is binary (one sigmoid row) while the original "
                    "has one-vs-rest rows; their parameters do not correspond.")
            # sigmoid(z) = softmax([-z/2, z/2])[1]: the centred two-row form of a binary model
            Wr = np.vstack([-Wr / 2, Wr / 2])
        for acc, w in zip(out, (*W, Wr)):
            acc.append((w - w.mean(axis=0) if centre else w).ravel())
    return tuple(np.concatenate(a) for a in out)


def _norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow for huge entries (a huge epsilon)."""
    with np.errstate(over="ignore", invalid="ignore"):
        top = float(np.max(np.abs(v))) if v.size else 0.0
        if top == 0 or not np.isfinite(top):
            return top
        return top * float(np.linalg.norm(v / top))


def normalized_parameter_distance(unlearned, original, retrained, *, classes=None,
                                  retrained_classes=None, centre: bool = True) -> float:
    """``||theta_hat - theta_re|| / ||theta_orig - theta_re||`` (Euclidean norms).

    0 means the unlearned parameters equal the retrained ones; 1 means no closer than the
    original; values above 1 overshoot. If the original already equals the retrained model
    (denominator 0) the result is 0 when the unlearned one equals them too, else ``inf``; it is
    never NaN. Only meaningful when the parameters of the three models correspond (for neural
    networks the retrained reference may sit in another basin).

    **Class removal.** A reference retrained without a whole class has fewer parameters. When
    the lengths differ and the classes are known (``classes`` / ``retrained_classes``, or read
    from ``classes_`` of the objects), the vectors are read in the class-row layout of linear
    models (per output, one row of parameters ``[w_c, b_c]`` per class, a single row for a binary
    output), only the rows of the classes the reference still knows are kept, and, with
    ``centre=True``, each parameter column is centred across those classes: a softmax is
    invariant to adding the same vector to every class row, so only the centred rows are
    identifiable. A binary reference (left with 2 of 3 classes) is compared in its centred
    two-row form ``[-w/2, w/2]``. Use ``centre=False`` for one-vs-rest models (independent
    sigmoid rows).

    Parameters
    ----------
    unlearned, original, retrained : array-like, torch.Tensor or UnlearnableClassifier
        Flat parameter vectors, or objects with ``get_parameters()``.
    classes : array-like or list of array-like, default=None
        Classes of the unlearned and the original model (a list per output for multi-output
        models); default: ``original.classes_`` when available. Only used when the lengths differ.
    retrained_classes : array-like or list of array-like, default=None
        Classes of the reference; default: ``retrained.classes_`` when available.
    centre : bool, default=True
        Centre each parameter column across the compared classes (softmax models).

    Returns
    -------
    distance : float
        ``>= 0`` (possibly ``inf``); lower is better.

    Raises
    ------
    ValueError
        If the vectors have different lengths and cannot be aligned by class, if a binary model's
        reference lost a class, or if a parameter is NaN.

    See Also
    --------
    similarity_ratio : The same comparison on a performance measure.
    sklearn_ssse.UnlearnableClassifier.get_parameters : The flat parameter vector
        compared.

    Notes
    -----
    The parameter distance of SSSE [1]_. With ``curvature="ggn"`` and
    ``epsilon=1`` the unlearned parameters are the influence-function (Newton)
    estimate of the retrained ones [2]_ [3]_, so for a convex model the distance
    measures the error of that second-order estimate.

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
    >>> from sklearn_ssse.metrics import normalized_parameter_distance
    >>> normalized_parameter_distance([1.0, 1.0], [0.0, 0.0], [2.0, 2.0])
    0.5
    >>> normalized_parameter_distance([1.0], [1.0], [1.0])
    0.0

    Class removal: three classes with one parameter each; the reference lost class 2.

    Class removal: four classes with one parameter each, the reference lost class 3. The rows
    of classes 0-2, centred, are ``[1, -.5, -.5]`` (unlearned), ``[2, -1, -1]`` (original) and
    ``[0, 0, 0]`` (reference):

    >>> normalized_parameter_distance([1.5, 0.0, 0.0, 5.0], [3.0, 0.0, 0.0, 9.0], [0.0, 0.0, 0.0],
    ...                               classes=[0, 1, 2, 3], retrained_classes=[0, 1, 2])
    0.5
    """
    if classes is None:
        classes = getattr(original, "classes_", None)
    if retrained_classes is None:
        retrained_classes = getattr(retrained, "classes_", None)
    hat, orig, re = (_parameters(o) for o in (unlearned, original, retrained))
    if any(np.isnan(v).any() for v in (hat, orig, re)):
        raise ValueError("a parameter vector contains NaN (a diverged model?).")
    if not (hat.shape == orig.shape == re.shape):
        hat, orig, re = _remaining_class_rows(hat, orig, re, classes, retrained_classes, centre)
    num, den = _norm(hat - re), _norm(orig - re)
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    if np.isinf(den):
        raise ValueError("the original or the reference has infinite parameters.")
    return num / den


# ============================================================================== membership
def membership_inference_auc(model, X_forget, y_forget, X_heldout, y_heldout, *,
                             attack: str = "loss", labels=None) -> float:
    """ROC AUC of a membership-inference attack separating ``S`` from held-out data.

    The attack scores each sample by how well the model fits it and predicts "member" for high
    scores: ``attack="loss"`` uses ``log p(y | x)`` (minus the loss), ``attack="confidence"``
    uses ``max_c p(c | x)``. The AUC is computed with members (the forget set ``S``) as positives
    and held-out samples (never trained on) as negatives. 0.5 = the model does not reveal that
    ``S`` was trained on (what retraining without ``S`` gives, up to noise); 1 = ``S`` is fully
    exposed; below 0.5 = ``S`` is fitted *worse* than unseen data (over-forgetting, itself a
    membership signal). Multi-output targets: mean over attributes.

    Parameters
    ----------
    model : estimator or None
        A fitted classifier with ``predict_proba``. ``None``: ``X_forget`` and ``X_heldout`` are
        the model's predicted probabilities on the two sets.
    X_forget : array-like
        Features of the forget set (or its probabilities when ``model`` is None).
    y_forget : array-like of shape (k,) or (k, n_outputs)
        Labels of the forget set.
    X_heldout : array-like
        Features of held-out samples (or their probabilities when ``model`` is None).
    y_heldout : array-like of shape (m,) or (m, n_outputs)
        Labels of the held-out samples.
    attack : {"loss", "confidence"}, default="loss"
        Attack score.
    labels : array-like or list of array-like, default=None
        Classes of probability columns given as outputs.

    Returns
    -------
    auc : float
        In ``[0, 1]``.

    See Also
    --------
    make_unlearning_scorer : ``"membership_inference"`` scores this AUC against
        the retrained model's.
    sklearn.metrics.roc_auc_score : The AUC computed.

    Notes
    -----
    Membership-inference attacks [1]_ test whether a model reveals that a sample
    was in its training set; the loss-threshold attack (``attack="loss"``) is
    that of [2]_. Used to audit unlearning as in SSSE [3]_.

    References
    ----------
    .. [1] R. Shokri, M. Stronati, C. Song and V. Shmatikov, "Membership Inference Attacks
       against Machine Learning Models", IEEE S&P 2017. https://arxiv.org/abs/1610.05820
    .. [2] S. Yeom, I. Giacomelli, M. Fredrikson and S. Jha, "Privacy Risk in Machine Learning:
       Analyzing the Connection to Overfitting", IEEE CSF 2018.
       https://arxiv.org/abs/1709.01604
    .. [3] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> from sklearn_ssse.metrics import membership_inference_auc
    >>> p_forget = [[0.1, 0.9], [0.8, 0.2]]            # p(y) = 0.9, 0.8
    >>> p_held = [[0.3, 0.7], [0.6, 0.4], [0.5, 0.5]]  # p(y) = 0.7, 0.6, 0.5
    >>> membership_inference_auc(None, p_forget, [1, 0], p_held, [1, 0, 1])
    1.0
    >>> membership_inference_auc(None, p_held, [1, 0, 1], p_forget, [1, 0])
    0.0
    """
    if attack not in ("loss", "confidence"):
        raise ValueError(f"attack must be 'loss' or 'confidence', got {attack!r}.")
    if model is None:
        sources = [(X_forget, None, y_forget), (X_heldout, None, y_heldout)]
    else:
        sources = [(model, X_forget, y_forget), (model, X_heldout, y_heldout)]
    cols = []
    for obj, X, y in sources:
        if len(y) == 0:
            raise ValueError("membership inference needs a non-empty forget set and held-out set.")
        ys = _y_columns(y)
        cols.append((ys, *_proba_columns(obj, X, ys, labels)))
    (ys_f, P_f, c_f), (ys_h, P_h, c_h) = cols
    if len(ys_f) != len(ys_h):
        raise ValueError("the forget and held-out labels have different numbers of outputs.")
    classes = _union_classes([c_f, c_h], ys_f)
    aucs = []
    for j in range(len(ys_f)):
        scores = []
        for ys, P, c in ((ys_f, P_f, c_f), (ys_h, P_h, c_h)):
            A = _align(P[j], c[j], classes[j])
            if attack == "confidence":
                scores.append(A.max(axis=1))
            else:
                pos = np.searchsorted(classes[j], ys[j])
                pos = np.clip(pos, 0, len(classes[j]) - 1)
                if not np.array_equal(classes[j][pos], ys[j]):
                    raise ValueError(f"labels (output {j}) unknown to the model.")
                scores.append(np.log(np.clip(A[np.arange(len(A)), pos], 1e-300, None)))
        member = np.r_[np.ones(len(scores[0])), np.zeros(len(scores[1]))]
        aucs.append(roc_auc_score(member, np.r_[scores[0], scores[1]]))
    return float(np.mean(aucs))

