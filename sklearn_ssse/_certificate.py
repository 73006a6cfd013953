"""Certificates and refinement of a deletion (linear models).

For a convex model whose objective on the remaining rows ``R`` is, in its own scale,

    J_R(theta) = sum_{i in R} l_i(theta) + theta^T diag(P_R) theta / 2

(``P_R`` the penalty's Hessian: ``1 / C`` on the weights of ``LogisticRegression``, ``n_R alpha``
for ``SGDClassifier``, 0 on unpenalised intercepts), strong convexity with modulus ``mu`` gives

    ||theta - theta_R|| <= ||grad J_R(theta)|| / mu

for the retrained optimum ``theta_R``.  With every parameter penalised, ``mu >= min(P_R)``: a true
upper bound.  Otherwise (an unpenalised intercept) the objective is not strongly convex
everywhere, and the local modulus is estimated by the smallest eigenvalue of the cached
curvature; the result is labelled an estimate.

The gradient is one pass over the remaining rows: in memory, as an iterable of chunks, or as dask
arrays whose row blocks are reduced where they live (on the workers of a ``dask.distributed``
cluster when a client is active), so no block is sent to the caller.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import scipy.sparse as sp
import torch

from ._data import array_chunks, dask_row_aligned, is_dask, iter_data, validated_chunks

__all__ = ["Certificate"]


@dataclasses.dataclass(frozen=True)
class Certificate:
    """How far parameters are from the optimum retrained on the remaining rows.

    The distances are measured orthogonally to the directions the model does not depend on
    (a common shift of a multinomial model's intercepts), along which the retrained optimum is
    not unique.

    Attributes
    ----------
    residual_norm : float
        ``||grad J_R(theta)||`` at the current parameters, in the model's own objective scale.
    mu : float
        Strong convexity modulus used: the smallest penalty weight (``kind="bound"``) or the
        smallest eigenvalue of the cached curvature (``kind="estimate"``).
    distance : float
        ``residual_norm / mu``: an upper bound on ``||theta - theta_R||`` (``kind="bound"``), or
        an estimate of it (``kind="estimate"``).
    kind : {"bound", "estimate"}
        ``"bound"`` when every parameter is penalised (a global guarantee); ``"estimate"``
        when some are not (an unpenalised intercept).
    original_distance : float
        The same quantity for the parameters right after fit (``theta_fit_``): how far the
        model was from ``theta_R`` before anything was forgotten.
    relative : float
        ``distance / original_distance`` (0 = at the retrained optimum, 1 = no closer than the
        original model); ``inf`` when the original is already there and the parameters are not.
    n_remaining : int
        Rows read.
    seconds : float
        Wall time of the pass.
    """

    residual_norm: float
    mu: float
    distance: float
    kind: str
    original_distance: float
    relative: float
    n_remaining: int
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _class_counts(yb, classes) -> list[np.ndarray]:
    """Rows per class of each output."""
    classes = classes if isinstance(classes, list) else [classes]
    Y = np.asarray(yb).reshape(len(yb), -1)
    return [np.bincount(np.searchsorted(c, Y[:, j]), minlength=len(c))
            for j, c in enumerate(classes)]


def _block_gradients(Xb, yb, estimators, backend_cls, backend_kwargs, n_features, classes,
                     pre=None):
    """Summed loss gradients of one row block at each estimator's parameters, its row count
    and its rows per class (runs on a dask worker for dask input; ``pre``: a Pipeline's
    frozen transformers, applied to raw rows first)."""
    from sklearn.utils import check_array

    if pre is not None:
        Xb = pre.transform(Xb)
    Xb = check_array(Xb if sp.issparse(Xb) else np.asarray(Xb), dtype=np.float64,
                     input_name="X", accept_sparse="csr")
    if Xb.shape[1] != n_features:
        raise ValueError(f"X has {Xb.shape[1]} features, the model {n_features}")
    yb = np.asarray(yb)
    G = np.stack([backend_cls(est, **backend_kwargs).gradient_sum(Xb, yb).numpy()
                  for est in estimators])
    return G, Xb.shape[0], _class_counts(yb, classes)


def loss_gradients(clf, thetas, X=None, y=None, remaining=None):
    """``(G, n, counts)``: row ``j`` of ``G`` is ``sum_{i in R} grad l_i(thetas[j])`` over the
    remaining rows, ``n`` the number of rows read, ``counts`` their rows per class (one array
    per output).

    ``X=None`` reads the kept training rows still in the model (``keep_training_data=True``),
    or those of the boolean mask ``remaining`` over them.
    """
    backend = clf.backend_
    backend_cls, kwargs = type(backend), clf._backend_kwargs
    estimators = [clf.with_parameters(t) for t in thetas]
    pre = getattr(clf, "preprocessor_", None)
    n_features = clf.estimator_.n_features_in_ if pre is not None else clf.n_features_in_
    multi = isinstance(clf.classes_, list)
    if X is None:
        if y is not None:
            raise ValueError("y_remaining without X_remaining")
        if not hasattr(clf, "X_fit_"):
            raise ValueError("no remaining rows: fit with keep_training_data=True, or pass "
                             "X_remaining, y_remaining (arrays, dask arrays or an iterable of "
                             "(X, y) chunks)")
        index = np.flatnonzero(clf.fit_mask_ if remaining is None else remaining)
        chunks = array_chunks(clf.X_fit_, clf.y_fit_, clf.config_.chunk_size, index=index)
    elif y is not None and (is_dask(X) or is_dask(y)):
        return _dask_gradients(X, y, estimators, backend_cls, kwargs, n_features, clf.classes_,
                               pre)
    else:
        chunks = iter_data(X, y)
        if pre is not None:  # raw rows of a Pipeline: its frozen transformers first
            chunks = ((pre.transform(Xc), yc) for Xc, yc in chunks)
    chunks = validated_chunks(chunks, dtype=backend_cls.input_dtype, multi_output=multi,
                              classes=clf.classes_, n_features=n_features,
                              accept_sparse=bool(getattr(backend_cls, "accepts_sparse", False)))
    total = np.zeros((len(thetas), backend.n_params))
    n = 0
    counts = None
    for Xc, yc in chunks:
        G, k, c = _block_gradients(Xc, yc, estimators, backend_cls, kwargs, n_features,
                                   clf.classes_)
        total += G
        n += k
        counts = c if counts is None else [a + b for a, b in zip(counts, c)]
    if counts is None:
        counts = _class_counts(np.zeros((0,)), clf.classes_)
    return total, n, counts


def _dask_gradients(X, y, estimators, backend_cls, kwargs, n_features, classes, pre=None):
    import dask
    import dask.array as da

    if not is_dask(X):
        X = da.from_array(np.asarray(X), chunks=(max(1, len(X)),))
    X, y = dask_row_aligned(X, y)
    rows = X.chunks[0]
    if not is_dask(y):
        y = da.from_array(y, chunks=(rows,) + ((-1,) if y.ndim == 2 else ()))
    part = dask.delayed(_block_gradients, pure=True)
    parts = [part(X.blocks[i], y.blocks[i], estimators, backend_cls, kwargs, n_features,
                  classes, pre) for i in range(len(rows))]
    results = dask.compute(*parts)  # the active scheduler: a distributed client's workers
    total = np.sum([G for G, _, _ in results], axis=0)
    counts = [np.sum(c, axis=0) for c in zip(*(c for _, _, c in results))]
    return total, int(sum(k for _, k, _ in results)), counts


def penalty(clf, n_remaining: int) -> np.ndarray:
    """``P_R``: the Hessian of the penalty of the remaining objective in its sum form."""
    lam = clf.backend_.default_damping(n_remaining).numpy()
    return n_remaining * lam


#: intercept that switches a class off: exp(-1e4) is exactly 0 in float64
SUPPRESSED_INTERCEPT = -1e4


def absent_coordinates(clf, counts) -> np.ndarray:
    """Parameter indices of the classes without remaining rows (a class removal).

    The remaining objective has no minimiser in such a class's intercept (it decreases
    towards -inf); the retrained model does not have the class at all.  Its row is switched
    off (weights 0, intercept :data:`SUPPRESSED_INTERCEPT`: probability exactly 0, the model
    predicts like the retrained one) and left out of the certificate.
    """
    out = []
    for (offset, part), count in zip(_parts(clf), counts):
        absent = np.flatnonzero(count == 0)
        if absent.size:
            if part.n_rows == 1:
                raise ValueError("a binary model without rows of one class left has no "
                                 "retrained counterpart (a one-class classifier): nothing to "
                                 "certify or refine")
            if not part.fit_intercept:
                raise ValueError("a class without remaining rows can only be switched off "
                                 "through an intercept: this model has none")
            if part.n_rows - absent.size < 3:
                raise ValueError(f"only {part.n_rows - absent.size} classes keep rows: the "
                                 "retrained model is a binary one, with a single weight row "
                                 "and another objective than the multinomial rows left here; "
                                 "retrain it instead")
            for c in absent:
                out.extend(range(offset + c * part.p1, offset + (c + 1) * part.p1))
    return np.asarray(out, dtype=np.int64)


def suppress(clf, theta, absent: np.ndarray) -> torch.Tensor:
    """``theta`` with the rows of the absent classes switched off (see
    :func:`absent_coordinates`)."""
    theta = torch.as_tensor(theta).clone()
    if absent.size:
        theta[torch.as_tensor(absent)] = 0.0
        for offset, part in _parts(clf):
            end = offset + part.n_rows * part.p1
            for r in {(int(i) - offset) // part.p1 for i in absent if offset <= i < end}:
                theta[offset + r * part.p1 + part.p1 - 1] = SUPPRESSED_INTERCEPT
    return theta


def _parts(clf):
    """``(parameter offset, part)`` per output of the linear backend."""
    backend = clf.backend_
    return [(int(o), part) for o, part in zip(backend.offsets, backend.parts)]


def invariant_directions(clf, absent: np.ndarray | None = None) -> np.ndarray:
    """Orthonormal directions (columns) the model's predictions and objective do not depend
    on: a common shift of the intercepts of a multinomial model's classes (softmax invariance;
    over the classes that remain when ``absent`` switches some off).  The objective is flat
    along them, so distances are measured orthogonally to them."""
    cols = []
    absent = set() if absent is None else set(np.asarray(absent).tolist())
    for offset, part in _parts(clf):
        if part.n_rows > 1 and part.fit_intercept:
            idx = [offset + r * part.p1 + part.p1 - 1 for r in range(part.n_rows)]
            idx = [i for i in idx if i not in absent]
            u = np.zeros(clf.backend_.n_params)
            u[idx] = 1.0 / np.sqrt(len(idx))
            cols.append(u)
    return np.stack(cols, axis=1) if cols else np.zeros((clf.backend_.n_params, 0))


def project_out(clf, v: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """``v`` without its components along :func:`invariant_directions` and the absent
    classes' coordinates (what the certificate measures)."""
    v = np.array(v, dtype=np.float64, copy=True)
    v[..., absent] = 0.0
    U = invariant_directions(clf, absent)
    return v - (v @ U) @ U.T


