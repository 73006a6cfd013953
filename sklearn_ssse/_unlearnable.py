"""The :class:`UnlearnableClassifier` meta-estimator."""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import math
import threading
import time
import warnings
import weakref
from copy import deepcopy
from datetime import datetime, timezone
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array, check_random_state, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_memory, check_X_y, validate_data

from ._backends import BACKENDS, select_backend
from ._certificate import Certificate, certificate, suppress
from ._config import FitConfig
from ._curvature import _lowrank
from ._curvature._registry import choices as _inverse_choices
from ._curvature._registry import kind_for, parse_bytes, resolve_inverse
from ._data import array_chunks, is_dask, iter_data, validated_chunks
from ._persistence import from_portable, to_portable
from ._preprocessing import check_update_options, forget_features, init_preprocessing
from ._rows import RowIndex, multiset, multiset_remove, new_salt, row_digests
from ._seal import SealError, current_key, digest, fingerprint, remember
from ._streaming import parameters_at


class UnverifiedSealWarning(UserWarning):
    """A keyed model was loaded without its key: its seal could not be verified."""


class LargeStepWarning(UserWarning):
    """A forget step much larger than the Newton step (``epsilon`` far above 1)."""


class UntrackedSampleWarning(UserWarning):
    """A forget request names rows that are not (or no longer) in the model.

    Issued by :meth:`UnlearnableClassifier.forget` with ``on_untracked="warn"``.
    """


def _parameters_checksum(theta: torch.Tensor) -> str:
    """SHA-256 (hex) of the exact bytes of a parameter vector, with its dtype and shape."""
    t = theta.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(f"{t.dtype}:{t.numel()}:".encode())
    h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()


_SAME_SIZE_INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two parameter vectors hold exactly the same bytes, compared where they live
    (on the net's device: no host copy; one synchronisation for the answer)."""
    a, b = a.detach(), b.detach()
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.device != b.device:  # (a net moved to another device since fit)
        b = b.to(a.device)
    ints = _SAME_SIZE_INTS[a.element_size()]
    return torch.equal(a.contiguous().view(ints), b.contiguous().view(ints))


_LOCK_GUARD = threading.Lock()
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _lock_of(obj) -> threading.RLock:
    """The estimator's mutation lock, created on first use and held outside the estimator (a
    pickled, cloned or copied model never shares it: it gets its own)."""
    with _LOCK_GUARD:
        lock = _LOCKS.get(obj)
        if lock is None:
            lock = _LOCKS[obj] = threading.RLock()
    return lock


def _serialised(method):
    """Run ``method`` holding the estimator's lock (re-entrant): calls on one estimator from
    several threads take effect one after another, in some serial order."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _lock_of(self):
            return method(self, *args, **kwargs)

    return wrapper


def _restore_on_error(method):
    """Make a method atomic and serialised: it runs under the estimator's lock, and on any
    exception (``KeyboardInterrupt`` included) the attribute bindings are put back as they were,
    and so are the wrapped model's parameters if the method wrote any (the only state changed
    in place; every other attribute must be replaced, not mutated)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _lock_of(self):
            saved = dict(self.__dict__)
            backend = saved.get("backend_")
            try:
                theta = backend.get_parameters() if backend is not None else None
            except Exception:  # unreadable (estimator_ replaced): the method itself will refuse
                theta = None
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(saved)
                if theta is not None:
                    _restore_parameters(backend, theta)
                raise

    return wrapper


def _restore_parameters(backend, theta: torch.Tensor) -> None:
    """Write ``theta`` back unless the model still holds exactly it."""
    try:
        if not _same_bits(backend.get_parameters(), theta):
            backend.set_parameters(theta)
    except BaseException as exc:
        raise RuntimeError("the call failed and the previous parameters could not be restored: "
                           "the wrapped model is in an unknown state; refit it or load a saved "
                           "copy") from exc


#: forget warns (LargeStepWarning) above this epsilon: a step beyond 100x the Newton step
LARGE_EPSILON = 100.0
#: forget refuses a step whose norm exceeds this multiple of max(||theta||, 1)
_MAX_STEP_RATIO = 1e12


def _norm(t: torch.Tensor) -> float:
    """Euclidean norm in float64, scaled by the largest entry (no overflow for finite t)."""
    t = t.detach().to(torch.float64)
    scale = float(t.abs().max()) if t.numel() else 0.0
    if scale == 0.0 or not math.isfinite(scale):
        return scale
    return scale * float(torch.linalg.vector_norm(t / scale))


def _set_diagnostics(estimator, X, y, classes, backend=None, proba=None):
    """Cheap O(k d) diagnostics of ``estimator`` on the forget set, from ``predict_proba``.

    Returns ``(mean loss, accuracy, predicted class indices)``: the loss is the mean over samples
    of ``-log p(y|x)`` (summed over outputs), the accuracy the fraction of correct labels
    (averaged over outputs); ``None`` when the estimator has no ``predict_proba``.  A
    ``backend`` with ``predict_proba_tensor`` (nets) gives the probabilities in one batched
    forward pass: skorch's ``predict_proba`` goes through a DataLoader item by item, which cost
    more than the rest of a forget of 1,000 images.  ``proba``: those probabilities, already
    computed at the current parameters (a tensor; see ``TorchBackend.gradient_sum_and_proba``).
    """
    if not hasattr(estimator, "predict_proba"):
        return None
    fast = getattr(backend, "predict_proba_tensor", None)
    if fast is None or not backend.predict_proba_is_the_nets():
        fast = proba = None
    if proba is not None:
        P = proba.detach().cpu().numpy()
    else:
        P = fast(X).detach().cpu().numpy() if fast is not None else estimator.predict_proba(X)
    Ps = P if isinstance(P, list) else [P]
    cls = classes if isinstance(classes, list) else [classes]
    k = X.shape[0]
    Y = np.asarray(y).reshape(k, -1)
    rows = np.arange(k)
    loss, correct, pred = np.zeros(k), np.zeros(k), []
    for j, (p, c) in enumerate(zip(Ps, cls)):
        p = np.asarray(p, dtype=np.float64).reshape(k, -1)
        idx = np.searchsorted(np.asarray(c), Y[:, j])
        loss -= np.log(np.maximum(p[rows, idx], np.finfo(np.float64).tiny))
        am = p.argmax(axis=1)
        correct += am == idx
        pred.append(am)
    return float(loss.mean()), float(correct.mean() / len(Ps)), np.stack(pred, axis=1)


def _check_label_types(y, classes=None) -> None:
    """Refuse labels that mix strings with numbers (within ``y``, or against the fitted
    ``classes``): they have no common order, so numpy's sorting fails with a bare TypeError."""
    def kinds(a):
        a = np.asarray(a)
        if a.dtype.kind in "US":
            return {"string"}
        if a.dtype.kind != "O":
            return {"number"}
        return {"string" if isinstance(v, (str, bytes)) else "number" for v in a.ravel()}

    got = kinds(y)
    if len(got) > 1:
        raise ValueError("y mixes string and numeric labels (e.g. 1 and 'a'): they cannot be "
                         "ordered; use one type for all labels")
    if classes is not None and got and kinds(classes) and got != kinds(classes):
        raise ValueError(f"y holds {got.pop()} labels but the model was fitted with "
                         f"{kinds(classes).pop()} labels {np.asarray(classes)[:5].tolist()}")


def _estimator_has(attr):
    """Check the fitted inner estimator if there is one, else the unfitted one."""

    def check(self):
        est = getattr(self, "estimator_", None)
        est = _final(self.estimator) if est is None else est
        return hasattr(est, attr)

    return check


def _is_multi_output(estimator) -> bool:
    return isinstance(estimator, MultiOutputClassifier)


def _final(estimator):
    """The model whose parameters are unlearned: a Pipeline's last step, or ``estimator``."""
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def _preprocessing(estimator):
    """A Pipeline's transformers (``None`` for a plain model or a one-step Pipeline)."""
    if isinstance(estimator, Pipeline) and len(estimator) > 1:
        return estimator[:-1]
    return None


def _stateful_steps(pre) -> list[str]:
    """Names of the fitted transformers whose state depends on the training rows (every step
    but the stateless ones, e.g. a FunctionTransformer)."""
    return [name for name, step in pre.steps
            if step not in (None, "passthrough") and get_tags(step).requires_fit]


def _build_state(backend, chunks, config, rng, n_known=None) -> dict:
    """Inverse curvature of the backend's fitted model, in one pass over a stream of training
    chunks (shared by ``fit`` and ``from_fitted``): the kind comes from the registry
    (:mod:`sklearn_ssse._curvature._registry`), which checks it and its memory before any work."""
    kind, need = resolve_inverse(config, backend, n_known)
    d = backend.n_params

    def damping(n, floor=kind):
        if config["damping"] == "auto":
            lam = backend.default_damping(n).to(dtype=backend.dtype, device=backend.device)
        else:
            lam = torch.full((d,), float(config["damping"]), dtype=backend.dtype,
                             device=backend.device)
        return kind.floor_damping(lam)

    damping(n_known or 1)  # a missing damping fails before the data is read
    state = kind.build(backend, chunks, config, damping, rng, n_known=n_known)
    state["inverse"] = kind.name
    state["sparse_nnz"] = config.get("sparse_nnz")
    state["estimated_memory"] = need
    return state


def _memory_chunks(X, y, idx, config, rng):
    """In-memory training rows ``idx`` as a stream of chunks; in a random order (drawn from
    ``rng``) when the curvature uses mini-batches."""
    idx = np.asarray(idx)
    if config["fisher_batch_size"] > 1:
        idx = rng.permutation(idx)
    elif np.array_equal(idx, np.arange(X.shape[0])):
        idx = None  # plain slices, no copies
    return array_chunks(X, y, config["chunk_size"], idx)


def _check_sample_weight(sample_weight, n: int) -> np.ndarray:
    """``sample_weight`` as float64 of shape ``(n,)``: finite, >= 0 and not all 0."""
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must be numbers, got {sample_weight!r}") from exc
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must have shape ({n},) (one weight per training row), "
                         f"got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight must be finite")
    if (w < 0).any():
        raise ValueError("sample_weight must be >= 0")
    if not (w > 0).any():
        raise ValueError("sample_weight is zero for every row: nothing to fit")
    return w


