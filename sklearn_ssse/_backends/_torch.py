"""Backend for skorch :class:`~skorch.NeuralNetClassifier` (PyTorch modules).

Per-sample gradients of ``-log p(y|x)`` come from :mod:`torch.func` (``functional_call`` +
``vmap(grad)``), computed chunk by chunk in eval mode (no dropout noise, batch-norm running
statistics) on the net's device.  The curvature operators themselves are the shared ones of
:mod:`sklearn_ssse._curvature`.

Loss convention
---------------
The backend reproduces the loss skorch's :meth:`~skorch.NeuralNetClassifier.get_loss` trains
with:

* ``criterion=torch.nn.NLLLoss`` (skorch's default): the module outputs *probabilities*
  (e.g. ends with a softmax) and ``log p = log(output + eps)`` with
  ``eps = torch.finfo(output.dtype).eps``, exactly as skorch does;
* ``criterion=torch.nn.CrossEntropyLoss``: the module outputs *logits* and
  ``log p = log_softmax(output)``.

Any other criterion (``MSELoss``, ``BCELoss``, label smoothing, class weights, a ``reduction``
other than ``"mean"``) is not the mean negative log-likelihood SSSE is derived for and is refused
by :meth:`TorchBackend.check_estimator`.  A module returning a tuple contributes its first output,
as in skorch.

Parameters
----------
By default every trainable parameter (``requires_grad=True``) of the module enters ``theta``, in
the order of ``module.named_parameters()``.  ``parameters=["fc2.*"]`` restricts ``theta`` to the
tensors whose names match any of the :mod:`fnmatch` patterns (names as in the *uncompiled* module,
without a ``_orig_mod.`` prefix); the others are frozen constants.  Nets compiled with
``compile=True`` (or whose ``module_`` is a ``torch.compile`` wrapper) are handled through the
original module (``_orig_mod``), which shares its parameters with the compiled one.

Internal validation split
-------------------------
skorch's ``NeuralNetClassifier`` holds out 20% of ``fit``'s data by default
(``train_split=ValidSplit(5, stratified=True)``).  The curvature must be built on the rows the net
actually trained on, so :meth:`TorchBackend.fit_indices` recomputes the split: ``ValidSplit`` with
an integer ``cv`` (unshuffled k-fold, the default) or with a float ``cv`` and an *integer*
``random_state`` is deterministic; a float ``cv`` without a fixed seed (or any split that gives a
different answer on each call) cannot be reproduced and is refused.  Rows in the internal
validation set were never trained on; there is nothing to erase for them.  Recommended: pass
``train_split=None`` and do validation outside the net.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import fnmatch
import functools
import numbers
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.func import functional_call, grad, jacrev, vmap

from ._base import BaseBackend, draw_labels

try:  # skorch is a dependency, but keep the module importable without it
    from skorch import NeuralNetClassifier
    from skorch.dataset import ValidSplit
    from skorch.helper import _make_split
except ImportError:  # pragma: no cover - exercised only without skorch
    NeuralNetClassifier = None
    ValidSplit = None
    _make_split = None

__all__ = ["TorchBackend"]

_LIKELIHOOD_CRITERIA = (torch.nn.NLLLoss, torch.nn.CrossEntropyLoss)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: dtypes without Cholesky / inverse kernels: the curvature is built in float32 instead
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The original module behind ``torch.compile`` (and ``DataParallel``) wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, (torch.nn.DataParallel,
                                 torch.nn.parallel.DistributedDataParallel)):
            module = module.module
        else:
            return module


def _criterion_class(criterion) -> type | None:
    if isinstance(criterion, type):
        return criterion
    if isinstance(criterion, functools.partial):
        return _criterion_class(criterion.func)
    orig = getattr(criterion, "_orig_mod", None)  # compiled criterion instance
    return type(orig if orig is not None else criterion)


def _is_seed(random_state) -> bool:
    return isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)


def _split_problem(train_split) -> str | None:
    """Why ``train_split`` cannot be reproduced after fit, or ``None`` if it can (or may)."""
    if not train_split or ValidSplit is None or not isinstance(train_split, ValidSplit):
        return None
    cv = train_split.cv
    if train_split._is_float(cv):
        if not _is_seed(train_split.random_state):
            return (f"train_split=ValidSplit(cv={cv!r}, random_state="
                    f"{train_split.random_state!r}) draws a random validation set that cannot be "
                    "reproduced after fit")
        return None
    if hasattr(cv, "split"):
        shuffles = getattr(cv, "shuffle", None)
        random = shuffles if shuffles is not None else hasattr(cv, "random_state")
        if random and not _is_seed(getattr(cv, "random_state", None)):
            return (f"train_split=ValidSplit(cv={cv!r}) shuffles without a fixed integer "
                    "random_state, so the rows the net trained on cannot be reproduced")
    elif cv is not None and not isinstance(cv, numbers.Integral):
        if iter(cv) is cv:
            return ("train_split=ValidSplit(cv=<iterator>) is consumed by fit and cannot be "
                    "replayed")
    return None


_SPLIT_ADVICE = ("The curvature must be built on exactly the rows the net trained on. Pass "
                 "train_split=None (recommended; validate outside the net), or a ValidSplit with "
                 "an integer cv or an integer random_state.")


class TorchBackend(BaseBackend):
    """SSSE backend for a fitted skorch :class:`~skorch.NeuralNetClassifier`.

    Parameters
    ----------
    estimator : skorch.NeuralNetClassifier
        The *fitted* net. Parameters are read from and written into ``estimator.module_`` in place
        (``p.copy_``), so the optimizer's references stay valid.
    parameters : None or list of str, default=None
        Which module parameters form ``theta``. ``None``: every parameter with
        ``requires_grad=True``. A list of :func:`fnmatch.fnmatch` patterns (e.g. ``["fc2.*"]``,
        ``["*.bias"]``) matched against ``module.named_parameters()`` names (of the uncompiled
        module); unmatched parameters are held fixed.
    dtype : None, "float32", "float64" or torch.dtype, default=None
        Precision of gradients, curvature and parameter vectors. ``None``: the module's parameter
        dtype (float32 for a default net). ``"float64"`` evaluates the network in double
        precision (on copies of the parameters) for more accurate curvature. Half precision
        (``float16``/``bfloat16`` parameters, or requested) is raised to ``float32``: the
        curvature's factorisations have no half-precision kernels.
    chunk_size : int or None, default=None
        Factor rows per vectorised evaluation: ``chunk_size`` samples for the empirical Fisher,
        ``chunk_size // n_classes`` samples (``n_classes`` rows each) for ``"ggn"``. Bounds the
        working memory at about ``2 * chunk_size * n_params`` numbers plus the activations.
        ``None``: 256. :class:`~sklearn_ssse.UnlearnableClassifier` passes its own
        ``chunk_size``.

    Attributes
    ----------
    param_names_ : list of str
        Names of the parameter tensors in ``theta``, in order.
    param_shapes_ : list of tuple of int
        Their shapes.
    n_classes_ : int
        Number of classes of the fitted net.

    Notes
    -----
    Damping (:meth:`default_damping`): torch's ``weight_decay=wd`` adds ``wd * theta`` to the
    gradient of the mean loss, i.e. the objective is ``mean loss + wd/2 ||theta||^2`` and its
    Hessian is ``mean H + wd I``: the mean-form damping is ``wd``, read per parameter from the
    fitted optimizer's ``param_groups`` (so ``optimizer__weight_decay`` and per-group values are
    honoured). Parameters without weight decay get :attr:`DEFAULT_DAMPING` (``1e-4``) so that the
    curvature stays invertible. For decoupled decay (``AdamW``) the same value is used as an
    approximation.

    Inputs: :class:`~sklearn_ssse.UnlearnableClassifier` validates ``X`` to float32
    (:attr:`input_dtype`, what skorch modules usually expect); the backend casts floating inputs
    to :attr:`dtype` for its own evaluations. Labels are the net's class indices (int64).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn_ssse._backends._torch import TorchBackend
    >>> X = np.random.RandomState(0).randn(40, 3).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(np.int64)
    >>> net = NeuralNetClassifier(torch.nn.Linear, module__in_features=3, module__out_features=2,
    ...                           criterion=torch.nn.CrossEntropyLoss, train_split=None,
    ...                           max_epochs=2, verbose=0).fit(X, y)
    >>> backend = TorchBackend(net, parameters=["bias"])
    >>> backend.param_names_, backend.n_params
    (['bias'], 2)
    >>> tuple(backend.per_sample_gradients(X, y).shape)
    (40, 2)
    """

    input_dtype = np.float32
    #: a net's parameters are no measure of forgetting (two retrains with different seeds are
    #: as far apart as the original), and the similarity ratio keeps improving as a net is
    #: wrecked: epsilon is selected on predictions, on the forget set *and* on kept rows
    default_scoring = ("forget_retain", "similarity_ratio")
    #: mean-form damping for parameters the optimizer does not decay
    DEFAULT_DAMPING: float = 1e-4

    @classmethod
    def evaluation_scoring(cls, mode: str) -> str:
        """:func:`~sklearn_ssse.model_selection.evaluate_forgetting` selects a net's epsilon
        by its default scorer (``forget_retain``) for random and class removal alike: the
        parameter distance is no measure for a net, and the confusion distance on ``S`` alone
        rewards the step that wrecks the net."""
        return cls.default_scoring[0]

    @classmethod
    def evaluation_epsilons(cls, mode: str) -> np.ndarray:
        """A net's default grid for :func:`~sklearn_ssse.model_selection.evaluate_forgetting`,
        random and class removal alike: 0 and six values per decade from 0.01 to 10.  The
        block-diagonal and Kronecker curvatures of a net underestimate its curvature along the
        step (they drop the cross-layer terms), so the useful epsilons lie around 0.01-0.5 and
        the score peaks sharply there (``benchmarks/bench_net_tuning.py``); the linear models'
        grid (0.5, 1, 2, 5, ...) starts above that range."""
        return np.r_[0.0, np.logspace(-2, 1, 19)]

    def __init__(self, estimator, *, parameters: Sequence[str] | None = None,
                 dtype: str | torch.dtype | None = None, chunk_size: int | None = None):
        super().__init__(estimator)
        if isinstance(parameters, str):
            parameters = [parameters]
        self.parameters = None if parameters is None else list(parameters)
        self.chunk_size = 256 if chunk_size is None else int(chunk_size)
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        module = self._module
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if self.parameters is None:
            selected = trainable
        else:
            selected = [(n, p) for n, p in trainable
                        if any(fnmatch.fnmatchcase(n, pat) for pat in self.parameters)]
            if not selected:
                names = [n for n, _ in trainable]
                raise ValueError(f"parameters={self.parameters!r} matches no trainable parameter "
                                 f"of the module; available: {names}")
        if not selected:
            raise ValueError("the module has no trainable parameters")
        self.param_names_ = [n for n, _ in selected]
        self.param_shapes_ = [tuple(p.shape) for _, p in selected]
        sizes = [p.numel() for _, p in selected]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self._slices = [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
        if dtype is None:
            self.dtype = selected[0][1].dtype
        elif isinstance(dtype, torch.dtype):
            self.dtype = dtype
        elif dtype in _DTYPES:
            self.dtype = _DTYPES[dtype]
        else:
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {self.dtype}")
        if self.dtype in _HALF_DTYPES:
            self.dtype = torch.float32
        self.n_classes_ = len(estimator.classes_)
        self._nll = issubclass(_criterion_class(estimator.criterion), torch.nn.NLLLoss)

    # ------------------------------------------------------------------ model family
    @classmethod
    def supports(cls, estimator) -> bool:
        """True for skorch :class:`~skorch.NeuralNetClassifier` instances (and subclasses)."""
        return NeuralNetClassifier is not None and isinstance(estimator, NeuralNetClassifier)

    @classmethod
    def check_estimator(cls, estimator) -> None:
        """Refuse nets SSSE cannot unlearn, before they are fitted.

        Raises
        ------
        ValueError
            If the criterion is not the mean categorical negative log-likelihood (``NLLLoss`` on
            probabilities or ``CrossEntropyLoss`` on logits, without class weights or label
            smoothing, ``reduction="mean"``), or if ``train_split`` is a random split that cannot
            be reproduced after fit.
        """
        criterion = estimator.criterion
        crit_cls = _criterion_class(criterion)
        if crit_cls is None or not issubclass(crit_cls, _LIKELIHOOD_CRITERIA):
            raise ValueError(
                f"criterion {getattr(crit_cls, '__name__', crit_cls)!r} is not a categorical "
                "log-likelihood: SSSE erases samples through gradients of l = -log p(y|x). Use "
                "criterion=torch.nn.NLLLoss (module outputs probabilities, skorch's default) or "
                "torch.nn.CrossEntropyLoss (module outputs logits).")
        kwargs = {}
        if not isinstance(criterion, type) and not isinstance(criterion, functools.partial):
            inst = getattr(criterion, "_orig_mod", criterion)
            kwargs = {"weight": getattr(inst, "weight", None),
                      "reduction": getattr(inst, "reduction", "mean"),
                      "label_smoothing": getattr(inst, "label_smoothing", 0.0)}
        kwargs.update(estimator.get_params_for("criterion")
                      if hasattr(estimator, "get_params_for") else {})
        if kwargs.get("weight", None) is not None:
            raise ValueError("criterion with class weights is a weighted likelihood; SSSE assumes "
                             "the unweighted mean negative log-likelihood (drop criterion__weight)")
        if kwargs.get("label_smoothing", 0.0):
            raise ValueError("criterion with label_smoothing > 0 is not -log p(y|x); SSSE needs "
                             "label_smoothing=0")
        if kwargs.get("reduction", "mean") != "mean":
            raise ValueError(f"criterion reduction={kwargs['reduction']!r} is not supported; use "
                             "the default reduction='mean' (with optimizer weight_decay)")
        problem = _split_problem(getattr(estimator, "train_split", None))
        if problem is not None:
            raise ValueError(f"{problem}. {_SPLIT_ADVICE}")

    def reference_estimator(self, template):
        """``template`` with ``classes=`` set to the fitted net's classes when it has none.

        A net built without ``classes=`` names its classes after the labels it was fitted on,
        while its module keeps one output per class of the original problem: retrained without
        a whole class it would report 9 classes for 10 probability columns (and ``predict``
        would map output columns to the wrong labels). Fixing ``classes=`` keeps the output
        layout of the original net; it changes nothing in training (skorch uses ``y`` as
        class indices either way).
        """
        params = template.get_params(deep=False)
        if "classes" in params and params["classes"] is None:
            template = template.set_params(classes=np.asarray(self.estimator.classes_).copy())
        return template

    def fit_indices(self, X, y) -> np.ndarray:
        """Indices of the rows of ``(X, y)`` the net trained on (outside its validation split).

        Parameters
        ----------
        X, y : array-like
            The data passed to ``fit``.

        Returns
        -------
        ndarray of int
            ``arange(n)`` when ``train_split`` is falsy or a ``predefined_split``; otherwise the
            training indices of the (recomputed, deterministic) internal split.

        Raises
        ------
        ValueError
            If the split is random and cannot be reproduced.
        """
        net = self.estimator
        n = len(y) if y is not None else len(X)
        ts = getattr(net, "train_split", None)
        if not ts:
            return np.arange(n)
        if isinstance(ts, functools.partial) and ts.func is _make_split:
            return np.arange(n)  # predefined_split: all of X is training data
        problem = _split_problem(ts)
        if problem is not None:
            raise ValueError(f"{problem}. {_SPLIT_ADVICE}")

        def indices():
            train, _ = net.get_split_datasets(X, y)
            if not isinstance(train, torch.utils.data.Subset):
                if len(train) == n:
                    return np.arange(n)
                raise ValueError(f"train_split={ts!r} returns a {type(train).__name__}, not a "
                                 "Subset of the data; the rows the net trained on are unknown. "
                                 + _SPLIT_ADVICE)
            return np.asarray(train.indices, dtype=np.int64)

        first = indices()
        if not isinstance(ts, ValidSplit) and not np.array_equal(first, indices()):
            raise ValueError(f"train_split={ts!r} is not deterministic (two calls give different "
                             "training rows). " + _SPLIT_ADVICE)
        return np.sort(first)

    # ------------------------------------------------------------------ parameters
    @property
    def _module(self) -> torch.nn.Module:
        return _unwrap(self.estimator.module_)

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        """Device of the module's (first selected) parameter: follows the net after loading."""
        return self._named_selected()[0][1].device

    def _named_selected(self) -> list[tuple[str, torch.nn.Parameter]]:
        params = dict(self._module.named_parameters())
        try:
            return [(n, params[n]) for n in self.param_names_]
        except KeyError as exc:  # pragma: no cover - module replaced by another architecture
            raise RuntimeError(f"the net's module no longer has parameter {exc}") from None

    @property
    def n_params(self) -> int:
        return self._slices[-1].stop

    @property
    def natural_blocks(self) -> list[slice]:
        """One slice per parameter tensor (``inverse="block"`` is per tensor by default)."""
        return list(self._slices)

    def get_parameters(self) -> torch.Tensor:
        """A copy of the selected parameters as one flat vector.

        Returns
        -------
        theta : torch.Tensor of shape (n_params,)
            In :attr:`dtype`, on the net's device, tensors in :attr:`param_names_` order.
        """
        return torch.cat([p.detach().reshape(-1).to(self.dtype)
                          for _, p in self._named_selected()])

    def set_parameters(self, theta: torch.Tensor) -> None:
        """Write ``theta`` into the net's module in place (``p.copy_`` under ``no_grad``).

        Parameters
        ----------
        theta : torch.Tensor of shape (n_params,)
            New values, cast to each parameter's dtype and device.
        """
        theta = torch.as_tensor(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta has shape {tuple(theta.shape)}, expected ({self.n_params},)")
        with torch.no_grad():
            for (_, p), s in zip(self._named_selected(), self._slices):
                p.copy_(theta[s].view(p.shape).to(dtype=p.dtype, device=p.device))

    def with_parameters(self, theta: torch.Tensor):
        """A predicting copy of the net carrying ``theta``; the original net is untouched.

        The copy is made attribute by attribute with one shared :func:`copy.deepcopy` memo,
        on the net's device: ``theta``'s values go straight into the copied module (the
        selected parameters are not copied and then overwritten), the copied optimizers start
        with an empty state and reference the copied parameters, and nothing goes through
        skorch's pickling (``copy.deepcopy(net)`` pickles the module and the optimizer state,
        a device-to-host round trip, for every epsilon of a sweep). Training the copy further
        starts its optimizer afresh.

        Parameters
        ----------
        theta : torch.Tensor of shape (n_params,)
            Parameters in the layout of :meth:`get_parameters`.

        Returns
        -------
        net : skorch.NeuralNetClassifier
            The copy, ready to predict.
        """
        theta = torch.as_tensor(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta has shape {tuple(theta.shape)}, expected ({self.n_params},)")
        net = self.estimator
        memo: dict = {}
        with torch.no_grad():
            for (_, p), s in zip(self._named_selected(), self._slices):
                value = theta[s].reshape(p.shape).to(dtype=p.dtype, device=p.device, copy=True)
                memo[id(p)] = torch.nn.Parameter(value, requires_grad=p.requires_grad)
        state = vars(net)
        for value in state.values():
            if isinstance(value, torch.optim.Optimizer):
                memo[id(value.state)] = collections.defaultdict(dict)
        new = type(net).__new__(type(net))
        # (object.__setattr__ semantics: skorch's __setattr__ hooks are for user settings)
        vars(new).update({k: copy.deepcopy(v, memo) for k, v in state.items()})
        return new

    def default_damping(self, n_samples: int) -> torch.Tensor:
        """Mean-form damping: the optimizer's weight decay per parameter (see class Notes).

        Parameters
        ----------
        n_samples : int
            Training samples (unused: weight decay acts on the mean loss).

        Returns
        -------
        damping : torch.Tensor of shape (n_params,)
            Strictly positive.
        """
        decay: dict[int, float] = {}
        optimizer = getattr(self.estimator, "optimizer_", None)
        if optimizer is not None and hasattr(optimizer, "param_groups"):
            for group in optimizer.param_groups:
                for p in group["params"]:
                    decay[id(p)] = float(group.get("weight_decay", 0.0) or 0.0)
        else:  # not initialised: fall back on the constructor argument
            wd = float(self.estimator.get_params_for("optimizer").get("weight_decay", 0.0) or 0.0)
            decay = {id(p): wd for _, p in self._named_selected()}
        lam = torch.empty(self.n_params, dtype=self.dtype, device=self.device)
        for (_, p), s in zip(self._named_selected(), self._slices):
            wd = decay.get(id(p), 0.0)
            lam[s] = wd if wd > 0 else self.DEFAULT_DAMPING
        return lam

    # ------------------------------------------------------------------ gradients
    @contextlib.contextmanager
    def _eval_mode(self):
        module = self._module
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            yield module
        finally:
            for m, mode in modes:
                m.training = mode

    def _state(self, module):
        """Selected parameters (to differentiate) and constants, in the computation dtype."""
        def cast(t):
            t = t.detach()
            return t.to(self.dtype) if t.is_floating_point() and t.dtype != self.dtype else t

        sel = set(self.param_names_)
        params = {n: cast(p) for n, p in module.named_parameters() if n in sel}
        const = {n: cast(p) for n, p in module.named_parameters() if n not in sel}
        const.update({n: cast(b) for n, b in module.named_buffers()})
        return params, const

    @staticmethod
    def _output(out, n: int) -> torch.Tensor:
        """The module's output for ``n`` samples as ``(n, n_classes)`` (the first element of a
        tuple / list output)."""
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(n, -1)

    def _log_proba_of(self, out: torch.Tensor) -> torch.Tensor:
        """``log p(.|x)`` in :attr:`dtype` from the module's ``(n, n_classes)`` output, as the
        criterion reads it: skorch's NLLLoss on ``log(probabilities + eps)``, else
        ``log_softmax`` of the logits."""
        if self._nll:
            return torch.log(out + torch.finfo(out.dtype).eps).to(self.dtype)
        return torch.log_softmax(out.to(self.dtype), dim=-1)

    def _proba_of(self, out: torch.Tensor) -> torch.Tensor:
        """``p(.|x)`` from the module's ``(n, n_classes)`` output as skorch's ``predict_proba``
        computes it: the output itself for NLLLoss, a softmax of the logits otherwise."""
        return out if self._nll else torch.softmax(out, dim=-1)

    def _log_proba_fn(self, module, const):
        def log_proba(params, x):
            out = functional_call(module, {**const, **params}, (x.unsqueeze(0),))
            return self._log_proba_of(self._output(out, 1))[0]

        return log_proba

    def _inputs(self, X, y):
        X = X if torch.is_tensor(X) else torch.as_tensor(np.asarray(X))
        if X.is_floating_point():
            X = X.to(self.dtype)
        X = X.to(self.device)
        y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y)
        if y.dtype != torch.int64:
            y = self._encode(y)
        return X, y.to(self.device)

    def _encode(self, y: torch.Tensor) -> torch.Tensor:
        """Class labels as int64 positions in ``classes_`` (skorch trains on indices)."""
        classes = np.asarray(self.estimator.classes_)
        yy = y.cpu().numpy()
        if np.issubdtype(yy.dtype, np.integer) and np.array_equal(classes,
                                                                  np.arange(len(classes))):
            return torch.as_tensor(yy.astype(np.int64))
        pos = np.searchsorted(classes, yy)
        pos = np.clip(pos, 0, len(classes) - 1)
        if not np.all(classes[pos] == yy):
            raise ValueError("y contains labels unseen by the net")
        return torch.as_tensor(pos.astype(np.int64))

    def _flatten(self, tree: dict, lead: int) -> torch.Tensor:
        return torch.cat([tree[n].reshape(*tree[n].shape[:lead], -1) for n in self.param_names_],
                         dim=-1)

    def iter_curvature_rows(self, X, y, curvature: str = "empirical_fisher",
                            chunk_size: int | None = None) -> Iterator[torch.Tensor]:
        """Like :meth:`curvature_rows`, one chunk of samples at a time.

        Yields tensors of shape ``(chunk, q, n_params)``; only one chunk is held in memory, so
        callers can stream a Gram matrix over datasets whose rows would not fit.

        Parameters
        ----------
        X, y : array-like or torch.Tensor
            Samples and their labels.
        curvature : {"empirical_fisher", "ggn"}, default="empirical_fisher"
            Which factor rows (see :meth:`curvature_rows`).
        chunk_size : int, default=None
            Overrides the backend's ``chunk_size``.
        """
        if curvature not in ("empirical_fisher", "ggn"):
            raise ValueError(f"unknown curvature {curvature!r}; expected 'empirical_fisher' or "
                             "'ggn'")
        chunk = int(chunk_size or self.chunk_size)
        if curvature == "ggn":
            chunk = max(1, chunk // self.n_classes_)
        X, y = self._inputs(X, y)
        with self._eval_mode() as module:
            params, const = self._state(module)
            log_proba = self._log_proba_fn(module, const)
            if curvature == "empirical_fisher":
                def nll(p, x, t):
                    return -log_proba(p, x).gather(0, t.reshape(1))[0]

                fn = vmap(grad(nll), in_dims=(None, 0, 0))
            else:
                def neg_log_proba(p, x):
                    lp = log_proba(p, x)
                    return -lp, lp.detach()

                fn = vmap(jacrev(neg_log_proba, has_aux=True), in_dims=(None, 0))
            for a in range(0, X.shape[0], chunk):
                xb, yb = X[a:a + chunk], y[a:a + chunk]
                if curvature == "empirical_fisher":
                    yield self._flatten(fn(params, xb, yb), 1).unsqueeze(1)
                else:
                    jac, lp = fn(params, xb)
                    rows = self._flatten(jac, 2)  # (b, C, d): grad of -log p(c|x)
                    yield rows.mul_(torch.exp(0.5 * lp).unsqueeze(-1))

    def gradient_sum(self, X, y) -> torch.Tensor:
        """``per_sample_gradients(X, y).sum(0)`` without the ``(n, n_params)`` matrix.

        One batched backward pass of the summed loss per chunk of :attr:`chunk_size` samples (eval
        mode, same loss convention, :attr:`dtype` and device as :meth:`per_sample_gradients`).

        Parameters
        ----------
        X, y : array-like or torch.Tensor
            Samples and their labels.

        Returns
        -------
        g : torch.Tensor of shape (n_params,)
        """
        return self.gradient_sum_and_proba(X, y)[0]

    def gradient_sum_and_proba(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`gradient_sum` and, from the same forward passes, the class probabilities
        of ``X`` as :meth:`predict_proba_tensor` gives them (a softmax of the logits for
        ``CrossEntropyLoss``, the module's output for ``NLLLoss``), so that ``forget`` reads
        the forget set's diagnostics before the step without a second forward pass.

        Parameters
        ----------
        X, y : array-like or torch.Tensor
            Samples and their labels.

        Returns
        -------
        g : torch.Tensor of shape (n_params,)
        P : torch.Tensor of shape (n, n_classes)
            Detached, on the net's device.
        """
        X, y = self._inputs(X, y)
        total = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        parts = []
        with self._eval_mode() as module:
            params, const = self._state(module)

            def loss(p, xb, yb):
                out = self._output(functional_call(module, {**const, **p}, (xb,)), xb.shape[0])
                lp = self._log_proba_of(out)
                return -lp.gather(1, yb.reshape(-1, 1)).sum(), self._proba_of(out).detach()

            fn = grad(loss, has_aux=True)
            for a in range(0, X.shape[0], self.chunk_size):
                g, proba = fn(params, X[a:a + self.chunk_size], y[a:a + self.chunk_size])
                total += self._flatten(g, 0)
                parts.append(proba)
        if not parts:
            return total, torch.empty((0, self.n_classes_), device=self.device)
        return total, torch.cat(parts)

    def per_sample_gradients(self, X, y) -> torch.Tensor:
        """Gradients of ``-log p(y_i|x_i)`` with respect to ``theta``.

        Parameters
        ----------
        X, y : array-like or torch.Tensor
            Samples and their labels (class values of the net, usually ``0 .. C-1``).

        Returns
        -------
        G : torch.Tensor of shape (n, n_params)
            Evaluated in eval mode, chunk by chunk, in :attr:`dtype` on the net's device.
        """
        return self.curvature_rows(X, y, "empirical_fisher")[:, 0]

    def factor_rows_per_sample(self, curvature: str) -> int:
        return 1 if curvature == "empirical_fisher" else self.n_classes_

    def ggn_sample_rows(self, X, u, y=None) -> torch.Tensor:
        """Gradients at labels drawn from the net's ``p(.|x)`` (see the base class), shape
        ``(n, 1, n_params)``; one per-sample gradient per row instead of ``C`` GGN rows."""
        labels = draw_labels(self.predict_proba_tensor(X), u)  # on the net's device
        return self.curvature_rows(X, labels, "empirical_fisher")

    def predict_proba_is_the_nets(self) -> bool:
        """Whether :meth:`predict_proba_tensor` is what the net's own ``predict_proba`` returns:
        skorch's default output nonlinearity, and none of the methods it goes through
        overridden (else ``forget``'s diagnostics call the net's ``predict_proba``)."""
        est = self.estimator
        if getattr(est, "predict_nonlinearity", "auto") != "auto":
            return False
        return all(getattr(type(est), name, None) is getattr(NeuralNetClassifier, name, None)
                   for name in ("predict_proba", "forward_iter", "evaluation_step", "infer"))

    def predict_proba_tensor(self, X) -> torch.Tensor:
        """The net's class probabilities of ``X`` as a tensor on its device (eval mode, in
        chunks of :attr:`chunk_size`), as skorch's ``predict_proba`` computes them (a softmax of
        the logits for ``CrossEntropyLoss``, the module's output for ``NLLLoss``) without the
        round trip through NumPy.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n, ...)

        Returns
        -------
        P : torch.Tensor of shape (n, n_classes)
        """
        X = X if torch.is_tensor(X) else torch.as_tensor(np.asarray(X))
        X = X.to(self.device)
        parts = []
        with self._eval_mode(), torch.no_grad():
            module = self.estimator.module_  # (a compiled wrapper runs as trained)
            for a in range(0, X.shape[0], self.chunk_size):
                xb = X[a:a + self.chunk_size]
                parts.append(self._proba_of(self._output(module(xb), xb.shape[0])))
        if not parts:
            return torch.empty((0, self.n_classes_), device=self.device)
        return torch.cat(parts)

    def curvature_rows(self, X, y, curvature: str) -> torch.Tensor:
        """Factor rows of the curvature, shape ``(n, q, n_params)``.

        ``"empirical_fisher"``: ``q = 1``, the per-sample gradients. ``"ggn"``: ``q`` = number of
        classes, rows ``sqrt(p_c) * grad(-log p(c|x))`` whose Gram is the true Fisher
        ``J^T (diag(p) - p p^T) J`` (= the GGN of a softmax output).

        Parameters
        ----------
        X, y : array-like or torch.Tensor
            Samples and their labels.
        curvature : {"empirical_fisher", "ggn"}
            Which factor rows.

        Returns
        -------
        R : torch.Tensor of shape (n, q, n_params)
            Factor rows; ``sum_i R[i].T @ R[i]`` is the curvature's data term (sum form).
        """
        n = len(y)
        out = None
        a = 0
        for rows in self.iter_curvature_rows(X, y, curvature):
            if out is None:
                out = torch.empty((n,) + tuple(rows.shape[1:]), dtype=rows.dtype,
                                  device=rows.device)
            out[a:a + rows.shape[0]] = rows
            a += rows.shape[0]
        if out is None:
            q = 1 if curvature == "empirical_fisher" else self.n_classes_
            out = torch.empty((0, q, self.n_params), dtype=self.dtype, device=self.device)
        return out
