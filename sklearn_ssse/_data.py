"""Training data as streams of ``(X, y)`` chunks: in-memory arrays, dask arrays (read one row
block at a time) and iterables of chunks, validated like ``fit`` validates ``X, y`` and re-cut to
a fixed chunk size.  Used by the curvature accumulation (:mod:`sklearn_ssse._streaming`),
:meth:`~sklearn_ssse.UnlearnableClassifier.from_fitted` and the certificate's gradient passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array

__all__ = ["array_chunks", "concat_rows", "copy_rows", "dask_row_aligned", "is_dask",
           "iter_data", "n_rows", "rebuffer", "validated_chunks"]

#: sparse formats the linear models take as they are (any other sparse format is converted to CSR)
SPARSE_FORMATS = ("csr", "csc")


def n_rows(X) -> int:
    """Number of rows of an array or a scipy sparse matrix (``len`` is ambiguous for sparse)."""
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def concat_rows(parts):
    """Stack chunks of rows: ``scipy.sparse.vstack`` (CSR) for sparse chunks, else numpy."""
    if sp.issparse(parts[0]):
        return sp.vstack(parts, format="csr")
    return np.concatenate(parts)


def copy_rows(X):
    """An owned copy of a chunk (a sparse chunk stays sparse)."""
    return X.copy() if sp.issparse(X) else np.array(X, copy=True)


def is_dask(a) -> bool:
    """Whether ``a`` is a dask collection (checked without importing dask)."""
    return type(a).__module__.split(".")[0] == "dask" and hasattr(a, "compute")


def dask_row_aligned(X, y):
    """A dask ``X`` in whole-row blocks, and ``y`` cut at the same rows (a dask ``y`` rechunked,
    anything else as a numpy array), after checking their shapes agree."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got a dask array of shape {X.shape}")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})  # whole rows per block
    rows = X.chunks[0]
    if is_dask(y):
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        y = y.rechunk({0: rows} if y.ndim == 1 else {0: rows, 1: -1})
    else:
        y = np.asarray(y)
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)}")
    return X, y


def _dask_chunks(X, y) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Row blocks of a dask ``X`` (and the matching rows of ``y``), computed one at a time."""
    X, y = dask_row_aligned(X, y)
    rows = X.chunks[0]
    start = 0
    for i, size in enumerate(rows):
        Xb = np.asarray(X.blocks[i].compute())
        yb = np.asarray(y.blocks[i].compute()) if is_dask(y) else y[start:start + size]
        start += size
        yield Xb, yb


def iter_data(X, y=None) -> Iterator[tuple]:
    """The training data as a stream of ``(X, y)`` chunks.

    Parameters
    ----------
    X : array-like, dask array, or iterable of (X_chunk, y_chunk)
        With ``y=None``, an iterable (a list, a generator...) of pairs; otherwise the features.
    y : array-like or dask array, default=None
        The labels, when ``X`` holds the features.

    Yields
    ------
    X_chunk, y_chunk
        Unvalidated chunks (see :func:`validated_chunks`).
    """
    if y is None:
        if hasattr(X, "shape") or isinstance(X, (str, bytes)):
            raise TypeError("X is an array but y is None: pass both, or an iterable of "
                            "(X, y) chunks as X")
        for i, item in enumerate(X):
            try:
                Xc, yc = item
            except (TypeError, ValueError):
                raise TypeError(f"chunk {i} of the training stream is not an (X, y) pair") \
                    from None
            yield Xc, yc
    elif is_dask(X) or is_dask(y):
        if not is_dask(X):
            X = np.asarray(X)
            y = np.asarray(y.compute()) if is_dask(y) else y
            yield X, y
            return
        yield from _dask_chunks(X, y)
    else:
        yield X, y


def array_chunks(X, y, chunk_size: int, index=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of in-memory ``X, y``, in the order of ``index`` (default: all rows in order)."""
    if index is None:
        for a in range(0, n_rows(X), chunk_size):
            yield X[a:a + chunk_size], y[a:a + chunk_size]
        return
    index = np.asarray(index)
    for a in range(0, len(index), chunk_size):
        part = index[a:a + chunk_size]
        yield X[part], y[part]


