"""Removing parameters from a model and its cached curvature (optimal brain surgeon).

When coordinates ``J`` of the parameters are removed (the weights of features that no remaining
training row uses, see :mod:`sklearn_ssse._preprocessing`), two things follow from the cached
inverse ``P = M^{-1}`` alone, for every kind of operator:

* the optimal-brain-surgeon (OBS) step: the change of the other parameters that keeps the
  quadratic model of the loss minimal under the constraint ``theta_J = 0``,

      theta <- theta - F^{-1} E_J (E_J^T F^{-1} E_J)^{-1} theta_J

  (:func:`obs_step`; the ``n`` of ``F = M / n`` cancels, so it is computed from ``M^{-1}``);

* the inverse of the curvature without those coordinates, the principal submatrix
  ``M_{-J,-J}``, by the Schur complement of the inverse:

      (M_{-J,-J})^{-1} = P_{-J,-J} - P_{-J,J} (P_{J,J})^{-1} P_{J,-J}

  (:class:`PrincipalSubmatrix`, a wrapper that holds the base operator, the removed indices and
  the columns ``P E_J``; ``|J|`` columns of memory, one base solve per application).
"""

from __future__ import annotations

import numpy as np
import torch

from ._operators import CurvatureOperator

__all__ = ["PrincipalSubmatrix", "obs_step", "remove_coordinates"]


def _columns(op: CurvatureOperator, J: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, L)``: ``C = M^{-1} E_J`` (``d x |J|``) and the Cholesky factor of ``C_J = P_JJ``."""
    E = torch.zeros((op.dim, len(J)), dtype=op.dtype, device=op.device)
    E[torch.as_tensor(J, device=op.device), torch.arange(len(J), device=op.device)] = 1.0
    C = op.solve_sum(E)
    CJ = C[torch.as_tensor(J, device=op.device)]
    L, info = torch.linalg.cholesky_ex(0.5 * (CJ + CJ.T))
    if int(info) != 0:
        raise ValueError("the block of the inverse curvature on the removed parameters is not "
                         "positive definite; nothing was changed")
    return C, L


def _kept(dim: int, J: np.ndarray) -> np.ndarray:
    keep = np.ones(dim, dtype=bool)
    keep[J] = False
    return np.flatnonzero(keep)


def remove_coordinates(op: CurvatureOperator, theta: torch.Tensor, J
                       ) -> tuple[torch.Tensor, CurvatureOperator]:
    """:func:`obs_step` and :meth:`PrincipalSubmatrix.of` together: ``(theta without J,
    operator without J)``, with one solve for both when ``op`` is not a submatrix already."""
    J = np.unique(np.asarray(J, dtype=np.int64))
    if len(J) == 0:
        return theta.clone(), op
    if isinstance(op, PrincipalSubmatrix):
        return obs_step(op, theta, J), PrincipalSubmatrix.of(op, J)
    C, L = _columns(op, J)
    return _obs(op, theta, J, C, L), PrincipalSubmatrix(op, J, C, L, op.n)


def _obs(op, theta, J, C, L):
    keep = torch.as_tensor(_kept(op.dim, J), device=op.device)
    t = theta.to(dtype=op.dtype, device=op.device)
    z = torch.cholesky_solve(t[torch.as_tensor(J, device=op.device)].unsqueeze(-1), L)
    return (t[keep] - (C[keep] @ z).squeeze(-1)).to(theta)


def obs_step(op: CurvatureOperator, theta: torch.Tensor, J) -> torch.Tensor:
    """Remove the coordinates ``J`` of ``theta`` with the optimal-brain-surgeon step.

    Parameters
    ----------
    op : CurvatureOperator
        The curvature in the current coordinates (``dim == len(theta)``).
    theta : Tensor of shape (d,)
        The parameters.
    J : array-like of int
        Coordinates to remove.

    Returns
    -------
    Tensor of shape (d - len(J),)
        ``theta - F^{-1} E_J (E_J^T F^{-1} E_J)^{-1} theta_J`` without its (zero) coordinates
        ``J``.
    """
    J = np.unique(np.asarray(J, dtype=np.int64))
    if len(J) == 0:
        return theta.clone()
    return _obs(op, theta, J, *_columns(op, J))


class PrincipalSubmatrix(CurvatureOperator):
    """The operator of the principal submatrix ``M_{-J,-J}`` of another operator's ``M``.

    Build it with :meth:`of` (which merges nested removals into one wrapper).

    Parameters
    ----------
    base : CurvatureOperator
        The operator in the full coordinates.
    removed : ndarray of int
        Sorted coordinates of ``base`` that are removed.
    C : Tensor of shape (base.dim, len(removed))
        ``M^{-1} E_J``.
    L : Tensor of shape (len(removed), len(removed))
        Cholesky factor of ``C[removed]``.
    n : int
        Samples the data term averages over.
    """

    def __init__(self, base: CurvatureOperator, removed: np.ndarray, C: torch.Tensor,
                 L: torch.Tensor, n: int):
        super().__init__(n)
        self.base = base
        self.removed = np.asarray(removed, dtype=np.int64)
        self.kept = _kept(base.dim, self.removed)
        self.C = C
        self.L = L

    @classmethod
    def of(cls, op: CurvatureOperator, J) -> CurvatureOperator:
        """``op`` without the coordinates ``J`` (in ``op``'s coordinates); ``op`` itself when
        ``J`` is empty."""
        J = np.unique(np.asarray(J, dtype=np.int64))
        if len(J) == 0:
            return op
        if isinstance(op, PrincipalSubmatrix):  # a submatrix of a submatrix: one wrapper
            base, J = op.base, np.union1d(op.removed, op.kept[J])
        else:
            base = op
        C, L = _columns(base, J)
        return cls(base, J, C, L, op.n)

    @property
    def dim(self):
        return len(self.kept)

    def _pad(self, V: torch.Tensor) -> torch.Tensor:
        """``V`` in the base coordinates, zero on the removed ones (rows of ``V``)."""
        full = torch.zeros((self.base.dim, *V.shape[1:]), dtype=V.dtype, device=V.device)
        full[torch.as_tensor(self.kept, device=V.device)] = V
        return full

    def solve_sum(self, V):
        P = self.base.solve_sum(self._pad(V.to(dtype=self.dtype, device=self.device)))
        keep = torch.as_tensor(self.kept, device=self.device)
        PJ = P[torch.as_tensor(self.removed, device=self.device)]
        if PJ.dim() == 1:
            z = torch.cholesky_solve(PJ.unsqueeze(-1), self.L).squeeze(-1)
        else:
            z = torch.cholesky_solve(PJ, self.L)
        return P[keep] - self.C[keep] @ z

    def downdate(self, rows, n_removed):
        # M_{-J,-J} - U^T U is the principal submatrix of M - U~^T U~ with U~ = U padded with
        # zeros on J: each base kind downdates in its own way, then the columns are recomputed
        rows = rows.to(dtype=self.dtype, device=self.device)
        base = self.base.downdate(self._pad(rows.T).T, n_removed)
        out = PrincipalSubmatrix.of(base, self.removed)
        out.n = self.n - int(n_removed)
        return out

    def matrix(self):
        keep = torch.as_tensor(self.kept, device=self.device)
        return self.base.matrix()[keep][:, keep]

    def _with_n(self, n):
        return PrincipalSubmatrix(self.base._with_n(n), self.removed, self.C, self.L, n)

    def _tensors(self):
        return self.base._tensors() + [self.C, self.L]

    def _map(self, fn):
        return PrincipalSubmatrix(self.base._map(fn), self.removed, fn(self.C), fn(self.L),
                                  self.n)
