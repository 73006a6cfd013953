"""Row identity: one canonical form of a training row, and the two ways the package uses it.

Canonical form: features are compared as float64 (integer and float inputs with equal values
agree), ``-0.0`` equals ``0.0`` and all NaNs are one value.  Numeric labels are compared as
float64 (``1`` equals ``1.0``), any other label by its ``str`` (``1`` and ``"1"`` differ).
A row is identified by its width and its nonzero entries (positions and values), so the same row
has the same digest and the same index hash whether it comes as a dense array or as a row of a
scipy sparse matrix (CSR, CSC, ...; explicit zeros and duplicate entries are normalised away),
and a sparse row is never densified to be hashed.

1. **Salted digests** (:func:`row_digests`, :func:`multiset`, :func:`multiset_remove`): with
   ``track_samples=True`` the model keeps one keyed BLAKE2b digest per training row (features
   *and* label) as a multiset, removes the digests of the rows it forgets, and so can tell when
   a deletion request names a row that is not (or no longer) in the model, without keeping the
   rows.  The digests are keyed with a per-model random salt: without it they cannot be
   compared with digests of another model or with a precomputed table.  Whoever holds the
   model (and so its salt) can still test whether a candidate row is among the rows
   *remaining* in it; forgotten rows leave no digest behind.

2. **Exact location** (:class:`RowIndex`, :func:`locate_rows`): with ``keep_training_data=True``
   (and in the scorers, which receive the forget set as plain rows from ``GridSearchCV``) the
   rows of a request are found among the stored training rows as a multiset: a row that occurs
   ``m`` times in the request consumes ``m`` distinct training rows with that content (the
   smallest indices first); a request for more copies than the training set holds is an error.
   Every row is reduced to a 64-bit hash with vectorised integer arithmetic on its canonical
   words (no Python loop over training rows); candidates are verified by exact comparison, so
   a hash collision can never produce a wrong match.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
import scipy.sparse as sp

__all__ = ["DIGEST_SIZE", "RowIndex", "canonical_rows", "locate_rows", "multiset",
           "multiset_remove", "new_salt", "row_digests"]

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


def canonical_sparse(X) -> sp.csr_matrix:
    """The canonical form of rows as a CSR matrix: sorted indices, no duplicates, no stored
    zeros (``-0.0`` included), one NaN bit pattern.  Dense input is converted (its zeros are
    dropped), sparse input is never densified.

    Parameters
    ----------
    X : array-like or scipy sparse matrix of shape (n_samples, n_features)
        Numeric rows (a 1-D array is one column).

    Returns
    -------
    scipy.sparse.csr_matrix of float64
        A new matrix; ``X`` is not modified.
    """
    if not sp.issparse(X):
        X = canonical_rows(X)
    elif X.dtype.kind not in "biuf":
        raise TypeError(f"rows can only be hashed from numeric data, got dtype {X.dtype}")
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()
    X.eliminate_zeros()  # (-0.0 == 0 too)
    X.sort_indices()
    X.data[np.isnan(X.data)] = np.nan
    return X


def _nonzeros(block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices as <i8, values as <f8, indptr)`` of the canonical CSR form of a chunk of rows
    (:func:`canonical_sparse`).  A chunk already canonical and dense (:func:`canonical_rows`)
    is read with NumPy directly, row-major nonzeros being exactly the CSR order (a CSR
    conversion of a dense chunk cost ~5 ms per 1,000 Fashion-MNIST images)."""
    if sp.issparse(block):
        Xc = canonical_sparse(block)
        return Xc.indices.astype("<i8"), Xc.data.astype("<f8"), Xc.indptr
    mask = block != 0  # (NaN is nonzero: kept, as eliminate_zeros keeps it)
    ptr = np.zeros(block.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(mask, axis=1), out=ptr[1:])
    return np.nonzero(mask)[1].astype("<i8"), block[mask].astype("<f8"), ptr


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
    >>> from sklearn_ssse._rows import row_digests
    >>> d = row_digests(np.array([[1, 2], [1, 2], [0, 2]]), [0, 0, 0], salt=b"k")
    >>> bool(d[0] == d[1]), bool(d[0] == d[2])
    (True, False)
    >>> bool(row_digests([[1.0, -0.0]], [1])[0] == row_digests([[1, 0]], [1.0])[0])
    True
    >>> import scipy.sparse as sp
    >>> bool(row_digests(sp.csr_matrix([[0.0, 2.0]]), [1])[0] == row_digests([[0, 2]], [1])[0])
    True
    """
    salt = bytes(salt)
    if len(salt) > 64:
        raise ValueError(f"salt has {len(salt)} bytes; BLAKE2b keys have at most 64")
    X = X.tocsr() if sp.issparse(X) else canonical_rows(X)  # (CSR: row slices)
    n = X.shape[0]
    labels = _label_bytes(y, n)
    out = bytearray(n * DIGEST_SIZE)
    # a row is (width, number of nonzeros, their positions as int64, their values as float64
    # words): unambiguous, and the same for a dense row and a sparse one
    for start in range(0, n, _CHUNK):
        block = X[start:start + _CHUNK]
        idx, words, ptr = _nonzeros(block)
        header = block.shape[1].to_bytes(8, "little")
        for r in range(block.shape[0]):
            i, a, b = start + r, ptr[r], ptr[r + 1]
            h = hashlib.blake2b(header, digest_size=DIGEST_SIZE, key=salt)
            h.update(int(b - a).to_bytes(8, "little"))
            h.update(idx[a:b].tobytes())
            h.update(words[a:b].tobytes())
            h.update(labels[i])
            out[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] = h.digest()
    return np.frombuffer(bytes(out), dtype=f"S{DIGEST_SIZE}").copy()


def multiset(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, counts)``: the sorted distinct digests and their multiplicities."""
    values, counts = np.unique(np.asarray(digests), return_counts=True)
    return values, counts.astype(np.int64)


