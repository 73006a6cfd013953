"""Datasets used by the demo, the examples, the benchmarks and the command line.

* :func:`load_digits_split` — scikit-learn's bundled digits (no download), scaled to [0, 1].
* :func:`load_fashion_mnist` — Fashion-MNIST from its IDX ``.gz`` files, by default those of the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); the folder is
  configurable with the ``path`` argument or the ``SKLEARN_SSSE_FASHION_MNIST`` environment
  variable.
* :func:`load_data` — a classification data set from a file: CSV / TSV (text columns are one-hot
  encoded), NumPy ``.npy`` / ``.npz``, or a folder of IDX files. ``sklearn-ssse evaluate`` reads
  its ``DATA`` argument with it.
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "load_data", "load_digits_split",
           "load_fashion_mnist"]

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


# ================================================================================ load_data
#: cells read as a missing value (compared case-insensitively, after stripping blanks)
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column_index(target, width: int, header: list[str] | None, where: str) -> int:
    """Index of the target column: a header name, or an integer index (negative from the end)."""
    if target is None:
        return width - 1
    target = str(target).strip()
    if header is not None and target in header:
        return header.index(target)
    try:
        col = int(target)
    except ValueError:
        known = f"header: {header}" if header is not None else "the file has no header row"
        raise ValueError(f"{where}: no column {target!r} ({known})") from None
    if not -width <= col < width:
        raise ValueError(f"{where}: target column {col} is out of range: the data has {width} "
                         f"columns (indices 0 to {width - 1}, or -1 to -{width} from the end)")
    return col % width


def _has_header(rows: list[list[str]], target) -> bool:
    """Whether the first row names the columns.

    It does when it holds ``target`` as a (non-integer) name, or when some column is numeric
    below the first row but not in it. A table whose every column is text is decided by
    :meth:`csv.Sniffer.has_header` on the text.
    """
    first = [c.strip() for c in rows[0]]
    if target is not None and str(target) in first and not _is_number(str(target)):
        return True
    body = rows[1:]
    if not body:
        return not all(_is_number(c) for c in first)
    numeric_cols = [j for j in range(len(first))
                    if all(j < len(r) and (_is_number(r[j]) or r[j].strip().lower()
                                           in MISSING_MARKERS) for r in body)]
    if any(not _is_number(first[j]) for j in numeric_cols):
        return True
    if numeric_cols:
        return False
    sample = "\n".join(",".join(r) for r in rows[:50])
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return False


def _read_csv(path: Path, target) -> Bunch:
    with open(path, newline="") as f:
        sample = f.read(65536)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t ")
        except csv.Error:
            dialect = csv.excel
        rows = [r for r in csv.reader(f, dialect) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path} holds no data")
    header = None
    if _has_header(rows, target):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise ValueError(f"{path} holds a header row ({', '.join(header)}) but no data rows")
    width = len(header) if header is not None else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"{path}: row {i + 1 + (header is not None)} has {len(r)} fields, "
                             f"not {width} like the first row")
    if width < 2:
        raise ValueError(f"{path}: one column only; a target and at least one feature are needed")
    col = _column_index(target, width, header, str(path))
    names = header if header is not None else [f"x{j}" for j in range(width)]
    table = np.array([[c.strip() for c in r] for r in rows], dtype=object)
    missing = np.vectorize(lambda c: c.lower() in MISSING_MARKERS, otypes=[bool])(table)
    if missing.any():
        bad = [names[j] for j in np.flatnonzero(missing.any(axis=0))]
        first = int(np.flatnonzero(missing.any(axis=1))[0]) + 1 + (header is not None)
        raise ValueError(f"{path}: missing values in column(s) {', '.join(bad)} "
                         f"({int(missing.sum())} cells, the first in line {first}); fill or "
                         "drop them before evaluating (e.g. with pandas or "
                         "sklearn.impute.SimpleImputer)")
    y = table[:, col]
    feature_cols = [j for j in range(width) if j != col]
    numeric = np.vectorize(_is_number, otypes=[bool])(table[:, feature_cols]).all(axis=0)
    num_cols = [j for j, ok in zip(feature_cols, numeric) if ok]
    text_cols = [j for j, ok in zip(feature_cols, numeric) if not ok]
    X = table[:, num_cols].astype(np.float64)
    feature_names = [names[j] for j in num_cols]
    encoder = None
    if text_cols:
        from sklearn.preprocessing import OneHotEncoder

        encoder = OneHotEncoder(sparse_output=False, handle_unknown="ignore", dtype=np.float64)
        onehot = encoder.fit_transform(table[:, text_cols].astype(str))
        X = np.hstack([X, onehot])
        feature_names += [f"{names[j]}={c}" for j, cats in zip(text_cols, encoder.categories_)
                          for c in cats]
    return Bunch(X=X, y=y, target_name=names[col] if header is not None else f"column {col}",
                 target_index=col, feature_names=feature_names,
                 encoded_columns=[names[j] for j in text_cols], encoder=encoder)


def _as_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels when every label is an integer, else strings."""
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    try:
        f = y.astype(np.float64)
    except ValueError:
        return y.astype(str)
    if np.isnan(f).any():
        raise ValueError("the target holds missing values (NaN)")
    if np.all(f == np.round(f)):
        return f.astype(np.int64)
    raise ValueError("the target holds non-integer numbers: it must be class labels")


