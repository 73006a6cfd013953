"""Sphinx configuration of the sklearn_ssse documentation.

Build: ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``); it needs
no network.

* Gallery: sphinx-gallery runs every ``examples/plot_*.py`` (about 20 s in all) and writes
  ``docs/auto_examples/`` (pages, thumbnails, downloadable scripts and notebooks) and the
  "Examples using X" lists of the API pages (``docs/generated/backreferences/``). An unchanged
  example is not run again (sphinx-gallery keeps an MD5 of each script).
* Maths: MathJax is served from the built site itself (``sphinx-mathjax-offline`` ships it),
  never from a CDN.
* intersphinx: links to scikit-learn, NumPy, PyTorch and skorch resolve against the inventories
  committed in ``docs/_intersphinx/`` (see ``make_inventories.py`` there);
  ``SKLEARN_SSSE_DOCS_INTERSPHINX=online`` tries the projects' own inventories first.
* The CLI page includes the real output of ``sklearn-ssse demo`` and ``evaluate``, generated at
  every build (``SKLEARN_SSSE_DOCS_SKIP_EXAMPLES=1`` reuses the last one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

from ssse_docs import generate_cli_outputs  # noqa: E402

import sklearn_ssse  # noqa: E402

project = "sklearn_ssse"
author = "sklearn_ssse developers"
copyright = "2026, sklearn_ssse developers"  # noqa: A001
version = release = sklearn_ssse.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # sets mathjax_path to a local copy of MathJax 3
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "dev", "_intersphinx", "_ext", "Thumbs.db", ".DS_Store",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.md5",
                    "auto_examples/*.json", "auto_examples/*.zip"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
default_role = "literal"

autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"  # numpydoc renders the types from the docstrings
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# ================================================================================ intersphinx
_INVENTORIES = DOCS / "_intersphinx"
_ONLINE = os.environ.get("SKLEARN_SSSE_DOCS_INTERSPHINX") == "online"


def _inventory(name: str, url: str) -> tuple[str, tuple]:
    local = str(_INVENTORIES / f"{name}.inv")
    # None = <url>objects.inv; when that fails, Sphinx falls back to the next location silently
    return url, ((None, local) if _ONLINE else (local,))


intersphinx_mapping = {
    "sklearn": _inventory("sklearn", "https://scikit-learn.org/stable/"),
    "numpy": _inventory("numpy", "https://numpy.org/doc/stable/"),
    "torch": _inventory("torch", "https://docs.pytorch.org/docs/stable/"),
    "skorch": _inventory("skorch", "https://skorch.readthedocs.io/en/stable/"),
}
intersphinx_timeout = 10

# ==================================================================================== gallery
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # run every plot_*.py
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "write_computation_times": False,
    # "Examples using X" on the API pages (included by the autosummary templates)
    "doc_module": ("sklearn_ssse",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"sklearn_ssse": None},
    # name objects by their documented path (sklearn_ssse.metrics.X), not the shortest import
    "prefer_full_module": {r"^sklearn_ssse\.(model_selection|metrics|datasets)\.[^_.][^.]*$"},
    # the scripts save their figure and close it: collect the PNG file instead
    "image_scrapers": ("ssse_docs.example_figure_scraper",),
    "reset_argv": "ssse_docs.reset_argv",
    "capture_repr": (),
    "download_all_examples": False,
    "show_memory": False,
    "show_signature": False,
    "min_reported_time": 3600,  # no "Total running time" line (it changes at every build)
    "default_thumb_file": None,
}

# ======================================================================================= HTML
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"sklearn_ssse {release}"
html_theme_options = {
    "description": "Forget training samples from fitted classifiers without retraining.",
    "fixed_sidebar": True,
    "page_width": "1180px",
    "sidebar_width": "230px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
html_show_sourcelink = False


def setup(app):
    app.connect("builder-inited", generate_cli_outputs)
    return {"parallel_read_safe": True}
