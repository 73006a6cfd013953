"""Unlearning metrics and the scorers that tune SSSE's epsilon in scikit-learn's CV tools."""

from ._metrics import (
    confusion_distance,
    membership_inference_auc,
    normalized_confusion_distance,
    normalized_parameter_distance,
    normalized_prediction_distance,
    performance_score,
    performance_similarity,
    prediction_kl,
    similarity_ratio,
)
from ._scorers import (
    UnlearningScorer,
    clear_reference_cache,
    confusion_distance_scorer,
    forget_retain_scorer,
    make_unlearning_scorer,
    membership_inference_scorer,
    normalized_confusion_distance_scorer,
    parameter_distance_scorer,
    prediction_distance_scorer,
    reference_cache_info,
    similarity_ratio_scorer,
)

__all__ = [
    "UnlearningScorer",
    "clear_reference_cache",
    "confusion_distance",
    "confusion_distance_scorer",
    "forget_retain_scorer",
    "make_unlearning_scorer",
    "membership_inference_auc",
    "membership_inference_scorer",
    "normalized_confusion_distance",
    "normalized_confusion_distance_scorer",
    "normalized_parameter_distance",
    "normalized_prediction_distance",
    "parameter_distance_scorer",
    "performance_score",
    "performance_similarity",
    "prediction_distance_scorer",
    "prediction_kl",
    "reference_cache_info",
    "similarity_ratio",
    "similarity_ratio_scorer",
]
