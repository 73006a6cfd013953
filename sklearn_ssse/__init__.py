"""sklearn_ssse: forget training samples from fitted classifiers without retraining.

Single-step sample erasure (SSSE) replaces a retrain by one preconditioned step with a cached
inverse curvature. See :class:`UnlearnableClassifier`.
"""

from ._unlearnable import UnlearnableClassifier, UntrackedSampleWarning
from .metrics import (
    confusion_distance_scorer,
    forget_retain_scorer,
    make_unlearning_scorer,
    membership_inference_scorer,
    normalized_confusion_distance_scorer,
    parameter_distance_scorer,
    prediction_distance_scorer,
    similarity_ratio_scorer,
)
from .model_selection import ForgetSplit, epsilon_sweep

__version__ = "0.1.0"

__all__ = [
    "ForgetSplit",
    "UnlearnableClassifier",
    "UntrackedSampleWarning",
    "__version__",
    "confusion_distance_scorer",
    "epsilon_sweep",
    "forget_retain_scorer",
    "make_unlearning_scorer",
    "membership_inference_scorer",
    "normalized_confusion_distance_scorer",
    "parameter_distance_scorer",
    "prediction_distance_scorer",
    "similarity_ratio_scorer",
]
