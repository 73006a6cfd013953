"""``preprocessing="update"``: erase what a Pipeline's fitted transformers remember.

A fitted :class:`~sklearn.feature_extraction.text.CountVectorizer` /
:class:`~sklearn.feature_extraction.text.TfidfVectorizer` stores every term of its training
documents in ``vocabulary_`` (a name or an e-mail address that occurs in one document is personal
data stored in the model), and a fitted :class:`~sklearn.preprocessing.OneHotEncoder` every
category in ``categories_``.  With ``UnlearnableClassifier(pipeline, preprocessing="update")``:

* at fit, the number of training rows that use each output column of these transformers is kept
  (``preprocessing_state_``: document frequencies / category counts, integers, no text);
* on forget, the forgotten rows' counts are subtracted; a vectorizer's terms that no remaining
  document contains, or that fall below ``min_df`` (an int, or a float times the remaining number
  of documents, as scikit-learn's fit computes it), and the categories that only forgotten rows
  had, are removed from ``vocabulary_`` (re-indexed in the same order, as a refit would index
  them) or ``categories_``; a ``TfidfVectorizer``'s ``idf_`` is recomputed from the remaining
  document frequencies with scikit-learn's formula (``smooth_idf`` included);
* the model weights of the removed features are removed with the optimal-brain-surgeon step and
  the cached inverse curvature shrinks to the inverse of its principal submatrix
  (:mod:`sklearn_ssse._submatrix`).

What is *not* re-applied: ``max_df`` and ``max_features`` (the vocabulary may keep terms a refit
would now cut for them, and never regains terms they cut at fit); the vocabulary is never grown.
``stop_words_`` (the terms cut by ``min_df`` / ``max_df`` / ``max_features``, kept by older
scikit-learn versions for introspection only) holds text that no count covers, so it is deleted
at fit in this mode.

Which transformers are updated: those of the *last* fitted step of the Pipeline's preprocessing,
when it is one of them or a :class:`~sklearn.compose.ColumnTransformer` holding them, provided
that every step after it is stateless (e.g. a ``FunctionTransformer`` that densifies) and passes
the columns through unchanged (checked at fit on the training rows).  Supported: vectorizers with
a learned vocabulary (``vocabulary=None``; ``TfidfVectorizer`` with ``use_idf=True``) and
``OneHotEncoder(categories="auto", drop=None)`` without infrequent categories.  Every other
fitted step keeps its state (frozen: a ``StandardScaler``'s means, a ``MaxAbsScaler``'s scale
cannot be updated exactly without the rows); the erasure record names both.

The frozen model does not know that ``idf_`` changed: every remaining document's tf-idf features
are rescaled by ``idf_new / idf_old`` (and renormalised), a change of the order of ``k / n``.
The user guide gives the measured distance to a pipeline retrained without the documents.
"""

from __future__ import annotations

from copy import deepcopy
from numbers import Integral

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils import get_tags

from ._curvature._submatrix import remove_coordinates

__all__ = ["check_update_options", "forget_features", "init_preprocessing"]


def _kind(trans) -> str | None:
    """``"vectorizer"``, ``"onehot"`` or ``None`` (kept frozen)."""
    if isinstance(trans, CountVectorizer):
        if trans.vocabulary is not None:  # a given vocabulary is not learned from the rows
            return None
        if isinstance(trans, TfidfVectorizer) and not trans.use_idf:
            return None
        return "vectorizer"
    if (isinstance(trans, OneHotEncoder) and trans.drop is None
            and isinstance(trans.categories, str) and trans.categories == "auto"
            and trans.min_frequency is None and trans.max_categories is None):
        return "onehot"
    return None


def _stateful(step) -> bool:
    return step not in (None, "passthrough", "drop") and get_tags(step).requires_fit


def _column_counts(block) -> np.ndarray:
    """Rows with a nonzero in each column (dense or scipy-sparse), as int64."""
    return np.asarray((block != 0).sum(axis=0), dtype=np.int64).ravel()


def _max_abs_diff(A, B) -> float:
    D = abs(A - B)
    return float(D.max()) if (D.shape[0] and D.shape[1]) else 0.0


def check_update_options(clf) -> None:
    """Refuse the options that record rows in the model's feature space, which an update
    changes (checked before any work)."""
    if clf.preprocessing != "update":
        return
    for name in ("track_samples", "keep_training_data"):
        if getattr(clf, name):
            raise ValueError(
                f"preprocessing='update' cannot be combined with {name}=True: the rows are "
                "recorded in the model's feature space, which each update changes (terms and "
                "categories removed, idf_ recomputed), so later forget requests could no longer "
                "be matched to them. Use preprocessing='frozen' to track rows")