def validated_chunks(chunks: Iterable, *, dtype, multi_output: bool, classes=None,
                     n_features: int | None = None, info: dict | None = None,
                     accept_sparse: bool = False) -> Iterator[tuple]:
    """Check every chunk like ``fit`` checks ``X, y``.

    Parameters
    ----------
    chunks : iterable of (X_chunk, y_chunk)
        The stream.
    dtype : numpy dtype
        Features are converted to it (the backend's ``input_dtype``).
    multi_output : bool
        Whether ``y`` has one column per output.
    classes : ndarray or list of ndarray, optional
        Labels the fitted model knows; a chunk with another label is an error.
    n_features : int, optional
        Expected number of features (else that of the first chunk).
    info : dict, optional
        Receives ``n_features`` and ``n_samples`` as the stream is read.
    accept_sparse : bool, default=False
        Take scipy sparse chunks (CSR / CSC; returned as CSR) instead of refusing them.

    Yields
    ------
    X_chunk : ndarray of shape (c, n_features)
    y_chunk : ndarray of shape (c,) or (c, n_outputs)
    """
    info = {} if info is None else info
    info.setdefault("n_samples", 0)
    if classes is not None and not isinstance(classes, list):
        classes = [classes]
    for i, (Xc, yc) in enumerate(chunks):
        Xc = check_array(Xc, dtype=dtype, ensure_min_samples=0, input_name="X",
                         accept_sparse=SPARSE_FORMATS if accept_sparse else False)
        if sp.issparse(Xc):
            Xc = Xc.tocsr()  # row chunks
        yc = np.asarray(yc)
        if multi_output:
            if yc.ndim != 2:
                raise ValueError(f"chunk {i}: the multi-output model needs a 2-D y, got shape "
                                 f"{yc.shape}")
        elif yc.ndim == 2 and yc.shape[1] == 1:
            yc = yc.ravel()
        elif yc.ndim != 1:
            raise ValueError(f"chunk {i}: y must be 1-D, got shape {yc.shape}")
        if n_rows(Xc) != len(yc):
            raise ValueError(f"chunk {i}: X has {n_rows(Xc)} rows but y has {len(yc)}")
        if n_features is None:
            n_features = Xc.shape[1]
        if Xc.shape[1] != n_features:
            raise ValueError(f"chunk {i}: X has {Xc.shape[1]} features, expected {n_features}")
        if classes is not None:
            cols = yc.reshape(len(yc), -1).T
            if len(cols) != len(classes):
                raise ValueError(f"chunk {i}: y has {len(cols)} outputs, the model has "
                                 f"{len(classes)}")
            for j, (col, cls) in enumerate(zip(cols, classes)):
                unseen = np.setdiff1d(col, cls)
                if unseen.size:
                    raise ValueError(f"chunk {i}: labels the fitted model does not know (output "
                                     f"{j}): {unseen.tolist()}")
        info["n_features"] = n_features
        info["n_samples"] += n_rows(Xc)
        info["nnz"] = info.get("nnz", 0) + (Xc.nnz if sp.issparse(Xc) else Xc.size)
        if n_rows(Xc):
            yield Xc, yc


def rebuffer(chunks: Iterable, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Re-cut a stream of ``(X, y)`` chunks into chunks of exactly ``size`` rows (the last one
    shorter), copying only rows that straddle a boundary (sparse chunks stay sparse)."""
    bx, by, have = [], [], 0
    for Xc, yc in chunks:
        start, c = 0, n_rows(Xc)
        while start < c:
            take = min(size - have, c - start)
            if have == 0 and take == size:
                yield Xc[start:start + size], yc[start:start + size]
            else:
                bx.append(Xc[start:start + take])
                by.append(yc[start:start + take])
                have += take
                if have == size:
                    yield concat_rows(bx), np.concatenate(by)
                    bx, by, have = [], [], 0
            start += take
    if have:
        yield concat_rows(bx), np.concatenate(by)
