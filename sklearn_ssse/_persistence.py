"""Portable state of a fitted :class:`~sklearn_ssse.UnlearnableClassifier`.

``UnlearnableClassifier.__getstate__`` replaces every :class:`torch.Tensor` and every
:class:`~sklearn_ssse._curvature.CurvatureOperator` in its state by plain containers (dicts,
lists, numpy arrays, ints and strings) and leaves out the backend (it only references the fitted
estimator and is rebuilt on load).  This

* keeps pickle / joblib exact: float tensors go through numpy bit for bit;
* lets :mod:`skops.io` (secure loading) store the model: it knows numpy arrays and builtins but
  not torch tensors, and only the top-level ``UnlearnableClassifier`` type needs trusting;
* makes a model saved on a GPU loadable on a CPU-only machine (tensors are restored on the
  device of the loaded model).

Operators are rebuilt from their class name, looked up among the subclasses of
``CurvatureOperator`` in :mod:`sklearn_ssse._curvature` only (never an arbitrary import).
"""

from __future__ import annotations

import numpy as np
import torch

from . import _curvature
from ._config import FitConfig

__all__ = ["from_portable", "to_portable"]

_TENSOR, _OPERATOR, _SLICE = "__ssse_tensor__", "__ssse_operator__", "__ssse_slice__"
_CONFIG = "__ssse_fit_config__"
_NUMPY_FREE_DTYPES = {torch.bfloat16: torch.float32}


def to_portable(obj):
    """``obj`` with tensors and curvature operators replaced by plain containers.

    Lists, tuples and dicts are walked; any other object is returned as is (not copied).
    """
    if torch.is_tensor(obj):
        t = obj.detach()
        dtype = str(t.dtype).removeprefix("torch.")
        if t.dtype in _NUMPY_FREE_DTYPES:
            t = t.to(_NUMPY_FREE_DTYPES[t.dtype])
        # order="K" keeps the memory layout (a transposed factor stays transposed), so that
        # the loaded operator runs the same BLAS kernels and rounds bit for bit the same
        return {_TENSOR: t.cpu().resolve_conj().numpy().copy(order="K"), "dtype": dtype}
    if isinstance(obj, _curvature.CurvatureOperator):
        return {_OPERATOR: type(obj).__name__, "state": to_portable(dict(vars(obj)))}
    if isinstance(obj, slice):
        return {_SLICE: [obj.start, obj.stop, obj.step]}
    if isinstance(obj, FitConfig):
        return {_CONFIG: obj.to_dict()}
    if isinstance(obj, dict):
        return {k: to_portable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_portable(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_portable(v) for v in obj)
    return obj


def _operator_class(name: str) -> type:
    from . import _sparse_lowrank  # structured operators on sparse rows live there

    cls = getattr(_curvature, name, None) or getattr(_sparse_lowrank, name, None)
    if not (isinstance(cls, type) and issubclass(cls, _curvature.CurvatureOperator)):
        raise ValueError(f"unknown curvature operator {name!r} in the saved state")
    return cls


def from_portable(obj, device=None):
    """Inverse of :func:`to_portable`; tensors are placed on ``device`` (default: CPU)."""
    if isinstance(obj, dict):
        if _TENSOR in obj:
            dtype = getattr(torch, str(obj["dtype"]), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown tensor dtype {obj['dtype']!r} in the saved state")
            return torch.from_numpy(np.array(obj[_TENSOR], copy=True)).to(device=device,
                                                                          dtype=dtype)
        if _OPERATOR in obj:
            cls = _operator_class(obj[_OPERATOR])
            op = cls.__new__(cls)
            vars(op).update(from_portable(obj["state"], device))
            return op
        if _SLICE in obj:
            return slice(*obj[_SLICE])
        if _CONFIG in obj:
            return FitConfig(**obj[_CONFIG])
        return {k: from_portable(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_portable(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_portable(v, device) for v in obj)
    return obj
