"""Curvature from a stream of training chunks, and its downdate after a deletion.

(The streams themselves, in-memory arrays, dask arrays and chunk iterables, and their
validation are in :mod:`sklearn_ssse._data`.)

The curvature's data term is a sum over samples, so it can be accumulated chunk by chunk with
bounded memory: the training data may be a numpy array, a dask array (read block by block) or any
iterable of ``(X, y)`` chunks, and is never concatenated.  This module holds the one-pass
accumulation shared by the kinds built from factor rows (``dense``, ``block``, ``woodbury``,
``sherman_morrison``; the kinds with several passes, such as ``ekfac``, are in
:mod:`sklearn_ssse._curvature`):

* ``inverse="dense"`` / ``"block"`` keep one Gram matrix per block (``O(d^2)``); the linear
  backend's closed-form :meth:`~sklearn_ssse._backends.LinearBackend.curvature_gram` replaces the
  factor rows when mini-batches are off (``fisher_batch_size=1``), on chunks of at least
  ``GRAM_CHUNK`` samples;
* ``fisher_max_samples=m`` draws a uniform random subset of ``m`` samples in one pass without
  knowing ``n`` (bottom-``m`` of one uniform key per sample, keeping ``O(m)`` raw rows); the
  sampled terms are weighted by ``n / m``;
* ``fisher_batch_size=b`` groups ``b`` consecutive samples of the stream (incomplete groups are
  carried across chunk boundaries; only the last group of the stream can be smaller).

Chunks are re-cut to ``chunk_size`` rows before anything is computed, and the random keys are
drawn in stream order, so the result does not depend on how the stream is chunked: an iterable
of chunks gives the same operator (to rounding, usually bit for bit) as the same rows in memory.
In memory (``fit``, or :meth:`~sklearn_ssse.UnlearnableClassifier.from_fitted` with arrays) and
with ``fisher_batch_size > 1`` the rows are first put in a random order
(``random_state.permutation``); a stream is used in its own order, so shuffle it if it is sorted.

Random draws, in this order: the permutation (in memory, ``b > 1`` only), then one
``random_state.random_sample`` key per sample, chunk by chunk (``m`` given only).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._curvature import REFACTOR_RATIO, CurvatureOperator, OperatorBuilder
from ._data import concat_rows, copy_rows, n_rows, rebuffer
from ._rows import multiset, multiset_remove, new_salt, row_digests

__all__ = ["accumulate_curvature", "downdate_curvature", "factor_rows", "parameters_at",
           "sampled_terms",
           "row_uniforms"]

#: use the backend's closed-form Gram matrices when it has them (tests switch it off to compare)
USE_GRAM_HOOK = True
#: samples per closed-form Gram computation (at least): that path holds O(n_features) numbers per
#: sample instead of the factor rows' O(q * n_params), so larger chunks cost little memory and
#: amortise the per-chunk work (a 4096 x 785 float64 chunk is 25 MB)
GRAM_CHUNK = 4096


class _BottomSample:
    """Uniform sample of ``m`` rows of a stream of unknown length (one key per row, keep the
    ``m`` smallest); the result is in stream order.  Memory: at most ``2 m`` rows plus a chunk."""

    def __init__(self, m: int, rng):
        self.m, self.rng = int(m), rng
        self.parts: list[tuple] = []  # (keys, positions, X, y)
        self.size = 0
        self.seen = 0

    def _compact(self) -> None:
        keys, pos, X, y = ((concat_rows if i == 2 else np.concatenate)([p[i] for p in self.parts])
                           for i in range(4))
        if len(keys) > self.m:
            keep = np.sort(np.argpartition(keys, self.m - 1)[: self.m])
            keys, pos, X, y = keys[keep], pos[keep], X[keep], y[keep]
        self.parts, self.size = [(keys, pos, X, y)], len(keys)

    def add(self, Xc, yc) -> None:
        c = n_rows(Xc)
        keys = self.rng.random_sample(c)
        pos = np.arange(self.seen, self.seen + c)
        self.seen += c
        # own the rows: a chunk may be a view of the caller's (reused) buffer
        self.parts.append((keys, pos, copy_rows(Xc), np.array(yc, copy=True)))
        self.size += c
        if self.size > 2 * self.m:
            self._compact()

    def result(self):
        self._compact()
        keys, pos, X, y = self.parts[0]
        order = np.argsort(pos, kind="stable")
        return X[order], y[order]


class _MiniBatcher:
    """Groups ``b`` consecutive samples' factor rows into ``sum / sqrt(b)`` (``sqrt(b)`` times the
    mean, the paper's mini-batch Fisher term), carrying incomplete groups across chunks."""

    def __init__(self, b: int):
        self.b = int(b)
        self.carry = None

    def push(self, R: torch.Tensor) -> torch.Tensor | None:
        if self.carry is not None:
            R = torch.cat([self.carry, R])
        full = R.shape[0] // self.b * self.b
        self.carry = R[full:] if full < R.shape[0] else None
        if full == 0:
            return None
        groups = R[:full].reshape(full // self.b, self.b, *R.shape[1:]).sum(1)
        return groups / math.sqrt(self.b)

    def flush(self) -> torch.Tensor | None:
        if self.carry is None:
            return None
        R, self.carry = self.carry, None
        return R.sum(0, keepdim=True) / math.sqrt(R.shape[0])


def row_uniforms(X, y, salt: bytes) -> np.ndarray:
    """One uniform in ``[0, 1)`` per row, a keyed hash of the row and its label: the same row
    always gets the same number (used to draw the labels of sampled GGN rows reproducibly)."""
    d = row_digests(X, y, salt=salt)
    return np.frombuffer(d.tobytes(), dtype="<u8")[::2] / 2.0**64


def factor_rows(backend, X, y, curvature: str, label_salt: bytes | None = None) -> torch.Tensor:
    """The curvature's factor rows of ``(X, y)``: ``backend.curvature_rows``, or with a
    ``label_salt`` (sampled GGN, see :meth:`~sklearn_ssse._backends.BaseBackend.ggn_sample_rows`)
    one row per sample at a label drawn with :func:`row_uniforms`."""
    if label_salt is not None and curvature == "ggn":
        # the labels: a class-weighted model scales each row by sqrt of its weight
        return backend.ggn_sample_rows(X, row_uniforms(X, y, label_salt), y)
    return backend.curvature_rows(X, y, curvature)


def iter_factor_rows(backend, X, y, curvature: str, label_salt: bytes | None = None):
    """:func:`factor_rows` in pieces of at most the backend's ``chunk_size`` rows where the
    backend can stream them (``iter_curvature_rows``), so that a caller that only accumulates
    them never holds the ``(n, q, d)`` block of a whole chunk of samples (GGN rows of a net:
    ``q`` = the number of classes)."""
    stream = getattr(backend, "iter_curvature_rows", None)
    if stream is None or (label_salt is not None and curvature == "ggn"):
        yield factor_rows(backend, X, y, curvature, label_salt)
        return
    yield from stream(X, y, curvature)


def accumulate_curvature(backend, chunks: Iterable, *, form: str, curvature: str, damping,
                         blocks=None, block_size=None, fisher_batch_size: int = 1,
                         fisher_max_samples: int | None = None, chunk_size: int = 512,
                         random_state=None, label_salt: bytes | None = None,
                         exact_diagonal: bool = False) -> dict:
    """Build the inverse-curvature operator of a fitted model in one pass over its data.

    Parameters
    ----------
    backend : BaseBackend
        The fitted model's backend (gradients / curvature factors at its current parameters).
    chunks : iterable of (X_chunk, y_chunk)
        Validated training chunks, read once.
    form : {"dense", "woodbury", "sherman_morrison"}
        How the :class:`~sklearn_ssse._curvature.OperatorBuilder` holds the matrix (the
        ``inverse`` kinds built from factor rows pass theirs, see
        :mod:`sklearn_ssse._curvature._factor_rows`).
    curvature : {"empirical_fisher", "ggn"}
        Which curvature.
    damping : callable
        ``damping(n) -> Tensor`` of shape ``(n_params,)``: the mean-form damping for ``n``
        samples (known only at the end of the stream).
    blocks, block_size :
        As for :class:`~sklearn_ssse._curvature.OperatorBuilder`.
    fisher_batch_size : int, default=1
        Samples per mini-batch term.
    fisher_max_samples : int, default=None
        Size of the uniform random subset the curvature is built from (``None``: all).
    chunk_size : int, default=512
        Samples per computation (bounds the memory of the factor rows).
    random_state : int, RandomState instance or None, default=None
        Source of the sample keys.
    label_salt : bytes, optional
        With ``curvature="ggn"``: one factor row per sample at a label drawn from the model's
        own ``p(.|x)`` (keyed by this salt, see :func:`factor_rows`) instead of ``q`` rows.
    exact_diagonal : bool, default=False
        Low-rank kinds: accumulate the exact diagonal of the data term over *every* sample
        (backends whose ``curvature_diagonal`` has a closed form; ignored where it returns
        ``None``) and give it to the operator's diagonal base (see
        :meth:`~sklearn_ssse._curvature.OperatorBuilder.finalize`).

    Returns
    -------
    dict
        ``curvature`` (the operator), ``damping`` (the tensor used), ``n`` (samples in the
        stream), ``n_curvature_samples`` (samples the curvature was built from) and ``sample``:
        ``None`` when every sample was used, else the salted digests of the sampled rows and
        their weight (``salt``, ``digests``, ``counts``, ``scale``), so that
        :func:`downdate_curvature` removes exactly the sampled rows that are later forgotten.
    """
    rng = check_random_state(random_state)
    builder = OperatorBuilder(form, backend.n_params, backend.dtype, backend.device,
                              blocks=blocks, block_size=block_size)
    b = int(fisher_batch_size)
    use_gram = (USE_GRAM_HOOK and b == 1 and builder.accepts_grams
                and hasattr(backend, "curvature_gram"))
    batcher = _MiniBatcher(b) if b > 1 else None
    sampler = _BottomSample(fisher_max_samples, rng) if fisher_max_samples is not None else None

    def feed(Xc, yc):
        nonlocal use_gram
        if use_gram:
            grams = backend.curvature_gram(Xc, yc, curvature, builder.slices)
            if grams is not None:
                builder.add_grams(grams)
                return
            use_gram = False  # slices the backend cannot do in closed form
        for R in iter_factor_rows(backend, Xc, yc, curvature, label_salt):
            if batcher is not None:
                R = batcher.push(R)
            if R is not None:
                builder.add_rows(R)

    if use_gram:
        chunk_size = max(chunk_size, GRAM_CHUNK)
    n = 0
    diagonal = None
    for Xc, yc in rebuffer(chunks, chunk_size):
        n += n_rows(Xc)
        if exact_diagonal:
            part = backend.curvature_diagonal(Xc, yc, curvature)
            if part is None:  # no closed form: the base stays the damping
                exact_diagonal = False
            else:
                diagonal = part if diagonal is None else diagonal + part
        if sampler is not None:
            sampler.add(Xc, yc)
        else:
            feed(Xc, yc)
    if n == 0:
        raise ValueError("the training data is empty")
    n_used, sample = n, None
    if sampler is not None:
        Xs, ys = sampler.result()
        n_used = n_rows(Xs)
        for a in range(0, n_used, chunk_size):
            feed(Xs[a:a + chunk_size], ys[a:a + chunk_size])
        if n_used < n:
            salt = new_salt()
            digests, counts = multiset(row_digests(Xs, ys, salt=salt))
            sample = {"salt": salt, "digests": digests, "counts": counts, "scale": n / n_used}
    if batcher is not None:
        R = batcher.flush()
        if R is not None:
            builder.add_rows(R)
    lam = damping(n)
    op = builder.finalize(n, lam, scale=n / n_used, diagonal=diagonal)
    return {"curvature": op, "damping": lam, "n": n, "n_curvature_samples": n_used,
            "sample": sample, "label_salt": label_salt}


@contextlib.contextmanager
def parameters_at(backend, theta: torch.Tensor):
    """Temporarily give the backend's model the parameters ``theta`` (restored on exit)."""
    current = backend.get_parameters()
    if torch.equal(current, theta.to(current)):
        yield backend
        return
    backend.set_parameters(theta)
    try:
        yield backend
    finally:
        backend.set_parameters(current)


def sampled_terms(sample: dict | None, X, y):
    """``(X, y, sample, scale)``: the erased rows that are terms of a sub-sampled curvature
    (:func:`accumulate_curvature`'s ``sample`` record, without them afterwards) and their
    weight ``n / m``; every row, weight 1, when ``sample`` is ``None``."""
    if sample is None:
        return X, y, None, 1.0
    values, counts, missing = multiset_remove(
        sample["digests"], sample["counts"], row_digests(X, y, salt=sample["salt"]))
    sample = dict(sample, digests=values, counts=counts)
    return X[~missing], y[~missing], sample, sample["scale"]


def downdate_curvature(op: CurvatureOperator, sample: dict | None, backend, X, y, *,
                       curvature: str, chunk_size: int = 512, label_salt: bytes | None = None
                       ) -> tuple[CurvatureOperator, dict | None]:
    """Remove the terms of forgotten samples from the curvature (the leave-k-out curvature).

    The factors are computed at the backend's current parameters: call it inside
    :func:`parameters_at` with the parameters the curvature was built at.

    Parameters
    ----------
    op : CurvatureOperator
        The current operator (not modified).
    sample : dict or None
        :func:`accumulate_curvature`'s ``sample``: with a sub-sampled curvature only the
        forgotten rows that were sampled are removed, with their weight ``n / m`` (an unbiased
        estimate of the remaining samples' curvature that stays positive definite); ``None``
        removes every row.
    backend : BaseBackend
        The model's backend.
    X, y : ndarray
        The ``k`` forgotten samples (validated).
    curvature : {"empirical_fisher", "ggn"}
        The curvature the operator holds.
    chunk_size : int, default=512
        Samples per computation.
    label_salt : bytes, optional
        The key of sampled GGN rows (:func:`accumulate_curvature`'s ``label_salt``): the same
        rows that were added are removed.

    Returns
    -------
    op : CurvatureOperator
        Averages over ``op.n - k`` samples.
    sample : dict or None
        ``sample`` without the removed digests.
    """
    k = n_rows(X)
    X, y, sample, scale = sampled_terms(sample, X, y)
    if n_rows(X) == 0:
        return op._with_n(op.n - k), sample
    slices = op.gram_slices
    if (USE_GRAM_HOOK and slices is not None and hasattr(backend, "curvature_gram")
            and label_salt is None
            and n_rows(X) * backend.factor_rows_per_sample(curvature)
            > REFACTOR_RATIO * min(s.stop - s.start for s in slices)):
        # many rows: subtract the closed-form Gram matrices and refactor the dense blocks
        grams, step = None, max(chunk_size, GRAM_CHUNK)
        for a in range(0, n_rows(X), step):
            part = backend.curvature_gram(X[a:a + step], y[a:a + step], curvature, slices)
            if part is None:
                grams = None
                break
            grams = part if grams is None else [G + P for G, P in zip(grams, part)]
        if grams is not None:
            return op.downdate_gram([G * scale for G in grams], k), sample
    rows = torch.cat([factor_rows(backend, X[a:a + chunk_size], y[a:a + chunk_size], curvature,
                                  label_salt).reshape(-1, backend.n_params)
                      for a in range(0, n_rows(X), chunk_size)])
    if scale != 1.0:
        rows = rows * math.sqrt(scale)
    return op.downdate(rows, k), sample
