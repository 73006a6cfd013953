"""Damped curvature matrices and their inverse operators, shared by every backend.

Everything here works on :class:`torch.Tensor` objects (float64 on the CPU for the linear backend,
the net's device and dtype for the torch backend), so each operator has one implementation.

Notation
--------
The curvature used by SSSE is the damped mean

    F = (1/n) sum_i sum_j r_ij r_ij^T + diag(lambda),

with factor rows ``r_ij`` (per-sample gradients for the empirical Fisher, ``q`` GGN factors per
sample otherwise) and a mean-form damping vector ``lambda``.  Operators store the *sum form*

    M = sum_i sum_j r_ij r_ij^T + diag(Lambda),      Lambda = n * lambda,

together with the count ``n``, so that ``F^{-1} v = n * M^{-1} v``.  Removing the terms of erased
samples (:meth:`CurvatureOperator.downdate`) subtracts their rows from ``M`` with a Woodbury
correction (a ``k x k`` system, no rebuild) and decrements ``n``; the total regularisation
``Lambda`` is kept, which is exactly scikit-learn's ``LogisticRegression`` objective
(``C * sum loss + ||w||^2 / 2`` does not depend on ``n``).

Operators are immutable: ``downdate`` returns a new operator sharing the base factorisation, so a
failed deletion can never leave a half-updated curvature behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

__all__ = [
    "CurvatureOperator",
    "DenseCholesky",
    "DiagonalOperator",
    "ExplicitInverse",
    "LowRankCorrected",
    "BlockDiagonal",
    "build_operator",
    "gram",
    "sherman_morrison_inverse",
]


def _as_matrix(v: torch.Tensor) -> tuple[torch.Tensor, bool]:
    return (v.unsqueeze(-1), True) if v.dim() == 1 else (v, False)


class CurvatureOperator:
    """Base class: ``F^{-1} v`` for ``F = M / n`` (see module docstring).

    Parameters
    ----------
    n : int
        Number of samples the data term averages over.
    """

    def __init__(self, n: int):
        self.n = int(n)

    # -- to implement -------------------------------------------------------------------------
    @property
    def dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def solve_sum(self, V: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``M^{-1} V`` for ``V`` of shape ``(d,)`` or ``(d, r)``."""
        raise NotImplementedError

    def _tensors(self) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _map(self, fn) -> CurvatureOperator:  # pragma: no cover - abstract
        """A copy whose tensors are ``fn(tensor)`` (used by :meth:`to`)."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def solve(self, V: torch.Tensor) -> torch.Tensor:
        """``F^{-1} V`` for ``V`` of shape ``(d,)`` or ``(d, r)``."""
        return self.n * self.solve_sum(V)

    def downdate(self, rows: torch.Tensor, n_removed: int) -> CurvatureOperator:
        """Operator for the curvature without the given factor rows.

        Parameters
        ----------
        rows : Tensor of shape (r, d)
            Factor rows of the erased samples (the same kind of rows the operator was built from).
        n_removed : int
            Number of erased samples: the new operator averages over ``n - n_removed``.

        Returns
        -------
        CurvatureOperator
            A new operator; ``self`` is unchanged.
        """
        return LowRankCorrected.extend(self, rows, sign=-1.0, n=self.n - int(n_removed))

    def inverse(self) -> torch.Tensor:
        """The dense matrix ``F^{-1}`` (for tests and small problems)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return self.solve(eye)

    @property
    def dtype(self) -> torch.dtype:
        return self._tensors()[0].dtype

    @property
    def device(self) -> torch.device:
        return self._tensors()[0].device

    @property
    def nbytes(self) -> int:
        """Memory held by the operator's tensors."""
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def to(self, device=None, dtype=None) -> CurvatureOperator:
        """A copy on another device and/or dtype."""
        return self._map(lambda t: t.to(device=device, dtype=dtype))


class DiagonalOperator(CurvatureOperator):
    """``M = diag(Lambda)``: the damping alone (the base of the Woodbury operator)."""

    def __init__(self, diag_sum: torch.Tensor, n: int):
        super().__init__(n)
        if not bool(torch.all(diag_sum > 0)):
            raise ValueError("the low-rank inverse needs a strictly positive damping on every "
                             "parameter; pass damping=<float> > 0")
        self.diag_sum = diag_sum

    @property
    def dim(self):
        return self.diag_sum.shape[0]

    def solve_sum(self, V):
        return V / self.diag_sum if V.dim() == 1 else V / self.diag_sum[:, None]

    def _tensors(self):
        return [self.diag_sum]

    def _map(self, fn):
        return DiagonalOperator(fn(self.diag_sum), self.n)


