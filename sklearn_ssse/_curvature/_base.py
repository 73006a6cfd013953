"""The contract every curvature approximation (``inverse=`` kind) follows.

A kind is a class with class methods only; it holds no state (the state is the operator it
builds and the dict :meth:`InverseKind.build` returns, which the estimator keeps). The estimator,
the streaming code and the CLI never switch on kind names: they ask the registry
(:mod:`sklearn_ssse._curvature._registry`) for the class and call

* :meth:`~InverseKind.unsupported`: why the kind cannot serve a backend / configuration (or
  ``None``), before any work;
* :meth:`~InverseKind.estimate_memory`: its peak bytes, before any work (``inverse="auto"``
  compares it with the memory budget; an explicit kind over the budget is refused with it);
* :meth:`~InverseKind.build`: accumulate the damped curvature from a stream of training chunks
  at the fitted parameters and return its inverse operator
  (:class:`~sklearn_ssse._curvature.CurvatureOperator`: ``solve``, ``nbytes``, ``to(device)``,
  pickling);
* :meth:`~InverseKind.downdate`: the operator without the erased samples' terms (the
  leave-S-out step and ``update_curvature``).

A new kind is one module with one subclass, plus one line in the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # the registry is imported without torch (the command line's choices)
    import torch

__all__ = ["InverseKind", "item_size"]


def item_size(backend) -> int:
    """Bytes per number of the backend's curvature dtype."""
    import torch

    return torch.empty((), dtype=backend.dtype).element_size()


class InverseKind:
    """Base class of the ``inverse=`` kinds (see the module docstring).

    Class attributes
    ----------------
    name : str
        The ``inverse=`` value.
    auto_rank : int or None
        ``inverse="auto"`` tries the kinds by increasing rank (most faithful first, as measured
        in ``benchmarks/results/fidelity.md``) and takes the first that fits the budget;
        ``None``: never chosen automatically.
    diagonal_base : bool
        The operator starts from ``diag(damping)^-1`` (the low-rank kinds): every parameter needs
        a positive damping, and unpenalised ones get the largest damping of the model.
    """

    name: ClassVar[str] = ""
    auto_rank: ClassVar[int | None] = None
    diagonal_base: ClassVar[bool] = False

    @classmethod
    def unsupported(cls, backend, config: dict) -> str | None:
        """Why this kind cannot be used for ``backend`` with ``config`` (``None``: it can)."""
        return None

    @classmethod
    def auto_skip(cls, backend, config: dict) -> str | None:
        """Why ``inverse="auto"`` passes over this kind although it is usable (``None``: it
        does not), e.g. a kind measured to land further from retraining than no step."""
        return None

    @classmethod
    def estimate_memory(cls, backend, config: dict, n: int | None = None) -> int:
        """Estimated peak bytes of building the operator (``n``: training samples, when known)."""
        raise NotImplementedError

    @classmethod
    def build(cls, backend, chunks, config: dict, damping, rng, n_known: int | None = None
              ) -> dict:
        """Build the inverse operator in one or more passes over ``chunks``.

        Parameters
        ----------
        backend : BaseBackend
            The fitted model's backend, at its fitted parameters.
        chunks : iterable of (X_chunk, y_chunk)
            Validated training chunks (a list is re-iterable; a generator is read once).
        config : dict
            The resolved settings (``curvature``, ``chunk_size``, ``fisher_batch_size``,
            ``fisher_max_samples``, ``block_size``, ...).
        damping : callable
            ``damping(n) -> Tensor`` of shape ``(n_params,)``: the mean-form damping for ``n``
            samples, already floored for this kind (see :meth:`floor_damping`).
        rng : numpy.random.RandomState
            Source of every random draw.
        n_known : int, optional
            Number of samples, when known before reading the stream.

        Returns
        -------
        dict
            ``curvature`` (the operator), ``damping`` (the tensor used), ``n``,
            ``n_curvature_samples``, ``sample`` (sub-sampled rows' record or ``None``) and
            ``label_salt`` (key of drawn GGN labels or ``None``).
        """
        raise NotImplementedError

    @classmethod
    def downdate(cls, op, state: dict, backend, X, y, config: dict) -> tuple:
        """``(operator, sample)`` without the terms of the ``k`` samples ``(X, y)``, averaging over
        ``n - k``; ``state`` holds ``sample`` and ``label_salt`` as :meth:`build` returned them
        (updated by earlier downdates). Called with the backend at the parameters the operator
        was built at. Raises ``ValueError`` if the samples cannot be terms of the curvature."""
        raise NotImplementedError

    @classmethod
    def floor_damping(cls, damping: torch.Tensor) -> torch.Tensor:
        """Give unpenalised parameters (intercepts) a damping.

        The data term alone can be singular on them (the softmax intercepts sum to a free
        constant), so they get ``AUTO_INTERCEPT_DAMPING`` times the largest damping of the model;
        kinds with a diagonal base get the largest damping itself, which keeps their base well
        conditioned.
        """
        import torch

        from ._registry import AUTO_INTERCEPT_DAMPING

        if not bool(torch.any(damping == 0)):
            return damping
        top = damping.max()
        if not bool(top > 0):
            if cls.diagonal_base:
                raise ValueError(f"inverse={cls.name!r} needs a positive damping; the model has "
                                 "no L2 penalty, so pass damping=<float> > 0")
            return damping
        floor = top if cls.diagonal_base else top * AUTO_INTERCEPT_DAMPING
        return torch.where(damping > 0, damping, floor)
