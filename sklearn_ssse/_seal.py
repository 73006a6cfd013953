"""The seal: one digest over everything a deletion depends on, optionally keyed (HMAC).

A fitted :class:`~sklearn_ssse.UnlearnableClassifier` carries ``state_seal_``, a SHA-256 digest
(or, when a key is configured, an HMAC-SHA256) of its parameters, cached curvature operator,
damping, fit-time settings, sample counts, tracked-row records and erasure log.  It is computed
at the end of ``fit`` and of every ``forget``, verified in full when a model is loaded, and
before every ``forget`` (cheaply when nothing was rebound or written in place since the last
seal: see :func:`fingerprint`).

What each mode protects against
-------------------------------
``sha256`` (no key)
    Accidental corruption and inconsistent edits: a flipped bit in a saved file, a truncated or
    partly overwritten array, an attribute replaced or edited without recomputing the seal.  It
    does **not** stop someone who knows this module: they can edit the state and recompute the
    digest.
``hmac-sha256`` (a key is configured with :func:`seal_key` or ``SKLEARN_SSSE_SEAL_KEY``)
    Deliberate tampering by anyone who does not hold the key: without it no valid seal can be
    produced, so an edited model is refused on load and before ``forget``.  ``forget`` on a
    keyed model needs the key (it must reseal).  The key is never stored in the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["SealError", "current_key", "digest", "fingerprint", "seal_key"]

#: environment variable read when no key was set with :func:`seal_key`
KEY_ENV = "SKLEARN_SSSE_SEAL_KEY"
#: attributes of a fitted estimator that the seal covers (those present)
SEALED = ("_theta", "_theta_fit", "curvature_", "_damping", "inverse_", "config_",
          "_label_salt", "n_samples_fit_", "n_samples_", "n_curvature_samples_",
          "_curvature_sample", "erasure_log_", "parameters_checksum_", "sample_salt_",
          "sample_digests_", "sample_digest_counts_", "fit_mask_", "X_fit_", "y_fit_",
          "classes_", "_backend_kwargs", "n_features_in_", "preprocessor_",
          "preprocessing_state_", "sample_weight_total_", "sample_weight_fit_total_")
#: (and the class weights resolved at fit, kept on ``estimator_``: see _update_class_weights)
#: leaves up to this size are hashed by value by :func:`fingerprint`; larger ones by identity
_SMALL = 1 << 20

_key_lock = threading.Lock()
_key: bytes | None = None


class SealError(ValueError):
    """The state of a model does not match its seal (modified, corrupted, or wrong key)."""


def _as_key(key) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError("a seal key must be bytes or str of at least 16 bytes")
    return bytes(key)


@contextlib.contextmanager
def _restoring(previous):
    global _key
    try:
        yield
    finally:
        with _key_lock:
            _key = previous


def seal_key(key):
    """Set the secret key that seals models (HMAC-SHA256), process-wide.

    Models fitted or updated while a key is set are sealed with it; loading such a model
    verifies its seal with the key, and :meth:`~sklearn_ssse.UnlearnableClassifier.forget`
    refuses to run without it.  The key is never stored in a model.  Without a call, the key
    is read from the ``SKLEARN_SSSE_SEAL_KEY`` environment variable (a string); with neither,
    models are sealed with plain SHA-256 (detects corruption, not deliberate tampering).

    Parameters
    ----------
    key : bytes or str or None
        At least 16 bytes (use e.g. ``secrets.token_bytes(32)``); ``None`` removes a key set
        earlier (the environment variable is then used again, if set).

    Returns
    -------
    context : context manager
        Optional: ``with seal_key(k): ...`` restores the previous key on exit.

    Examples
    --------
    >>> import secrets
    >>> from sklearn_ssse import seal_key
    >>> with seal_key(secrets.token_bytes(32)):
    ...     pass  # fit / forget / load models sealed with this key here
    """
    global _key
    new = _as_key(key)
    with _key_lock:
        previous, _key = _key, new
    return _restoring(previous)


def current_key() -> bytes | None:
    """The key set by :func:`seal_key`, else the environment variable's, else ``None``."""
    with _key_lock:
        key = _key
    if key is None and os.environ.get(KEY_ENV):
        key = _as_key(os.environ[KEY_ENV])
    return key


def _leaves(obj, path=""):
    """``(path, leaf)`` pairs of a nested state, in a canonical order."""
    from ._config import FitConfig
    from ._curvature import CurvatureOperator

    if isinstance(obj, CurvatureOperator):
        yield path + "<op>", type(obj).__name__
        yield from _leaves(dict(vars(obj)), path)
    elif isinstance(obj, FitConfig):
        yield from _leaves(obj.to_dict(), path + "<cfg>")
    elif hasattr(obj, "get_params") and hasattr(obj, "__dict__"):
        # a fitted scikit-learn object (a Pipeline's frozen steps): its attributes, by value
        yield path + "<est>", type(obj).__name__
        yield from _leaves(dict(vars(obj)), path)
    elif sp.issparse(obj):  # kept sparse training rows: format, shape and the three arrays
        csx = obj if obj.format in ("csr", "csc") else obj.tocsr()
        yield path + "<sparse>", f"{csx.format}{csx.shape}"
        for name in ("data", "indices", "indptr"):
            yield f"{path}.{name}", getattr(csx, name)
    elif isinstance(obj, dict):
        for k in sorted(obj, key=repr):
            yield from _leaves(obj[k], f"{path}/{k!r}")
    elif isinstance(obj, (list, tuple)):
        yield path + "<len>", len(obj)
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def _update(h, path: str, leaf) -> None:
    h.update(path.encode())
    if torch.is_tensor(leaf):
        t = leaf.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        t = t.cpu().contiguous().reshape(-1)
        h.update(memoryview(t.view(torch.uint8).numpy()))
    elif isinstance(leaf, np.ndarray):
        h.update(f"A{leaf.dtype.str}{leaf.shape}".encode())
        if leaf.dtype.hasobject:
            h.update(repr(leaf.tolist()).encode())
        else:
            h.update(memoryview(np.ascontiguousarray(leaf)).cast("B"))
    elif isinstance(leaf, (bytes, bytearray)):
        h.update(b"B" + bytes(leaf))
    elif isinstance(leaf, float):
        h.update(b"F" + leaf.hex().encode())
    elif leaf is None or isinstance(leaf, (bool, int, str, np.generic, slice)):
        h.update(f"{type(leaf).__name__}:{leaf!r}".encode())
    elif callable(leaf):  # e.g. a FunctionTransformer's func: by name (no address)
        h.update(f"C{getattr(leaf, '__module__', '')}.{getattr(leaf, '__qualname__', '')}"
                 .encode())
    else:
        raise TypeError(f"cannot seal a {type(leaf).__name__} at {path}")
    h.update(b"\0")


