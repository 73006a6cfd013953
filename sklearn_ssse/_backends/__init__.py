"""Model-family adapters: one backend per family, chosen by :func:`select_backend`.

The torch backend (and with it skorch) is imported on first use: a linear model never pays for
importing skorch.
"""

from collections.abc import Iterator, Sequence

from ._base import BaseBackend
from ._linear import LinearBackend, _check_single


class _Backends(Sequence):
    """The backends tried in order by :func:`select_backend`, the torch one imported lazily."""

    def __init__(self):
        self._all: list[type[BaseBackend]] | None = None

    def _load(self) -> list[type[BaseBackend]]:
        if self._all is None:
            from ._torch import TorchBackend

            self._all = [LinearBackend, TorchBackend]
        return self._all

    def __iter__(self) -> Iterator[type[BaseBackend]]:
        yield LinearBackend  # the common case: no torch backend (no skorch) imported
        yield from self._load()[1:]

    def __getitem__(self, index):
        return self._load()[index]

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return repr(self._load())


#: Backends tried in order by :func:`select_backend`.
BACKENDS: Sequence[type[BaseBackend]] = _Backends()


def __getattr__(name: str):
    if name == "TorchBackend":
        from ._torch import TorchBackend

        return TorchBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
