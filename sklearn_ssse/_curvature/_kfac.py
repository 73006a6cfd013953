"""``inverse="kfac"`` and ``inverse="ekfac"`` for torch nets: Kronecker-factored curvature of the
``nn.Linear`` / ``nn.Conv2d`` layers of the selected parameters, accumulated from forward/backward
passes in ordinary mini-batches on the net's device (no per-sample gradients). The computations
are in :mod:`sklearn_ssse._curvature._kronecker_net` (read on first use, so that the registry
stays importable without torch).

* ``"kfac"``: one pass; per layer the output-gradient factor ``G`` and the input factor ``A``,
  the damped inverse applied in their eigenbasis;
* ``"ekfac"`` (nets): a second pass re-fits the eigenvalues in that basis exactly, as the linear
  models' EK-FAC does; the name is shared with :class:`~._ekfac.EKFAC`, the registry picks the
  implementation that supports the backend.
"""

from __future__ import annotations

from ._base import InverseKind

__all__ = ["KFAC", "EKFACNet"]


class KFAC(InverseKind):
    """K-FAC of a torch net: ``O(sum of layer in^2 + out^2)`` memory, one data pass."""

    name = "kfac"
    # measured closest to retraining among the kinds that fit a real net (benchmarks/results/
    # nets.md): before the per-layer EK-FAC and the sampled low-rank inverse
    auto_rank = 2
    refit_eigenvalues = False

    @classmethod
    def unsupported(cls, backend, config):
        if not hasattr(backend, "_named_selected"):  # not a net: nothing to import
            return (f"inverse={cls.name!r} for nets needs the torch backend; "
                    f"{type(backend).__name__} is not one")
        from ._kronecker_net import kronecker_unsupported

        return kronecker_unsupported(cls.name, backend, config)

    @classmethod
    def estimate_memory(cls, backend, config, n=None):
        from ._kronecker_net import kronecker_memory

        return kronecker_memory(cls.name, cls.refit_eigenvalues, backend, config)

    @classmethod
    def build(cls, backend, chunks, config, damping, rng, n_known=None):
        from ._kronecker_net import build_kronecker

        return build_kronecker(cls.name, cls.refit_eigenvalues, backend, chunks, config,
                               damping, rng, n_known=n_known)

    @classmethod
    def downdate(cls, op, state, backend, X, y, config):
        from ._kronecker_net import downdate_kronecker

        return downdate_kronecker(cls.name, cls.refit_eigenvalues, op, state, backend, X, y,
                                  config)


class EKFACNet(KFAC):
    """EK-FAC of a torch net: the K-FAC eigenbasis with exactly re-fitted eigenvalues (two
    data passes)."""

    name = "ekfac"
    auto_rank = 3
    refit_eigenvalues = True
