"""Model selection for unlearning: forget-set splits, the closed-form epsilon sweep and a
one-call evaluation against retraining."""

from ._evaluate import evaluate_forgetting, plot_forgetting_evaluation
from ._split import ForgetSplit
from ._sweep import epsilon_sweep, plot_epsilon_sweep

__all__ = ["ForgetSplit", "epsilon_sweep", "evaluate_forgetting", "plot_epsilon_sweep",
           "plot_forgetting_evaluation"]