def sorted_lookup(values: np.ndarray, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pos, found)``: where each of ``digests`` is in the sorted distinct ``values``, and
    whether it is there at all (``pos`` is 0 where it is not)."""
    if not values.size:
        return np.zeros(len(digests), dtype=np.int64), np.zeros(len(digests), dtype=bool)
    pos = np.clip(np.searchsorted(values, digests), 0, len(values) - 1)
    found = values[pos] == digests
    return np.where(found, pos, 0), found


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
    >>> from sklearn_ssse._rows import multiset, multiset_remove
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
    pos, present = sorted_lookup(values, req)
    available = np.where(present, counts[pos], 0) if values.size else np.zeros(len(req), np.int64)
    taken = np.minimum(req_counts, available)
    # occurrence rank of each request among the equal requests (stable: in request order)
    rank = np.arange(k) - np.repeat(first, req_counts)
    missing[order] = rank >= np.repeat(taken, req_counts)
    new_counts = counts.copy()
    np.subtract.at(new_counts, pos[present], taken[present])
    keep = new_counts > 0
    return values[keep].copy(), new_counts[keep], missing


_CHUNK = 4096  # rows hashed per step (bounds the temporary memory to _CHUNK * n_features words)


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective mixing of 64-bit words (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _multipliers(d: int) -> np.ndarray:
    # fixed (seeded) odd multipliers: the hash of a row does not depend on the call
    rng = np.random.default_rng(0x55E5E)
    return rng.integers(0, 2**63, size=d, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _dense(X) -> np.ndarray:
    """``X`` as a 2-D float64 array (no copy when it already is one)."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"rows can only be located in numeric data, got dtype {X.dtype}.")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array of rows, got shape {X.shape}.")
    return X


def _canonical_words(X) -> np.ndarray:
    """Bit patterns of :func:`canonical_rows` (one uint64 word per value)."""
    return canonical_rows(X).view(np.uint64)


_canonical_sparse = canonical_sparse


def _hash_dense(X: np.ndarray) -> np.ndarray:
    """The hash of :func:`_hash_sparse` computed on dense rows (a zero contributes 0 there
    too: ``mix(0) = 0``), so that a row hashes the same in either format."""
    n, d = X.shape
    mult = _mix(np.arange(d, dtype=np.uint64) * np.uint64(2) + np.uint64(1))
    out = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, n, _CHUNK):
            words = _canonical_words(X[start:start + _CHUNK])
            out[start:start + _CHUNK] = _mix(_mix(_mix(words) * mult).sum(axis=1,
                                                                           dtype=np.uint64))
    return out


