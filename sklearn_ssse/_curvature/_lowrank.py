"""``inverse="woodbury"`` and ``inverse="sherman_morrison"``: the damping (or, for linear models,
the exact diagonal) plus the outer products of ``m`` sampled factor rows, inverted exactly — through
an ``m x m`` Woodbury system, or with the paper's literal rank-one recursion (``O(m d^2)``, kept as
the reference implementation and benchmark baseline)."""

from __future__ import annotations

from ._base import item_size
from ._factor_rows import FactorRowKind

__all__ = ["ShermanMorrison", "Woodbury", "WOODBURY_DEFAULT_SAMPLES"]

#: rank (samples) of ``inverse="woodbury"`` when ``fisher_max_samples`` is not given
WOODBURY_DEFAULT_SAMPLES = 1024
#: diagonal base of the low-rank inverse = the exact diagonal of the curvature where the backend
#: has it in closed form (tests switch it off to compare the low-rank algebra with a rows-only
#: oracle)
EXACT_DIAGONAL = True


def _terms(config: dict, m: int | None, n: int | None) -> int:
    """Mini-batch terms of ``m`` sampled rows (``n`` when every sample is used)."""
    if m is None:
        m = n if n is not None else 1
    return -(-int(m) // int(config.get("fisher_batch_size", 1)))


class Woodbury(FactorRowKind):
    """Exact inverse of a low-rank-plus-diagonal curvature, ``O(m d)`` memory."""

    name = "woodbury"
    auto_rank = 4
    form = "woodbury"
    diagonal_base = True
    default_max_samples = WOODBURY_DEFAULT_SAMPLES
    takes_sparse = False  # sparse X: the structured kind (_sparse.SparseWoodbury)

    @classmethod
    def sampled_labels(cls, backend, config):
        # the low-rank kind keeps one row per sample: GGN rows at labels drawn from p(.|x)
        return config["curvature"] == "ggn" and backend.factor_rows_per_sample("ggn") > 1

    @classmethod
    def exact_diagonal(cls, config):
        return EXACT_DIAGONAL and int(config["fisher_batch_size"]) == 1

    @classmethod
    def auto_skip(cls, backend, config):
        # the sampled low-rank inverse of a softmax model lands further from retraining than not
        # forgetting at all (benchmarks/results/fidelity.md): where the coupled EK-FAC exists,
        # auto never falls back to it
        if (backend.kronecker_blocks is not None and config.get("curvature") == "ggn"
                and backend.factor_rows_per_sample("ggn") > 1):
            return ("inverse='auto' does not fall back to 'woodbury' for a softmax model: its "
                    "sampled curvature lands further from the retrained model than not "
                    "forgetting at all (pass inverse='woodbury' explicitly to use it anyway)")
        return None

    @classmethod
    def estimate_memory(cls, backend, config, n=None):
        # the m x d factor rows the operator holds (scaled and solved in place) plus the pieces
        # being accumulated: at most two copies (measured peak 1.0-1.14x the operator,
        # benchmarks/results/torch_memory.md), plus the m x m system per block
        m = cls.max_samples(config, n)
        m = _terms(config, m if m is not None else n, n)
        widths = cls.widths(backend, config)
        return (2 * m * backend.n_params + len(widths) * m * m) * item_size(backend)


class ShermanMorrison(FactorRowKind):
    """The paper's rank-one recursion: explicit ``d x d`` inverses, ``O(m q d^2)`` time."""

    name = "sherman_morrison"
    form = "sherman_morrison"
    diagonal_base = True
    takes_sparse = False

    @classmethod
    def estimate_memory(cls, backend, config, n=None):
        # the explicit inverses plus the rows (q per sample)
        m = _terms(config, cls.max_samples(config, n), n)
        q = backend.factor_rows_per_sample(config["curvature"])
        widths = cls.widths(backend, config)
        return (sum(b * b for b in widths) + 2 * m * q * backend.n_params) * item_size(backend)
