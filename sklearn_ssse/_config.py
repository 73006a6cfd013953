"""The settings a fitted :class:`~sklearn_ssse.UnlearnableClassifier` was built with."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """Every setting that defines the fitted state, resolved once by ``fit`` / ``from_fitted``.

    :meth:`UnlearnableClassifier.forget` reads these, never the constructor parameters: a
    parameter changed with ``set_params`` after fit has no effect until the next fit.

    Attributes
    ----------
    curvature : str
        ``"empirical_fisher"`` or ``"ggn"``.
    inverse : str
        The resolved kind (``"auto"`` never appears here).
    step : str
        ``"leave_out"`` or ``"full"``.
    update_curvature : bool
        Whether each forget keeps the curvature without the erased samples' terms.
    fisher_batch_size : int
        Samples per curvature term.
    chunk_size : int
        Samples per gradient / factor computation.
    memory_budget : int
        Bytes the curvature was allowed (``inverse="auto"`` chose within it).
    estimated_memory : int
        Estimated peak bytes of building the chosen inverse.
    preprocessing : str
        ``"frozen"`` or ``"update"`` (a Pipeline's transformers updated by forget).
    sparse_nnz : int or None
        Stored entries of a scipy sparse training ``X`` (``None``: dense rows); the inverse
        kinds for sparse ``X`` serve the model (:mod:`sklearn_ssse._curvature._sparse`).
    """

    curvature: str
    inverse: str
    step: str
    update_curvature: bool
    fisher_batch_size: int
    chunk_size: int
    memory_budget: int
    estimated_memory: int
    preprocessing: str = "frozen"
    sparse_nnz: int | None = None

    def to_dict(self) -> dict:
        """The settings as a plain dict."""
        return asdict(self)