def _check_finite(X: np.ndarray, where: str) -> None:
    if np.isnan(X).any():
        cols = np.flatnonzero(np.isnan(X).any(axis=0)).tolist()
        raise ValueError(f"{where}: missing values (NaN) in feature column(s) {cols}; fill or "
                         "drop them before evaluating")
    if not np.isfinite(X).all():
        raise ValueError(f"{where}: infinite feature values")


def load_data(path, *, target=None, labels=None, n_samples: int | None = None,
              random_state: int = 0) -> Bunch:
    """Load a classification data set from a file or a folder.

    Parameters
    ----------
    path : str or path-like
        One of

        - a CSV / TSV file (``.csv``, ``.tsv``, ``.txt``): one sample per row; the target is the
          last column unless ``target`` names another; an optional header row is detected.
          Numeric columns are used as they are; columns holding text are one-hot encoded (a
          :class:`~sklearn.preprocessing.OneHotEncoder` fitted once on every row of the file, a
          frozen preprocessing); empty cells and ``NA``, ``NaN``, ``null``, ``?`` are missing
          values, which are refused;
        - a NumPy ``.npz`` archive with arrays ``X`` and ``y`` (and optionally ``X_test`` and
          ``y_test``);
        - a NumPy ``.npy`` matrix: the target is its last column, or the ``labels`` file;
        - a folder with Fashion-MNIST / MNIST IDX files
          (``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``); the ``t10k`` files are the test
          set.
    target : str or int, default=None
        CSV: name (header) or index of the target column; ``.npy``: index of the target column.
        Negative indices count from the end; an index out of range is an error.
    labels : str or path-like, default=None
        ``.npy`` only: a separate ``.npy`` (or text) file with the labels.
    n_samples : int, default=None
        Keep a random subset of this many training samples (stratified).
    random_state : int, default=0
        Seed of the subset.

    Returns
    -------
    data : Bunch
        ``X``, ``y`` (training data, float64 features), ``X_test``, ``y_test`` (``None`` when
        the file has no test set), ``name`` (the file name), ``target_name`` (the target
        column's header name, ``"column <i>"``, or ``None`` for data with separate labels),
        ``feature_names`` (CSV only, else ``None``), ``encoded_columns`` (the one-hot encoded
        text columns, possibly empty) and ``encoder`` (the fitted
        :class:`~sklearn.preprocessing.OneHotEncoder`, or ``None``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be read as a classification data set: unknown format, no data rows,
        ragged rows, a target column out of range, missing values, or a target that is not
        class labels.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sklearn_ssse.datasets import load_data
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pets.csv"
    >>> _ = path.write_text("weight,kind,label\\n4.1,cat,0\\n30,dog,1\\n3.5,cat,0\\n")
    >>> data = load_data(path)
    >>> data.X.tolist(), data.y.tolist(), data.target_name, data.encoded_columns
    ([[4.1, 1.0, 0.0], [30.0, 0.0, 1.0], [3.5, 1.0, 0.0]], [0, 1, 0], 'label', ['kind'])
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    X_test = y_test = None
    extra = Bunch(target_name=None, feature_names=None, encoded_columns=[], encoder=None)
    suffix = path.suffix.lower()
    if path.is_dir():
        X, y = load_fashion_mnist(path, kind="train")
        try:
            X_test, y_test = load_fashion_mnist(path, kind="test")
        except FileNotFoundError:
            pass
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"X", "y"} <= keys:
                raise ValueError(f"{path} must hold arrays 'X' and 'y' (it holds {sorted(keys)})")
            X, y = z["X"], z["y"]
            if {"X_test", "y_test"} <= keys:
                X_test, y_test = z["X_test"], _as_labels(z["y_test"])
    elif suffix == ".npy":
        A = np.load(path, allow_pickle=False)
        if labels is not None:
            lab = Path(labels)
            y = np.load(lab, allow_pickle=False) if lab.suffix == ".npy" else np.loadtxt(
                lab, dtype=str)
            X = A
        else:
            if A.ndim != 2 or A.shape[1] < 2:
                raise ValueError(f"{path}: a 2-D array with the target as a column is needed "
                                 "(or pass labels=)")
            col = _column_index(target, A.shape[1], None, str(path))
            X, y = np.delete(A, col, axis=1), A[:, col]
            extra.target_name = f"column {col}"
    elif suffix in (".csv", ".tsv", ".txt"):
        extra = _read_csv(path, target)
        X, y = extra.pop("X"), extra.pop("y")
        extra.pop("target_index")
    else:
        raise ValueError(f"{path}: unknown format {suffix!r} (use .csv, .tsv, .txt, .npy, .npz "
                         "or a folder of IDX files)")
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    _check_finite(X, str(path))
    try:
        y = _as_labels(np.asarray(y).reshape(-1))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if len(X) == 0:
        raise ValueError(f"{path} holds no samples")
    if len(X) != len(y):
        raise ValueError(f"{path}: {len(X)} samples but {len(y)} labels")
    if X_test is not None:
        X_test = np.asarray(X_test, dtype=np.float64).reshape(len(X_test), -1)
        _check_finite(X_test, f"{path} (X_test)")
    if n_samples is not None and n_samples < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=n_samples, random_state=random_state,
                                      stratify=y if np.unique(y).size > 1 else None)
    return Bunch(X=X, y=y, X_test=X_test, y_test=y_test, name=path.name, **extra)