class DenseCholesky(CurvatureOperator):
    """``M`` held by its Cholesky factor ``L`` (``M = L L^T``)."""

    def __init__(self, L: torch.Tensor, n: int):
        super().__init__(n)
        self.L = L

    @classmethod
    def from_matrix(cls, M: torch.Tensor, n: int) -> DenseCholesky:
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) != 0:
            raise ValueError("the damped curvature is not positive definite; increase damping")
        return cls(L, n)

    @property
    def dim(self):
        return self.L.shape[0]

    def solve_sum(self, V):
        W, vec = _as_matrix(V)
        out = torch.cholesky_solve(W, self.L)
        return out.squeeze(-1) if vec else out

    def _tensors(self):
        return [self.L]

    def _map(self, fn):
        return DenseCholesky(fn(self.L), self.n)


class ExplicitInverse(CurvatureOperator):
    """``M^{-1}`` stored as a dense matrix (result of the Sherman-Morrison recursion)."""

    def __init__(self, M_inv: torch.Tensor, n: int):
        super().__init__(n)
        self.M_inv = M_inv

    @property
    def dim(self):
        return self.M_inv.shape[0]

    def solve_sum(self, V):
        return self.M_inv @ V

    def downdate(self, rows, n_removed):
        # the paper's recursion run backwards: rank-1 removals with sign -1
        M_inv = sherman_morrison_inverse(rows, None, sign=-1.0, start=self.M_inv)
        return ExplicitInverse(M_inv, self.n - int(n_removed))

    def _tensors(self):
        return [self.M_inv]

    def _map(self, fn):
        return ExplicitInverse(fn(self.M_inv), self.n)


class LowRankCorrected(CurvatureOperator):
    """``M = M_0 + sum_j s_j U_j^T U_j`` held as ``M_0`` plus Woodbury corrections.

    Each correction ``j`` stores ``Y_j = M_{j-1}^{-1} U_j^T`` (``d x k_j``) and the small matrix
    ``W_j = -(s_j I + U_j Y_j)^{-1}``, so that ``M^{-1} v = M_0^{-1} v + sum_j Y_j W_j Y_j^T v``.
    A solve costs one base solve plus ``O(d * sum_j k_j)``.
    """

    def __init__(self, base: CurvatureOperator, Ys: Sequence[torch.Tensor],
                 Ws: Sequence[torch.Tensor], n: int):
        super().__init__(n)
        self.base = base
        self.Ys = list(Ys)
        self.Ws = list(Ws)

    @classmethod
    def extend(cls, op: CurvatureOperator, U: torch.Tensor, sign: float, n: int
               ) -> LowRankCorrected:
        """``op`` with ``sign * U^T U`` added to its sum form, averaging over ``n`` samples."""
        U = U.to(dtype=op.dtype, device=op.device)
        Y = op.solve_sum(U.T)  # d x k
        k = U.shape[0]
        S = U @ Y
        S = 0.5 * (S + S.T)
        S.diagonal().add_(sign)
        W = -torch.linalg.inv(S)
        if isinstance(op, LowRankCorrected):
            return cls(op.base, op.Ys + [Y], op.Ws + [W], n)
        if k == 0:
            return cls(op, [], [], n)
        return cls(op, [Y], [W], n)

    @property
    def dim(self):
        return self.base.dim

    @property
    def rank(self) -> int:
        """Total number of rows in the corrections."""
        return sum(W.shape[0] for W in self.Ws)

    def solve_sum(self, V):
        out = self.base.solve_sum(V)
        for Y, W in zip(self.Ys, self.Ws):
            out = out + Y @ (W @ (Y.T @ V))
        return out

    def _tensors(self):
        return self.base._tensors() + self.Ys + self.Ws

    def _map(self, fn):
        return LowRankCorrected(self.base._map(fn), [fn(Y) for Y in self.Ys],
                                [fn(W) for W in self.Ws], self.n)


class BlockDiagonal(CurvatureOperator):
    """Block-diagonal ``M``: one operator per contiguous parameter slice."""

    def __init__(self, slices: Sequence[slice], ops: Sequence[CurvatureOperator], n: int):
        super().__init__(n)
        self.slices = list(slices)
        self.ops = list(ops)

    @property
    def dim(self):
        return self.slices[-1].stop

    def solve_sum(self, V):
        return torch.cat([op.solve_sum(V[s]) for s, op in zip(self.slices, self.ops)], dim=0)

    def downdate(self, rows, n_removed):
        n = self.n - int(n_removed)
        ops = [op.downdate(rows[:, s], n_removed) for s, op in zip(self.slices, self.ops)]
        return BlockDiagonal(self.slices, ops, n)

    def _tensors(self):
        return [t for op in self.ops for t in op._tensors()]

    def _map(self, fn):
        return BlockDiagonal(self.slices, [op._map(fn) for op in self.ops], self.n)


