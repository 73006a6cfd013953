"""Shared fixtures."""

import os

# scikit-learn's array-API estimator check runs only with SciPy's array-API mode, which must be
# switched on before SciPy is imported (the package declares no array-API support: the check
# verifies that enabling dispatch with NumPy inputs changes nothing)
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """Digits scaled to [0, 1], a fixed 600-sample training subset and a 300-sample test set."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    return X[idx[:600]], y[idx[:600]], X[idx[600:900]], y[idx[600:900]]


@pytest.fixture(scope="session")
def forget_idx():
    """A fixed forget set: 30 of the 600 digits training rows."""
    return np.random.default_rng(1).choice(600, size=30, replace=False)


@pytest.fixture(scope="module")
def torch_single_thread():
    """One torch intra-op thread for a module's tests (restored after): the net tests compare
    float results at tight tolerances and run on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
