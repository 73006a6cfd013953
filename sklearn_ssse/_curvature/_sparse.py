"""The kinds for scipy sparse ``X`` (linear models): the same names as for dense rows
(``"dense"``, ``"block"``, ``"woodbury"``), registered ahead of them, serving a fit whose training
``X`` is sparse (``config["sparse_nnz"]``, the stored entries, is set). Memory is estimated from
the stored entries, never ``n x d`` (see
:func:`~sklearn_ssse._curvature._sparse_lowrank.sparse_plan`):

* ``dense``: the ``d x d`` Gram built from the sparse rows;
* ``block``: the dense per-class blocks when they fit the budget (then :class:`~._dense.Block`
  itself serves), else each class block held exactly as a Woodbury operator over every training
  row on the sparse rows (:class:`~._sparse_lowrank.SparseKroneckerWoodbury`);
* ``woodbury``: the structured low-rank operator on the sparse rows and their ``m x K``
  factors (every row when the ``n x n`` capacitance fits: a binary model's exact damped
  Hessian; else the largest sample that fits).

``ekfac`` and ``sherman_morrison`` refuse sparse ``X`` (they hold dense ``p x p`` / ``d x d``
matrices built from dense rows).
"""

from __future__ import annotations

from ._dense import Block, Dense
from ._lowrank import Woodbury

__all__ = ["SparseDense", "SparseStructuredBlocks", "SparseWoodbury", "is_sparse",
           "sparse_refusal"]


def is_sparse(config: dict) -> bool:
    """Whether the training ``X`` of this fit is scipy sparse."""
    return config.get("sparse_nnz") is not None


def sparse_refusal(backend, config: dict) -> str | None:
    """Why no kind takes this backend's sparse ``X`` (``None``: some can)."""
    if backend.kronecker_blocks is None:
        return f"{type(backend).__name__} does not take sparse X"
    if int(config.get("fisher_batch_size", 1)) > 1:
        return "fisher_batch_size > 1 is not supported with sparse X (use 1)"
    return None


class _SparseKind:
    """What the sparse kinds share: served only for sparse ``X``; estimates from the plan."""

    @classmethod
    def _plan(cls, backend, config, n):
        from ._sparse_lowrank import sparse_plan

        return sparse_plan(cls.name, config, backend, n)

    @classmethod
    def unsupported(cls, backend, config):
        if not is_sparse(config):
            return ""  # dense rows: the next implementation of the name serves them
        return sparse_refusal(backend, config)

    @classmethod
    def estimate_memory(cls, backend, config, n=None):
        return cls._plan(backend, config, n)[0]


class SparseDense(_SparseKind, Dense):
    """``inverse="dense"`` on sparse ``X``: the Gram of the sparse rows, ``3 d^2`` numbers."""

    auto_rank = 0


class _Structured(_SparseKind):
    """Built on the sparse rows as :class:`~._sparse_lowrank.SparseKroneckerWoodbury` blocks."""

    diagonal_base = True  # every structured block starts from diag(damping)^-1

    @classmethod
    def build(cls, backend, chunks, config, damping, rng, n_known=None):
        from . import _lowrank
        from ._sparse_lowrank import accumulate_sparse_woodbury

        _, plan = cls._plan(backend, config, n_known)
        sampled = cls.sampled_labels(backend, config)
        return accumulate_sparse_woodbury(
            backend, chunks, curvature=config["curvature"], damping=damping,
            slices=plan["slices"], fisher_max_samples=plan["m"],
            chunk_size=config["chunk_size"], random_state=rng,
            label_salt=rng.bytes(16) if sampled else None,
            exact_diagonal=_lowrank.EXACT_DIAGONAL)

    @classmethod
    def downdate(cls, op, state, backend, X, y, config):
        from ._sparse_lowrank import downdate_structured

        return downdate_structured(op, state.get("sample"), backend, X, y,
                                   curvature=config["curvature"],
                                   label_salt=state.get("label_salt"))


class SparseStructuredBlocks(_Structured, Block):
    """``inverse="block"`` on sparse ``X`` when the dense per-class blocks do not fit: each
    class block exactly, as a Woodbury operator over every training row."""

    auto_rank = 1

    @classmethod
    def unsupported(cls, backend, config):
        why = super().unsupported(backend, config)
        if why is None and config.get("block_size") is not None:
            return ("block_size is not supported with sparse X: the sparse block kind holds one "
                    "block per class (leave block_size=None)")
        if why is None and not cls._plan(backend, config, None)[1]["structured"]:
            return "the dense per-class blocks fit the budget"  # Block serves
        return why

    @classmethod
    def sampled_labels(cls, backend, config):
        return False


class SparseWoodbury(_Structured, Woodbury):
    """``inverse="woodbury"`` on sparse ``X``: the low-rank operator on the sparse rows."""

    auto_rank = 4
