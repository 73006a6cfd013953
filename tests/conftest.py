"""Shared fixtures."""

import numpy as np
import pytest
from sklearn.datasets import load_digits


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