def _large_digest(t, memo: dict | None) -> bytes:
    """SHA-256 of a large tensor's or array's bytes, remembered per object while its storage
    (and, for a tensor, its version counter) is unchanged; the memo holds the object, so its id
    cannot be reused.  A remembered digest is never a blessing: the full verification (load,
    ``verify_seal``) hashes without a memo, so content changed in place behind it is caught."""
    tag = _tag(t)
    hit = memo.get(id(t)) if memo is not None else None
    if hit is not None and hit[0] is t and hit[1] == tag:
        return hit[2]
    h = hashlib.sha256()
    _update(h, "", t)
    value = h.digest()
    if memo is not None:
        memo[id(t)] = (t, tag, value)
    return value


def _tag(t) -> tuple:
    """What must not change for a remembered digest of ``t`` to stay valid."""
    if torch.is_tensor(t):
        return (t.data_ptr(), t._version, t.dtype, tuple(t.shape), tuple(t.stride()))
    return (t.ctypes.data, t.dtype.str, t.shape, t.strides)


def remember(memo: dict, t: torch.Tensor, host: torch.Tensor) -> dict:
    """A copy of ``memo`` that also knows the digest of tensor ``t`` (on any device),
    computed from ``host``, a CPU copy of it the caller already made: the next seal then does
    not copy ``t`` to the host a second time.  Small tensors are hashed by value anyway."""
    memo = dict(memo)
    if t.nbytes > _SMALL and host.dtype == t.dtype and host.shape == t.shape:
        h = hashlib.sha256()
        _update(h, "", host)
        memo[id(t)] = (t, _tag(t), h.digest())
    return memo


def _update_class_weights(h, state: dict) -> None:
    """The class weights a linear model was fitted with, resolved from its training labels
    (``class_weight="balanced"``): part of the objective every later step uses, kept on the
    fitted estimator."""
    weights = getattr(state.get("estimator_"), "_ssse_class_weight", None)
    if weights is not None:
        _update(h, "estimator_._ssse_class_weight", np.asarray(weights))


def digest(state: dict, key: bytes | None, memo: dict | None = None) -> str:
    """Hex SHA-256 (``key=None``) or HMAC-SHA256 of the sealed attributes present in
    ``state``, every array and tensor by its exact bytes, dtype and shape.

    Tensors and arrays over 1 MiB enter through their own SHA-256; with a ``memo`` (a dict
    kept by the caller between seals) that digest is reused for the same object while its
    storage (and a tensor's version counter) is unchanged, so resealing after a forget does
    not rehash the curvature it kept or the training rows (``keep_training_data``).  Full
    verification passes no memo.
    """
    h = hmac.new(key, digestmod=hashlib.sha256) if key is not None else hashlib.sha256()
    h.update(b"sklearn_ssse-seal-v3\0")
    live = {}
    for name in SEALED:
        if name in state:
            for path, leaf in _leaves(state[name], name):
                if (torch.is_tensor(leaf) or isinstance(leaf, np.ndarray)) \
                        and leaf.nbytes > _SMALL and not getattr(leaf.dtype, "hasobject", False):
                    h.update(f"{path}:L{leaf.dtype}{tuple(leaf.shape)}:".encode())
                    h.update(_large_digest(leaf, memo) + b"\0")
                    if memo is not None:
                        live[id(leaf)] = memo[id(leaf)]
                else:
                    _update(h, path, leaf)
    _update_class_weights(h, state)
    if memo is not None:  # keep only the large leaves of the current state
        memo.clear()
        memo.update(live)
    return h.hexdigest()


def fingerprint(state: dict) -> str:
    """A cheap in-memory check of the sealed attributes: tensors (of any size) by identity,
    storage address and version counter (bumped by every in-place write), large arrays by
    identity and address, other leaves (small arrays included: NumPy has no version counter)
    by value.  Equal fingerprints mean nothing was rebound or written in place through torch
    since the last seal; only then may the full :func:`digest` be skipped.  (Hashing a net's
    sub-MiB tensors by value here cost more than the rest of a forget: ~5 MB per call for a
    784-256-10 MLP's EK-FAC, twice per forget.)"""
    h = hashlib.sha256()
    for name in SEALED:
        if name not in state:
            continue
        for path, leaf in _leaves(state[name], name):
            if torch.is_tensor(leaf):
                h.update(f"{path}:{id(leaf)}:{leaf.data_ptr()}:{leaf._version}\0".encode())
            elif isinstance(leaf, np.ndarray) and leaf.nbytes > _SMALL:
                h.update(f"{path}:{id(leaf)}:{leaf.ctypes.data}\0".encode())
            else:
                _update(h, path, leaf)
    _update_class_weights(h, state)
    return h.hexdigest()
