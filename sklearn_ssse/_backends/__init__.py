"""Model-family adapters: one backend per family, chosen by :func:`select_backend`."""

from ._base import BaseBackend
from ._linear import LinearBackend, _check_single
from ._torch import TorchBackend

#: Backends tried in order by :func:`select_backend`.
BACKENDS: list[type[BaseBackend]] = [LinearBackend, TorchBackend]


def select_backend(estimator) -> type[BaseBackend]:
    """The backend class for ``estimator``, after checking it can be unlearned.

    Raises
    ------
    TypeError
        If no backend handles the estimator's family.
    ValueError
        If the family is handled but this configuration has no log-likelihood loss or no
        twice-differentiable objective (hinge loss, L1 penalty, ...).
    """
    for backend in BACKENDS:
        if backend.supports(estimator):
            backend.check_estimator(estimator)
            return backend
    from sklearn.multioutput import MultiOutputClassifier

    inner = estimator.estimator if isinstance(estimator, MultiOutputClassifier) else estimator
    _check_single(inner)  # raises the most precise error for linear models without probabilities
    raise TypeError(f"{type(estimator).__name__} is not supported")  # pragma: no cover


__all__ = ["BACKENDS", "BaseBackend", "LinearBackend", "TorchBackend", "select_backend"]
