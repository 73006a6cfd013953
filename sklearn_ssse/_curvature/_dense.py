"""``inverse="dense"`` and ``inverse="block"``: Cholesky factors of the damped curvature, one per
independent block of the model (``dense``) or per finer block (``block``: per class / per
parameter tensor, or ``block_size``). Built from Gram matrices (BLAS-3), ``O(sum b^2)`` memory
whatever the number of samples."""

from __future__ import annotations

from ._base import item_size
from ._factor_rows import FactorRowKind, block_widths

__all__ = ["Block", "Dense"]


class Dense(FactorRowKind):
    """The exact damped curvature (block-diagonal only over the model's independent outputs)."""

    name = "dense"
    auto_rank = 0
    form = "dense"

    @classmethod
    def estimate_memory(cls, backend, config, n=None):
        # a Gram matrix and its Cholesky factor per block
        return 2 * sum(b * b for b in cls.widths(backend, config)) * item_size(backend)


class Block(Dense):
    """Block-diagonal: the exact curvature within each block, none across blocks."""

    name = "block"
    auto_rank = 1
    form = "block"  # the builder cuts the blocks to block_size
    finer_blocks = True

    @classmethod
    def auto_skip(cls, backend, config):
        if cls.widths(backend, config) == block_widths(backend, None, finer=False):
            return ""  # no finer blocks than the dense kind's: nothing to gain
        return None
