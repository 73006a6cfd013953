"""Model selection for unlearning: forget-set splits and the closed-form epsilon sweep."""

from ._split import ForgetSplit
from ._sweep import epsilon_sweep, plot_epsilon_sweep

__all__ = ["ForgetSplit", "epsilon_sweep", "plot_epsilon_sweep"]
