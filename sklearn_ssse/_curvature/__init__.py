"""Curvature approximations: the operators (:mod:`._operators`) and the inverse kinds that build
them behind one contract (:mod:`._base`, registered in :mod:`._registry`).

``from sklearn_ssse._curvature import DenseCholesky`` etc. read the operators module on first use
(PEP 562), so that the registry, which the command line reads for its ``--inverse`` choices, is
importable without torch.
"""

_OPERATORS = frozenset({
    "REFACTOR_RATIO", "CurvatureOperator", "DenseCholesky", "DiagonalOperator",
    "ExplicitInverse", "LowRankCorrected", "BlockDiagonal", "KroneckerBuilder", "KroneckerEigen",
    "OperatorBuilder", "build_operator", "gram", "sherman_morrison_inverse", "_INDEFINITE",
    "_as_matrix",
})

__all__ = sorted(n for n in _OPERATORS if not n.startswith("_"))


#: modules (in this package) that define operators a saved model may hold: persistence rebuilds an
#: operator from its class name looked up here only, never by an arbitrary import
OPERATOR_MODULES = ("_operators", "_submatrix", "_kronecker_net", "_sparse_lowrank")


def operator_class(name: str) -> type:
    """The :class:`CurvatureOperator` subclass called ``name`` in :data:`OPERATOR_MODULES`."""
    from importlib import import_module

    from ._operators import CurvatureOperator

    for module in OPERATOR_MODULES:
        cls = getattr(import_module(f"{__name__}.{module}"), name, None)
        if isinstance(cls, type) and issubclass(cls, CurvatureOperator):
            return cls
    raise ValueError(f"unknown curvature operator {name!r} in the saved state")


def __getattr__(name):
    if name in _OPERATORS:
        from . import _operators

        value = globals()[name] = getattr(_operators, name)  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _OPERATORS)
