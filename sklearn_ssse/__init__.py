"""sklearn_ssse: forget training samples from fitted classifiers without retraining.

Single-step sample erasure (SSSE) replaces a retrain by one preconditioned step with a cached
inverse curvature. See :class:`UnlearnableClassifier`.
"""

from ._unlearnable import UnlearnableClassifier

__version__ = "0.1.0"

__all__ = ["UnlearnableClassifier", "__version__"]
