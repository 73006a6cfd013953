"""The registry of ``inverse=`` kinds, and the memory-budget choice of ``inverse="auto"``.

``INVERSES`` maps each ``inverse=`` value to its implementations (a name may have one per model
family, e.g. ``"ekfac"`` for the linear models' Kronecker structure and for nets' layers): the
first implementation whose :meth:`~sklearn_ssse._curvature._base.InverseKind.unsupported` is
``None`` serves a backend. A new kind is one module with one
:class:`~sklearn_ssse._curvature._base.InverseKind` subclass and one :func:`register` line below.
"""

from __future__ import annotations

import re

from ._base import InverseKind
from ._dense import Block, Dense
from ._ekfac import EKFAC
from ._kfac import KFAC, EKFACNet
from ._lowrank import ShermanMorrison, Woodbury
from ._sparse import SparseDense, SparseStructuredBlocks, SparseWoodbury

__all__ = ["AUTO_INTERCEPT_DAMPING", "DEFAULT_MEMORY_BUDGET", "INVERSES", "auto_order",
           "choices", "estimate_memory", "format_bytes", "kind_for", "parse_bytes", "register",
           "resolve_inverse"]

#: default of ``memory_budget``: what ``inverse="auto"`` may spend on the curvature (bytes)
DEFAULT_MEMORY_BUDGET = 2 * 2**30
#: damping of unpenalised parameters (intercepts), relative to the largest penalty of the model
AUTO_INTERCEPT_DAMPING = 1e-6

INVERSES: dict[str, tuple[type[InverseKind], ...]] = {}


def register(kind: type[InverseKind]) -> type[InverseKind]:
    """Add ``kind`` to :data:`INVERSES` under ``kind.name`` (after the implementations already
    registered under that name)."""
    if not kind.name:
        raise ValueError(f"{kind.__name__} has no name")
    INVERSES[kind.name] = INVERSES.get(kind.name, ()) + (kind,)
    return kind


# a name's implementations in the order they are tried: the sparse-X kinds first (they serve
# only a sparse training X), then the dense-rows kinds, then the nets'
for _kind in (SparseDense, Dense, SparseStructuredBlocks, Block, EKFAC, KFAC, EKFACNet,
              SparseWoodbury, Woodbury, ShermanMorrison):
    register(_kind)


def choices() -> tuple[str, ...]:
    """Every accepted ``inverse=`` value."""
    return ("auto", *INVERSES)


def auto_order(backend=None, config: dict | None = None) -> list[str]:
    """The names ``inverse="auto"`` tries, most faithful first (for ``backend``: only the kinds
    that support it, in the order of their implementation's rank)."""
    return [k.name for k in _auto_candidates(backend, config or {})]


def _auto_candidates(backend, config: dict) -> list[type[InverseKind]]:
    """One implementation per name (the one :func:`kind_for` would pick for ``backend``), sorted
    by ``auto_rank``; without a backend, each name at its best rank."""
    best: dict[str, type[InverseKind]] = {}
    for name, kinds in INVERSES.items():
        for kind in kinds:
            if backend is not None and kind.unsupported(backend, config) is not None:
                continue
            if backend is not None:
                if kind.auto_rank is not None:
                    best[name] = kind
                break  # the implementation kind_for picks
            if kind.auto_rank is not None and (
                    name not in best or kind.auto_rank < best[name].auto_rank):
                best[name] = kind
    return sorted(best.values(), key=lambda k: k.auto_rank)


def kind_for(name: str, backend, config: dict) -> type[InverseKind]:
    """The implementation of ``inverse=name`` for ``backend``; ``ValueError`` with the reason when
    none serves it."""
    if name not in INVERSES:
        raise ValueError(f"unknown inverse {name!r}; expected one of {list(choices())}")
    reasons = []
    for kind in INVERSES[name]:
        why = kind.unsupported(backend, config)
        if why is None:
            return kind
        if why:  # "" : not this implementation's case (e.g. a sparse-X kind on dense rows)
            reasons.append(why)
    raise ValueError(reasons[0] if len(reasons) == 1 else "; ".join(reasons))


def estimate_memory(name: str, backend, config: dict, n: int | None = None) -> int:
    """Estimated peak bytes of building ``inverse=name`` for a fitted backend (before any work)."""
    return kind_for(name, backend, config).estimate_memory(backend, config, n)


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(budget) -> int:
    """A memory size in bytes from an int or a string such as ``"2GB"`` or ``"512 MiB"``."""
    if isinstance(budget, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", budget)
        if m is None or m.group(2).upper() not in _UNITS:
            raise ValueError(f"memory_budget must be a number of bytes or a string such as "
                             f"'2GB' or '512MiB', got {budget!r}")
        return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    return int(budget)


def format_bytes(n: int) -> str:
    """``n`` bytes in binary units, three significant digits."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def resolve_inverse(config: dict, backend, n: int | None) -> tuple[type[InverseKind], int]:
    """The inverse kind (``"auto"`` resolved by the memory budget) and its estimated memory;
    refuses, before any work, a kind the backend does not support or whose estimate exceeds the
    budget."""
    budget = parse_bytes(config["memory_budget"])
    name = config["inverse"]
    if name != "auto":
        kind = kind_for(name, backend, config)
        need = kind.estimate_memory(backend, config, n)
        if need > budget:
            raise ValueError(
                f"inverse={name!r} for {backend.n_params} parameters needs about "
                f"{format_bytes(need)}, over memory_budget={format_bytes(budget)}: raise "
                "memory_budget, or use inverse='auto' (or a smaller fisher_max_samples / "
                "block_size)")
        return kind, need
    tried, needs, skipped = [], [], []
    for kind in _auto_candidates(backend, config):
        name = kind.name
        why = kind.auto_skip(backend, config)
        if why is not None:
            if why:
                skipped.append(why)
            continue
        need = kind.estimate_memory(backend, config, n)
        if need <= budget:
            return kind, need
        tried.append(f"{name} {format_bytes(need)}")
        needs.append(need)
    if skipped:
        raise ValueError(
            f"no faithful inverse fits memory_budget={format_bytes(budget)} for "
            f"{backend.n_params} parameters (estimated: {', '.join(tried)}); "
            f"memory_budget={format_bytes(min(needs))} would allow one. " + " ".join(skipped))
    raise ValueError(f"no inverse fits memory_budget={format_bytes(budget)} for "
                     f"{backend.n_params} parameters (estimated: {', '.join(tried)}); raise "
                     "memory_budget or lower fisher_max_samples")
