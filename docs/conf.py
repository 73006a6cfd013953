"""Sphinx configuration of the sklearn_ssse documentation.

Build: ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``).

The gallery is generated at build time by :func:`generate_gallery` (no sphinx-gallery needed):
every ``examples/plot_*.py`` runs in a subprocess and writes its PNG into ``docs/auto_examples/``,
together with an ``.rst`` page holding the script's docstring, the figure, the printed output
and the source. The CLI page includes the real output of ``sklearn-ssse demo`` and ``evaluate``,
generated the same way. Set ``SKLEARN_SSSE_DOCS_SKIP_EXAMPLES=1`` to reuse the outputs of the
last build instead of running the scripts again (when they exist).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import sklearn_ssse  # noqa: E402

project = "sklearn_ssse"
author = "sklearn_ssse developers"
copyright = "2026, sklearn_ssse developers"  # noqa: A001
version = release = sklearn_ssse.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "dev", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
default_role = "literal"

autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"  # numpydoc renders the types from the docstrings
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_static_path = []
html_title = f"sklearn_ssse {release}"
html_theme_options = {
    "description": "Forget training samples from fitted classifiers without retraining.",
    "fixed_sidebar": True,
    "page_width": "1180px",
    "sidebar_width": "230px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}

# ================================================================================== gallery
EXAMPLES = ROOT / "examples"
GALLERY = DOCS / "auto_examples"
_ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT),
        # small problems: one thread is fastest, and immune to a busy machine
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(cmd: list[str], cwd: Path) -> str:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_ENV, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"docs: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    print(f"docs: ran {' '.join(Path(c).name for c in cmd[1:3])} in "
          f"{time.perf_counter() - start:.1f} s")
    return proc.stdout


def _indent(text: str, n: int = 3) -> str:
    return "\n".join((" " * n + line) if line.strip() else "" for line in text.splitlines())


def _example_page(script: Path, output: str, figure: str) -> str:
    doc = ast.get_docstring(ast.parse(script.read_text())) or script.stem
    title, _, body = doc.partition("\n")
    name = script.stem
    return "\n".join([
        f".. _example_{name}:", "", title, "=" * len(title), "", body.strip(), "",
        f".. image:: {figure}", f"   :alt: {title}", "   :width: 100%", "",
        "Output", "------", "", ".. code-block:: text", "", _indent(output.strip()), "",
        "Source", "------", "",
        f":download:`Download {script.name} <../../examples/{script.name}>`", "",
        f".. literalinclude:: ../../examples/{script.name}", "   :language: python",
        "   :lines: " + str(_first_code_line(script)) + "-", "",
    ])


def _first_code_line(script: Path) -> int:
    """First line after the module docstring (the docstring is rendered as text above)."""
    tree = ast.parse(script.read_text())
    return tree.body[0].end_lineno + 2 if isinstance(tree.body[0], ast.Expr) else 1


def _cached(out: Path) -> bool:
    return os.environ.get("SKLEARN_SSSE_DOCS_SKIP_EXAMPLES") == "1" and out.exists()


def generate_gallery(app) -> None:
    """Run the examples and the CLI, write their figures, outputs and ``.rst`` pages."""
    GALLERY.mkdir(exist_ok=True)
    entries = []
    for script in sorted(EXAMPLES.glob("plot_*.py")):
        name = script.stem
        out_txt = GALLERY / f"{name}.txt"
        if _cached(out_txt):
            output = out_txt.read_text()
        else:
            output = _run([sys.executable, str(script), "--output", str(GALLERY)], GALLERY)
            out_txt.write_text(output)
        figure = next(line.rsplit("/", 1)[-1] for line in output.splitlines()
                      if line.startswith("figure written to "))
        (GALLERY / f"{name}.rst").write_text(_example_page(script, output, figure))
        title = (ast.get_docstring(ast.parse(script.read_text())) or name).splitlines()[0]
        entries.append((name, title, figure))

    index = ["Examples", "========", "",
             "Each example is a script in ``examples/`` that runs in a few seconds on "
             "scikit-learn's bundled data and saves its figure; they run in CI "
             "(``tests/test_examples.py``, on smaller data) and at every docs build.", "",
             ".. toctree::", "   :hidden:", ""]
    index += [f"   {name}" for name, _, _ in entries]
    index.append("")
    for name, title, figure in entries:
        index += [f":ref:`example_{name}`", "-" * (len(name) + 16), "", title, "",
                  f".. image:: {figure}", f"   :target: {name}.html", "   :width: 70%", ""]
    (GALLERY / "index.rst").write_text("\n".join(index))

    # the CLI page: real output of `demo` and `evaluate`
    demo_txt = GALLERY / "cli_demo.txt"
    if not _cached(demo_txt):
        demo_txt.write_text(_run([sys.executable, "-m", "sklearn_ssse", "demo"], ROOT))
    eval_txt = GALLERY / "cli_evaluate.txt"
    if not _cached(eval_txt):
        import numpy as np
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        np.savez(GALLERY / "digits.npz", X=X / 16.0, y=y)
        eval_txt.write_text(_run(
            [sys.executable, "-m", "sklearn_ssse", "evaluate", "digits.npz", "--forget-rate",
             "0.05", "--epsilons", "linspace:0:2:9", "--output", "cli_evaluate.png", "-q"],
            GALLERY))


def setup(app):
    app.connect("builder-inited", generate_gallery)
    return {"parallel_read_safe": True}
