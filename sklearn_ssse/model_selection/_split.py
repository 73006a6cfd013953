"""Cross-validation splitter for unlearning: the "test" fold is a forget set inside "train"."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.model_selection import BaseCrossValidator, ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils import check_random_state

__all__ = ["ForgetSplit"]


def _n_samples(X) -> int:
    """Number of samples of an array-like, a sparse matrix or a data frame."""
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(X)

_STRATEGIES = ("random", "stratified", "class")


def _count(size, total: int, name: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (Integral, Real)):
        raise TypeError(f"{name} must be an int or a float, got {size!r}.")
    if isinstance(size, Integral):
        if not 1 <= size <= total:
            raise ValueError(f"{name}={size} must be between 1 and {total}.")
        return int(size)
    if not 0 < size <= 1:
        raise ValueError(f"{name}={size} must be in (0, 1] as a fraction.")
    return max(1, int(np.ceil(size * total)))


class ForgetSplit(BaseCrossValidator):
    """Splits for tuning unlearning: train on everything, "test" = a forget set ``S`` inside it.

    Each split yields ``(train, test)`` where ``train`` holds every sample (or every sample but a
    held-out set, see ``holdout_size``) and ``test`` is the forget set ``S``, a subset of
    ``train``. With :class:`~sklearn.model_selection.GridSearchCV` the estimator is fitted on all
    the data and each scorer of :mod:`sklearn_ssse.metrics` then forgets ``S`` (on a copy) and
    compares the result with a model retrained on ``train \\ S``.

    Parameters
    ----------
    n_splits : int, default=5
        Number of forget sets drawn (independently; they may overlap across splits).
    forget_size : int or float, default=0.05
        Size of ``S``: a fraction of the samples (float) or a count (int). With
        ``strategy="class"`` a float is the share of the chosen class that is forgotten.
    strategy : {"random", "stratified", "class"}, default="random"
        ``"random"``: a uniform random subset. ``"stratified"``: class proportions of ``S``
        follow those of ``y`` (multi-output ``y``: of the label combinations).
        ``"class"``: the paper's single-class removal, every sample of ``S`` has the same class
        (``forget_class``, or one drawn at random per split, proportionally to class size);
        ROC AUC is undefined on such a set, so score it with ``metric="accuracy"`` or
        ``"log_loss"``. ``forget_size=1.0`` removes the whole class: the reference then has one
        class fewer (the parameter distance compares the remaining classes), and a binary
        problem is refused (a single class is left).
    forget_class : object, default=None
        Class to forget from with ``strategy="class"``; ``None`` draws one per split.
    holdout_size : int or float, default=None
        If given, each split also draws a held-out set ``H`` disjoint from ``S``, removes it from
        ``train`` and appends it to ``test`` (``test = S`` followed by ``H``). Scorers treat the
        test rows found in the training data as ``S`` and the others as held-out data (needed by
        the membership-inference scorer).
    class_column : int, default=0
        Column of a 2-D ``y`` that defines the classes for ``"class"`` (and ``forget_class``).
    random_state : int, RandomState instance or None, default=None
        Controls the draws; pass an int for reproducible splits.

    See Also
    --------
    epsilon_sweep : Scores a grid of epsilons on these splits from one fit.
    sklearn_ssse.metrics.make_unlearning_scorer : The scorers used with these
        splits.
    sklearn.model_selection.GridSearchCV : The search these splits plug into.

    Notes
    -----
    Random and single-class removal are the two deletion scenarios evaluated in
    SSSE [1]_.

    References
    ----------
    .. [1] A. Peste, D. Alistarh and C. H. Lampert, "SSSE: Efficiently Erasing Samples from
       Trained Machine Learning Models", 2021. https://arxiv.org/abs/2107.03860

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ssse.model_selection import ForgetSplit
    >>> X, y = np.zeros((20, 2)), np.repeat([0, 1], 10)
    >>> cv = ForgetSplit(n_splits=2, forget_size=0.2, strategy="stratified", random_state=0)
    >>> for train, test in cv.split(X, y):
    ...     print(len(train), y[test].tolist())
    20 [0, 0, 1, 1]
    20 [0, 0, 1, 1]
    >>> cv = ForgetSplit(n_splits=1, forget_size=0.5, strategy="class", forget_class=1,
    ...                  random_state=0)
    >>> train, test = next(cv.split(X, y))
    >>> len(test), set(y[test].tolist())
    (5, {1})
    """

    def __init__(self, n_splits: int = 5, *, forget_size: float | int = 0.05,
                 strategy: str = "random", forget_class=None,
                 holdout_size: float | int | None = None, class_column: int = 0,
                 random_state=None):
        self.n_splits = n_splits
        self.forget_size = forget_size
        self.strategy = strategy
        self.forget_class = forget_class
        self.holdout_size = holdout_size
        self.class_column = class_column
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of splits.

        Parameters
        ----------
        X, y, groups : object
            Ignored, for API compatibility.

        Returns
        -------
        n_splits : int
            The ``n_splits`` parameter.
        """
        return int(self.n_splits)

    def _iter_test_indices(self, X=None, y=None, groups=None):  # pragma: no cover - unused
        for _, test in self.split(X, y, groups):
            yield test

    def _check(self, n: int, y) -> None:
        if isinstance(self.n_splits, bool) or not isinstance(self.n_splits, Integral) \
                or self.n_splits < 1:
            raise ValueError(f"n_splits must be a positive int, got {self.n_splits!r}.")
        if self.strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}.")
        if self.strategy in ("stratified", "class") and y is None:
            raise ValueError(f"strategy={self.strategy!r} needs y.")
        if y is not None and _n_samples(y) != n:
            raise ValueError(f"X has {n} samples but y has {_n_samples(y)}.")

    def _class_labels(self, y) -> np.ndarray:
        y = np.asarray(y)
        return y[:, self.class_column] if y.ndim == 2 else y

    def split(self, X, y=None, groups=None):
        """Generate ``(train, test)`` index pairs: ``test`` (the forget set) lies inside ``train``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data (only its length is used).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Labels; required by the "stratified" and "class" strategies.
        groups : object
            Ignored.

        Raises
        ------
        ValueError
            If the data left without a forget set holds a single class (in any column of ``y``):
            no reference model could be retrained on it.

        Yields
        ------
        train : ndarray of int
            Indices of the samples the model is fitted on (sorted).
        test : ndarray of int
            The forget set ``S`` (sorted), followed by the held-out set if ``holdout_size``.
        """
        n = _n_samples(X)
        self._check(n, y)
        rng = check_random_state(self.random_state)
        everything = np.arange(n)
        for _ in range(self.n_splits):
            seed = rng.randint(np.iinfo(np.int32).max)
            forget = np.sort(self._draw_forget(n, y, seed))
            if self.holdout_size is None:
                self._check_remaining(y, forget)
                yield everything.copy(), forget
                continue
            rest = np.setdiff1d(everything, forget)
            m = _count(self.holdout_size, n, "holdout_size")
            if m > len(rest) - 1:
                raise ValueError(f"holdout_size={self.holdout_size} leaves no training sample "
                                 f"besides the forget set ({len(forget)} of {n}).")
            hold = np.sort(np.random.RandomState(seed + 1).choice(rest, size=m, replace=False))
            self._check_remaining(y, np.r_[forget, hold])
            yield np.setdiff1d(everything, hold), np.r_[forget, hold]

    @staticmethod
    def _check_remaining(y, removed: np.ndarray) -> None:
        """Refuse a split whose remaining data holds a single class: no reference can be
        retrained on it, and the scorers would fail on every candidate (a GridSearchCV with the
        default error_score turns that into NaN scores; an error here stops it at once)."""
        if y is None:
            return
        Y = np.asarray(y)
        Y = Y.reshape(len(Y), -1)
        keep = np.ones(len(Y), dtype=bool)
        keep[removed] = False
        for j in range(Y.shape[1]):
            if len(np.unique(Y[keep, j])) < 2:
                where = f" (column {j})" if Y.shape[1] > 1 else ""
                raise ValueError(
                    f"ForgetSplit: without the forget (and held-out) rows y holds a single "
                    f"class{where}, so no reference model can be retrained. Removing a whole "
                    "class needs at least 3 classes; for a binary problem use forget_size < 1.")

    def _draw_forget(self, n: int, y, seed: int) -> np.ndarray:
        if self.strategy == "random":
            k = _count(self.forget_size, n, "forget_size")
            if k >= n:
                raise ValueError("the forget set cannot hold every sample.")
            return next(ShuffleSplit(1, test_size=k, random_state=seed).split(np.empty(n)))[1]
        if self.strategy == "stratified":
            k = _count(self.forget_size, n, "forget_size")
            sss = StratifiedShuffleSplit(1, test_size=k, random_state=seed)
            return next(sss.split(np.empty(n), y))[1]
        labels = self._class_labels(y)
        classes, counts = np.unique(labels, return_counts=True)
        rs = np.random.RandomState(seed)
        if self.forget_class is None:
            c = classes[rs.choice(len(classes), p=counts / counts.sum())]
        else:
            if self.forget_class not in set(classes.tolist()):
                raise ValueError(f"forget_class={self.forget_class!r} is not a class of y "
                                 f"(classes: {classes.tolist()}).")
            c = self.forget_class
        members = np.flatnonzero(labels == c)
        k = _count(self.forget_size, len(members), "forget_size")
        if k >= n:
            raise ValueError("the forget set cannot hold every sample.")
        return rs.choice(members, size=k, replace=False)