def smallest_curvature_eigenvalue(clf, absent=None, iters: int = 100) -> float:
    """The smallest eigenvalue of the cached sum-form curvature ``M`` orthogonally to
    :func:`invariant_directions` and the absent classes' coordinates, by power iteration on
    ``M^{-1}`` (one solve per iteration; an estimate of the local strong convexity)."""
    op = clf.curvature_
    absent = np.zeros(0, dtype=np.int64) if absent is None else absent
    U = torch.as_tensor(invariant_directions(clf, absent)).to(dtype=op.dtype, device=op.device)
    drop = torch.as_tensor(absent, device=op.device)

    def project(v):
        v = v.clone()
        v[drop] = 0.0
        return v - U @ (U.T @ v) if U.shape[1] else v

    gen = torch.Generator().manual_seed(0)
    v = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(dtype=op.dtype,
                                                                    device=op.device)
    v = project(v)
    v = v / torch.linalg.vector_norm(v)
    lam = 0.0
    for _ in range(iters):
        w = project(op.solve_sum(v))
        lam_new = float(v @ w)
        v = w / torch.linalg.vector_norm(w)
        if lam and abs(lam_new - lam) <= 1e-6 * abs(lam):
            lam = lam_new
            break
        lam = lam_new
    return 1.0 / lam if lam > 0 else 0.0


