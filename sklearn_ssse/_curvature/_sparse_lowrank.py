"""Low-rank-plus-diagonal curvature on sparse Kronecker factor rows (linear models, sparse X).

For a linear model every factor row of the curvature is a Kronecker product
``u_i = r_i (x) xa_i``: ``r_i`` holds ``K`` output coefficients (residuals ``p - e_y`` for the
empirical Fisher, ``sqrt(p (1 - p))`` for a sigmoid's GGN, ...) and ``xa_i`` is the sample's
(sparse) feature row with the intercept column.  With ``m`` such rows stacked in ``U`` and a
diagonal base ``D`` (damping, plus the exact diagonal of the data term the rows miss), the
Woodbury identity

    (D + U^T S U)^{-1} = D^{-1} - D^{-1} U^T (S + U D^{-1} U^T)^{-1} U D^{-1}

(``S`` = diag of the rows' signs, ``+1`` for the rows of the curvature, ``-1`` for rows removed by
a downdate) needs only

* the capacitance ``U D^{-1} U^T = sum_k (r_k r_k^T) * (X_s D_k^{-1} X_s^T)`` (``D_k``: the base
  on class row ``k``), ``K`` sparse products ``m x m``, and
* ``U w = rowsum(R * (X_s W^T))`` and ``U^T z = vec(R^T diag(z) X_s)`` (sparse products),

so the ``m x d`` rows are never formed: :class:`SparseKroneckerWoodbury` holds the ``m`` sparse
rows ``X_s`` (CSR), the ``m x K`` coefficients ``R`` and the explicit inverse of the ``r x r``
capacitance (``r`` rows in all).  Memory ``O(nnz(X_s) + m K + r^2 + d)``; a solve costs
``O(K nnz(X_s) + r^2)`` per right-hand side.

Two uses (see :func:`resolve_sparse_inverse`, which ``inverse="auto"`` calls for sparse input):

* ``inverse="woodbury"``: one block over all the parameters of an output, ``m`` sampled rows.  A
  binary model has ONE GGN row per sample, so with ``m = n`` (every training row) the operator is
  the exact damped Hessian (an ``n x n`` capacitance), the faithful choice for ``10^4 - 10^6``
  features when ``n`` is moderate.
* ``inverse="block"`` of a multinomial model: the per-class diagonal blocks
  ``Xa^T diag(p_k (1 - p_k)) Xa + damping`` (rank ``n`` each) held exactly as one Woodbury operator
  per class over every training row (``K`` capacitances ``n x n``) when the dense ``p x p``
  blocks do not fit the memory budget.

Unpenalised intercepts get the weights' damping here (as for the dense ``"woodbury"`` kind):
the operator starts from ``D^{-1}``, and the ``1e-6`` floor of the dense kinds makes the
capacitance too ill-conditioned for removals.

:meth:`SparseKroneckerWoodbury.downdate` removes the rows of erased samples (the leave-S-out
step): their rows join the capacitance with sign ``-1`` through a Schur complement
(``O(r^2 k)``), refused when the result would not be positive definite.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import lapack

from .._data import concat_rows, n_rows, rebuffer
from .._rows import multiset, new_salt, row_digests
from ._operators import BlockDiagonal, CurvatureOperator

__all__ = ["SparseKroneckerWoodbury", "accumulate_sparse_woodbury", "downdate_structured",
           "sparse_dense_memory", "sparse_plan",
           "sparse_woodbury_memory"]

#: iterative refinement steps of every solve (see :meth:`SparseKroneckerWoodbury.solve_sum`)
REFINE_STEPS = 2
#: ... taken only while the residual ``V - M X`` exceeds this share of ``V``'s largest entry
REFINE_TOL = 1e-13

#: columns of a ``d x c`` intermediate formed at once (bounds the memory of removals to
#: ``O(d * _COLUMNS)`` besides the ``r x k`` products)
_COLUMNS = 16

#: CSR matrices of the operators' row groups, by the id of their data tensor (an entry leaves
#: with the tensor)
_CSR_CACHE: dict = {}

_INDEFINITE = ("removing these rows leaves a curvature that is not positive definite: they are not "
               "terms of it (were the samples part of the training data?)")


def _csr_tensors(X: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    X = sp.csr_matrix(X, dtype=np.float64)
    return (torch.from_numpy(np.ascontiguousarray(X.data)),
            torch.from_numpy(X.indices.astype(np.int64)),
            torch.from_numpy(X.indptr.astype(np.int64)))


def _tensor(a: np.ndarray, dtype, device) -> torch.Tensor:
    """``a`` as a tensor with standard strides (numpy may give a size-1 axis a zero stride,
    which torch keeps and byte views of the tensor refuse); no copy when ``a`` has no such
    axis."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    # through a 1-D view: torch's reshape of it has standard strides
    return torch.from_numpy(a.reshape(-1)).reshape(a.shape).to(dtype=dtype, device=device)