def _hash_sparse(X: sp.csr_matrix) -> np.ndarray:
    n = X.shape[0]
    with np.errstate(over="ignore"):
        # each stored entry contributes mix(value bits * odd(column)); zero entries contribute 0,
        # which is consistent because explicit zeros were eliminated
        cols = X.indices.astype(np.uint64) * np.uint64(2) + np.uint64(1)
        terms = _mix(_mix(_canonical_words(X.data).ravel()) * _mix(cols))
        sums = np.zeros(n, dtype=np.uint64)
        nnz_rows = np.diff(X.indptr) > 0
        if terms.size:
            starts = X.indptr[:-1][nnz_rows]
            sums[nnz_rows] = np.add.reduceat(terms, starts, dtype=np.uint64)
        return _mix(sums)


def _sparse_rows_equal(A: sp.csr_matrix, B: sp.csr_matrix) -> np.ndarray:
    """Pairwise exact equality of the rows of two canonical CSR matrices (same shape), on their
    stored entries (positions and value bits), without densifying."""
    same = np.diff(A.indptr) == np.diff(B.indptr)
    rows = np.flatnonzero(same)
    if rows.size:
        A2, B2 = A[rows], B[rows]  # equal entry counts row by row: the entries line up
        bad = (A2.indices != B2.indices) | (A2.data.view(np.uint64) != B2.data.view(np.uint64))
        owner = np.repeat(np.arange(len(rows)), np.diff(A2.indptr))
        same[rows] = np.bincount(owner[bad], minlength=len(rows)) == 0
    return same


def _encode_labels(y, n: int) -> np.ndarray:
    """Labels as a 2-D array (one column per output); ``None`` gives an empty label."""
    if y is None:
        return np.empty((n, 0), dtype=object)
    y = np.asarray(y)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]}.")
    return y