def _units(pre, X_raw, Xt) -> tuple[int | None, list[dict]]:
    """``(step index, units)``: the updatable transformers of the last fitted step of ``pre``
    with their model-input columns, or ``(None, [])``."""
    stateful = [i for i, (_, step) in enumerate(pre.steps) if _stateful(step)]
    if not stateful:
        return None, []
    i = stateful[-1]
    name, step = pre.steps[i]
    if _kind(step) is not None:
        cands = [{"step": i, "name": None, "kind": _kind(step)}]
        slices = {None: slice(0, Xt.shape[1])}
    elif isinstance(step, ColumnTransformer):
        cands = [{"step": i, "name": sub, "kind": _kind(t)} for sub, t, _ in step.transformers_
                 if _kind(t) is not None]
        slices = step.output_indices_
    else:
        return i, []
    if not cands:
        return i, []
    if i < len(pre.steps) - 1:  # the stateless steps after it must pass the columns through
        Xs = pre[:i + 1].transform(X_raw)
        # (to rounding: a vectorizer's fit_transform and transform round differently)
        scale = max(1.0, float(abs(Xt).max())) if Xt.shape[0] and Xt.shape[1] else 1.0
        if Xs.shape != Xt.shape or not _max_abs_diff(Xs, Xt) <= 1e-9 * scale:
            return i, []
    for u in cands:
        u["counts"] = _column_counts(Xt[:, slices[u["name"]]])
        u["n_rows"] = int(Xt.shape[0])
    return i, cands


def _transformer(pre, unit):
    step = pre.steps[unit["step"]][1]
    return step if unit["name"] is None else step.named_transformers_[unit["name"]]


def _path(pre, unit) -> str:
    name = pre.steps[unit["step"]][0]
    return name if unit["name"] is None else f"{name}/{unit['name']}"


def _frozen(pre, units) -> list[str]:
    """Fitted steps (``step`` or ``step/transformer`` inside a ColumnTransformer) that keep
    their state."""
    updated = {_path(pre, u) for u in units}
    out = []
    for name, step in pre.steps:
        if not _stateful(step):
            continue
        if isinstance(step, ColumnTransformer) and any(p.startswith(name + "/") for p in updated):
            out += [f"{name}/{sub}" for sub, t, _ in step.transformers_
                    if _stateful(t) and f"{name}/{sub}" not in updated]
        elif name not in updated:
            out.append(name)
    return out


def init_preprocessing(clf, pre, X_raw, Xt, state) -> None:
    """At fit: set ``preprocessing_state_`` (``preprocessing="update"`` with a Pipeline), or
    remove a stale one.

    Raises
    ------
    ValueError
        With an updatable transformer, when the curvature holds sampled rows (their digests
        are of the rows in the fit-time feature space) or the model is not a single-output
        linear model.
    """
    clf.__dict__.pop("preprocessing_state_", None)
    if clf.preprocessing != "update" or pre is None:
        return
    for step in pre.steps:  # text cut at fit that no count covers (older scikit-learn)
        trans = step[1]
        subs = ([t for _, t, _ in trans.transformers_]
                if isinstance(trans, ColumnTransformer) else [trans])
        for t in subs:
            if isinstance(t, CountVectorizer) and hasattr(t, "stop_words_"):
                del t.stop_words_
    _, units = _units(pre, X_raw, Xt)
    if units:
        if state.get("sample") is not None or state.get("label_salt") is not None:
            raise ValueError(
                "preprocessing='update' needs a curvature built from every training row: this "
                "one was sampled (fisher_max_samples, or inverse='woodbury' with its default "
                "1024 rows, or sampled GGN labels), and the sampled rows are recorded in the "
                "fit-time feature space, which updates change. Use inverse='dense' / 'block' / "
                "'ekfac', or fisher_max_samples >= n_samples with a binary model")
        est = state["estimator"]
        if not hasattr(est, "coef_") or np.ndim(est.coef_) != 2:
            raise ValueError(
                f"preprocessing='update' removes the weights of forgotten features from a "
                f"linear model (LogisticRegression, SGDClassifier); {type(est).__name__} is not "
                "one: use preprocessing='frozen'")
    clf.preprocessing_state_ = {"units": units, "frozen": _frozen(pre, units)}


def _update_vectorizer(vec, counts, n_rows):
    """A refitted-equivalent vectorizer without the terms that fall below ``min_df`` (or no
    document contains) and with ``idf_`` of the remaining documents: ``(vectorizer, drop)``."""
    min_df = vec.min_df
    threshold = min_df if isinstance(min_df, Integral) else min_df * n_rows
    drop = (counts == 0) | (counts < threshold)
    terms = np.empty(len(vec.vocabulary_), dtype=object)
    for term, j in vec.vocabulary_.items():
        terms[j] = term
    new = clone(vec)  # only public attributes are set on it below
    new.vocabulary_ = {t: j for j, t in enumerate(terms[~drop])}
    new.fixed_vocabulary_ = False
    if isinstance(vec, TfidfVectorizer):
        old = vec.idf_
        df = counts[~drop].astype(old.dtype)  # scikit-learn's TfidfTransformer.fit, verbatim
        df += float(vec.smooth_idf)
        new.idf_ = np.log((n_rows + int(vec.smooth_idf)) / df) + 1.0
    return new, drop