# ---------------------------------------------------------------------------------- builders
def gram(chunks: Iterable[torch.Tensor], dim: int, dtype, device) -> torch.Tensor:
    """``sum R^T R`` over chunks of rows ``R`` (shape ``(r, dim)``), with BLAS-3 products."""
    A = torch.zeros((dim, dim), dtype=dtype, device=device)
    for R in chunks:
        R = R.to(dtype=dtype, device=device)
        A.addmm_(R.T, R)
    return A


def sherman_morrison_inverse(rows: torch.Tensor, diag_sum: torch.Tensor | None, sign: float = 1.0,
                             start: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's literal recursion: ``(diag(Lambda) + sum_i sign * u_i u_i^T)^{-1}``.

    One rank-1 Sherman-Morrison update per row; ``O(r d^2)`` time. Kept as the reference
    implementation and benchmark baseline (``inverse="sherman_morrison"``).
    """
    A = start.clone() if start is not None else torch.diag(1.0 / diag_sum)
    for u in rows:
        Au = A @ u
        A.addr_(Au, Au, alpha=-sign / (1.0 + sign * torch.dot(u, Au)))
    return A


def _split_slices(dim: int, blocks: Sequence[slice] | None, block_size: int | None):
    if block_size is not None:
        outer = blocks or [slice(0, dim)]
        return [slice(a, min(a + block_size, s.stop))
                for s in outer for a in range(s.start, s.stop, block_size)]
    return list(blocks) if blocks else [slice(0, dim)]


def build_operator(kind: str, rows: Sequence[torch.Tensor] | torch.Tensor, n: int,
                   damping: torch.Tensor, *, blocks: Sequence[slice] | None = None,
                   block_size: int | None = None) -> CurvatureOperator:
    """Build the inverse operator of ``F = (1/n) sum r r^T + diag(damping)``.

    Parameters
    ----------
    kind : {"dense", "block", "woodbury", "sherman_morrison"}
        ``"dense"``: Cholesky of the (block-diagonal over ``blocks``) matrix, built with BLAS-3.
        ``"block"``: Cholesky per block of ``block_size`` (or per ``blocks`` when ``None``).
        ``"woodbury"``: exact inverse of the low-rank-plus-diagonal matrix through an ``r x r``
        system; memory ``O(r d)``, meant for ``r`` (rows) much smaller than ``d``.
        ``"sherman_morrison"``: the paper's rank-1 recursion, ``O(r d^2)``.
    rows : Tensor of shape (r, d) or a sequence of such chunks
        Factor rows, already scaled (mini-batch means, sub-sampling) by the caller.
    n : int
        Number of samples the data term averages over.
    damping : Tensor of shape (d,)
        Mean-form damping ``lambda``.
    blocks : list of slice, optional
        Independent blocks: every kind is block-diagonal over them.
    block_size : int, optional
        Block length for ``kind="block"``.
    """
    chunks = [rows] if torch.is_tensor(rows) else list(rows)
    dtype, device = damping.dtype, damping.device
    dim = damping.shape[0]
    diag_sum = n * damping
    if kind == "block":
        slices = _split_slices(dim, blocks, block_size)
        kind = "dense"
    elif kind in ("dense", "woodbury", "sherman_morrison"):
        slices = _split_slices(dim, blocks, None)
    else:
        raise ValueError(f"unknown inverse {kind!r}")

    def one(s: slice) -> CurvatureOperator:
        parts = [c[:, s] for c in chunks]
        if kind == "dense":
            A = gram(parts, s.stop - s.start, dtype, device)
            A.diagonal().add_(diag_sum[s])
            return DenseCholesky.from_matrix(A, n)
        U = torch.cat(parts, 0).to(dtype=dtype, device=device)
        if kind == "woodbury":
            return LowRankCorrected.extend(DiagonalOperator(diag_sum[s], n), U, 1.0, n)
        if not bool(torch.all(diag_sum[s] > 0)):
            raise ValueError("the Sherman-Morrison recursion needs a strictly positive damping on "
                             "every parameter; pass damping=<float> > 0")
        return ExplicitInverse(sherman_morrison_inverse(U, diag_sum[s]), n)

    ops = [one(s) for s in slices]
    return ops[0] if len(ops) == 1 else BlockDiagonal(slices, ops, n)