def certificate(clf, theta, X=None, y=None, *, mu=None, original=None, reference=None,
                remaining=None, absent=None):
    """The certificate of ``theta``, the objective gradient there and the reference
    parameters' residual norm (one pass).

    ``reference`` (default ``theta_fit_``) is what ``original_distance`` is about; ``mu`` and
    ``original`` (its residual norm) are reused from an earlier certificate of the same
    remaining data when given, otherwise the pass also evaluates the gradient there.
    ``remaining`` (a mask over the kept rows, with ``X=None``) selects other remaining rows
    than those still in the model (the scorers' forget sets).  Classes without remaining rows
    (``absent``, found in the pass when not given) are switched off in ``theta`` and the
    reference (:func:`suppress`) and left out of the distances, at the cost of a second pass.

    Returns ``(certificate, gradient at theta, reference residual norm, absent)``.
    """
    start = time.perf_counter()
    theta = torch.as_tensor(theta)
    reference = clf._theta_fit if reference is None else torch.as_tensor(reference)
    if absent is not None and absent.size:
        theta, reference = suppress(clf, theta, absent), suppress(clf, reference, absent)
    thetas = [theta] if original is not None else [theta, reference]
    G, n, counts = loss_gradients(clf, thetas, X, y, remaining)
    if absent is None:
        absent = absent_coordinates(clf, counts)
        if absent.size:  # a class removal: evaluate the models with those classes off
            return certificate(clf, theta, X, y, mu=mu, original=original, reference=reference,
                               remaining=remaining, absent=absent)
    expected = clf.n_samples_ if remaining is None else int(np.sum(remaining))
    if n != expected:
        raise ValueError(f"the remaining data has {n} rows but {expected} remain in the "
                         "model: the certificate would be about another objective. Pass exactly "
                         "the training rows that were not forgotten")
    P = penalty(clf, n)
    grads = G + P * np.stack([t.detach().cpu().numpy() for t in thetas])
    grads[:, absent] = 0.0  # exactly 0 up to exp(-1e4) anyway: the classes are off
    norms = np.linalg.norm(grads, axis=1)
    original = float(norms[1]) if original is None else float(original)
    present = np.setdiff1d(np.arange(len(P)), absent)
    kind = "bound" if np.all(P[present] > 0) else "estimate"
    if mu is None:
        mu = (float(P[present].min()) if kind == "bound"
              else smallest_curvature_eigenvalue(clf, absent))
    dist = float(norms[0] / mu) if mu > 0 else math.inf
    orig = float(original / mu) if mu > 0 else math.inf
    rel = dist / orig if orig > 0 else (0.0 if dist == 0 else math.inf)
    cert = Certificate(residual_norm=float(norms[0]), mu=mu, distance=dist, kind=kind,
                       original_distance=orig, relative=rel, n_remaining=n,
                       seconds=time.perf_counter() - start)
    return cert, grads[0], original, absent