def _fit_and_build(estimator, X, y, fit_params, config, sample_weight=None):
    """Fit a clone of ``estimator`` and build its inverse curvature (cached by ``memory=``).

    Everything here is independent of ``epsilon``, so a grid over epsilon reuses one result.
    ``sample_weight`` (checked) goes to the model's fit and, as a table of the training rows'
    weights by row digest (``state["row_weights"]``), to the backend.
    """
    backend_cls = select_backend(estimator)
    if sample_weight is not None:
        fit_params = dict(fit_params, sample_weight=sample_weight)
    est = clone(estimator).fit(X, y, **fit_params)
    backend = backend_cls(est, parameters=config["parameters"], dtype=config["dtype"],
                          chunk_size=config["chunk_size"])
    fit_idx = np.asarray(backend.fit_indices(X, y))
    table = None
    if sample_weight is not None:  # the rows the model trained on, with their weights
        w = np.asarray(sample_weight)[fit_idx]
        table = backend.weight_table(X[fit_idx], y[fit_idx], w)
        backend.row_weights = table
    rng = check_random_state(config["random_state"])
    # one sample's shape: the Kronecker kinds count a conv layer's positions in their estimate
    config = dict(config, input_shape=tuple(np.shape(X))[1:])
    state = _build_state(backend, _memory_chunks(X, y, fit_idx, config, rng), config, rng,
                         n_known=len(fit_idx))
    state.update(estimator=est, fit_indices=fit_idx)
    if table is not None:
        state.update(row_weights=table, sample_weight_total=float(w.sum()))
    return state


def _fit_and_build_portable(estimator, X, y, fit_params, config, sample_weight=None):
    """:func:`_fit_and_build` as ``memory=`` caches it: tensors and operators as NumPy
    containers (:func:`~sklearn_ssse._persistence.to_portable`), so that a cache written on a
    GPU is readable on a CPU-only host (joblib would pickle CUDA tensors as they are)."""
    return to_portable(_fit_and_build(estimator, X, y, fit_params, config, sample_weight))


def _from_cache(state, backend_cls, config):
    """A cached :func:`_fit_and_build_portable` result with its tensors on the device of the
    net it holds (the CPU for linear models)."""
    est = state["estimator"]
    device = backend_cls(est, parameters=config["parameters"], dtype=config["dtype"],
                         chunk_size=config["chunk_size"]).device
    return from_portable(state, device)


class UnlearnableClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier that can forget training samples without retraining (SSSE).

    Wraps a probabilistic classifier. ``fit`` trains a clone of it and caches the inverse of a
    damped curvature matrix ``F`` of its loss at the trained parameters ``theta*``.
    :meth:`forget` then erases a set ``S`` of ``k`` training samples with one preconditioned step,
    single-step sample erasure (SSSE)::

        theta <- theta + epsilon / (n - k) * F^{-1} * sum_{i in S} grad(-log p(y_i | x_i; theta))

    which approximates the model retrained from scratch on the ``n - k`` remaining samples.
    With ``curvature="ggn"`` and ``epsilon=1`` the step is the Newton / influence-function step.

    Parameters
    ----------
    estimator : estimator object
        The classifier to wrap (cloned at fit): :class:`~sklearn.linear_model.LogisticRegression`
        (binary or multinomial), :class:`~sklearn.linear_model.SGDClassifier` with
        ``loss="log_loss"``, a :class:`~sklearn.multioutput.MultiOutputClassifier` of those, a
        skorch ``NeuralNetClassifier``, or a :class:`~sklearn.pipeline.Pipeline` ending in one
        of them (its fitted transformers become a frozen feature map, ``preprocessor_``; every
        method takes raw rows).
    epsilon : float, default=1.0
        Step size of the erasure step (``>= 0``; 0 changes nothing). Tune it with
        :class:`~sklearn.model_selection.GridSearchCV` and the scorers of
        :mod:`sklearn_ssse.metrics`.
    curvature : {"ggn", "empirical_fisher"}, default="ggn"
        ``"ggn"``: the generalized Gauss-Newton matrix (true Fisher); for linear models it is the
        exact Hessian of the training objective, so with the default leave-out step and
        ``epsilon=1`` the erasure is the exact Newton step toward the retrained model.
        ``"empirical_fisher"``: ``(1/n) sum_i g_i g_i^T`` from per-sample gradients (the paper;
        cheaper for nets, but far from retraining unless epsilon is tuned: on held-out data sets
        it lands 0.5-2.8x the original's distance from the retrained model at epsilon=1, against
        0.01-0.05 for the GGN).
    damping : "auto" or float, default="auto"
        ``lambda`` in ``F = (1/n) sum_i g_i g_i^T + lambda I``. ``"auto"`` takes the wrapped
        model's own L2 penalty so that ``F`` matches its objective (``1 / (C n)`` on the weights
        of ``LogisticRegression``, ``alpha`` for ``SGDClassifier``, ``weight_decay`` for nets).
        Unpenalised intercepts get ``1e-6`` times that (the softmax intercepts have a free
        direction), or all of it for the woodbury and Sherman-Morrison inverses, which start from
        ``diag(damping)^-1``. The vector used is ``damping_``.
    inverse : {"auto", "dense", "ekfac", "kfac", "block", "woodbury", "sherman_morrison"}, \
            default="auto"
        How ``F^{-1}`` is held: ``"dense"`` Cholesky factor; ``"ekfac"`` (linear models)
        eigen-corrected Kronecker factorisation: per output, the eigenbasis of ``G (x) A``
        (``G`` the mean output curvature, ``A`` the mean ``[x, 1] [x, 1]^T``) with the exact
        eigenvalues of ``F`` in it, ``O(K^2 + p^2)`` memory, keeping the coupling of the softmax
        classes, built in two passes over the data; for skorch nets ``"ekfac"`` and ``"kfac"``
        are the per-layer Kronecker factorisations of ``nn.Linear`` / ``nn.Conv2d`` layers from
        forward/backward passes (``"kfac"``: one pass, eigenvalues of the factors; see
        :mod:`sklearn_ssse._curvature._kfac`); ``"block"`` block-diagonal
        (``block_size`` parameters per block, or one block per class / layer);
        ``"woodbury"`` exact inverse of a low-rank-plus-diagonal ``F`` built from
        ``fisher_max_samples`` samples (default 1024), memory ``O(m d)``: one factor row per
        sample (GGN rows at a label drawn from the model's own ``p(y|x)``), and for linear
        models a diagonal base equal to the exact diagonal of ``F`` (computed over every sample)
        instead of the damping alone; ``"sherman_morrison"`` the paper's rank-1 recursion
        (reference, slow). ``"auto"`` picks the first kind the model supports whose estimated
        memory fits ``memory_budget``, in the measured order of fidelity: linear models dense,
        block, ekfac, woodbury (never woodbury for a softmax model: measured further from
        retraining than not forgetting; refused with the budget a faithful kind needs); nets
        dense, block, kfac, ekfac, woodbury. Any kind whose estimate exceeds the budget is
        refused before any work, with the estimate in the message. The kinds come from a
        registry (:mod:`sklearn_ssse._curvature._registry`).
    memory_budget : int or str, default="2GiB"
        Bytes the curvature may take while it is built (an int, or a string such as ``"2GB"``,
        ``"512MiB"``); see ``inverse``.
    step : {"auto", "leave_out", "full"}, default="auto"
        Which curvature preconditions the step. ``"leave_out"``: the curvature of the data that
        remains, ``F_{D\\S}``, obtained from the cached one by removing the erased samples' own
        terms (a Woodbury correction: no training data needed, the cached curvature unchanged);
        with ``curvature="ggn"`` and ``epsilon=1`` this is the exact Newton step of the remaining
        objective. ``"full"``: the curvature of all the data at fit, ``F_D`` (the paper).
        ``"auto"``: leave_out, or full with ``fisher_batch_size > 1`` (mini-batch terms mix
        erased samples with others, so they cannot be removed). Resolved at fit into
        ``config_.step``.
    update_curvature : bool or "auto", default="auto"
        After each forget, keep the curvature without the erased samples' terms (Woodbury
        downdate, or a refactorization of dense blocks for large deletions; factors taken at
        ``theta_fit_``) so later deletions use the leave-k-out curvature and ``n - k``.
        ``"auto"``: True unless ``fisher_batch_size > 1``. With
        ``fisher_max_samples`` only the erased samples that were in the subset are removed (with
        their weight). Needs ``fisher_batch_size=1``. The penalty keeps its total (sum-form)
        strength, which is exactly ``LogisticRegression``'s objective; a mean-form damping
        (``SGDClassifier``'s ``alpha``, a float ``damping``) thus grows to
        ``lambda * n_fit / (n_fit - k)``.
    parameters : list of str, default=None
        Torch backend only: name patterns (fnmatch) of the parameters to update; ``None`` = all.
    dtype : {"float32", "float64"}, default=None
        Torch backend only: precision of gradients and curvature (float32 by default there).
    chunk_size : int, default=512
        Samples per chunk when computing gradients / curvature factors (bounds memory).
    keep_training_data : bool, default=False
        Store the training data (``X_fit_``, ``y_fit_``) so that scorers can retrain a reference
        model on the remaining data and forgotten rows can be tracked in ``fit_mask_``.
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted model and its curvature, keyed on everything but ``epsilon``, so that a
        grid over ``epsilon`` costs one fit per split.
    random_state : int, RandomState instance or None, default=None
        Sub-sampling and mini-batch grouping of the curvature.
    track_samples : bool, default=False
        Keep a salted digest of every training row (features and label; see
        :mod:`sklearn_ssse._rows`) as a multiset, without storing the rows, and remove the
        digests of forgotten rows, so that a request to forget a row that was never trained on
        or was already forgotten is detected (see ``on_untracked``). The salt is drawn from the
        OS's cryptographic generator, not from ``random_state``.
    on_untracked : {"error", "warn"}, default="error"
        What :meth:`forget` does when a row to forget is not among the rows still in the model
        (detected with ``track_samples=True`` or ``keep_training_data=True``): ``"error"``
        raises ``ValueError`` and changes nothing; ``"warn"`` issues an
        :class:`UntrackedSampleWarning` and applies the step for all the rows given.
    preprocessing : {"frozen", "update"}, default="frozen"
        What :meth:`forget` does with a Pipeline's fitted transformers. ``"frozen"``: they are
        a fixed feature map (their state still reflects the forgotten rows; erasure records name
        them). ``"update"``: the vocabularies of ``CountVectorizer`` / ``TfidfVectorizer`` and
        the categories of ``OneHotEncoder`` (directly in the Pipeline or in a
        ``ColumnTransformer``) lose the terms / categories no remaining row has (or that fall
        below ``min_df``), ``idf_`` is recomputed, and the model's weights of those features
        are removed with an optimal-brain-surgeon step (the cached curvature shrinks with
        them); other fitted steps stay frozen and are reported. Needs a single-output linear
        model and a curvature from every row; refused with ``track_samples`` /
        ``keep_training_data`` (see the user guide and :mod:`sklearn_ssse._preprocessing`).
        Without a Pipeline there is nothing to update (``"update"`` changes nothing). A
        vanished feature's weight is removed whatever ``epsilon`` (also with 0). Resolved at fit
        into ``config_.preprocessing``.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone (a Pipeline's last step), updated in place by :meth:`forget`.
    preprocessor_ : Pipeline
        A Pipeline's fitted transformers (only when ``estimator`` is a Pipeline): frozen, they
        still reflect forgotten rows; erasure records name them (``frozen_preprocessing``).
    preprocessing_state_ : dict
        Only with ``preprocessing="update"`` and a Pipeline: per updated transformer, the
        number of remaining training rows that use each of its output columns (``counts``,
        integers) and ``n_rows``; ``frozen`` names the steps that stay frozen.
    curvature_ : CurvatureOperator
        The cached inverse curvature (``curvature_.solve(v) = F^{-1} v``).
    inverse_ : str
        The resolved ``inverse`` choice (also ``config_.inverse``).
    config_ : FitConfig
        The settings resolved at fit that :meth:`forget` uses (``step``, ``update_curvature``,
        ``curvature``, ...); changing a constructor parameter after fit does not change them.
    damping_ : ndarray or torch.Tensor of shape (n_params,)
        Mean-form damping vector used at fit.
    n_samples_fit_ : int
        Samples the model was trained on.
    n_samples_ : int
        Samples still in the model (decremented by every forget).
    sample_weight_total_ : float
        Only after ``fit(..., sample_weight=w)``: the summed weight of the rows still in the
        model (decremented by every forget); ``sample_weight_fit_total_`` is that of the fit.
    n_curvature_samples_ : int
        Samples the curvature was built from (``fisher_max_samples`` or all).
    theta_fit_ : ndarray or torch.Tensor of shape (n_params,)
        Parameters right after fit.
    erasure_log_ : list of dict
        The erasure record, one entry per successful :meth:`forget` call (failed calls leave no
        entry): ``time`` (UTC, ISO 8601), ``n_removed`` (k), ``epsilon``, ``n_remaining``,
        ``update_norm`` (``||theta_new - theta||``), ``relative_update_norm`` (divided by
        ``||theta||``), ``curvature_downdated``, ``step`` (``"leave_out"`` / ``"full"``),
        ``checksum_before`` / ``checksum_after`` (:attr:`parameters_checksum_` around the
        step), ``seal_before`` (:attr:`state_seal_` before the call: the entries form a hash
        chain), ``frozen_preprocessing`` (a Pipeline's fitted steps that still reflect the erased
        rows, comma-separated; ``None`` without a Pipeline), ``updated_preprocessing`` and
        ``n_features_removed`` (``preprocessing="update"``: the transformers updated,
        comma-separated, and the number of input features, terms or categories, removed with
        their weights; ``None`` otherwise), ``loss_before`` / ``loss_after``
        (mean ``-log p(y|x)`` of the forget set from ``predict_proba``), ``accuracy_before`` /
        ``accuracy_after`` (on the forget set), ``label_flip_rate`` (share of the forget set
        whose predicted label changed), ``predicted_loss_change`` (first-order change of the
        mean training loss of the forget set, ``mean(g_i) . (theta_new - theta)``),
        ``n_untracked`` (rows not found among the remaining rows; ``None`` when nothing is
        tracked) and ``seconds``. No training rows are stored in it.
    parameters_checksum_ : str
        SHA-256 of the exact bytes of the current parameters; :meth:`forget` refuses to run
        when the wrapped model's parameters no longer match it (refitted or edited behind the
        meta-estimator's back, so the cached curvature does not belong to them).
    state_seal_ : str
        Digest of everything a deletion depends on (parameters, curvature operator, damping,
        fit-time settings, counts, row records, erasure log): SHA-256, or HMAC-SHA256 when a
        key is set with :func:`sklearn_ssse.seal_key`. Recomputed by fit and every forget,
        verified in full on load (and by :meth:`verify_seal`), and before every forget (in
        full when anything was rebound or written in place since the last seal).
    seal_mode_ : {"sha256", "hmac-sha256"}
        How :attr:`state_seal_` was made (see the user guide, "Deletions you can trust").
    sample_salt_ : bytes
        Key of the row digests (only with ``track_samples=True``).
    sample_digests_ : ndarray of dtype S16
        Sorted distinct digests of the rows still in the model (only with
        ``track_samples=True``).
    sample_digest_counts_ : ndarray of int
        Multiplicity of each digest (only with ``track_samples=True``).
    classes_ : ndarray or list of ndarray
        Class labels (a list for multi-output models).
    n_features_in_ : int
        Number of features seen during fit.
    X_fit_, y_fit_ : ndarray
        Training data (only with ``keep_training_data=True``).
    fit_mask_ : ndarray of bool
        Rows of ``X_fit_`` still in the model (only with ``keep_training_data=True``): False for
        forgotten rows and for rows the estimator never trained on (a skorch validation split).

    See Also
    --------
    sklearn_ssse.model_selection.ForgetSplit : Forget sets for tuning ``epsilon`` with
        :class:`~sklearn.model_selection.GridSearchCV`.
    sklearn_ssse.model_selection.epsilon_sweep : Scores a whole grid of epsilons from one fit.
    sklearn_ssse.metrics.make_unlearning_scorer : Scorers that compare with retraining.
    sklearn_ssse.metrics.normalized_parameter_distance : Distance to the retrained model.

    Notes
    -----
    The erasure step is single-step sample erasure (SSSE) [1]_. With ``curvature="ggn"`` and
    ``epsilon=1`` it is the influence-function (Newton) estimate of the retrained model [2]_;
    with the default ``step="leave_out"`` (the curvature of the data that remains) it is the
    Newton removal step of certified data removal [3]_, whose residual-gradient certificate
    :meth:`certify` reports. ``inverse="sherman_morrison"`` and ``"woodbury"`` hold the
    inverse through rank-one / Woodbury updates as in WoodFisher [4]_; ``inverse="block"``
    keeps a block-diagonal curvature (per class or per layer), the structure that K-FAC [5]_
    approximates further with Kronecker factors.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860
    .. [2] P. W. Koh and P. Liang, "Understanding Black-box Predictions via Influence
       Functions", ICML 2017. https://arxiv.org/abs/1703.04730
    .. [3] C. Guo, T. Goldstein, A. Hannun and L. van der Maaten, "Certified Data Removal from
       Machine Learning Models", ICML 2020. https://arxiv.org/abs/1911.03030
    .. [4] S. P. Singh and D. Alistarh, "WoodFisher: Efficient Second-Order Approximation for
       Neural Network Compression", NeurIPS 2020. https://arxiv.org/abs/2004.14340
    .. [5] J. Martens and R. Grosse, "Optimizing Neural Networks with Kronecker-factored
       Approximate Curvature", ICML 2015. https://arxiv.org/abs/1503.05671

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_ssse import UnlearnableClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), curvature="ggn").fit(X, y)
    >>> clf.forget(X[:5], y[:5]).n_samples_
    145
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    """

    #: accepted values of the string-valued parameters (``inverse``: the registry's kinds, read
    #: when the parameters are validated, see :mod:`sklearn_ssse._curvature._registry`)
    _CHOICES: dict = {
        "curvature": ("empirical_fisher", "ggn"),
        "inverse": _inverse_choices,
        "step": ("auto", "leave_out", "full"),
        "dtype": ("float32", "float64", None),
        "on_untracked": ("error", "warn"),
        "preprocessing": ("frozen", "update"),
    }

    def _validate_params(self) -> None:
        """Check the constructor parameters (types and ranges), before any work."""
        def bad(name, what):
            return ValueError(f"The '{name}' parameter of UnlearnableClassifier must be {what}. "
                              f"Got {getattr(self, name)!r} instead.")

        def number(name, *, integer=False, low=0, none=False):
            v = getattr(self, name)
            if v is None and none:
                return
            kind = Integral if integer else Real
            if isinstance(v, bool) or not isinstance(v, kind) or not v >= low:
                raise bad(name, f"{'an int' if integer else 'a number'} >= {low}"
                                + (" or None" if none else ""))

        if not hasattr(self.estimator, "fit"):
            raise bad("estimator", "an estimator with a 'fit' method")
        for name, options in self._CHOICES.items():
            options = options() if callable(options) else options
            if getattr(self, name) not in options:
                raise bad(name, "one of " + ", ".join(map(repr, options)))
        number("epsilon")
        if self.damping != "auto":
            number("damping")
        for name in ("fisher_batch_size", "chunk_size"):
            number(name, integer=True, low=1)
        for name in ("block_size", "fisher_max_samples"):
            number(name, integer=True, low=1, none=True)
        if not (isinstance(self.memory_budget, str)
                or (isinstance(self.memory_budget, Integral)
                    and not isinstance(self.memory_budget, bool) and self.memory_budget >= 1)):
            raise bad("memory_budget", "a positive int (bytes) or a string such as '2GiB'")
        if self.update_curvature != "auto" and not isinstance(self.update_curvature,
                                                              (bool, np.bool_)):
            raise bad("update_curvature", "a bool or 'auto'")
        for name in ("keep_training_data", "track_samples"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise bad(name, "a bool")
        if self.parameters is not None and not isinstance(self.parameters, (list, tuple, str)):
            raise bad("parameters", "a list or tuple of names / patterns, a pattern, or None")
        if not (self.memory is None or isinstance(self.memory, str)
                or hasattr(self.memory, "cache")):
            raise bad("memory", "None, a path or a joblib.Memory")
        check_random_state(self.random_state)

    def __init__(self, estimator, *, epsilon=1.0, curvature="ggn", damping="auto",
                 inverse="auto", memory_budget="2GiB", step="auto", block_size=None,
                 fisher_batch_size=1, fisher_max_samples=None, update_curvature="auto",
                 parameters=None, dtype=None, chunk_size=512, keep_training_data=False,
                 memory=None, random_state=None, track_samples=False, on_untracked="error",
                 preprocessing="frozen"):
        self.estimator = estimator
        self.epsilon = epsilon
        self.curvature = curvature
        self.damping = damping
        self.inverse = inverse
        self.memory_budget = memory_budget
        self.step = step
        self.block_size = block_size
        self.fisher_batch_size = fisher_batch_size
        self.fisher_max_samples = fisher_max_samples
        self.update_curvature = update_curvature
        self.parameters = parameters
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.keep_training_data = keep_training_data
        self.memory = memory
        self.random_state = random_state
        self.track_samples = track_samples
        self.on_untracked = on_untracked
        self.preprocessing = preprocessing

    # ------------------------------------------------------------------------------ sklearn API
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.target_tags.single_output = inner.target_tags.single_output
        try:  # scipy sparse X: the linear models (a Pipeline: its first step decides)
            accepts = select_backend(_final(self.estimator)).accepts_sparse
        except Exception:
            accepts = False
        tags.input_tags.sparse = bool(accepts and get_tags(self.estimator).input_tags.sparse)
        tags.input_tags.allow_nan = False
        tags.non_deterministic = inner.non_deterministic
        return tags

    def _validate_Xy(self, X, y, reset: bool, backend_cls, transformed: bool = False):
        """Validate ``(X, y)`` to the input dtype of ``backend_cls`` (selected once by the
        caller: at fit from ``estimator``, afterwards ``type(self.backend_)``).

        With a Pipeline the model's input is the output of its transformers: at fit the caller
        transforms and passes ``transformed=True``; afterwards raw rows go through the frozen
        ``preprocessor_`` unless ``transformed`` (rows already in the model's input space, as
        the scorers hold them)."""
        model = _final(self.estimator) if reset else self.estimator_
        multi = _is_multi_output(model)
        pre = None if reset else self.__dict__.get("preprocessor_")
        model_space = transformed if reset else pre is not None
        if pre is not None and not transformed:
            X = pre.transform(X)
        accept = bool(getattr(backend_cls, "accepts_sparse", False))
        if model_space:  # the raw rows were checked by the transformers
            X, y = check_X_y(X, y, multi_output=multi, dtype=backend_cls.input_dtype,
                             y_numeric=False, accept_sparse=accept)
        else:
            X, y = validate_data(self, X, y, reset=reset, multi_output=multi,
                                 dtype=backend_cls.input_dtype, y_numeric=False,
                                 accept_sparse=accept)
        if sp.issparse(X):  # one format everywhere: row chunks are CSR slices
            X = sp.csr_matrix(X)
        if multi and y.ndim == 1:
            check_classification_targets(y)  # a continuous y: say so first
            raise ValueError(f"{type(model).__name__} needs a 2-D y (n_samples, "
                             "n_outputs): one column of class labels per output")
        return X, y

    def _config(self, X=None) -> dict:
        """Everything the fit and the curvature depend on (not epsilon); ``sparse_nnz``: the
        stored entries of a scipy sparse training ``X`` (``None`` for dense rows)."""
        config = {k: getattr(self, k) for k in (
            "curvature", "damping", "inverse", "memory_budget", "block_size", "fisher_batch_size",
            "fisher_max_samples", "parameters", "dtype", "chunk_size", "random_state")}
        config["sparse_nnz"] = int(X.nnz) if sp.issparse(X) else None
        return config

    def _resolved(self, state) -> FitConfig:
        """The frozen fit-time settings (``config_``)."""
        b = int(self.fisher_batch_size)
        step = self.step if self.step != "auto" else ("leave_out" if b == 1 else "full")
        update = self.update_curvature if self.update_curvature != "auto" else b == 1
        return FitConfig(curvature=self.curvature, inverse=state["inverse"], step=step,
                         update_curvature=bool(update), fisher_batch_size=b,
                         chunk_size=int(self.chunk_size),
                         memory_budget=parse_bytes(self.memory_budget),
                         estimated_memory=int(state.get("estimated_memory", 0)),
                         preprocessing=self.preprocessing,
                         sparse_nnz=state.get("sparse_nnz"))

    def _check_sample_weight_options(self, backend_cls, model) -> None:
        """Refuse ``sample_weight`` where it cannot be honoured (before any work)."""
        if not getattr(backend_cls, "accepts_sample_weight", False):
            raise ValueError(f"sample_weight is not supported for {type(model).__name__} "
                             "(only the scikit-learn linear models take it)")
        if self.fisher_batch_size > 1:
            raise ValueError("sample_weight needs fisher_batch_size=1 (a mini-batch "
                             "curvature term mixes rows of different weights)")

    @_restore_on_error
    def fit(self, X, y, sample_weight=None, **fit_params):
        """Fit the wrapped classifier and cache its inverse curvature.

        Atomic: if it fails, a previously fitted model is left exactly as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the training rows (finite, >= 0, not all 0), passed to the fit of the
            model (of a Pipeline: its last step; the transformers are fitted unweighted) and
            honoured by the curvature and the erasure step: a row of weight ``w`` counts like
            ``w`` copies of it.  Each row's weight is kept by the row's identity (a salted
            digest of its features, as the model sees them, and its label), so that
            :meth:`forget` needs only the rows.  Identical rows must have the same weight.
            Linear models only (not a skorch net), with ``fisher_batch_size=1`` and
            ``preprocessing="frozen"``.
        **fit_params : dict
            Passed to the wrapped estimator's ``fit``.

        Returns
        -------
        self : UnlearnableClassifier
            The fitted meta-estimator.
        """
        self._validate_params()
        self._check_options()
        model = _final(self.estimator)
        backend_cls = select_backend(model)
        if sample_weight is not None:
            self._check_sample_weight_options(backend_cls, model)
            if self.preprocessing == "update":
                raise ValueError("sample_weight is not supported with preprocessing='update' "
                                 "(it changes the rows the model sees, by which their weights "
                                 "are kept): use preprocessing='frozen'")
        pre = _preprocessing(self.estimator)
        if pre is not None:  # a Pipeline: its transformers are fitted once, then frozen
            shape = getattr(X, "shape", ())  # (the raw rows need not be an array)
            n_raw = shape[1] if len(shape) == 2 else None
            pre = clone(pre)
            # fit, then transform: forget() transforms the raw rows with transform(), whose
            # output can differ from fit_transform's in the last bits (TfidfVectorizer), and
            # the rows the model trains on must be exactly those it is later asked to forget
            X_raw, X = X, pre.fit(X, y).transform(X)
        X, y = self._validate_Xy(X, y, reset=True, backend_cls=backend_cls,
                                 transformed=pre is not None)
        for col in y.reshape(len(y), -1).T:
            _check_label_types(col)
        check_classification_targets(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X.shape[0])
        config = self._config(X)
        if self.memory is None:
            state = _fit_and_build(model, X, y, fit_params, config, sample_weight)
        else:
            cached = check_memory(self.memory).cache(_fit_and_build_portable)
            state = _from_cache(cached(model, X, y, fit_params, config, sample_weight),
                                backend_cls, config)
        init_preprocessing(self, pre, X_raw if pre is not None else None, X, state)
        if pre is None:
            self.__dict__.pop("preprocessor_", None)  # from an earlier fit of a Pipeline
        else:
            self.preprocessor_ = pre
            n_in = getattr(pre, "n_features_in_", n_raw)
            if n_in is not None:
                self.n_features_in_ = int(n_in)
            else:  # 1-D raw rows (a text vectorizer's documents): no feature count
                self.__dict__.pop("n_features_in_", None)
            if hasattr(pre, "feature_names_in_"):
                self.feature_names_in_ = pre.feature_names_in_
        return self._set_fitted_state(state, backend_cls, X, y)

    def _check_options(self) -> None:
        """Checks of the parameters beyond ``_parameter_constraints`` (fit and from_fitted)."""
        if not math.isfinite(self.epsilon):
            raise ValueError(f"epsilon must be finite, got {self.epsilon}")
        parse_bytes(self.memory_budget)
        mixed = ("a mini-batch curvature term mixes an erased sample with others, so its terms "
                 "cannot be removed exactly")
        if (self.update_curvature != "auto" and bool(self.update_curvature)
                and self.fisher_batch_size > 1):
            raise ValueError(f"update_curvature=True needs fisher_batch_size=1: {mixed}")
        if self.step == "leave_out" and self.fisher_batch_size > 1:
            raise ValueError(f"step='leave_out' needs fisher_batch_size=1: {mixed}; use "
                             "step='full' (or 'auto')")
        check_update_options(self)

    def _set_fitted_state(self, state, backend_cls, X=None, y=None, digests=None):
        """Set the fitted attributes from a built state (shared by fit and from_fitted).

        ``digests`` (``(salt, row digests)``) replaces hashing ``X`` for ``track_samples``.
        """
        self.estimator_ = state["estimator"]
        self._backend_kwargs = {"parameters": self.parameters, "dtype": self.dtype,
                                "chunk_size": int(self.chunk_size)}
        for attr in ("sample_weight_total_", "sample_weight_fit_total_"):
            self.__dict__.pop(attr, None)  # from an earlier weighted fit
        if state.get("row_weights") is not None:  # the fit's sample weights, by row identity
            self._backend_kwargs["row_weights"] = state["row_weights"]
            self.sample_weight_fit_total_ = self.sample_weight_total_ = float(
                state["sample_weight_total"])
        self.backend_ = backend_cls(self.estimator_, **self._backend_kwargs)
        self.curvature_ = state["curvature"]
        self._damping = state["damping"]
        self.inverse_ = state["inverse"]
        self.config_ = self._resolved(state)
        self._label_salt = state.get("label_salt")
        self.n_samples_fit_ = self.n_samples_ = int(state["n"])
        self.n_curvature_samples_ = int(state.get("n_curvature_samples", state["n"]))
        self._curvature_sample = state.get("sample")
        self._theta_fit = self.backend_.get_parameters()
        self._theta = self._theta_fit.clone()
        self.erasure_log_ = []
        if hasattr(self.estimator_, "classes_"):
            self.classes_ = self.estimator_.classes_
        need_rows = self.keep_training_data or (self.track_samples and digests is None)
        if need_rows:  # in-memory data; rows of a skorch validation split are not in the model
            fit_idx = np.asarray(state.get("fit_indices", np.arange(X.shape[0])))
        if self.keep_training_data:
            self.X_fit_, self.y_fit_ = X, y
            self.fit_mask_ = np.zeros(X.shape[0], dtype=bool)
            self.fit_mask_[fit_idx] = True
        self.parameters_checksum_ = _parameters_checksum(self._theta)
        for attr in ("sample_salt_", "sample_digests_", "sample_digest_counts_"):
            self.__dict__.pop(attr, None)  # from an earlier fit with track_samples=True
        if self.track_samples:
            if digests is None:
                salt = new_salt()
                digests = salt, row_digests(X[fit_idx], self._label_codes(y[fit_idx]), salt=salt)
            self.sample_salt_ = digests[0]
            self.sample_digests_, self.sample_digest_counts_ = multiset(digests[1])
        self._seal()
        return self

    # ------------------------------------------------------------------- public array views
    def _public(self, name: str):
        """A fitted tensor as users see it: a NumPy copy for linear models, the tensor itself
        (on the net's device) for nets."""
        try:
            t = self.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None
        if getattr(self.backend_, "public_numpy", False):
            return t.detach().cpu().numpy().copy()
        return t

    @property
    def theta_fit_(self):
        """Parameters right after fit (NumPy for linear models, a tensor on the net's device
        for nets)."""
        return self._public("_theta_fit")

    @property
    def damping_(self):
        """Mean-form damping vector used at fit (NumPy for linear models, a tensor on the
        net's device for nets)."""
        return self._public("_damping")

    # ------------------------------------------------------------------------------ the seal
    def _seal(self) -> None:
        """Seal the current state (HMAC with the configured key, else SHA-256)."""
        key = current_key()
        self.seal_mode_ = "hmac-sha256" if key is not None else "sha256"
        self.state_seal_ = digest(self.__dict__, key, memo=self._seal_memo())
        self._seal_fingerprint = fingerprint(self.__dict__)

    def _seal_memo(self) -> dict:
        """Digests of large tensors kept between seals (never pickled; a new dict, so that a
        rollback restores the previous one)."""
        memo = dict(self.__dict__.get("_seal_memo_cache", {}))
        self._seal_memo_cache = memo
        return memo

    def _verify_seal(self, full: bool) -> None:
        """Raise :class:`SealError` unless the state matches ``state_seal_``; ``full=False``
        skips the digest when the in-memory fingerprint is unchanged since the last seal."""
        if "state_seal_" not in self.__dict__:
            raise SealError("this model has no state seal (saved by an older version of "
                            "sklearn_ssse?): its cached state cannot be trusted; refit it")
        if not full and self.__dict__.get("_seal_fingerprint") == fingerprint(self.__dict__):
            return
        keyed = self.seal_mode_ == "hmac-sha256"
        key = current_key() if keyed else None
        if keyed and key is None:
            raise SealError("this model is sealed with a secret key: set it with "
                            "sklearn_ssse.seal_key(key) (or the SKLEARN_SSSE_SEAL_KEY environment "
                            "variable) to verify or update it")
        # a full verification hashes everything afresh (an empty memo) and, once it matches,
        # remembers the large digests, so that the next seal (after a forget) does not rehash
        # the unchanged curvature a second time (a model just loaded or copied)
        memo = self._seal_memo() if not full else {}
        if not hmac.compare_digest(digest(self.__dict__, key, memo=memo), self.state_seal_):
            raise SealError("the model's state does not match its seal: the parameters, the "
                            "cached curvature, the row records or the erasure log were modified "
                            "or corrupted since it was sealed" + (", or the key is not the one it "
                                                                 "was sealed with" if keyed else "")
                            + ". Nothing was changed; refit it or load an intact copy")
        if full:
            self._seal_memo_cache = memo
        self._seal_fingerprint = fingerprint(self.__dict__)

    def verify_seal(self) -> bool:
        """Verify the whole sealed state against :attr:`state_seal_` (a full digest).

        Returns
        -------
        True
            When it matches.

        Raises
        ------
        SealError
            The state was modified or corrupted since it was sealed, the key is wrong, or the
            model is keyed and no key is set.
        """
        check_is_fitted(self)
        with _lock_of(self):
            self._verify_seal(full=True)
        return True

    @classmethod
    def from_fitted(cls, estimator, X, y=None, *, copy: bool = True, sample_weight=None,
                    **params) -> UnlearnableClassifier:
        """Wrap an already fitted classifier, building its curvature from its training data.

        Nothing is trained: the curvature is accumulated at the estimator's parameters in one
        pass over the data, chunk by chunk with bounded memory, so the training set may be
        larger than memory. It can be given in memory (``X, y``), as dask arrays (read one row
        block at a time), or as an iterable of ``(X_chunk, y_chunk)`` pairs (``y=None``), e.g. a
        generator reading files; chunks are never concatenated.  Memory: one Gram matrix per
        curvature block for ``inverse="dense"`` / ``"block"``, ``fisher_max_samples`` raw rows
        for the sub-sampled inverses, plus ``chunk_size`` samples' factors.  The result equals
        ``fit`` on the same rows (to rounding) for every option; with ``fisher_batch_size > 1``
        a stream keeps its own order (see :mod:`sklearn_ssse._streaming`).

        Parameters
        ----------
        estimator : fitted estimator
            A fitted classifier of a supported family (see the class docstring), trained on
            exactly the data passed here, at an optimum of its objective on it.  In memory, the
            rows are those ``fit`` would use (a skorch net's validation split is left out); a
            stream must hold the training rows only.
        X : array-like of shape (n_samples, n_features), dask array, or iterable
            The training features, or (with ``y=None``) an iterable of ``(X_chunk, y_chunk)``.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), or dask array, \
                default=None
            The training labels; ``None`` when ``X`` is an iterable of chunks.
        copy : bool, default=True
            Work on a deep copy of ``estimator`` (``forget`` then leaves the original alone);
            ``False`` updates ``estimator`` itself in place.
        sample_weight : array-like of shape (n_samples,), default=None
            The weights ``estimator`` was trained with (see :meth:`fit`); ``X, y`` in memory
            only.
        **params
            Constructor parameters of :class:`UnlearnableClassifier` (``curvature``,
            ``inverse``, ``fisher_max_samples``, ``chunk_size``, ...). ``memory`` is not used.

        Returns
        -------
        UnlearnableClassifier
            A fitted meta-estimator whose ``estimator_`` is (a copy of) ``estimator``. Calling
            its ``fit`` would train a fresh clone.

        Raises
        ------
        ValueError
            Bad data (labels the model does not know, wrong feature count, an empty stream) or
            ``keep_training_data=True`` with streamed data.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn_ssse import UnlearnableClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> lr = LogisticRegression(max_iter=1000).fit(X, y)
        >>> chunks = ((X[i:i + 40], y[i:i + 40]) for i in range(0, len(X), 40))
        >>> clf = UnlearnableClassifier.from_fitted(lr, chunks, curvature="ggn")
        >>> clf.n_samples_
        150
        >>> clf.forget(X[:5], y[:5]).n_samples_
        145
        """
        self = cls(estimator, **params)
        self._validate_params()
        self._check_options()
        if self.preprocessing == "update":
            raise ValueError("from_fitted does not support preprocessing='update' (the counts it "
                             "needs are taken while fit transforms the training rows): use fit")
        pre = _preprocessing(estimator)
        estimator = _final(estimator)
        backend_cls = select_backend(estimator)
        check_is_fitted(estimator)
        est = deepcopy(estimator) if copy else estimator
        if pre is not None:  # a fitted Pipeline: its transformers become the frozen features
            check_is_fitted(pre)
            pre = deepcopy(pre) if copy else pre
            n_raw = getattr(X, "shape", (None, None))[1]
            if y is not None and not (is_dask(X) or is_dask(y)):
                X = pre.transform(X)
            else:
                if self.keep_training_data:
                    raise ValueError("keep_training_data=True needs the training data in "
                                     "memory; pass X and y as arrays")
                X, y = ((pre.transform(Xc), yc) for Xc, yc in iter_data(X, y)), None
            self.preprocessor_ = pre
        backend = backend_cls(est, parameters=self.parameters, dtype=self.dtype,
                              chunk_size=int(self.chunk_size))
        if sample_weight is not None:
            self._check_sample_weight_options(backend_cls, est)
            if y is None or is_dask(X) or is_dask(y):
                raise ValueError("sample_weight needs the training data in memory; pass X and "
                                 "y as arrays")
        config = self._config()
        rng = check_random_state(self.random_state)
        classes = getattr(est, "classes_", None)
        if classes is not None:
            self.classes_ = classes  # label codes for the row digests
        n_features = getattr(est, "n_features_in_", None)
        check = functools.partial(validated_chunks, dtype=backend_cls.input_dtype,
                                  multi_output=_is_multi_output(estimator), classes=classes,
                                  n_features=n_features,
                                  accept_sparse=bool(getattr(backend_cls, "accepts_sparse",
                                                             False)))
        digests = None
        if y is not None and not (is_dask(X) or is_dask(y)):
            # (a fitted Pipeline's rows were transformed above)
            X, y = self._validate_Xy(X, y, reset=True, backend_cls=backend_cls,
                                     transformed=pre is not None)
            check_classification_targets(y)
            for _ in check([(X, y)]):  # feature count and labels against the fitted model
                pass
            fit_idx = np.asarray(backend.fit_indices(X, y))  # e.g. without a validation split
            config["sparse_nnz"] = int(X.nnz) if sp.issparse(X) else None
            table = None
            if sample_weight is not None:
                w = _check_sample_weight(sample_weight, X.shape[0])[fit_idx]
                table = backend.weight_table(X[fit_idx], y[fit_idx], w)
                backend.row_weights = table
            chunks = _memory_chunks(X, y, fit_idx, config, rng)
            state = _build_state(backend, chunks, config, rng, n_known=len(fit_idx))
            state["fit_indices"] = fit_idx
            if table is not None:
                state.update(row_weights=table, sample_weight_total=float(w.sum()))
        else:
            if self.keep_training_data:
                raise ValueError("keep_training_data=True needs the training data in memory; "
                                 "pass X and y as arrays (or use track_samples=True)")
            info = {}
            chunks = check(iter_data(X, y), info=info)
            first = next(chunks, None)  # sparse chunks: resolved from the first one's density
            if first is not None and sp.issparse(first[0]):
                m = int(self.fisher_max_samples or _lowrank.WOODBURY_DEFAULT_SAMPLES)
                config["sparse_nnz"] = int(first[0].nnz * m / max(first[0].shape[0], 1))
            chunks = itertools.chain([first] if first is not None else [], chunks)
            if self.track_samples:
                salt, parts = new_salt(), []

                def tap(stream):
                    for Xc, yc in stream:
                        parts.append(row_digests(Xc, self._label_codes(yc), salt=salt))
                        yield Xc, yc

                chunks = tap(chunks)
            state = _build_state(backend, chunks, config, rng)
            self.n_features_in_ = info["n_features"]
            if self.track_samples:
                digests = salt, np.concatenate(parts)
        state["estimator"] = est
        if pre is not None:
            self.n_features_in_ = int(getattr(pre, "n_features_in_", n_raw or 0))
        return self._set_fitted_state(state, backend_cls, X, y, digests=digests)

    # ------------------------------------------------------------------------------ unlearning
    def _live_parameters(self) -> torch.Tensor:
        """The parameters of ``estimator_`` read through a freshly built backend, so that a
        replaced or refitted estimator (or sub-estimator) is seen."""
        kwargs = getattr(self, "_backend_kwargs",
                         {"parameters": self.parameters, "dtype": self.dtype})
        return type(self.backend_)(self.estimator_, **kwargs).get_parameters()

    def _check_parameters_unchanged(self) -> None:
        """Refuse to unlearn when the wrapped model's parameters are not those the cached
        curvature belongs to: the live parameters must be, bit for bit, the sealed ``_theta``
        (whose checksum is :attr:`parameters_checksum_`, bound to it by the seal checked just
        before). Compared on the model's device: no host copy of the parameters."""
        try:
            live = self._live_parameters()
            cached = self.backend_.get_parameters()
        except Exception as exc:
            raise RuntimeError("the wrapped estimator was replaced or changed outside forget() "
                               "and its parameters cannot be read; call fit again") from exc
        if not (_same_bits(live, self._theta) and _same_bits(cached, self._theta)):
            raise RuntimeError("the wrapped estimator's parameters changed outside forget() (was "
                               "it refitted?): their checksum no longer matches "
                               "parameters_checksum_, so the cached curvature does not belong to "
                               "them. Nothing was changed; call fit again")

    def _check_state(self) -> None:
        """Before any change: the sealed state is intact and the wrapped model's parameters are
        those the cached curvature belongs to."""
        self._verify_seal(full=False)
        self._check_parameters_unchanged()

    def _write_parameters(self, theta: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Write ``theta`` into the wrapped model and check it arrived: ``(written, checksum)``.

        A failure here is rolled back by the caller's ``@_restore_on_error`` (it puts the
        previous parameters back)."""
        try:
            self.backend_.set_parameters(theta)
        except ValueError as exc:
            if "read-only" not in str(exc):
                raise
            raise ValueError(
                "the wrapped model's parameters are read-only, as after "
                "joblib.load(path, mmap_mode='r'): updating them writes in place. Load the model "
                "writable (joblib.load(path) or mmap_mode='c', copy-on-write); nothing was "
                "changed") from exc
        written = self.backend_.get_parameters()
        host = written.detach().cpu()  # the one host copy: the checksum and the next seal
        checksum = _parameters_checksum(host)
        self._seal_memo_cache = remember(self.__dict__.get("_seal_memo_cache", {}), written,
                                         host)
        if not _same_bits(self._live_parameters(), written):
            raise RuntimeError("the new parameters did not reach the wrapped estimator "
                               "(estimator_ was replaced or refitted outside the meta-estimator); "
                               "nothing was changed: call fit again")
        if not bool(torch.isfinite(written).all()):
            raise FloatingPointError("the updated parameters are not finite; nothing was changed")
        return written, checksum

    def _check_forget_input(self, X, y, transformed: bool = False):
        check_is_fitted(self)
        self._check_state()
        X, y = self._validate_Xy(X, y, reset=False, backend_cls=type(self.backend_),
                                 transformed=transformed)
        k = X.shape[0]
        if k == 0:
            raise ValueError("the forget set is empty")
        classes = self.classes_ if isinstance(self.classes_, list) else [self.classes_]
        cols = y.reshape(k, -1).T
        if len(cols) != len(classes):
            raise ValueError(f"y has {len(cols)} outputs, the model was fitted with {len(classes)}")
        for j, (col, cls) in enumerate(zip(cols, classes)):
            _check_label_types(col, cls)
            unseen = np.setdiff1d(col, cls)
            if unseen.size:
                where = f" (output {j})" if len(classes) > 1 else ""
                raise ValueError(f"y contains labels never seen at fit{where}: {unseen.tolist()}")
        if k >= self.n_samples_:
            raise ValueError(f"cannot forget {k} samples: only {self.n_samples_} remain in the "
                             "model (forgetting all of them leaves nothing to approximate)")
        return X, y

    def _check_epsilon(self, epsilon) -> float:
        eps = self.epsilon if epsilon is None else epsilon
        if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"epsilon must be a finite number >= 0, got {eps!r}")
        return float(eps)

    def _gradient_sum(self, X, y, proba_out: list | None = None) -> torch.Tensor:
        """The summed gradient of ``(X, y)`` at the current parameters; a backend that reads
        the probabilities of ``X`` in the same pass (nets) appends them to ``proba_out``."""
        both = getattr(self.backend_, "gradient_sum_and_proba", None)
        fast = getattr(self.backend_, "gradient_sum", None)  # closed form / batched backward
        if proba_out is not None and both is not None:
            g, P = both(X, y)
            proba_out.append(P)
        else:
            g = fast(X, y) if fast is not None else \
                self.backend_.per_sample_gradients(X, y).sum(0)
        return g.to(dtype=self.curvature_.dtype, device=self.curvature_.device)

    def _downdate(self, X, y, gradient_sink: dict | None = None):
        """The cached curvature without the terms of ``(X, y)``, taken at ``theta_fit_`` (the
        parameters it was built at), and its sampled-row record.  ``gradient_sink``: a dict in
        which a kind that reads the forget set in forward/backward passes (K-FAC / EK-FAC of a
        net) may leave the summed gradient ``"g"`` at ``theta_fit_`` and the probabilities
        ``"proba"`` (a list of chunks) from the same passes."""
        config = self.config_.to_dict()
        kind = kind_for(config["inverse"], self.backend_, config)
        state = {"sample": getattr(self, "_curvature_sample", None),
                 "label_salt": getattr(self, "_label_salt", None),
                 "gradient_sink": gradient_sink}
        with parameters_at(self.backend_, self._theta_fit):
            return kind.downdate(self.curvature_, state, self.backend_, X, y, config)

    def _erasure(self, X, y, keep_curvature: bool = False, proba_out: list | None = None):
        """``(delta, g, curvature, record)``: the displacement of an erasure at epsilon=1 (no
        mutation), the summed gradient of the forget set at the current parameters, and the
        curvature without the erased terms at ``theta_fit_`` with its sampled-row record
        (computed for the leave-out step, or when ``keep_curvature``; else ``None``)::

            full:       delta = F_D^{-1} g / (n - k) = n M^{-1} g / (n - k)
            leave_out:  delta = F_{D\\S}^{-1} g / (n - k) = (M - B_S)^{-1} g

        with ``M`` the cached sum form (``F = M / n``) and ``B_S`` the erased samples' terms.
        ``proba_out``: see :meth:`_gradient_sum`.
        """
        k = X.shape[0]
        cfg = self.config_
        down = sample = g = None
        downdate = cfg.step == "leave_out" or keep_curvature
        # at the parameters the curvature was built at (before any step), the downdate's passes
        # over the forget set give its gradient too: one forward pass instead of two
        sink = {} if downdate and _same_bits(self._theta, self._theta_fit) else None
        if sink is not None:
            try:
                down, sample = self._downdate(X, y, sink)
            except Exception:
                self._check_gradient(self._gradient_sum(X, y))  # the error of the two-pass order
                raise
            if "g" in sink:
                g = sink["g"].to(dtype=self.curvature_.dtype, device=self.curvature_.device)
                if proba_out is not None:
                    proba_out.append(torch.cat(sink["proba"]))
        if g is None:
            g = self._gradient_sum(X, y, proba_out)
        self._check_gradient(g)
        if downdate and sink is None:
            down, sample = self._downdate(X, y)
        if cfg.step == "full":
            total = self.__dict__.get("sample_weight_total_")
            if total is None:
                return self.curvature_.solve(g) / (self.n_samples_ - k), g, down, sample
            # weighted: n / (n - k) becomes W / (W - W_S), W the weight of the curvature's rows
            left = total - self._forget_weight(X, y)
            if not left > 0:
                raise ValueError("these rows carry all the remaining sample weight: nothing "
                                 "would be left to approximate; nothing was changed")
            ref = total if cfg.update_curvature else self.sample_weight_fit_total_
            return self.curvature_.solve_sum(g) * (ref / left), g, down, sample
        return down.solve_sum(g), g, down, sample

    @staticmethod
    def _check_gradient(g) -> None:
        if not bool(torch.isfinite(g).all()):
            raise FloatingPointError("the gradients of the forget set are not finite; nothing "
                                     "was changed")

    def _forget_weight(self, X, y) -> float:
        """The summed sample weight of rows ``(X, y)`` of a weighted model (0 unweighted)."""
        if "sample_weight_total_" not in self.__dict__:  # unweighted: no lookup
            return 0.0
        return float(np.sum(self.backend_.sample_weights(X, y)))

    def _row_index(self) -> RowIndex:
        """The hash index of the kept training rows, built once per fit (the rows never change;
        which of them remain is ``fit_mask_``); not pickled."""
        cached = self.__dict__.get("_row_index_cache")
        if cached is None or cached[0] is not self.X_fit_ or cached[1] is not self.y_fit_:
            cached = (self.X_fit_, self.y_fit_, RowIndex(self.X_fit_, self.y_fit_))
            self._row_index_cache = cached
        return cached[2]

    def _label_codes(self, y) -> np.ndarray:
        """Labels as class indices (one column per output): a dtype-independent form of ``y``
        for the row digests."""
        classes = getattr(self, "classes_", None)
        Y = np.asarray(y).reshape(len(y), -1)
        if classes is None:
            return Y
        classes = classes if isinstance(classes, list) else [classes]
        return np.stack([np.searchsorted(np.asarray(c), Y[:, j]) for j, c in enumerate(classes)],
                        axis=1).astype(np.int64)

    @_serialised
    def forget_direction(self, X, y):
        """The erasure direction ``delta = F^{-1} sum_S g_i / (n - k)`` (no mutation).

        ``forget(X, y, epsilon)`` moves the parameters to ``theta + epsilon * delta``, so every
        epsilon can be evaluated in closed form from one direction. ``F`` is the curvature of
        the remaining data (``step="leave_out"``, the default) or of all the data at fit
        (``step="full"``).

        Parameters
        ----------
        X : array-like of shape (k, n_features)
            Samples to forget.
        y : array-like of shape (k,) or (k, n_outputs)
            Their labels.

        Returns
        -------
        delta : ndarray or torch.Tensor of shape (n_params,)
            The direction: a NumPy array for linear models, a tensor on the net's device for
            nets.
        """
        return self._direction(X, y)

    @_serialised
    def _direction(self, X, y, transformed: bool = False):
        """:meth:`forget_direction`; ``transformed``: the rows are already in the model's input
        space (after a Pipeline's frozen transformers), as the scorers hold them."""
        X, y = self._check_forget_input(X, y, transformed=transformed)
        delta = self._erasure(X, y)[0]
        if getattr(self.backend_, "public_numpy", False):
            return delta.detach().cpu().numpy()
        return delta

    @_restore_on_error
    def forget(self, X, y, epsilon=None):
        """Erase training samples with one SSSE step.

        The wrapped model's parameters are updated in place, ``n_samples_`` is decremented by
        ``k`` and, with ``update_curvature=True``, the erased samples' terms are removed from the
        curvature. An entry is appended to :attr:`erasure_log_`, and the rows' digests
        (``track_samples=True``) or mask (``keep_training_data=True``) are removed.

        The call is atomic: on any error (bad input, rows not in the model, a non-finite step or
        curvature, a failure while writing the parameters) the model, its parameters,
        ``n_samples_``, the curvature, the record and the tracked rows are exactly as before.
        With ``epsilon=0`` the parameters are left bit for bit as they are (the rows still count
        as removed).

        Parameters
        ----------
        X : array-like of shape (k, n_features)
            Samples to forget (rows of the training data).
        y : array-like of shape (k,) or (k, n_outputs)
            Their labels.
        epsilon : float, default=None
            Step size; ``None`` uses the ``epsilon`` parameter.

        Returns
        -------
        self : UnlearnableClassifier
            The updated model.

        Raises
        ------
        NotFittedError
            Called before :meth:`fit`.
        ValueError
            Bad input: wrong shape or feature count, NaN / inf, unseen label, empty set,
            ``k >= n_samples_``, epsilon not finite or negative; rows not among the remaining
            training rows with ``on_untracked="error"``.
        RuntimeError
            The wrapped model was refitted or changed outside :meth:`forget` (its parameters no
            longer match :attr:`parameters_checksum_`).
        FloatingPointError
            The gradients, the step, the new parameters or the downdated curvature are not
            finite (nothing is applied).

        Warns
        -----
        UntrackedSampleWarning
            Rows not among the remaining training rows, with ``on_untracked="warn"``.
        """
        start = time.perf_counter()
        X_raw = X
        X, y = self._check_forget_input(X, y)
        eps = self._check_epsilon(epsilon)
        if self.on_untracked not in ("error", "warn"):
            raise ValueError(f"on_untracked must be 'error' or 'warn', got {self.on_untracked!r}")
        k = X.shape[0]
        weight_removed = self._forget_weight(X, y)  # a weighted model: rows of unknown weight fail

        # 1. are the rows still in the model? (digests and / or stored rows; nothing changes)
        n_untracked = None
        new_digests = None
        if hasattr(self, "sample_digests_"):
            *new_digests, missing = multiset_remove(
                self.sample_digests_, self.sample_digest_counts_,
                row_digests(X, self._label_codes(y), salt=self.sample_salt_))
            n_untracked = int(missing.sum())
        rows_kept = None
        if hasattr(self, "fit_mask_"):
            found = self._row_index().locate(
                X, y, active_mask=self.fit_mask_,
                missing="raise" if self.on_untracked == "error" else "ignore")
            rows_kept = found[found >= 0]
            n_untracked = max(n_untracked or 0, int((found < 0).sum()))
        if n_untracked:
            msg = (f"{n_untracked} of the {k} rows to forget are not among the rows still in the "
                   "model (never trained on, or already forgotten)")
            if self.on_untracked == "error":
                raise ValueError(f"{msg}; nothing was changed (on_untracked='warn' applies the "
                                 "step anyway)")
            warnings.warn(f"{msg}; the step is applied for all {k} rows given",
                          UntrackedSampleWarning, stacklevel=3)  # the caller of forget
        if rows_kept is not None:  # kept rows: refuse to leave a single class (binary models)
            left = self.fit_mask_.copy()
            left[rows_kept] = False
            Y0, Y1 = self.y_fit_[self.fit_mask_], self.y_fit_[left]
            for j in range(1 if Y0.ndim == 1 else Y0.shape[1]):
                had, has = (np.unique(Y if Y.ndim == 1 else Y[:, j]) for Y in (Y0, Y1))
                if len(has) < 2 <= len(had):
                    where = f" in output {j}" if Y0.ndim > 1 else ""
                    raise ValueError(
                        f"forgetting these rows leaves only class {has.tolist()}{where} among "
                        "the remaining training rows: the retrained model would be a one-class "
                        "classifier, which scikit-learn cannot fit, and the remaining objective "
                        "has no optimum to step to (its intercept runs off to infinity). "
                        "Nothing was changed. Keep rows of at least two classes, or retire the "
                        "model (without the others it could only predict that class).")

        # 2. the step, computed aside
        proba_before = []  # (nets: the forget set's probabilities, from the gradient pass)
        delta, g, down, down_sample = self._erasure(
            X, y, keep_curvature=self.config_.update_curvature, proba_out=proba_before)
        theta_old = self.backend_.get_parameters()
        if eps == 0.0:
            theta = theta_old.clone()
        else:
            theta = theta_old + (eps * delta).to(theta_old)
        step = theta - theta_old
        if not bool(torch.isfinite(theta).all()):
            raise FloatingPointError("the erasure step is not finite; nothing was changed")
        # norms in float64 and scaled: a huge but finite step must not overflow to inf here
        norm_old, update_norm = (_norm(theta_old), _norm(step))
        if not math.isfinite(update_norm) or update_norm > _MAX_STEP_RATIO * max(norm_old, 1.0):
            raise FloatingPointError(
                f"the erasure step (epsilon={eps:g}) would make the parameters "
                f"{update_norm:.3g} / {norm_old:.3g} = {update_norm / max(norm_old, 1e-300):.3g}"
                " times larger than they are (limit 1e12): not a meaningful model; nothing was "
                "changed. The Newton step of the remaining data is epsilon=1")
        if eps > LARGE_EPSILON:
            warnings.warn(f"epsilon={eps:g} moves the parameters {eps:g} times the Newton step "
                          "(epsilon=1): expect to overshoot the retrained model", LargeStepWarning,
                          stacklevel=3)
        curvature = self.curvature_
        curvature_sample = getattr(self, "_curvature_sample", None)
        if self.config_.update_curvature:
            curvature, curvature_sample = down, down_sample
            # u^T F'^{-1} u > 0 for a unit vector u (g may be tiny: a normalised probe cannot
            # underflow to 0); a cheap necessary check of positive definiteness
            g_norm = torch.linalg.vector_norm(g)
            if self.config_.step == "leave_out" and bool(g_norm > 0):
                # the leave-out step already solved with the downdated curvature: delta =
                # F'^{-1} g / (n - k), and g^T delta > 0 is the same check without a second
                # solve (it is scale-free, so a tiny g cannot underflow it to 0 either way)
                u, probe = g / g_norm, delta.to(g) / g_norm
            else:
                u = g / g_norm if bool(g_norm > 0) else torch.ones_like(g)
                probe = curvature.solve(u)
            if not bool(torch.isfinite(probe).all()) or not float(u @ probe) > 0:
                raise FloatingPointError(
                    "the downdated curvature is not finite or not positive definite (were these "
                    "rows in the training set?); nothing was changed. Use update_curvature=False "
                    "or a larger damping")
        classes = getattr(self, "classes_", None)
        before = _set_diagnostics(self.estimator_, X, y, classes, self.backend_,
                                  proba_before[0] if proba_before else None)
        X_after, prep = X, None
        if "preprocessing_state_" in self.__dict__:
            # preprocessing="update": after the SSSE step (computed in the feature space the
            # forgotten rows were trained in, where their gradients and curvature terms live),
            # drop the terms / categories no remaining row has, their weights (OBS step, with
            # the remaining data's curvature, in which they are nearly decoupled from the
            # others) and their rows and columns of the curvature; rebinds preprocessor_ (and
            # estimator_, backend_ when features vanish): rolled back on error
            theta, curvature, X_after, prep = forget_features(self, X_raw, X, theta, curvature)

        # 3. commit the parameters (any failure from here on, or in a temporary write above,
        # is rolled back by @_restore_on_error, which puts theta_old back)
        written, checksum = self._write_parameters(theta)
        after = _set_diagnostics(self.estimator_, X_after, y, classes, self.backend_)

        # 4. the record and the bookkeeping (plain assignments, cannot fail halfway)
        entry = {
            "event": "forget",
            "time": datetime.now(timezone.utc).isoformat(),
            "n_removed": k,
            "epsilon": eps,
            "n_remaining": self.n_samples_ - k,
            "update_norm": update_norm,
            "relative_update_norm": update_norm / norm_old if norm_old > 0 else None,
            "curvature_downdated": bool(self.config_.update_curvature),
            "step": self.config_.step,
            "checksum_before": self.parameters_checksum_,
            "seal_before": self.state_seal_,
            "checksum_after": checksum,
            "loss_before": before[0] if before else None,
            "loss_after": after[0] if after else None,
            "accuracy_before": before[1] if before else None,
            "accuracy_after": after[1] if after else None,
            "label_flip_rate": (float(np.mean((before[2] != after[2]).any(axis=1)))
                                if before and after else None),
            "predicted_loss_change": float(g @ step.to(g)) / k,
            "n_untracked": n_untracked,
            # fitted transformers of a Pipeline that still reflect the erased rows (frozen):
            # their names, comma-separated (None without a Pipeline)
            "frozen_preprocessing": (
                prep["frozen_preprocessing"] if prep is not None
                else ",".join(_stateful_steps(self.preprocessor_))
                if "preprocessor_" in self.__dict__ else None),
            # preprocessing="update": the transformers updated and the features removed
            "updated_preprocessing": prep["updated_preprocessing"] if prep is not None else None,
            "n_features_removed": prep["n_features_removed"] if prep is not None else None,
            "seconds": time.perf_counter() - start,
        }
        self._theta = written
        self.parameters_checksum_ = checksum
        self.curvature_ = curvature
        self._curvature_sample = curvature_sample
        self.n_samples_ = self.n_samples_ - k
        if "sample_weight_total_" in self.__dict__:
            self.sample_weight_total_ = self.sample_weight_total_ - weight_removed
        if rows_kept is not None:
            mask = self.fit_mask_.copy()
            mask[rows_kept] = False
            self.fit_mask_ = mask
        if new_digests is not None:
            self.sample_digests_, self.sample_digest_counts_ = new_digests
        self.erasure_log_ = [*self.erasure_log_, entry]  # a new list: a rollback restores it
        self._seal()
        return self

    # ------------------------------------------------------------------- certificate, refine
    def _check_certifiable(self):
        check_is_fitted(self)
        if not getattr(self.backend_, "certifiable", False):
            raise TypeError(f"certify() and refine() need a convex model with a closed-form "
                            f"objective (the scikit-learn linear models); "
                            f"{type(self.estimator_).__name__} is not one")
        self._check_state()

    def _log_event(self, entry: dict) -> None:
        entry = {"event": entry.pop("event"), "time": datetime.now(timezone.utc).isoformat(),
                 **entry, "seal_before": self.state_seal_}
        self.erasure_log_ = [*self.erasure_log_, entry]

    @_restore_on_error
    def certify(self, X_remaining=None, y_remaining=None) -> Certificate:
        """Bound (or estimate) how far the current parameters are from the retrained model.

        One pass over the remaining training rows computes the gradient of the model's own
        objective on them (penalty included); strong convexity with modulus ``mu`` gives
        ``||theta - theta_retrained|| <= ||grad|| / mu``.  When every parameter is penalised
        (no intercept, or a penalised one) ``mu`` is the smallest penalty weight and the result
        is a true upper bound (``kind="bound"``); with an unpenalised intercept ``mu`` is
        estimated by the smallest eigenvalue of the cached curvature and the result is an
        estimate (``kind="estimate"``).  Nothing is optimised.  The certificate is appended to
        :attr:`erasure_log_` (``event="certify"``).

        Parameters
        ----------
        X_remaining : array-like, dask array or iterable of (X, y) chunks, default=None
            The training rows still in the model (all of them, and only them).  ``None`` uses
            the kept rows (``keep_training_data=True``).  Dask arrays are reduced block by
            block where they live (on the workers of an active ``dask.distributed`` client).
        y_remaining : array-like or dask array, default=None
            Their labels (``None`` with an iterable of chunks).

        Returns
        -------
        certificate : Certificate
            ``distance`` (the bound or estimate), ``kind``, ``residual_norm``, ``mu``,
            ``original_distance`` (the same for the parameters right after fit) and
            ``relative`` (their ratio), ``n_remaining``, ``seconds``.

        Raises
        ------
        TypeError
            For a model without a closed-form convex objective (nets).
        ValueError
            No remaining rows given or kept, or a different number of rows than
            ``n_samples_``.
        """
        self._check_certifiable()
        cert, _, _, _ = certificate(self, self._theta, X_remaining, y_remaining)
        self._log_event({"event": "certify", "certificate": cert.to_dict()})
        self._seal()
        return cert

    @_restore_on_error
    def refine(self, X_remaining=None, y_remaining=None, *, tol=1e-6, max_iter=50):
        """Continue optimising on the remaining rows until the retrained optimum is reached.

        Newton steps with the cached curvature as the Hessian (the GGN of the remaining rows
        after leave-out forgets), each followed by one pass over the remaining rows for the
        exact gradient, with step halving whenever the gradient norm would grow; it stops when
        the certificate's distance (see :meth:`certify`) is at most ``tol``.  The result is the
        model retrained without the forgotten rows to that tolerance, at the cost of a few
        gradient passes.  When a whole class has no remaining rows (a class removal) its row is
        switched off (weights 0, intercept -1e4: probability exactly 0, like the retrained
        model, which does not have the class) and the other rows are refined.  The cached
        curvature is kept (it stays the curvature at ``theta_fit_``).  The certificates before
        and after go to :attr:`erasure_log_` (``event="refine"``).

        Parameters
        ----------
        X_remaining, y_remaining : see :meth:`certify`
            Read once per iteration: arrays, dask arrays or a re-iterable (e.g. a list) of
            chunks; a one-shot iterator is refused.
        tol : float, default=1e-6
            Target distance to the retrained optimum (parameter units; a bound or an estimate
            as in :meth:`certify`).
        max_iter : int, default=50
            Maximum number of Newton steps.

        Returns
        -------
        self : UnlearnableClassifier

        Raises
        ------
        TypeError, ValueError
            As :meth:`certify`; a one-shot iterator as data.
        RuntimeError
            When ``max_iter`` steps do not reach ``tol`` (nothing is changed).
        """
        self._check_certifiable()
        if not (isinstance(tol, Real) and tol > 0):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        if y_remaining is None and X_remaining is not None and iter(X_remaining) is X_remaining:
            raise TypeError("refine() reads the remaining rows once per iteration: pass arrays, "
                            "dask arrays or a list of (X, y) chunks, not a one-shot iterator")
        start = time.perf_counter()
        before, grad, original, absent = certificate(self, self._theta, X_remaining,
                                                     y_remaining)
        theta = suppress(self, self._theta, absent).to(self._theta)  # a removed class: off
        cert, mu, passes, steps = before, before.mu, 1 + bool(absent.size), 0
        while cert.distance > tol:
            if steps >= max_iter:
                raise RuntimeError(f"refine did not reach tol={tol:g} in {max_iter} Newton steps "
                                   f"(distance {cert.distance:.3g}); nothing was changed")
            direction = -self.curvature_.solve_sum(torch.as_tensor(grad).to(self._theta))
            direction[torch.as_tensor(absent)] = 0.0  # the switched-off classes stay off
            t = 1.0
            for _ in range(30):
                cand = theta + t * direction
                new, new_grad, _, _ = certificate(self, cand, X_remaining, y_remaining, mu=mu,
                                                  original=original, absent=absent)
                passes += 1
                if new.residual_norm < cert.residual_norm:
                    break
                t /= 2
            else:
                raise RuntimeError("refine: no step decreases the gradient norm (is the data "
                                   "the remaining training rows?); nothing was changed")
            theta, cert, grad, steps = cand, new, new_grad, steps + 1
        checksum_before = self.parameters_checksum_
        written, checksum = self._write_parameters(theta)
        self._log_event({"event": "refine", "certificate_before": before.to_dict(),
                         "certificate_after": cert.to_dict(), "newton_steps": steps,
                         "data_passes": passes, "tol": float(tol),
                         "checksum_before": checksum_before, "checksum_after": checksum,
                         "seconds": time.perf_counter() - start})
        self._theta = written
        self.parameters_checksum_ = checksum
        self._seal()
        return self

    # ------------------------------------------------------------------------------ persistence
    def __getstate__(self):
        """State for pickle / joblib / skops: tensors and curvature operators as plain
        containers of numpy arrays, the backend left out (rebuilt on load)."""
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself
        state.pop("_seal_fingerprint", None)  # identities: meaningless elsewhere
        state.pop("_seal_memo_cache", None)
        state.pop("_row_index_cache", None)  # rebuilt from the kept rows on first use
        backend = state.pop("backend_", None)
        if backend is not None:
            state["_backend_class"] = type(backend).__name__
        return {k: to_portable(v) for k, v in state.items()}

    def __setstate__(self, state):
        state = dict(state)
        backend_name = state.pop("_backend_class", None)
        super().__setstate__(state)
        if backend_name is None or "estimator_" not in state:
            self.__dict__.update(from_portable(dict(self.__dict__)))
            return
        backend_cls = {b.__name__: b for b in BACKENDS}.get(backend_name)
        if backend_cls is None:
            raise ValueError(f"unknown backend {backend_name!r} in the saved state")
        kwargs = state.get("_backend_kwargs", {"parameters": self.parameters, "dtype": self.dtype})
        self.backend_ = backend_cls(self.estimator_, **kwargs)
        device = self.backend_.device
        for k, v in list(self.__dict__.items()):
            if k != "backend_":
                self.__dict__[k] = from_portable(v, device)
        if "state_seal_" in self.__dict__:
            if self.seal_mode_ == "hmac-sha256" and current_key() is None:
                warnings.warn("this model is sealed with a secret key that is not set: its state "
                              "was not verified on load, and forget() will refuse to run until "
                              "the key is set with sklearn_ssse.seal_key(key)",
                              UnverifiedSealWarning, stacklevel=2)
            else:
                self._verify_seal(full=True)

    # ------------------------------------------------------------------------------ parameters
    @_serialised
    def get_parameters(self) -> np.ndarray:
        """The current parameters as one flat float vector (a copy).

        Returns
        -------
        theta : ndarray of shape (n_params,)
            Parameters in the backend's layout.
        """
        check_is_fitted(self)
        return self.backend_.get_parameters().detach().cpu().numpy().copy()

    @_serialised
    def with_parameters(self, theta):
        """A predicting copy of the fitted estimator carrying ``theta``.

        Parameters
        ----------
        theta : array-like or torch.Tensor of shape (n_params,)
            Parameters in the layout of :meth:`get_parameters`.

        Returns
        -------
        estimator : estimator
            A copy of ``estimator_``; ``self`` is not modified.
        """
        check_is_fitted(self)
        return self.backend_.with_parameters(self.backend_.to_tensor(theta))

    # ------------------------------------------------------------------------------ delegation
    def _X(self, X):
        check_is_fitted(self)
        pre = self.__dict__.get("preprocessor_")
        accept = bool(getattr(self.backend_, "accepts_sparse", False))
        if pre is not None:  # the frozen transformers of a Pipeline check the raw rows
            return check_array(pre.transform(X), dtype=self.backend_.input_dtype,
                               accept_sparse=accept)
        return validate_data(self, X, reset=False, dtype=self.backend_.input_dtype,
                             accept_sparse=accept)

    @available_if(_estimator_has("predict"))
    @_serialised
    def predict(self, X):
        """Predict with the (possibly unlearned) wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray
            Predicted labels.
        """
        X = self._X(X)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    @_serialised
    def predict_proba(self, X):
        """Class probabilities of the wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray or list of ndarray
            As returned by the wrapped estimator.
        """
        X = self._X(X)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    @_serialised
    def predict_log_proba(self, X):
        """Log class probabilities of the wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray or list of ndarray
            As returned by the wrapped estimator.
        """
        X = self._X(X)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    @_serialised
    def decision_function(self, X):
        """Decision function of the wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray
            As returned by the wrapped estimator.
        """
        X = self._X(X)
        return self.estimator_.decision_function(X)

    @available_if(_estimator_has("score"))
    @_serialised
    def score(self, X, y, sample_weight=None):
        """Score of the wrapped estimator (mean accuracy for classifiers).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            The wrapped estimator's score.
        """
        X = self._X(X)
        if sample_weight is None:  # e.g. MultiOutputClassifier.score takes no sample_weight
            return self.estimator_.score(X, y)
        return self.estimator_.score(X, y, sample_weight=sample_weight)