def _as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class SparseKroneckerWoodbury(CurvatureOperator):
    """``M = diag(D) + sum_g s_g U_g^T U_g`` with Kronecker rows ``U_g[i] = R_g[i] (x) X_g[i]``.

    The parameters of the block form a ``K x p`` matrix (class rows ``[w_c, b_c]``, parameter
    ``c * p + j``), as in the linear backend.  Row groups ``g`` (the rows the curvature was
    built from, then one group per downdate) are kept as CSR matrices ``X_g`` (held as three
    tensors, so that :meth:`to`, pickling and the seal see them) and coefficients ``R_g``
    (``m_g x K``); the inverse of the capacitance ``S + U D^{-1} U^T`` over all groups is held
    as the first group's inverse ``cap_inv`` plus one Schur-complement level per later group.

    Parameters
    ----------
    diag_sum : Tensor of shape (K * p,)
        The diagonal base ``D`` (sum form, strictly positive).
    groups : list of dict
        ``{"data", "indices", "indptr"}`` (CSR of ``X_g``, ``m_g x p``), ``"R"``
        (``m_g x K``) and ``"sign"`` (``+1.0`` or ``-1.0``).
    cap_inv : Tensor of shape (m_0, m_0)
        Inverse of the first group's capacitance ``I + U_0 D^{-1} U_0^T``.
    n : int
        Samples the data term averages over.
    K, p : int
        Shape of the block's parameter matrix.
    levels : list of dict, optional
        One per later group (a downdate): ``CB`` (``r_prev x m_g``) and ``S_inv``
        (``m_g x m_g``), see :meth:`_cap_solve`; the capacitance over all groups is never
        rebuilt, so a downdate costs ``O(r^2 k)`` time and ``O(r k)`` memory.
    """

    def __init__(self, diag_sum: torch.Tensor, groups: list[dict], cap_inv: torch.Tensor,
                 n: int, K: int, p: int, levels: list[dict] | None = None):
        super().__init__(n)
        self.diag_sum = diag_sum
        self.groups = list(groups)
        self.cap_inv = cap_inv
        self.K, self.p = int(K), int(p)
        self.levels = list(levels or [])

    # ---------------------------------------------------------------------------- building
    @classmethod
    def build(cls, diag_sum: torch.Tensor, X, R, n: int) -> SparseKroneckerWoodbury:
        """The operator of ``diag(diag_sum) + U^T U`` for the rows ``U[i] = R[i] (x) X[i]``.

        Parameters
        ----------
        diag_sum : Tensor of shape (K * p,)
            Diagonal base (sum form).
        X : scipy sparse matrix of shape (m, p)
            Feature rows (with the intercept column when the block has one).
        R : ndarray or Tensor of shape (m, K)
            Output coefficients of the rows.
        n : int
            Samples the data term averages over.
        """
        R = np.asarray(_as_np(R) if torch.is_tensor(R) else R, dtype=np.float64)
        K, p = R.shape[1], X.shape[1]
        if diag_sum.shape[0] != K * p:
            raise ValueError(f"diag_sum has {diag_sum.shape[0]} entries, expected K * p = {K * p}")
        if not bool(torch.all(diag_sum > 0)):
            raise ValueError("the low-rank inverse needs a strictly positive damping on every "
                             "parameter; pass damping=<float> > 0")
        X = sp.csr_matrix(X, dtype=np.float64)
        empty = cls(diag_sum, [], torch.zeros((0, 0), dtype=diag_sum.dtype), n, K, p)
        return empty._extend(X, R, 1.0, n)

    def _group_csr(self, g: dict, transpose: bool = False) -> sp.csr_matrix:
        """The group's rows as CSR (or their transpose), built once per data tensor and kept
        in a weak cache outside the operator's state (not pickled, not sealed)."""
        data = g["data"]
        key = id(data)
        hit = _CSR_CACHE.get(key)
        if (hit is None or hit[0]() is not data or hit[1] is not g["indices"]
                or hit[2] is not g["indptr"]):
            m = g["indptr"].shape[0] - 1
            X = sp.csr_matrix((_as_np(data), _as_np(g["indices"]), _as_np(g["indptr"])),
                              shape=(m, self.p))
            hit = (weakref.ref(data, lambda _, k=key: _CSR_CACHE.pop(k, None)), g["indices"],
                   g["indptr"], X, X.T.tocsr())
            _CSR_CACHE[key] = hit
        return hit[4] if transpose else hit[3]

    def _inv_base(self) -> np.ndarray:
        return 1.0 / _as_np(self.diag_sum).reshape(self.K, self.p)

    def _cross(self, Xa: sp.csr_matrix, Ra: np.ndarray, Xb: sp.csr_matrix, Rb: np.ndarray
               ) -> np.ndarray:
        """``U_a D^{-1} U_b^T = sum_k (R_a[:, k] R_b[:, k]^T) * (X_a D_k^{-1} X_b^T)``."""
        inv = self._inv_base()
        out = np.zeros((Xa.shape[0], Xb.shape[0]))
        XbT = Xb.T.tocsr()
        for k in range(self.K):
            G = (Xa @ sp.diags(inv[k]) @ XbT).toarray()
            out += np.outer(Ra[:, k], Rb[:, k]) * G
        return out

    def _extend(self, X: sp.csr_matrix, R: np.ndarray, sign: float, n: int
                ) -> SparseKroneckerWoodbury:
        """The operator with ``sign * U^T U`` added (rows ``R[i] (x) X[i]``), over ``n``."""
        keep = (np.abs(R).sum(1) > 0) & (np.diff(X.indptr) > 0)
        if not keep.all():  # rows of zeros add nothing
            X, R = X[keep], R[keep]
        if X.shape[0] == 0:
            return self._with_n(n)
        E = self._cross(X, R, X, R)
        E = 0.5 * (E + E.T)
        E[np.diag_indices_from(E)] += sign  # S^{-1} = S for signs +-1
        if self.groups:  # the new rows against the old: (r, k)
            B = np.vstack([self._cross(self._group_csr(g), _as_np(g["R"]), X, R)
                           for g in self.groups])
            CB = self._cap_solve(B)
            # refinement against the exact capacitance (sparse products): the explicit inverse
            # of an ill-conditioned capacitance (a 1e-6 intercept damping) loses digits, and the
            # Schur complement of a removal would then look indefinite
            for _ in range(REFINE_STEPS):
                resid = B - self._cap_apply(CB)
                if np.abs(resid).max() <= REFINE_TOL * max(np.abs(B).max(), 1e-300):
                    break
                CB = CB + self._cap_solve(resid)
            Sc = E - B.T @ CB
        else:
            Sc = E
        Sc = 0.5 * (Sc + Sc.T)
        # -sign * Sc is positive definite iff the result is: for a removal, M - V^T V is
        # positive definite iff I - V M^{-1} V^T = -Sc is (Schur complement of the signed
        # capacitance); LAPACK's Cholesky and its inverse (potrf, potri) in place
        c, info = lapack.dpotrf(np.asfortranarray(sign * Sc), lower=1, overwrite_a=1)
        if info != 0:
            raise ValueError(_INDEFINITE if sign < 0 else "the damped curvature is not positive "
                             "definite; increase damping")
        Sc_inv, info = lapack.dpotri(c, lower=1, overwrite_c=1)
        if info != 0:  # pragma: no cover - potrf succeeded
            raise ValueError("the capacitance matrix is singular")
        Sc_inv = np.tril(Sc_inv) + np.tril(Sc_inv, -1).T
        Sc_inv *= sign
        data, indices, indptr = _csr_tensors(X)
        dtype, device = self.diag_sum.dtype, self.diag_sum.device
        group = {"data": data.to(dtype=dtype, device=device),
                 "indices": indices.to(device=device), "indptr": indptr.to(device=device),
                 "R": _tensor(R, dtype, device),
                 "sign": float(sign)}
        if not self.groups:
            return SparseKroneckerWoodbury(self.diag_sum, [group], _tensor(Sc_inv, dtype, device),
                                           n, self.K, self.p)
        level = {"CB": _tensor(CB, dtype, device), "S_inv": _tensor(Sc_inv, dtype, device)}
        return SparseKroneckerWoodbury(self.diag_sum, self.groups + [group], self.cap_inv, n,
                                       self.K, self.p, self.levels + [level])

    def _cap_apply(self, Z: np.ndarray) -> np.ndarray:
        """``Cap Z = S Z + U D^{-1} U^T Z`` over all the groups (exact, sparse products), a few
        columns at a time: ``U^T Z`` is dense ``d x c``."""
        inv = 1.0 / np.asarray(_as_np(self.diag_sum), dtype=np.float64)
        out = self._signs()[:, None] * Z
        for a in range(0, Z.shape[1], _COLUMNS):
            cols = slice(a, a + _COLUMNS)
            out[:, cols] += self._apply_U(inv[:, None] * self._apply_Ut(Z[:, cols]))
        return out

    def _cap_solve(self, Bm: np.ndarray) -> np.ndarray:
        """``Cap^{-1} B`` for the capacitance of all the groups, level by level: with
        ``Cap_j = [[Cap_{j-1}, B_j], [B_j^T, E_j]]``, ``CB_j = Cap_{j-1}^{-1} B_j`` and the Schur
        complement's inverse ``S_j^{-1}``, ``Cap_j^{-1} [b1; b2] = [a + CB_j u; -u]`` with
        ``a = Cap_{j-1}^{-1} b1`` and ``u = S_j^{-1} (CB_j^T b1 - b2)``.  A downdate adds a
        level (``O(r k)`` numbers) and never rebuilds the base inverse."""
        sizes = [g["indptr"].shape[0] - 1 for g in self.groups]
        r0 = sizes[0]
        out = np.asarray(_as_np(self.cap_inv), dtype=np.float64) @ Bm[:r0]
        end = r0
        for level, k in zip(self.levels, sizes[1:]):
            CB = np.asarray(_as_np(level["CB"]), dtype=np.float64)
            S_inv = np.asarray(_as_np(level["S_inv"]), dtype=np.float64)
            b1, b2 = Bm[:end], Bm[end:end + k]
            u = S_inv @ (CB.T @ b1 - b2)
            out = np.vstack([out + CB @ u, -u])
            end += k
        return out

    # -------------------------------------------------------------------- the operator API
    @property
    def dim(self):
        return self.K * self.p

    @property
    def rank(self) -> int:
        """Rows in the capacitance (those of the curvature plus the removed ones)."""
        return sum(int(g["indptr"].shape[0]) - 1 for g in self.groups)

    def _apply_U(self, T: np.ndarray) -> np.ndarray:
        """``U T`` for ``T`` of shape ``(K * p, c)``: ``(r, c)``."""
        Tk = T.reshape(self.K, self.p, -1)
        parts = []
        for g in self.groups:
            X, R = self._group_csr(g), _as_np(g["R"])
            out = np.zeros((X.shape[0], Tk.shape[2]))
            for k in range(self.K):
                out += R[:, k:k + 1] * (X @ Tk[k])
            parts.append(out)
        return np.vstack(parts) if parts else np.zeros((0, Tk.shape[2]))

    def _apply_Ut(self, Z: np.ndarray) -> np.ndarray:
        """``U^T Z`` for ``Z`` of shape ``(r, c)``: ``(K * p, c)``."""
        out = np.zeros((self.K, self.p, Z.shape[1]))
        a = 0
        for g in self.groups:
            X, R = self._group_csr(g), _as_np(g["R"])
            m = X.shape[0]
            Zg = Z[a:a + m]
            a += m
            XT = self._group_csr(g, transpose=True)
            for k in range(self.K):
                out[k] += XT @ (R[:, k:k + 1] * Zg)
        return out.reshape(self.K * self.p, -1)

    def _signs(self) -> np.ndarray:
        return np.concatenate([np.full(g["indptr"].shape[0] - 1, g["sign"])
                               for g in self.groups]) if self.groups else np.zeros(0)

    def _matvec(self, T: np.ndarray) -> np.ndarray:
        """``M T`` from the rows (exact, sparse products only)."""
        D = np.asarray(_as_np(self.diag_sum), dtype=np.float64)[:, None]
        if not self.groups:
            return D * T
        return D * T + self._apply_Ut(self._signs()[:, None] * self._apply_U(T))

    def _woodbury(self, W: np.ndarray) -> np.ndarray:
        inv = 1.0 / np.asarray(_as_np(self.diag_sum), dtype=np.float64)
        T = W * inv[:, None]
        if self.groups:
            Z = self._cap_solve(self._apply_U(T))
            T = T - inv[:, None] * self._apply_Ut(Z)
        return T

    def solve_sum(self, V):
        """``M^{-1} V``: the Woodbury formula, then up to ``REFINE_STEPS`` steps of iterative
        refinement against the exact ``M`` while the residual exceeds ``REFINE_TOL`` (a tiny
        diagonal, such as the ``1e-6`` damping of the intercepts, makes the formula lose
        digits to cancellation; each step recovers them at the cost of one more product with
        the rows)."""
        vec = V.dim() == 1
        W = np.asarray(_as_np(V), dtype=np.float64).reshape(self.dim, -1)
        T = self._woodbury(W)
        scale = np.abs(W).max() if W.size else 0.0
        for _ in range(REFINE_STEPS if self.groups and scale > 0 else 0):
            residual = W - self._matvec(T)  # (cheap: sparse products)
            if np.abs(residual).max() <= REFINE_TOL * scale:
                break
            T = T + self._woodbury(residual)
        out = torch.from_numpy(T).to(dtype=V.dtype, device=V.device)
        return out.reshape(-1) if vec else out

    def matrix(self):
        """The dense sum form ``M`` (tests and small problems only)."""
        M = np.diag(_as_np(self.diag_sum).astype(np.float64))
        for g in self.groups:
            X, R = self._group_csr(g).toarray(), _as_np(g["R"])
            U = (R[:, :, None] * X[:, None, :]).reshape(X.shape[0], -1)
            M += g["sign"] * U.T @ U
        return torch.from_numpy(M).to(dtype=self.diag_sum.dtype)

    def downdate(self, rows, n_removed):
        """The operator without the rows ``(X, R)`` of erased samples (see the module
        docstring); dense factor rows are refused (this operator never forms them)."""
        if torch.is_tensor(rows):
            raise TypeError("SparseKroneckerWoodbury is downdated with structured rows "
                            "(X_sparse, R), not dense factor rows")
        X, R = rows
        R = np.asarray(_as_np(R) if torch.is_tensor(R) else R, dtype=np.float64)
        return self._extend(sp.csr_matrix(X, dtype=np.float64), R, -1.0,
                            self.n - int(n_removed))

    def _float_tensors(self) -> list[torch.Tensor]:
        return ([self.diag_sum, self.cap_inv]
                + [t for g in self.groups for t in (g["data"], g["R"])]
                + [t for lv in self.levels for t in (lv["CB"], lv["S_inv"])])

    def _tensors(self):
        return self._float_tensors() + [t for g in self.groups
                                        for t in (g["indices"], g["indptr"])]

    def _map(self, fn, index_fn=None):
        index_fn = index_fn or (lambda t: t)
        groups = [{"data": fn(g["data"]), "indices": index_fn(g["indices"]),
                   "indptr": index_fn(g["indptr"]), "R": fn(g["R"]), "sign": g["sign"]}
                  for g in self.groups]
        levels = [{"CB": fn(lv["CB"]), "S_inv": fn(lv["S_inv"])} for lv in self.levels]
        return SparseKroneckerWoodbury(fn(self.diag_sum), groups, fn(self.cap_inv), self.n,
                                       self.K, self.p, levels)

    def to(self, device=None, dtype=None):
        return self._map(lambda t: t.to(device=device, dtype=dtype),
                         lambda t: t.to(device=device))


