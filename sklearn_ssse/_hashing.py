"""Salted digests of training rows and multisets of them (no rows are stored).

Used by :class:`~sklearn_ssse.UnlearnableClassifier` with ``track_samples=True``: the model keeps
one keyed BLAKE2b digest per training row (features *and* label) as a multiset, removes the
digests of the rows it forgets, and so can tell when a deletion request names a row that is not
(or no longer) in the model, without keeping the rows themselves.

Canonical form (shared with :mod:`sklearn_ssse._rows`, which matches rows exactly): features are
compared as float64 (integer and float inputs with equal values agree), ``-0.0`` equals ``0.0``
and all NaNs are one value.  Numeric labels are hashed as float64 (``1`` equals ``1.0``), any
other label by its ``str`` (so ``1`` and ``"1"`` differ).

The digests are keyed with a per-model random salt: without the salt they cannot be compared with
digests of another model or with a precomputed table.  Whoever holds the model (and so its salt)
can still test whether a candidate row is among the rows *remaining* in it; forgotten rows leave
no digest behind.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np

__all__ = ["DIGEST_SIZE", "canonical_rows", "multiset", "multiset_remove", "new_salt",
           "row_digests"]

#: bytes per digest (128 bits: collisions are negligible for any realistic training set)
DIGEST_SIZE = 16
#: bytes of the per-model salt (BLAKE2b accepts keys of up to 64 bytes)
SALT_SIZE = 16


def new_salt() -> bytes:
    """A fresh random salt from the OS's cryptographic generator (not ``random_state``).

    The salt protects the stored digests; it must not be predictable from a seed.
    """
    return secrets.token_bytes(SALT_SIZE)


def canonical_rows(X) -> np.ndarray:
    """``X`` as a C-contiguous float64 2-D array with ``-0.0 -> 0.0`` and one NaN bit pattern.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric rows (a 1-D array is one column).

    Returns
    -------
    ndarray of float64
        A new array; ``X`` is not modified.
    """
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"rows can only be hashed from numeric data, got dtype {X.dtype}")
    X = np.array(X, dtype=np.float64, order="C", copy=True)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array of rows, got shape {X.shape}")
    X += 0.0  # -0.0 + 0.0 == +0.0
    X[np.isnan(X)] = np.nan
    return X


def _label_bytes(y, n: int) -> list[bytes]:
    if y is None:
        return [b""] * n
    y = np.asarray(y)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has shape {y.shape}")
    if y.dtype.kind in "biuf":
        Y = canonical_rows(y)
        return [b"n" + row.tobytes() for row in Y]
    out = []
    for row in y:
        parts = [str(v).encode("utf-8") for v in row]
        out.append(b"s" + b"".join(len(p).to_bytes(8, "little") + p for p in parts))
    return out


def row_digests(X, y=None, salt: bytes = b"") -> np.ndarray:
    """Keyed BLAKE2b digest of every row ``(X[i], y[i])``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric features.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        Labels; ``None`` hashes the features only.
    salt : bytes, default=b""
        Key of the hash (at most 64 bytes); digests with different salts are unrelated.

    Returns
    -------
    digests : ndarray of dtype ``S16`` and shape (n_samples,)
        One 16-byte digest per row; equal rows (in the canonical form of the module docstring)
        have equal digests.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ssse._hashing import row_digests
    >>> d = row_digests(np.array([[1, 2], [1, 2], [0, 2]]), [0, 0, 0], salt=b"k")
    >>> bool(d[0] == d[1]), bool(d[0] == d[2])
    (True, False)
    >>> bool(row_digests([[1.0, -0.0]], [1])[0] == row_digests([[1, 0]], [1.0])[0])
    True
    """
    salt = bytes(salt)
    if len(salt) > 64:
        raise ValueError(f"salt has {len(salt)} bytes; BLAKE2b keys have at most 64")
    Xc = canonical_rows(X)
    n = Xc.shape[0]
    labels = _label_bytes(y, n)
    # the row width is fixed (n_features float64 words), so row + label is unambiguous
    header = Xc.shape[1].to_bytes(8, "little")
    buf = memoryview(Xc).cast("B")
    width = Xc.shape[1] * 8
    out = bytearray(n * DIGEST_SIZE)
    for i in range(n):
        h = hashlib.blake2b(header, digest_size=DIGEST_SIZE, key=salt)
        h.update(buf[i * width:(i + 1) * width])
        h.update(labels[i])
        out[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] = h.digest()
    return np.frombuffer(bytes(out), dtype=f"S{DIGEST_SIZE}").copy()


def multiset(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, counts)``: the sorted distinct digests and their multiplicities."""
    values, counts = np.unique(np.asarray(digests), return_counts=True)
    return values, counts.astype(np.int64)


def multiset_remove(values: np.ndarray, counts: np.ndarray, digests: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove ``digests`` (with repetitions) from the multiset ``(values, counts)``.

    Nothing is modified in place.

    Parameters
    ----------
    values, counts : ndarray
        The multiset, as returned by :func:`multiset`.
    digests : ndarray of shape (k,)
        Digests to remove; a digest requested ``m`` times consumes ``m`` copies.

    Returns
    -------
    values, counts : ndarray
        The multiset without the digests that were present (entries at zero are dropped).
    missing : ndarray of bool of shape (k,)
        True for requested digests beyond the copies present (the later repetitions first).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ssse._hashing import multiset, multiset_remove
    >>> v, c = multiset(np.array([b"a", b"b", b"b"], dtype="S1"))
    >>> v2, c2, missing = multiset_remove(v, c, np.array([b"b", b"c", b"b", b"b"], dtype="S1"))
    >>> v2.tolist(), c2.tolist(), missing.tolist()
    ([b'a'], [1], [False, True, False, True])
    """
    digests = np.asarray(digests, dtype=values.dtype if values.size else None)
    k = digests.shape[0]
    missing = np.zeros(k, dtype=bool)
    if k == 0:
        return values.copy(), counts.copy(), missing
    order = np.argsort(digests, kind="stable")
    req, first, req_counts = np.unique(digests[order], return_index=True, return_counts=True)
    if values.size:
        pos = np.clip(np.searchsorted(values, req), 0, len(values) - 1)
        present = values[pos] == req
        available = np.where(present, counts[pos], 0)
    else:
        pos = np.zeros(len(req), dtype=np.int64)
        present = np.zeros(len(req), dtype=bool)
        available = np.zeros(len(req), dtype=np.int64)
    taken = np.minimum(req_counts, available)
    # occurrence rank of each request among the equal requests (stable: in request order)
    rank = np.arange(k) - np.repeat(first, req_counts)
    missing[order] = rank >= np.repeat(taken, req_counts)
    new_counts = counts.copy()
    np.subtract.at(new_counts, pos[present], taken[present])
    keep = new_counts > 0
    return values[keep].copy(), new_counts[keep], missing
