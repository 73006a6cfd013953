"""sklearn_ssse: forget training samples from fitted classifiers without retraining.

Single-step sample erasure (SSSE) replaces a retrain by one preconditioned step with a cached
inverse curvature. See :class:`UnlearnableClassifier`.

The public names below are imported on first use (PEP 562), so ``import sklearn_ssse`` and the
command line's ``--help`` do not pay for importing torch, scikit-learn or skorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING


def _version() -> str:
    """The installed distribution's version; for an uninstalled checkout, pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sklearn-ssse")
    except PackageNotFoundError:  # pragma: no cover - a source checkout on sys.path
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        except OSError:
            match = None
        return match.group(1) if match else "0+unknown"


__version__ = _version()

#: public name -> submodule that defines it
_LAZY = {
    "UnlearnableClassifier": "._unlearnable",
    "UntrackedSampleWarning": "._unlearnable",
    "UnverifiedSealWarning": "._unlearnable",
    "LargeStepWarning": "._unlearnable",
    "SealError": "._seal",
    "seal_key": "._seal",
    "save": "._io",
    "load": "._io",
    "Certificate": "._certificate",
    "certificate_scorer": ".metrics",
    "confusion_distance_scorer": ".metrics",
    "forget_retain_scorer": ".metrics",
    "make_unlearning_scorer": ".metrics",
    "membership_inference_scorer": ".metrics",
    "normalized_confusion_distance_scorer": ".metrics",
    "parameter_distance_scorer": ".metrics",
    "prediction_distance_scorer": ".metrics",
    "similarity_ratio_scorer": ".metrics",
    "ForgetSplit": ".model_selection",
    "epsilon_sweep": ".model_selection",
    "evaluate_forgetting": ".model_selection",
}
_SUBMODULES = ("datasets", "metrics", "model_selection")

__all__ = [
    "Certificate",
    "ForgetSplit",
    "LargeStepWarning",
    "SealError",
    "UnlearnableClassifier",
    "UntrackedSampleWarning",
    "UnverifiedSealWarning",
    "__version__",
    "certificate_scorer",
    "confusion_distance_scorer",
    "epsilon_sweep",
    "evaluate_forgetting",
    "forget_retain_scorer",
    "load",
    "make_unlearning_scorer",
    "membership_inference_scorer",
    "normalized_confusion_distance_scorer",
    "parameter_distance_scorer",
    "prediction_distance_scorer",
    "save",
    "seal_key",
    "similarity_ratio_scorer",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from ._certificate import Certificate
    from ._io import load, save
    from ._seal import SealError, seal_key
    from ._unlearnable import (
        LargeStepWarning,
        UnlearnableClassifier,
        UntrackedSampleWarning,
        UnverifiedSealWarning,
    )
    from .metrics import (
        certificate_scorer,
        confusion_distance_scorer,
        forget_retain_scorer,
        make_unlearning_scorer,
        membership_inference_scorer,
        normalized_confusion_distance_scorer,
        parameter_distance_scorer,
        prediction_distance_scorer,
        similarity_ratio_scorer,
    )
    from .model_selection import ForgetSplit, epsilon_sweep, evaluate_forgetting
