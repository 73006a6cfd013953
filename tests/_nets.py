"""A small skorch MLP on sklearn's digits, shared by the tests of tuning epsilon on nets, and
the save / load round trips of the net tests."""

import pickle

import joblib
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from skorch import NeuralNetClassifier
from torch import nn


class DigitsMLP(nn.Module):
    """64-32-10 ReLU MLP returning logits."""

    def __init__(self, hidden=32):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def digits_split():
    """Digits in [0, 1] (float32), 70 % training / 30 % test, stratified."""
    X, y = load_digits(return_X_y=True)
    X, y = (X / 16.0).astype(np.float32), y.astype(np.int64)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def digits_net(**kwargs):
    """The net, built without ``classes=`` (skorch infers them from ``y``)."""
    params = dict(module=DigitsMLP, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                  lr=0.01, optimizer__weight_decay=1e-3, max_epochs=40, batch_size=64,
                  train_split=None, iterator_train__shuffle=True, verbose=0)
    params.update(kwargs)
    return NeuralNetClassifier(**params)


def fitted_digits_net():
    """``(X, X_test, y, y_test, clf)``: the net under SSSE (auto inverse, the training rows
    kept for the scorers), fitted on the training part of :func:`digits_split`."""
    from sklearn_ssse import UnlearnableClassifier

    torch.set_num_threads(1)
    X, X_test, y, y_test = digits_split()
    torch.manual_seed(0)
    clf = UnlearnableClassifier(digits_net(), keep_training_data=True, random_state=0).fit(X, y)
    return X, X_test, y, y_test, clf


def saved_copies(obj, tmp_path):
    """``obj`` saved and loaded back: once through ``pickle``, once through a ``joblib`` file
    under ``tmp_path``."""
    yield pickle.loads(pickle.dumps(obj))
    joblib.dump(obj, tmp_path / "saved.joblib")
    yield joblib.load(tmp_path / "saved.joblib")
