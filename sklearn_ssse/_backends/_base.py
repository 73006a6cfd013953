"""The one interface between :class:`~sklearn_ssse.UnlearnableClassifier` and a model family.

``_unlearnable.py`` only talks to a backend; nothing else knows the model family.  Every array a
backend takes or returns for the maths is a :class:`torch.Tensor` on ``backend.device`` with
``backend.dtype`` (the linear backend works in float64 on the CPU and wraps numpy arrays without a
copy).  Inputs ``X``/``y`` arrive already validated as numpy arrays.

Conventions
-----------
* theta: every trainable parameter the backend exposes, as one flat vector of length ``n_params``.
* loss: ``l_i(theta) = -log p(y_i | x_i; theta)`` (summed over outputs for multi-output models).
* ``curvature_rows(X, y, curvature)`` returns a tensor ``R`` of shape ``(n, q, d)`` such that the
  data part of the curvature is ``sum_i sum_j R[i, j] R[i, j]^T``:

  - ``"empirical_fisher"``: ``q = 1`` and ``R[i, 0] = g_i``, the per-sample gradient;
  - ``"ggn"``: the generalized Gauss-Newton / true Fisher, ``sum_i J_i^T H_i J_i``, written as
    ``q`` factor rows per sample (for a softmax output ``R[i, c] = sqrt(p_ic) * grad l(x_i, y=c)``).
* ``blocks``: a partition of ``range(n_params)`` into slices whose curvature is treated as
  independent (one per output of a multi-output model, one per one-vs-rest class); ``None`` when
  the model is one block.  ``natural_blocks`` is the finer partition used by ``inverse="block"``
  when ``block_size`` is not given (e.g. one block per class of a multinomial model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch


def draw_labels(P, u):
    """Class indices drawn from the rows of ``P`` (probabilities, shape ``(n, C)``) by the
    inverse CDF at the uniforms ``u`` (shape ``(n,)``): the same ``u`` gives the same draw.

    ``P`` may be a NumPy array (result: NumPy) or a tensor (result: an int64 tensor on its
    device, the CDF in float64 as for NumPy; ``u`` is moved there)."""
    if isinstance(P, torch.Tensor):
        P = P.to(torch.float64)
        cdf = torch.cumsum(P, dim=1)
        u = torch.as_tensor(np.asarray(u) if not torch.is_tensor(u) else u,
                            dtype=torch.float64, device=P.device)
        return torch.clamp((cdf < u[:, None] * cdf[:, -1:]).sum(1), max=P.shape[1] - 1)
    cdf = np.cumsum(P, axis=1)
    return np.minimum((cdf < np.asarray(u)[:, None] * cdf[:, -1:]).sum(1), P.shape[1] - 1)


class BaseBackend(ABC):
    """Adapter exposing a fitted estimator's parameters, gradients and curvature factors.

    Parameters
    ----------
    estimator : object
        The *fitted* inner estimator. The backend reads and writes its parameters in place.
    """

    #: torch dtype of every tensor the backend produces
    dtype: torch.dtype = torch.float64
    #: torch device of every tensor the backend produces
    device: torch.device = torch.device("cpu")
    #: numpy dtype the inputs are validated to before reaching the backend
    input_dtype = np.float64
    #: the backend takes scipy sparse ``X`` (CSR) in every hook (the linear models); others
    #: get dense arrays only
    accepts_sparse: bool = False
    #: a convex model with a closed-form objective: ``gradient_sum`` plus the penalty of
    #: ``default_damping`` is its exact gradient (``certify`` / ``refine`` need it)
    certifiable: bool = False
    #: the estimator shows its fitted vectors (``theta_fit_``, ``damping_``, the erasure
    #: direction) as NumPy arrays (linear models) rather than tensors (nets)
    public_numpy: bool = False
    #: names of the unlearning scorers :func:`~sklearn_ssse.model_selection.epsilon_sweep`
    #: uses when given ``scoring=None`` (the first one selects epsilon)
    default_scoring: tuple[str, ...] = ("similarity_ratio", "parameter_distance")

    def __init__(self, estimator):
        self.estimator = estimator

    @classmethod
    def evaluation_scoring(cls, mode: str) -> str:
        """The unlearning scorer :func:`~sklearn_ssse.model_selection.evaluate_forgetting`
        selects epsilon by, for a random share (``mode="rate"``) or a whole class
        (``"class"``) forgotten.

        Here, for convex models with one optimum (the linear models): the normalized parameter
        distance to the retrained model, or on a class removal (whose reference has a class
        less) the normalized confusion distance on ``S``.  A family whose parameters do not
        measure forgetting (nets) selects by its :attr:`default_scoring` instead.
        """
        return "parameter_distance" if mode == "rate" else "normalized_confusion_distance"

    @classmethod
    def evaluation_epsilons(cls, mode: str) -> np.ndarray:
        """The default epsilon grid of :func:`~sklearn_ssse.model_selection.evaluate_forgetting`
        for a random share (``mode="rate"``) or a whole class (``"class"``) forgotten.

        Here, for the linear models (whose step at ``epsilon=1`` is the Newton step to the
        retrained optimum): 0 to 2 in steps of 0.25, or 0, 0.5, 1, 2, 5, 10, 20, 50, 100 for a
        class removal, which needs larger steps.
        """
        if mode == "rate":
            return np.linspace(0.0, 2.0, 9)
        return np.array([0.0, 0.5, 1, 2, 5, 10, 20, 50, 100])

    # ------------------------------------------------------------- Kronecker structure
    @property
    def kronecker_blocks(self) -> list[tuple[slice, int, int]] | None:
        """``(parameter slice, K, p)`` per output when the curvature's data term is a sum of
        Kronecker products ``A_i (x) x_i x_i^T`` (``inverse="ekfac"``); ``None`` otherwise."""
        return None

    def kronecker_terms(self, X, y, curvature: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block of :attr:`kronecker_blocks`, ``(Xa, A)`` for the rows ``(X, y)``."""
        raise NotImplementedError(f"{type(self).__name__} has no Kronecker structure")

    # ------------------------------------------------------------------ model family
    @classmethod
    @abstractmethod
    def supports(cls, estimator) -> bool:
        """Whether this backend handles (unfitted) ``estimator``."""

    @classmethod
    def check_estimator(cls, estimator) -> None:
        """Raise ``ValueError`` if ``estimator`` is of the family but cannot be unlearned
        (no probabilistic loss, unsupported penalty, ...). Called before fitting."""
        return None

    # ------------------------------------------------------------------ parameters
    @property
    @abstractmethod
    def n_params(self) -> int:
        """Length of the flat parameter vector."""

    @property
    def blocks(self) -> list[slice] | None:
        """Independent parameter blocks (see module docstring)."""
        return None

    @property
    def natural_blocks(self) -> list[slice] | None:
        """Finer blocks for ``inverse="block"``; defaults to :attr:`blocks`."""
        return self.blocks

    @abstractmethod
    def get_parameters(self) -> torch.Tensor:
        """A copy of the current parameters as one flat vector."""

    @abstractmethod
    def set_parameters(self, theta: torch.Tensor) -> None:
        """Write ``theta`` into the fitted estimator, in place."""

    @abstractmethod
    def with_parameters(self, theta: torch.Tensor):
        """A predicting copy of the estimator carrying ``theta``; the original is untouched."""

    # ------------------------------------------------------------------ gradients / curvature
    @abstractmethod
    def per_sample_gradients(self, X, y) -> torch.Tensor:
        """Gradients of ``-log p(y_i|x_i)`` at the current parameters, shape ``(n, n_params)``."""

    @abstractmethod
    def curvature_rows(self, X, y, curvature: str) -> torch.Tensor:
        """Factor rows of the curvature's data term, shape ``(n, q, n_params)``."""

    @abstractmethod
    def default_damping(self, n_samples: int) -> torch.Tensor:
        """Mean-form damping vector ``lambda`` (length ``n_params``) that makes
        ``(1/n) sum_i H_i + diag(lambda)`` the Hessian of the estimator's own training objective
        (``damping="auto"``)."""

    def factor_rows_per_sample(self, curvature: str) -> int:
        """``q``: factor rows per sample of :meth:`curvature_rows` (for memory estimates)."""
        return 1

    def ggn_sample_rows(self, X, u: np.ndarray, y=None) -> torch.Tensor:
        """One Fisher factor row per sample, with a label drawn from the model's own ``p(.|x)``.

        ``E[r r^T]`` over the draw is the GGN / true Fisher term of the sample, so ``m`` sampled
        rows estimate the GGN with ``m`` rows instead of ``q m`` (what ``inverse="woodbury"``
        keeps). The draw is the inverse CDF of ``p(.|x)`` at the uniforms ``u``, so the same
        ``u`` at the same parameters gives the same rows (which lets a downdate remove exactly
        the rows that were added).

        Parameters
        ----------
        X : ndarray of shape (n, n_features)
            Samples.
        u : ndarray of shape (n,)
            Uniforms in ``[0, 1)``, one per sample.
        y : ndarray of shape (n,) or (n, n_outputs), default=None
            The true labels; needed only by models trained with class weights (each row is
            scaled by the square root of its sample's weight).

        Returns
        -------
        Tensor of shape (n, 1, n_params)
        """
        raise NotImplementedError(f"{type(self).__name__} cannot draw GGN sample rows")

    def curvature_diagonal(self, X, y, curvature: str) -> torch.Tensor | None:
        """Diagonal of the curvature's data term over ``(X, y)`` (sum form), or ``None`` when
        the backend has no cheap closed form for it."""
        return None

    def fit_indices(self, X, y) -> np.ndarray:
        """Indices of the rows of ``(X, y)`` the estimator was trained on (default: all).

        Backends whose estimator holds rows out internally (a skorch validation split)
        override this, so that the curvature and ``n`` count only the rows trained on.
        """
        return np.arange(len(X))

    def feature_parameters(self, features) -> np.ndarray:
        """Indices of the parameters that read the input features ``features`` (the weights
        ``preprocessing="update"`` removes when those features vanish).

        Backends that cannot remove input features (the default) raise ``ValueError``.
        """
        raise ValueError(f"{type(self).__name__} cannot remove input features: "
                         "preprocessing='update' needs a linear model")

    def drop_features(self, estimator, features) -> None:
        """Remove the input ``features`` from ``estimator`` (a copy of the fitted model) in
        place: its parameters shrink to those not in :meth:`feature_parameters`."""
        raise ValueError(f"{type(self).__name__} cannot remove input features: "
                         "preprocessing='update' needs a linear model")

    def reference_estimator(self, template):
        """``template`` (an unfitted clone of the inner estimator) set up to be retrained as the
        reference of a forget: its outputs must keep the layout of the fitted estimator's
        (the same class columns) even when the retained rows lack a class.

        Default: ``template`` unchanged (the linear models name their classes from ``y``, and
        the metrics align class columns by label).
        """
        return template

    def to_tensor(self, a) -> torch.Tensor:
        """``a`` as a tensor of the backend's dtype and device (no copy when possible)."""
        return torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a,
                               dtype=self.dtype, device=self.device)