def _update_onehot(enc, counts):
    """The encoder without the categories no remaining row has, fitted through the public
    API on its own categories: ``(encoder, drop)``."""
    drop = counts == 0
    cats, keep, a = [], ~drop, 0
    for c in enc.categories_:
        cats.append(c[keep[a:a + len(c)]])
        a += len(c)
    m = max(len(c) for c in cats)
    columns = [np.resize(c, m) for c in cats]  # every category appears in the rows
    if hasattr(enc, "feature_names_in_"):
        import pandas as pd

        dummy = pd.DataFrame(dict(zip(enc.feature_names_in_, columns)))
    elif all(c.dtype.kind in "biuf" for c in cats):
        dummy = np.column_stack(columns)
    else:
        dummy = np.empty((m, len(cats)), dtype=object)
        for j, c in enumerate(columns):
            dummy[:, j] = c
    new = clone(enc).set_params(categories=[list(c) for c in cats]).fit(dummy)
    new.set_params(categories=enc.categories)
    return new, drop


def forget_features(clf, X_raw, X, theta, curvature):
    """On forget (after the SSSE step): update the counts and the transformers, remove the
    weights of the vanished features (OBS) and shrink the curvature.

    Nothing is mutated: new objects are bound on ``clf`` (``preprocessor_``,
    ``preprocessing_state_``, and when features vanish ``estimator_``, ``backend_``,
    ``_theta_fit``, ``_damping``), which the caller's ``@_restore_on_error`` rolls back.

    Parameters
    ----------
    clf : UnlearnableClassifier
    X_raw : the forgotten rows as given to forget
    X : ndarray or sparse matrix
        The same rows in the model's (pre-update) feature space.
    theta : Tensor
        The parameters after the SSSE step.
    curvature : CurvatureOperator
        The curvature after the step (the remaining data's, with update_curvature).

    Returns
    -------
    theta, curvature, X_after, info
        ``X_after``: the rows in the updated feature space; ``info``: scalars for the record.
    """
    state = clf.preprocessing_state_
    pre = deepcopy(clf.preprocessor_)
    k = X.shape[0]
    removed, units = [], []
    ct_widths = {}
    for unit in state["units"]:
        step = pre.steps[unit["step"]][1]
        sl = (slice(0, X.shape[1]) if unit["name"] is None
              else step.output_indices_[unit["name"]])
        counts = unit["counts"] - _column_counts(X[:, sl])
        if bool((counts < 0).any()):
            raise ValueError("the rows to forget use terms or categories more often than the "
                             "remaining training rows do: they are not (or no longer) training "
                             "rows of this model; nothing was changed")
        n_rows = unit["n_rows"] - k
        trans = _transformer(pre, unit)
        if unit["kind"] == "vectorizer":
            new, drop = _update_vectorizer(trans, counts, n_rows)
        else:
            new, drop = _update_onehot(trans, counts)
        if unit["name"] is None:
            pre.steps[unit["step"]] = (pre.steps[unit["step"]][0], new)
        else:
            step.transformers_ = [(n, new if n == unit["name"] else t, c)
                                  for n, t, c in step.transformers_]
            ct_widths[unit["name"]] = int((~drop).sum())
        removed.append(sl.start + np.flatnonzero(drop))
        units.append(dict(unit, counts=counts[~drop], n_rows=n_rows))
    removed = np.concatenate(removed) if removed else np.zeros(0, dtype=np.int64)
    i = state["units"][0]["step"] if state["units"] else None
    if ct_widths:  # the ColumnTransformer's output columns after the update
        ct = pre.steps[i][1]
        start, out = 0, {}
        for name, s in sorted(ct.output_indices_.items(), key=lambda kv: kv[1].start):
            width = ct_widths.get(name, s.stop - s.start)
            out[name] = slice(start, start + width)
            start += width
        ct.output_indices_ = out
    width = X.shape[1] - len(removed)
    if i is not None and len(removed):
        for _, step in pre.steps[i + 1:]:  # stateless steps: their recorded input width
            if hasattr(step, "n_features_in_") and step.n_features_in_ == X.shape[1]:
                step.n_features_in_ = width
    info = {"updated_preprocessing": ",".join(_path(pre, u) for u in state["units"]),
            "frozen_preprocessing": ",".join(state["frozen"]),
            "n_features_removed": int(len(removed))}
    clf.preprocessor_ = pre
    clf.preprocessing_state_ = {"units": units, "frozen": state["frozen"]}
    if len(removed):
        est = deepcopy(clf.estimator_)
        backend = clf.backend_
        J = backend.feature_parameters(removed)
        theta, curvature = remove_coordinates(curvature, theta, J)
        keep = np.setdiff1d(np.arange(backend.n_params), J)
        backend.drop_features(est, removed)
        clf._theta_fit = clf._theta_fit[torch.as_tensor(keep, device=clf._theta_fit.device)]
        clf._damping = clf._damping[torch.as_tensor(keep, device=clf._damping.device)]
        clf.estimator_ = est
        clf.backend_ = type(backend)(est, **clf._backend_kwargs)
    X_after = pre.transform(X_raw)
    if sp.issparse(X_after) and not sp.issparse(X):
        X_after = X_after.toarray()
    if not sp.issparse(X_after):
        X_after = np.asarray(X_after, dtype=np.float64)
    return theta, curvature, X_after, info
