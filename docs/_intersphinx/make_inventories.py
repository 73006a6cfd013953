"""Write the intersphinx inventories of ``docs/_intersphinx/`` (run by hand, result committed).

The docs build has no network, so ``sphinx.ext.intersphinx`` cannot download the
``objects.inv`` files of scikit-learn, NumPy, PyTorch and skorch. This script writes small
inventories in the same format instead, for the objects the documentation links to (and the
whole public API of scikit-learn, which is imported to list it), with the URL layout each project
uses for its API pages. A target missing from them renders as plain code, without a warning.

With network access, ``SKLEARN_SSSE_DOCS_INTERSPHINX=online make docs`` tries the projects' own
inventories first and falls back to these files.

Run: ``python docs/_intersphinx/make_inventories.py``.
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

NUMPY = {  # name -> page (relative to https://numpy.org/doc/stable/)
    **{f"numpy.{f}": f"reference/generated/numpy.{f}.html" for f in (
        "array", "asarray", "linspace", "logspace", "save", "savez", "load", "memmap",
        "ndarray", "dtype", "setdiff1d", "unique")},
    "numpy.float64": "reference/arrays.scalars.html",
    "numpy.float32": "reference/arrays.scalars.html",
    "numpy.random.Generator": "reference/random/generator.html",
    "numpy.random.default_rng": "reference/random/generator.html",
    "numpy.random.RandomState": "reference/random/legacy.html",
}
TORCH = {  # name -> page (relative to https://docs.pytorch.org/docs/stable/)
    "torch.Tensor": "tensors.html",
    "torch.device": "tensor_attributes.html",
    "torch.dtype": "tensor_attributes.html",
    **{name: f"generated/{name}.html" for name in (
        "torch.nn.Module", "torch.nn.Linear", "torch.nn.Sequential", "torch.nn.Softmax",
        "torch.nn.CrossEntropyLoss", "torch.nn.NLLLoss", "torch.optim.SGD", "torch.optim.Adam",
        "torch.func.functional_call", "torch.func.vmap", "torch.func.grad",
        "torch.func.jacrev", "torch.linalg.cholesky", "torch.linalg.eigh",
        "torch.set_num_threads", "torch.save", "torch.load", "torch.no_grad")},
}
SKORCH = {  # name -> page (relative to https://skorch.readthedocs.io/en/stable/)
    "skorch.classifier.NeuralNetClassifier": "classifier.html",
    "skorch.classifier.NeuralNetBinaryClassifier": "classifier.html",
    "skorch.net.NeuralNet": "net.html",
    "skorch.regressor.NeuralNetRegressor": "regressor.html",
    "skorch.callbacks.Callback": "callbacks.html",
    "skorch.dataset.ValidSplit": "dataset.html",
}


def _role(obj) -> str:
    if inspect.isclass(obj):
        return "py:class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or callable(obj):
        return "py:function"
    return "py:data"


def _resolve(name: str):
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        module, _, parent = module.rpartition(".")
        return getattr(getattr(importlib.import_module(module), parent), attr)


def sklearn_objects() -> dict[str, tuple[str, str]]:
    """The public API of the installed scikit-learn: ``modules/generated/NAME.html``."""
    import sklearn

    entries = {}
    for sub in sklearn.__all__:
        if sub.startswith("_") or sub in ("show_versions", "clone", "config_context",
                                          "get_config", "set_config"):
            continue
        module = importlib.import_module(f"sklearn.{sub}")
        entries[f"sklearn.{sub}"] = ("py:module", f"api/sklearn.{sub}.html#module-$")
        for name in getattr(module, "__all__", []):
            try:
                obj = getattr(module, name, None)
            except ImportError:  # experimental (HalvingGridSearchCV, ...)
                continue
            if obj is None or name.startswith("_"):
                continue
            full = f"sklearn.{sub}.{name}"
            entries[full] = (_role(obj), f"modules/generated/{full}.html#$")
    for name in ("clone", "config_context", "get_config", "set_config"):
        entries[f"sklearn.base.{name}" if name == "clone" else f"sklearn.{name}"] = (
            "py:function", f"modules/generated/sklearn.{name}.html#sklearn.{name}")
    return entries


def curated(pages: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {name: (_role(_resolve(name)), f"{page}#$") for name, page in pages.items()}


def write(path: Path, project: str, version: str, entries: dict[str, tuple[str, str]]) -> None:
    lines = [f"{name} {role} 1 {uri} -" for name, (role, uri) in sorted(entries.items())]
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
              "# The remainder of this file is compressed using zlib.\n")
    path.write_bytes(header.encode() + zlib.compress(("\n".join(lines) + "\n").encode(), 9))
    print(f"{path.name}: {len(lines)} objects")


def main() -> None:
    import numpy
    import sklearn
    import skorch
    import torch

    write(HERE / "sklearn.inv", "scikit-learn", sklearn.__version__, sklearn_objects())
    write(HERE / "numpy.inv", "NumPy", numpy.__version__, curated(NUMPY))
    write(HERE / "torch.inv", "PyTorch", torch.__version__.split("+")[0], curated(TORCH))
    write(HERE / "skorch.inv", "skorch", skorch.__version__, curated(SKORCH))


if __name__ == "__main__":
    main()
