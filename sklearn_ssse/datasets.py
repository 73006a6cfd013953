"""Datasets used by the demo, the examples and the benchmarks.

* :func:`load_digits_split` — scikit-learn's bundled digits (no download), scaled to [0, 1].
* :func:`load_fashion_mnist` — Fashion-MNIST from its IDX ``.gz`` files, by default those of the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); the folder is
  configurable with the ``path`` argument or the ``SKLEARN_SSSE_FASHION_MNIST`` environment
  variable.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

#: default folder of the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist)
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")


def load_digits_split(test_size: float = 0.25, random_state: int = 0):
    """Digits (8x8 images, 10 classes) scaled to [0, 1], split into train and test.

    Parameters
    ----------
    test_size : float, default=0.25
        Share of the samples held out.
    random_state : int, default=0
        Seed of the stratified split.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray
        Features in float64, integer labels.

    Examples
    --------
    >>> X_train, X_test, y_train, y_test = load_digits_split()
    >>> X_train.shape, X_test.shape
    ((1347, 64), (450, 64))
    """
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=test_size, random_state=random_state,
                            stratify=y)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(path: str | os.PathLike | None = None, kind: str = "train",
                       n_samples: int | None = None):
    """Fashion-MNIST images as flat float vectors in [0, 1] and integer labels.

    Parameters
    ----------
    path : str or path-like, default=None
        Folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. ``None`` reads the
        ``SKLEARN_SSSE_FASHION_MNIST`` environment variable, else
        ``/usr/share/datasets/fashion-mnist``.
    kind : {"train", "test"}, default="train"
        The 60,000-image training set or the 10,000-image test set.
    n_samples : int, default=None
        Keep only the first ``n_samples`` images.

    Returns
    -------
    X : ndarray of shape (n, 784), float64
        Pixel intensities divided by 255.
    y : ndarray of shape (n,), int64
        Class indices (see ``FASHION_MNIST_CLASSES``).

    Raises
    ------
    FileNotFoundError
        If the files are missing (install the Debian package ``dataset-fashion-mnist`` or point
        ``path`` at a folder holding them).
    """
    if kind not in ("train", "test"):
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    folder = Path(path or os.environ.get("SKLEARN_SSSE_FASHION_MNIST", FASHION_MNIST_DIR))
    prefix = "train" if kind == "train" else "t10k"
    images = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels = folder / f"{prefix}-labels-idx1-ubyte.gz"
    for f in (images, labels):
        if not f.exists():
            raise FileNotFoundError(f"{f} not found: install the Debian package "
                                    "dataset-fashion-mnist or pass path=<folder with the IDX "
                                    "files>")
    X = _read_idx(images)
    y = _read_idx(labels).astype(np.int64)
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    return X.reshape(len(X), -1).astype(np.float64) / 255.0, y
