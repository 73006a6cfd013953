"""Kinds built from factor rows (or the backend's closed-form Gram matrices) in one pass:
the shared part of ``dense``, ``block``, ``woodbury`` and ``sherman_morrison``."""

from __future__ import annotations

from typing import ClassVar

from ._base import InverseKind

__all__ = ["FactorRowKind", "block_widths"]


def block_widths(backend, block_size: int | None, finer: bool) -> list[int]:
    """Widths of the operator's diagonal blocks: the backend's independent blocks, cut to
    ``block_size`` (or to the backend's natural blocks, ``finer`` and no ``block_size``)."""
    d = backend.n_params
    blocks = backend.blocks or [slice(0, d)]
    if finer:
        if block_size is not None:
            return [min(block_size, s.stop - a) for s in blocks
                    for a in range(s.start, s.stop, block_size)]
        blocks = backend.natural_blocks or blocks
    return [s.stop - s.start for s in blocks]


class FactorRowKind(InverseKind):
    """A kind accumulated by :func:`sklearn_ssse._streaming.accumulate_curvature` (one pass,
    :class:`~sklearn_ssse._curvature.OperatorBuilder` of form :attr:`form`) and downdated by
    :func:`~sklearn_ssse._streaming.downdate_curvature` (Woodbury correction, or the
    closed-form Gram matrices of the erased samples for dense blocks).

    Class attributes
    ----------------
    form : str
        How the :class:`~sklearn_ssse._curvature.OperatorBuilder` holds the matrix.
    default_max_samples : int or None
        Rows sampled when ``fisher_max_samples`` is not given (``None``: every sample).
    finer_blocks : bool
        Cut the operator into the backend's natural blocks (or ``block_size``).
    """

    form: ClassVar[str] = ""
    default_max_samples: ClassVar[int | None] = None
    finer_blocks: ClassVar[bool] = False

    #: whether this implementation takes sparse ``X`` (the dense-Gram kinds do; the sparse
    #: low-rank and structured blocks are their own kinds, see :mod:`._sparse`)
    takes_sparse: ClassVar[bool] = True

    @classmethod
    def unsupported(cls, backend, config):
        from ._sparse import is_sparse, sparse_refusal

        if is_sparse(config):
            if not cls.takes_sparse:
                return (f"inverse={cls.name!r} does not take sparse X (it holds matrices built "
                        "from dense rows): use 'dense', 'block', 'woodbury' or 'auto'")
            if cls.finer_blocks and config.get("block_size") is not None:
                return ("block_size is not supported with sparse X: the sparse block kind "
                        "holds one block per class (leave block_size=None)")
            return sparse_refusal(backend, config)
        return None

    @classmethod
    def widths(cls, backend, config: dict) -> list[int]:
        return block_widths(backend, config.get("block_size"), cls.finer_blocks)

    @classmethod
    def max_samples(cls, config: dict, n: int | None) -> int | None:
        """Rows the curvature is built from (``None``: every sample)."""
        m = config.get("fisher_max_samples")
        if m is None:
            m = cls.default_max_samples
        if m is not None and n is not None and m >= n:
            return None  # every sample is used: nothing to draw
        return m

    @classmethod
    def sampled_labels(cls, backend, config: dict) -> bool:
        """One GGN row per sample at a drawn label (instead of ``q`` rows)."""
        return False

    @classmethod
    def exact_diagonal(cls, config: dict) -> bool:
        """Accumulate the exact diagonal of the data term for the operator's base."""
        return False

    @classmethod
    def build(cls, backend, chunks, config, damping, rng, n_known=None):
        from .._streaming import accumulate_curvature

        blocks = backend.blocks
        if cls.finer_blocks and config.get("block_size") is None:
            blocks = backend.natural_blocks or blocks  # e.g. one block per class / layer
        sampled = cls.sampled_labels(backend, config)
        return accumulate_curvature(
            backend, chunks, form=cls.form, curvature=config["curvature"], damping=damping,
            blocks=blocks, block_size=config.get("block_size") if cls.finer_blocks else None,
            fisher_batch_size=config["fisher_batch_size"],
            fisher_max_samples=cls.max_samples(config, n_known),
            chunk_size=config["chunk_size"], random_state=rng,
            label_salt=rng.bytes(16) if sampled else None,
            exact_diagonal=cls.exact_diagonal(config))

    @classmethod
    def downdate(cls, op, state, backend, X, y, config):
        from .._streaming import downdate_curvature

        return downdate_curvature(op, state.get("sample"), backend, X, y,
                                  curvature=config["curvature"], chunk_size=config["chunk_size"],
                                  label_salt=state.get("label_salt"))