class RowIndex:
    """Hash index over the rows ``(X_fit, y_fit)`` of a training set.

    Build it once and call :meth:`locate` for every forget set; :func:`locate_rows` is the
    one-shot form.

    Parameters
    ----------
    X_fit : array-like or sparse matrix of shape (n_samples, n_features)
        Training features (numeric).
    y_fit : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        Training labels; ``None`` matches on the features only.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ssse._rows import RowIndex
    >>> X = np.array([[0., 1.], [2., 3.], [0., 1.]])
    >>> RowIndex(X, [0, 1, 0]).locate([[0., 1.], [0., 1.]], [0, 0])
    array([0, 2])
    """

    def __init__(self, X_fit, y_fit=None):
        self.sparse = sp.issparse(X_fit)
        self.X = _canonical_sparse(X_fit) if self.sparse else _dense(X_fit)
        self.n_samples, self.n_features = self.X.shape
        self.y = _encode_labels(y_fit, self.n_samples)
        self.labels, codes = self._label_codes_fit(self.y)
        self.hashes = self._combine(self._hash(self.X), codes)
        self.order = np.argsort(self.hashes, kind="stable")
        self.sorted_hashes = self.hashes[self.order]

    # -------------------------------------------------------------------------------- helpers
    @staticmethod
    def _hash(X) -> np.ndarray:
        return _hash_sparse(X) if sp.issparse(X) else _hash_dense(X)

    @staticmethod
    def _label_codes_fit(y: np.ndarray):
        if y.shape[1] == 0:
            return [], np.zeros(y.shape[0], dtype=np.int64)
        labels, codes = [], []
        for j in range(y.shape[1]):
            uniq, inv = np.unique(y[:, j], return_inverse=True)
            labels.append(uniq)
            codes.append(inv.reshape(-1))
        return labels, RowIndex._pack(codes)

    def _label_codes(self, y: np.ndarray) -> np.ndarray:
        """Codes of new labels; ``-1`` where a label never occurs in the training labels."""
        if y.shape[1] != len(self.labels):
            raise ValueError(
                f"y has {y.shape[1]} output(s) but the training labels have {len(self.labels)}."
            )
        if not self.labels:
            return np.zeros(y.shape[0], dtype=np.int64)
        codes, unknown = [], np.zeros(y.shape[0], dtype=bool)
        for j, uniq in enumerate(self.labels):
            col = y[:, j]
            try:
                pos = np.clip(np.searchsorted(uniq, col), 0, len(uniq) - 1)
                known = uniq[pos] == col
            except TypeError:  # incomparable label types never match
                pos, known = np.zeros(len(col), dtype=np.int64), np.zeros(len(col), dtype=bool)
            unknown |= ~np.asarray(known, dtype=bool)
            codes.append(pos)
        packed = self._pack(codes)
        packed[unknown] = -1
        return packed

    @staticmethod
    def _pack(codes) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = np.zeros(len(codes[0]), dtype=np.uint64)
            for j, c in enumerate(codes):
                h = _mix(h ^ (np.asarray(c).astype(np.uint64) + np.uint64(j + 1)))
        return h.view(np.int64)

    @staticmethod
    def _combine(row_hash: np.ndarray, label_code: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return _mix(row_hash ^ (label_code.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))

    def _rows_equal(self, i: np.ndarray, Xd, yd: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Exact equality of training rows ``i`` and requested rows ``j`` (pairwise)."""
        same = np.empty(len(i), dtype=bool)
        for start in range(0, len(i), _CHUNK):
            sl = slice(start, start + _CHUNK)
            A, B = self.X[i[sl]], Xd[j[sl]]
            if sp.issparse(A) or sp.issparse(B):
                same[sl] = _sparse_rows_equal(canonical_sparse(A), canonical_sparse(B))
                continue
            same[sl] = ((A == B) | (np.isnan(A) & np.isnan(B))).all(axis=1)
        if yd.shape[1]:
            same &= (self.y[i] == yd[j]).all(axis=1)
        return same

    # -------------------------------------------------------------------------------- public
    def locate(self, X_del, y_del=None, active_mask=None, *, missing: str = "raise") -> np.ndarray:
        """Indices of the rows ``(X_del, y_del)`` in the training set, as a multiset.

        Parameters
        ----------
        X_del : array-like or sparse matrix of shape (k, n_features)
            Rows to locate.
        y_del : array-like of shape (k,) or (k, n_outputs), default=None
            Their labels; required when the index was built with labels.
        active_mask : array-like of bool of shape (n_samples,), default=None
            Only training rows where the mask is True can be matched (e.g. ``fit_mask_``, the rows
            not yet forgotten).
        missing : {"raise", "ignore"}, default="raise"
            What to do with a row that has no (remaining) match: raise ``ValueError``, or report
            ``-1`` at its position.

        Returns
        -------
        indices : ndarray of int of shape (k,)
            ``indices[j]`` is the training row matched to ``X_del[j]``; all non-negative entries
            are distinct. Equal requested rows take equal training rows in increasing index order.

        Raises
        ------
        ValueError
            If a row is not found (with ``missing="raise"``) or the shapes do not match.
        """
        if missing not in ("raise", "ignore"):
            raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}.")
        if self.sparse or sp.issparse(X_del):  # (the hashes agree across formats)
            Xd = _canonical_sparse(X_del)
        else:
            Xd = _dense(X_del)
        k = Xd.shape[0]
        if Xd.shape[1] != self.n_features:
            raise ValueError(
                f"X_del has {Xd.shape[1]} features but the training data has {self.n_features}."
            )
        if len(self.labels) and y_del is None:
            raise ValueError("y_del is required: the training rows were indexed with labels.")
        yd = _encode_labels(y_del, k) if len(self.labels) else np.empty((k, 0), dtype=object)
        codes = self._label_codes(yd)
        hashes = self._combine(self._hash(Xd), codes)

        if active_mask is None:
            order, sorted_h = self.order, self.sorted_hashes
        else:
            active_mask = np.asarray(active_mask, dtype=bool).reshape(-1)
            if active_mask.shape[0] != self.n_samples:
                raise ValueError(
                    f"active_mask has {active_mask.shape[0]} entries, expected {self.n_samples}."
                )
            keep = active_mask[self.order]
            order, sorted_h = self.order[keep], self.sorted_hashes[keep]

        # rank of each requested row among the requested rows with the same hash
        req_order = np.argsort(hashes, kind="stable")
        req_sorted = hashes[req_order]
        first = np.searchsorted(req_sorted, req_sorted, side="left")
        occurrence = np.empty(k, dtype=np.int64)
        occurrence[req_order] = np.arange(k) - first
        left = np.searchsorted(sorted_h, hashes, side="left")
        right = np.searchsorted(sorted_h, hashes, side="right")
        pos = left + occurrence
        ok = (pos < right) & (codes != -1)
        result = np.full(k, -1, dtype=np.int64)
        result[ok] = order[pos[ok]]
        if ok.any():
            okj = np.flatnonzero(ok)
            good = self._rows_equal(result[okj], Xd, yd, okj)
            bad = okj[~good]
        else:
            bad = np.empty(0, dtype=np.int64)
        result[bad] = -1
        if bad.size:  # hash collision (astronomically rare): exact search in the hash group
            self._resolve_collisions(result, bad, Xd, yd, hashes, order, sorted_h)

        if missing == "raise" and (result < 0).any():
            j = int(np.flatnonzero(result < 0)[0])
            n_missing = int((result < 0).sum())
            dup = ", a duplicate beyond the copies in the training data"
            raise ValueError(
                f"{n_missing} of the {k} rows to locate are not among the "
                f"{'remaining ' if active_mask is not None else ''}training rows (first: row {j}"
                f"{dup if right[j] > left[j] and codes[j] != -1 else ''}). "
                "Rows are matched on the exact values of X and y."
            )
        return result

    def _resolve_collisions(self, result, bad, Xd, yd, hashes, order, sorted_h) -> None:
        used = set(result[result >= 0].tolist())
        for j in bad.tolist():
            lo = np.searchsorted(sorted_h, hashes[j], side="left")
            hi = np.searchsorted(sorted_h, hashes[j], side="right")
            for i in order[lo:hi].tolist():
                if i in used:
                    continue
                if self._rows_equal(np.array([i]), Xd, yd, np.array([j]))[0]:
                    result[j] = i
                    used.add(i)
                    break


def locate_rows(X_fit, y_fit, X_del, y_del, active_mask=None, *, missing: str = "raise"
                ) -> np.ndarray:
    """Find the rows ``(X_del, y_del)`` inside ``(X_fit, y_fit)``, exactly, as a multiset.

    Rows are compared on the exact values of the features and the label(s) (``-0.0`` equals
    ``0.0`` and NaN equals NaN; integer and float features are compared as float64). Duplicates
    are handled as a multiset: ``m`` equal requested rows consume ``m`` distinct training rows
    with that content, the lowest indices first.

    Parameters
    ----------
    X_fit : array-like or sparse matrix of shape (n_samples, n_features)
        Training features.
    y_fit : array-like of shape (n_samples,) or (n_samples, n_outputs) or None
        Training labels (``None`` matches on the features only).
    X_del : array-like or sparse matrix of shape (k, n_features)
        Rows to locate.
    y_del : array-like of shape (k,) or (k, n_outputs) or None
        Their labels.
    active_mask : array-like of bool of shape (n_samples,), default=None
        Only rows where the mask is True can be matched (e.g. ``fit_mask_``).
    missing : {"raise", "ignore"}, default="raise"
        Raise ``ValueError`` for a row without a match, or report ``-1`` at its position.

    Returns
    -------
    indices : ndarray of int of shape (k,)
        Index in ``X_fit`` of the training row matched to each requested row.

    Raises
    ------
    ValueError
        If a row (or one more copy of a duplicated row) is not found and ``missing="raise"``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ssse._rows import locate_rows
    >>> X = np.array([[1., 2.], [3., 4.], [1., 2.], [5., 6.]])
    >>> y = np.array([0, 1, 0, 1])
    >>> locate_rows(X, y, [[5., 6.], [1., 2.], [1., 2.]], [1, 0, 0])
    array([3, 0, 2])
    >>> locate_rows(X, y, [[1., 2.]], [0], active_mask=[False, True, True, True])
    array([2])
    >>> locate_rows(X, y, [[1., 2.]], [1], missing="ignore")  # wrong label: no match
    array([-1])
    """
    return RowIndex(X_fit, y_fit).locate(X_del, y_del, active_mask, missing=missing)
