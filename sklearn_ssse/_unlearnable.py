"""The :class:`UnlearnableClassifier` meta-estimator."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.multioutput import MultiOutputClassifier
from sklearn.utils import check_random_state, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_memory, validate_data

from ._backends import select_backend
from ._curvature import build_operator

#: largest curvature block (parameters) that ``inverse="auto"`` inverts densely
AUTO_DENSE_MAX = 4096
#: rank (samples) of ``inverse="woodbury"`` when ``fisher_max_samples`` is not given
WOODBURY_DEFAULT_SAMPLES = 1024
#: damping of unpenalised parameters (intercepts), relative to the largest penalty of the model
AUTO_INTERCEPT_DAMPING = 1e-6


def _estimator_has(attr):
    """Check the fitted inner estimator if there is one, else the unfitted one."""

    def check(self):
        est = getattr(self, "estimator_", self.estimator)
        return hasattr(est, attr)

    return check


def _is_multi_output(estimator) -> bool:
    return isinstance(estimator, MultiOutputClassifier)


def _resolve_inverse(inverse: str, backend) -> str:
    if inverse != "auto":
        return inverse
    blocks = backend.blocks or [slice(0, backend.n_params)]
    if max(s.stop - s.start for s in blocks) <= AUTO_DENSE_MAX:
        return "dense"
    natural = backend.natural_blocks or blocks
    if max(s.stop - s.start for s in natural) <= AUTO_DENSE_MAX:
        return "block"
    return "woodbury"


def _floor_damping(damping: torch.Tensor, kind: str) -> torch.Tensor:
    """Give unpenalised parameters (intercepts) a damping.

    The data term alone can be singular on them (the softmax intercepts sum to a free constant),
    so they get ``AUTO_INTERCEPT_DAMPING`` times the largest damping of the model; the operators
    that start from ``diag(damping)^-1`` (woodbury, sherman_morrison) get the largest damping
    itself, which keeps their base well conditioned.
    """
    if not bool(torch.any(damping == 0)):
        return damping
    top = damping.max()
    if not bool(top > 0):
        if kind in ("woodbury", "sherman_morrison"):
            raise ValueError(f"inverse={kind!r} needs a positive damping; the model has no L2 "
                             "penalty, so pass damping=<float> > 0")
        return damping
    floor = top if kind in ("woodbury", "sherman_morrison") else top * AUTO_INTERCEPT_DAMPING
    return torch.where(damping > 0, damping, floor)


def _row_chunks(backend, X, y, idx, config, rng):
    """Yield scaled factor rows (r, d) for the curvature of the samples ``idx``.

    Mini-batch Fisher (``fisher_batch_size = b``): each row is ``sqrt(b)`` times the mean factor of
    ``b`` samples (the paper's averaged gradients, scaled so that the data term stays a per-sample
    average).  Sub-sampling (``m`` of ``n`` samples) scales the rows by ``sqrt(n / m)``.
    """
    b = config["fisher_batch_size"]
    idx = np.asarray(idx)
    if b > 1:
        idx = rng.permutation(idx)
    step = max(b, config["chunk_size"] // b * b)
    for start in range(0, len(idx), step):
        part = idx[start: start + step]
        R = backend.curvature_rows(X[part], y[part], config["curvature"])  # (c, q, d)
        if b > 1:
            c = R.shape[0]
            sizes = torch.full((math.ceil(c / b),), b, dtype=R.dtype, device=R.device)
            if c % b:
                sizes[-1] = c % b
            group = torch.repeat_interleave(torch.arange(len(sizes), device=R.device),
                                            sizes.long())
            sums = torch.zeros((len(sizes),) + R.shape[1:], dtype=R.dtype, device=R.device)
            sums.index_add_(0, group, R)
            R = sums / sizes.sqrt()[:, None, None]  # sqrt(b) * mean = sum / sqrt(b)
        yield R.reshape(-1, R.shape[-1])


def _fit_and_build(estimator, X, y, fit_params, config):
    """Fit a clone of ``estimator`` and build its inverse curvature (cached by ``memory=``).

    Everything here is independent of ``epsilon``, so a grid over epsilon reuses one result.
    """
    backend_cls = select_backend(estimator)
    est = clone(estimator).fit(X, y, **fit_params)
    backend = backend_cls(est, parameters=config["parameters"], dtype=config["dtype"])
    fit_idx = np.asarray(backend.fit_indices(X, y)) if hasattr(backend, "fit_indices") \
        else np.arange(len(X))
    n = len(fit_idx)
    d = backend.n_params
    if config["damping"] == "auto":
        damping = backend.default_damping(n).to(dtype=backend.dtype, device=backend.device)
    else:
        damping = torch.full((d,), float(config["damping"]), dtype=backend.dtype,
                             device=backend.device)
    kind = _resolve_inverse(config["inverse"], backend)
    damping = _floor_damping(damping, kind)
    rng = check_random_state(config["random_state"])
    sample = fit_idx
    max_samples = config["fisher_max_samples"]
    if max_samples is None and kind == "woodbury":
        max_samples = WOODBURY_DEFAULT_SAMPLES
    if max_samples is not None and max_samples < n:
        sample = np.sort(rng.choice(fit_idx, size=max_samples, replace=False))
    scale = math.sqrt(n / len(sample))
    chunks = (R * scale if scale != 1.0 else R
              for R in _row_chunks(backend, X, y, sample, config, rng))
    blocks = backend.blocks
    if kind == "block" and config["block_size"] is None:
        blocks = backend.natural_blocks or blocks  # e.g. one block per layer / class
    op = build_operator(kind, chunks, n, damping, blocks=blocks,
                        block_size=config["block_size"] if kind == "block" else None)
    return {"estimator": est, "curvature": op, "damping": damping, "n": n, "inverse": kind}


class UnlearnableClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier that can forget training samples without retraining (SSSE).

    Wraps a probabilistic classifier. ``fit`` trains a clone of it and caches the inverse of a
    damped curvature matrix ``F`` of its loss at the trained parameters ``theta*``.
    :meth:`forget` then erases a set ``S`` of ``k`` training samples with one preconditioned step,
    single-step sample erasure (SSSE)::

        theta <- theta + epsilon / (n - k) * F^{-1} * sum_{i in S} grad(-log p(y_i | x_i; theta))

    which approximates the model retrained from scratch on the ``n - k`` remaining samples.
    With ``curvature="ggn"`` and ``epsilon=1`` the step is the Newton / influence-function step.

    Parameters
    ----------
    estimator : estimator object
        The classifier to wrap (cloned at fit): :class:`~sklearn.linear_model.LogisticRegression`
        (binary or multinomial), :class:`~sklearn.linear_model.SGDClassifier` with
        ``loss="log_loss"``, a :class:`~sklearn.multioutput.MultiOutputClassifier` of those, or a
        skorch ``NeuralNetClassifier``.
    epsilon : float, default=1.0
        Step size of the erasure step (``>= 0``; 0 changes nothing). Tune it with
        :class:`~sklearn.model_selection.GridSearchCV` and the scorers of
        :mod:`sklearn_ssse.metrics`.
    curvature : {"empirical_fisher", "ggn"}, default="empirical_fisher"
        ``"empirical_fisher"``: ``(1/n) sum_i g_i g_i^T`` from per-sample gradients (the paper).
        ``"ggn"``: the generalized Gauss-Newton matrix (true Fisher); for linear models it is the
        exact Hessian of the training objective.
    damping : "auto" or float, default="auto"
        ``lambda`` in ``F = (1/n) sum_i g_i g_i^T + lambda I``. ``"auto"`` takes the wrapped
        model's own L2 penalty so that ``F`` matches its objective (``1 / (C n)`` on the weights
        of ``LogisticRegression``, ``alpha`` for ``SGDClassifier``, ``weight_decay`` for nets).
        Unpenalised intercepts get ``1e-6`` times that (the softmax intercepts have a free
        direction), or all of it for the woodbury and Sherman-Morrison inverses, which start from
        ``diag(damping)^-1``. The vector used is ``damping_``.
    inverse : {"auto", "dense", "block", "woodbury", "sherman_morrison"}, default="auto"
        How ``F^{-1}`` is held: ``"dense"`` Cholesky factor; ``"block"`` block-diagonal
        (``block_size`` parameters per block, or one block per class / layer);
        ``"woodbury"`` exact inverse of a low-rank-plus-damping ``F`` built from
        ``fisher_max_samples`` samples (default 1024), memory ``O(m d)``;
        ``"sherman_morrison"`` the paper's rank-1 recursion (reference, slow). ``"auto"`` picks
        dense when every independent block has at most 4096 parameters, else block, else woodbury.
    block_size : int, default=None
        Parameters per block for ``inverse="block"``; ``None`` uses the model's natural blocks.
    fisher_batch_size : int, default=1
        Each curvature term is ``b`` times the outer product of the mean factor of ``b`` samples
        (the paper's mini-batch Fisher); 1 uses per-sample terms.
    fisher_max_samples : int, default=None
        Build the curvature from a random subset of this many training samples (rescaled).
    update_curvature : bool, default=False
        After each forget, remove the erased samples' terms from the curvature (Woodbury
        downdate) so later deletions use the leave-k-out curvature.
    parameters : list of str, default=None
        Torch backend only: name patterns (fnmatch) of the parameters to update; ``None`` = all.
    dtype : {"float32", "float64"}, default=None
        Torch backend only: precision of gradients and curvature (float32 by default there).
    chunk_size : int, default=512
        Samples per chunk when computing gradients / curvature factors (bounds memory).
    keep_training_data : bool, default=False
        Store the training data (``X_fit_``, ``y_fit_``) so that scorers can retrain a reference
        model on the remaining data and forgotten rows can be tracked in ``fit_mask_``.
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted model and its curvature, keyed on everything but ``epsilon``, so that a
        grid over ``epsilon`` costs one fit per split.
    random_state : int, RandomState instance or None, default=None
        Sub-sampling and mini-batch grouping of the curvature.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone, updated in place by :meth:`forget`.
    curvature_ : CurvatureOperator
        The cached inverse curvature (``curvature_.solve(v) = F^{-1} v``).
    inverse_ : str
        The resolved ``inverse`` choice.
    damping_ : torch.Tensor
        Mean-form damping vector used at fit.
    n_samples_fit_ : int
        Samples the model was trained on.
    n_samples_ : int
        Samples still in the model (decremented by every forget).
    theta_fit_ : torch.Tensor
        Parameters right after fit.
    erasure_log_ : list of dict
        One entry per :meth:`forget` call: ``time``, ``n_removed``, ``epsilon``,
        ``n_remaining``, ``update_norm``, ``seconds``.
    classes_ : ndarray or list of ndarray
        Class labels (a list for multi-output models).
    n_features_in_ : int
        Number of features seen during fit.
    X_fit_, y_fit_ : ndarray
        Training data (only with ``keep_training_data=True``).
    fit_mask_ : ndarray of bool
        Rows of ``X_fit_`` still in the model (only with ``keep_training_data=True``).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_ssse import UnlearnableClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), curvature="ggn").fit(X, y)
    >>> clf.forget(X[:5], y[:5]).n_samples_
    145
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "curvature": [StrOptions({"empirical_fisher", "ggn"})],
        "damping": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "inverse": [StrOptions({"auto", "dense", "block", "woodbury", "sherman_morrison"})],
        "block_size": [Interval(Integral, 1, None, closed="left"), None],
        "fisher_batch_size": [Interval(Integral, 1, None, closed="left")],
        "fisher_max_samples": [Interval(Integral, 1, None, closed="left"), None],
        "update_curvature": ["boolean"],
        "parameters": [list, tuple, str, None],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "keep_training_data": ["boolean"],
        "memory": [None, str, HasMethods(["cache"])],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, epsilon=1.0, curvature="empirical_fisher", damping="auto",
                 inverse="auto", block_size=None, fisher_batch_size=1, fisher_max_samples=None,
                 update_curvature=False, parameters=None, dtype=None, chunk_size=512,
                 keep_training_data=False, memory=None, random_state=None):
        self.estimator = estimator
        self.epsilon = epsilon
        self.curvature = curvature
        self.damping = damping
        self.inverse = inverse
        self.block_size = block_size
        self.fisher_batch_size = fisher_batch_size
        self.fisher_max_samples = fisher_max_samples
        self.update_curvature = update_curvature
        self.parameters = parameters
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.keep_training_data = keep_training_data
        self.memory = memory
        self.random_state = random_state

    # ------------------------------------------------------------------------------ sklearn API
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.target_tags.single_output = inner.target_tags.single_output
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = inner.non_deterministic
        return tags

    def _backend_class(self):
        return select_backend(self.estimator)

    def _validate_Xy(self, X, y, reset: bool):
        dtype = select_backend(self.estimator).input_dtype
        multi = _is_multi_output(self.estimator)
        X, y = validate_data(self, X, y, reset=reset, multi_output=multi, dtype=dtype,
                             y_numeric=False)
        if multi and y.ndim == 1:
            raise ValueError(f"{type(self.estimator).__name__} needs a 2-D y (n_samples, "
                             "n_outputs)")
        return X, y

    def _config(self) -> dict:
        """Everything the fit and the curvature depend on (not epsilon)."""
        return {k: getattr(self, k) for k in (
            "curvature", "damping", "inverse", "block_size", "fisher_batch_size",
            "fisher_max_samples", "parameters", "dtype", "chunk_size", "random_state")}

    def fit(self, X, y, **fit_params):
        """Fit the wrapped classifier and cache its inverse curvature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        **fit_params : dict
            Passed to the wrapped estimator's ``fit``. ``sample_weight`` is not supported (the
            curvature and the erasure step assume unweighted samples).

        Returns
        -------
        self : UnlearnableClassifier
            The fitted meta-estimator.
        """
        self._validate_params()
        if not math.isfinite(self.epsilon):
            raise ValueError(f"epsilon must be finite, got {self.epsilon}")
        backend_cls = self._backend_class()
        if "sample_weight" in fit_params:
            raise TypeError("sample_weight is not supported: SSSE's curvature and step "
                                      "assume unweighted samples")
        X, y = self._validate_Xy(X, y, reset=True)
        check_classification_targets(y)
        fit = _fit_and_build
        if self.memory is not None:
            fit = check_memory(self.memory).cache(_fit_and_build)
        state = fit(self.estimator, X, y, fit_params, self._config())
        self.estimator_ = state["estimator"]
        self.backend_ = backend_cls(self.estimator_, parameters=self.parameters, dtype=self.dtype)
        self.curvature_ = state["curvature"]
        self.damping_ = state["damping"]
        self.inverse_ = state["inverse"]
        self.n_samples_fit_ = self.n_samples_ = int(state["n"])
        self.theta_fit_ = self.backend_.get_parameters()
        self._theta = self.theta_fit_.clone()
        self.erasure_log_ = []
        if hasattr(self.estimator_, "classes_"):
            self.classes_ = self.estimator_.classes_
        if self.keep_training_data:
            self.X_fit_, self.y_fit_ = X, y
            self.fit_mask_ = np.ones(len(X), dtype=bool)
        return self

    # ------------------------------------------------------------------------------ unlearning
    def _check_forget_input(self, X, y):
        check_is_fitted(self)
        X, y = self._validate_Xy(X, y, reset=False)
        k = X.shape[0]
        if k == 0:
            raise ValueError("the forget set is empty")
        classes = self.classes_ if isinstance(self.classes_, list) else [self.classes_]
        cols = y.reshape(k, -1).T
        if len(cols) != len(classes):
            raise ValueError(f"y has {len(cols)} outputs, the model was fitted with {len(classes)}")
        for j, (col, cls) in enumerate(zip(cols, classes)):
            unseen = np.setdiff1d(col, cls)
            if unseen.size:
                where = f" (output {j})" if len(classes) > 1 else ""
                raise ValueError(f"y contains labels never seen at fit{where}: {unseen.tolist()}")
        if k >= self.n_samples_:
            raise ValueError(f"cannot forget {k} samples: only {self.n_samples_} remain in the "
                             "model (forgetting all of them leaves nothing to approximate)")
        if not torch.equal(self.backend_.get_parameters(), self._theta):
            raise RuntimeError("the wrapped estimator's parameters changed outside forget() (was "
                               "it refitted?); the cached curvature no longer matches: call fit "
                               "again")
        return X, y

    def _check_epsilon(self, epsilon) -> float:
        eps = self.epsilon if epsilon is None else epsilon
        if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"epsilon must be a finite number >= 0, got {eps!r}")
        return float(eps)

    def _direction(self, X, y):
        k = X.shape[0]
        g = self.backend_.per_sample_gradients(X, y).sum(0)
        g = g.to(dtype=self.curvature_.dtype, device=self.curvature_.device)
        return self.curvature_.solve(g) / (self.n_samples_ - k)

    def forget_direction(self, X, y) -> torch.Tensor:
        """The erasure direction ``delta = F^{-1} sum_S g_i / (n - k)`` (no mutation).

        ``forget(X, y, epsilon)`` moves the parameters to ``theta + epsilon * delta``, so every
        epsilon can be evaluated in closed form from one direction.

        Parameters
        ----------
        X : array-like of shape (k, n_features)
            Samples to forget.
        y : array-like of shape (k,) or (k, n_outputs)
            Their labels.

        Returns
        -------
        delta : torch.Tensor of shape (n_params,)
            The direction, on the backend's device.
        """
        X, y = self._check_forget_input(X, y)
        return self._direction(X, y)

    def forget(self, X, y, epsilon=None):
        """Erase training samples with one SSSE step.

        The wrapped model's parameters are updated in place, ``n_samples_`` is decremented by
        ``k`` and, with ``update_curvature=True``, the erased samples' terms are removed from the
        curvature. The call is atomic: on any error nothing is changed.

        Parameters
        ----------
        X : array-like of shape (k, n_features)
            Samples to forget (rows of the training data).
        y : array-like of shape (k,) or (k, n_outputs)
            Their labels.
        epsilon : float, default=None
            Step size; ``None`` uses the ``epsilon`` parameter.

        Returns
        -------
        self : UnlearnableClassifier
            The updated model.

        Raises
        ------
        ValueError
            Bad input: wrong shape, NaN, unseen label, empty set, ``k >= n_samples_``, bad epsilon.
        RuntimeError
            The wrapped model was changed outside :meth:`forget`.
        FloatingPointError
            The update is not finite (nothing is applied).
        """
        start = time.perf_counter()
        X, y = self._check_forget_input(X, y)
        eps = self._check_epsilon(epsilon)
        k = X.shape[0]
        rows_kept = None
        if self.keep_training_data:
            from ._rows import locate_rows

            rows_kept = locate_rows(self.X_fit_, self.y_fit_, X, y, active_mask=self.fit_mask_)
        step = eps * self._direction(X, y)
        theta = self._theta + step.to(self._theta)
        if not bool(torch.isfinite(theta).all()):
            raise FloatingPointError("the erasure step is not finite; nothing was changed")
        curvature = self.curvature_
        if self.update_curvature:
            rows = self.backend_.curvature_rows(X, y, self.curvature)
            curvature = curvature.downdate(rows.reshape(-1, rows.shape[-1]), k)
        # commit: nothing above touched the model
        try:
            self.backend_.set_parameters(theta)
        except BaseException:
            self.backend_.set_parameters(self._theta)
            raise
        self._theta = theta
        self.curvature_ = curvature
        self.n_samples_ -= k
        if rows_kept is not None:
            self.fit_mask_ = self.fit_mask_.copy()
            self.fit_mask_[rows_kept] = False
        self.erasure_log_.append({
            "time": datetime.now(timezone.utc).isoformat(),
            "n_removed": k,
            "epsilon": eps,
            "n_remaining": self.n_samples_,
            "update_norm": float(torch.linalg.vector_norm(step)),
            "seconds": time.perf_counter() - start,
        })
        return self

    # ------------------------------------------------------------------------------ parameters
    def get_parameters(self) -> np.ndarray:
        """The current parameters as one flat float vector (a copy).

        Returns
        -------
        theta : ndarray of shape (n_params,)
            Parameters in the backend's layout.
        """
        check_is_fitted(self)
        return self.backend_.get_parameters().detach().cpu().numpy().copy()

    def with_parameters(self, theta):
        """A predicting copy of the fitted estimator carrying ``theta``.

        Parameters
        ----------
        theta : array-like or torch.Tensor of shape (n_params,)
            Parameters in the layout of :meth:`get_parameters`.

        Returns
        -------
        estimator : estimator
            A copy of ``estimator_``; ``self`` is not modified.
        """
        check_is_fitted(self)
        return self.backend_.with_parameters(self.backend_.to_tensor(theta))

    # ------------------------------------------------------------------------------ delegation
    def _X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=select_backend(self.estimator).input_dtype)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the (possibly unlearned) wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray
            Predicted labels.
        """
        X = self._X(X)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray or list of ndarray
            As returned by the wrapped estimator.
        """
        X = self._X(X)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities of the wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray or list of ndarray
            As returned by the wrapped estimator.
        """
        X = self._X(X)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray
            As returned by the wrapped estimator.
        """
        X = self._X(X)
        return self.estimator_.decision_function(X)

    @available_if(_estimator_has("score"))
    def score(self, X, y, sample_weight=None):
        """Score of the wrapped estimator (mean accuracy for classifiers).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            The wrapped estimator's score.
        """
        X = self._X(X)
        return self.estimator_.score(X, y, sample_weight=sample_weight)