# ------------------------------------------------------------------------------ helpers
def _block_plan(backend, slices) -> list[tuple[int, int | None]]:
    """For each operator slice: ``(output j, class row)`` (``None``: all the rows of output
    ``j``), from the backend's Kronecker blocks; a slice that is neither is refused."""
    kron = backend.kronecker_blocks
    plan = []
    for s in slices:
        for j, (ks, _, p) in enumerate(kron):
            if (s.start, s.stop) == (ks.start, ks.stop):
                plan.append((j, None))
                break
            if ks.start <= s.start and s.stop <= ks.stop and s.stop - s.start == p \
                    and (s.start - ks.start) % p == 0:
                plan.append((j, (s.start - ks.start) // p))
                break
        else:
            raise ValueError("with sparse X the low-rank blocks are whole outputs or single "
                             "class rows; block_size is not supported (leave it None)")
    return plan


def _block_rows(terms, plan_item, scale: float):
    """``(X, R)`` of one block from the backend's Kronecker factor rows ``terms``."""
    j, row = plan_item
    Xa, R = terms[j]  # (n, p) sparse, (n, q, K)
    n, q, _ = R.shape
    if row is None:
        if q > 1:  # q factor rows per sample, all with the sample's features
            Xa = Xa[np.repeat(np.arange(n), q)]
        Rb = R.reshape(n * q, -1)
    else:  # one class row: its diagonal block sum_i (sum_c R[i, c, row]^2) xa xa^T
        Rb = np.sqrt((R[:, :, row] ** 2).sum(1))[:, None]
    if scale != 1.0:
        Rb = Rb * math.sqrt(scale)
    return Xa, Rb


def _kron_terms(backend, X, y, curvature, label_salt):
    from .._streaming import row_uniforms

    u = row_uniforms(X, y, label_salt) if label_salt is not None else None
    return backend.kronecker_factor_rows(X, y, curvature, u=u)


def accumulate_sparse_woodbury(backend, chunks, *, curvature: str, damping, slices,
                               fisher_max_samples: int | None, chunk_size: int = 512,
                               random_state=None, label_salt: bytes | None = None,
                               exact_diagonal: bool = True) -> dict:
    """Build the structured low-rank operator of a fitted linear model from sparse chunks.

    Parameters
    ----------
    backend : LinearBackend
        The fitted model's backend (``kronecker_blocks``, ``kronecker_factor_rows``).
    chunks : iterable of (X_chunk, y_chunk)
        Validated training chunks (CSR), read once.
    curvature : {"empirical_fisher", "ggn"}
        Which curvature.
    damping : callable
        ``damping(n) -> Tensor`` (mean form).
    slices : list of slice
        The blocks: whole outputs (``inverse="woodbury"``) or single class rows (the exact
        per-class blocks of ``inverse="block"``).
    fisher_max_samples : int or None
        Uniform random subset of rows (``None``: every row, exact).
    chunk_size : int, default=512
        Rows per computation.
    random_state : RandomState
        Source of the subset's keys.
    label_salt : bytes, optional
        Sampled GGN rows (one label drawn per sample), as for the dense woodbury kind.
    exact_diagonal : bool, default=True
        Diagonal base = damping + the exact diagonal the rows miss (computed over every row).

    Returns
    -------
    dict
        As :func:`~sklearn_ssse._streaming.accumulate_curvature`.
    """
    from .._streaming import _BottomSample

    plan = _block_plan(backend, slices)
    sampler = (_BottomSample(fisher_max_samples, random_state)
               if fisher_max_samples is not None else None)
    kept_X, kept_y = [], []
    n, diagonal = 0, None
    for Xc, yc in rebuffer(chunks, chunk_size):
        n += n_rows(Xc)
        if exact_diagonal:
            part = backend.curvature_diagonal(Xc, yc, curvature)
            diagonal = part if diagonal is None else diagonal + part
        if sampler is not None:
            sampler.add(Xc, yc)
        else:
            kept_X.append(Xc)
            kept_y.append(yc)
    if n == 0:
        raise ValueError("the training data is empty")
    if sampler is not None:
        Xs, ys = sampler.result()
    else:
        Xs, ys = concat_rows(kept_X), np.concatenate(kept_y)
    m = n_rows(Xs)
    sample = None
    if m < n:
        salt = new_salt()
        digests, counts = multiset(row_digests(Xs, ys, salt=salt))
        sample = {"salt": salt, "digests": digests, "counts": counts, "scale": n / m}
    lam = damping(n)
    diag_sum = (n * lam).to(dtype=torch.float64)
    terms = _kron_terms(backend, Xs, ys, curvature, label_salt)
    ops = []
    for s, item in zip(slices, plan):
        X_b, R_b = _block_rows(terms, item, n / m)
        base = diag_sum[s].clone()
        if diagonal is not None:
            K = R_b.shape[1]
            covered = (np.asarray(X_b.multiply(X_b).T @ (R_b ** 2)).T).reshape(-1)  # (K * p,)
            missing = diagonal[s].to(torch.float64) - torch.from_numpy(covered)
            base = base + missing.clamp(min=0)
            assert base.shape[0] == K * X_b.shape[1]
        ops.append(SparseKroneckerWoodbury.build(base, X_b, R_b, n))
    op = ops[0] if len(ops) == 1 and slices[0] == slice(0, backend.n_params) \
        else BlockDiagonal(slices, ops, n)
    return {"curvature": op, "damping": lam, "n": n, "n_curvature_samples": m,
            "sample": sample, "label_salt": label_salt}


def downdate_structured(op, sample, backend, X, y, *, curvature: str,
                        label_salt: bytes | None = None):
    """:func:`~sklearn_ssse._streaming.downdate_curvature` for a structured operator: the
    erased samples' Kronecker rows (sampled ones only, with their weight, when the operator
    was built from a subset) leave every block.  Call it at the parameters the operator was
    built at."""
    from .._streaming import sampled_terms

    k = n_rows(X)
    X, y, sample, scale = sampled_terms(sample, X, y)
    if n_rows(X) == 0:
        return op._with_n(op.n - k), sample
    slices = op.slices if isinstance(op, BlockDiagonal) else [slice(0, op.dim)]
    ops = op.ops if isinstance(op, BlockDiagonal) else [op]
    plan = _block_plan(backend, slices)
    terms = _kron_terms(backend, X, y, curvature, label_salt)
    new = [o.downdate(_block_rows(terms, item, scale), k) for o, item in zip(ops, plan)]
    if isinstance(op, BlockDiagonal):
        return BlockDiagonal(slices, new, op.n - k), sample
    return new[0], sample


# ------------------------------------------------------------------- memory and the choice
ITEM = 8  # float64


def sparse_woodbury_memory(m: int, q: int, nnz: int, widths: list[int], K: list[int]) -> int:
    """Estimated peak bytes of :class:`SparseKroneckerWoodbury` blocks.

    Per block of width ``b`` with ``K`` class rows and ``r = m q`` rows: the capacitance, its
    inverse and one sparse product's dense result (``3 r^2``), the coefficients (``r K``) and
    the diagonal (``2 b``); once for all blocks: the ``nnz`` stored entries of the sampled rows
    (value and index, 16 bytes each, plus the intercept column and the row pointers).  It
    depends on ``nnz``, never on ``m * d``.
    """
    r = m * q
    per_block = sum(3 * r * r + r * k + 2 * b for b, k in zip(widths, K)) * ITEM
    return int(per_block + 16 * (nnz + m * q) + 8 * (m * q + 1))


def sparse_dense_memory(widths: list[int]) -> int:
    """Peak bytes of dense Gram blocks built from sparse rows: Gram, Cholesky factor and the
    sparse product's result before it is densified (``3 b^2`` numbers per block)."""
    return int(3 * sum(b * b for b in widths) * ITEM)


def _largest_m(fit, lo: int, hi: int) -> int | None:
    """The largest ``m`` in ``[lo, hi]`` with ``fit(m)`` (monotone), or ``None``."""
    if not fit(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fit(mid) else (lo, mid - 1)
    return lo


def sparse_plan(kind: str, config: dict, backend, n: int | None) -> tuple[int, dict]:
    """Estimated bytes and build plan of ``kind`` (``"dense"``, ``"block"`` or
    ``"woodbury"``) on sparse ``X`` (``config["sparse_nnz"]`` stored entries over ``n`` rows).

    * ``"dense"``: the ``d x d`` Gram from the sparse rows (``3 d^2`` numbers);
    * ``"block"`` (models with class blocks): the dense per-class blocks when they fit
      ``memory_budget``, or else each block held exactly as a Woodbury operator over every
      training row (``K`` capacitances ``n x n``, :class:`SparseKroneckerWoodbury`);
    * ``"woodbury"``: every training row when the ``n x n`` capacitance fits (a binary model's
      exact damped Hessian), else the largest sample of rows that fits (at least 64).

    Returns
    -------
    need : int
        Estimated bytes.
    plan : dict
        ``structured`` (bool: build :class:`SparseKroneckerWoodbury` blocks), ``slices`` (their
        blocks) and ``m`` (rows to sample, ``None`` = every row).
    """
    from ._registry import parse_bytes

    budget = parse_bytes(config["memory_budget"])
    nnz = int(config["sparse_nnz"])
    d = backend.n_params
    outputs = list(backend.kronecker_blocks)
    n_eff = n if n is not None else max(1, int(config.get("fisher_max_samples") or 1024))
    blocks = backend.blocks or [slice(0, d)]
    natural = backend.natural_blocks or blocks

    def rows_need(slices, m, q):
        # a whole output keeps its K class rows per structured row, a class-row block one
        Ks = [next((K for w, K, _ in outputs if (w.start, w.stop) == (s.start, s.stop)), 1)
              for s in slices]
        return sparse_woodbury_memory(m, q, int(nnz * m / max(n_eff, 1)),
                                      [s.stop - s.start for s in slices], Ks)

    if kind == "dense":
        return (sparse_dense_memory([s.stop - s.start for s in blocks]),
                {"structured": False, "slices": blocks, "m": None})
    if kind == "block":
        dn = sparse_dense_memory([s.stop - s.start for s in natural])
        if dn <= budget:  # the dense blocks when they fit, else the exact rows
            return dn, {"structured": False, "slices": natural, "m": None}
        # per-class blocks are single class rows (one structured row per sample and block)
        return rows_need(natural, n_eff, 1), {"structured": True, "slices": natural, "m": None}
    # woodbury: one row per sample (sampled GGN rows for a softmax, else exact rows)
    fm = config.get("fisher_max_samples")
    m_max = n_eff if fm is None else min(int(fm), n_eff)
    m = m_max
    if fm is None:  # every row when it fits, else the largest sample that does
        m = _largest_m(lambda m: rows_need(blocks, m, 1) <= budget, min(64, m_max),
                       m_max) or min(64, m_max)
    return rows_need(blocks, m, 1), {"structured": True, "slices": blocks,
                                     "m": None if m >= n_eff and n is not None else m}
