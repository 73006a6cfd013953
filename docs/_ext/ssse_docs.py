"""Build-time helpers of the sklearn_ssse documentation (imported by ``docs/conf.py``).

They live in a module, not in ``conf.py``, so that sphinx-gallery can refer to them by their
fully qualified names: callables inside ``sphinx_gallery_conf`` cannot be pickled into Sphinx's
environment cache (and would warn, which ``-W`` turns into an error).

* :func:`example_figure_scraper` collects the PNG an example writes (the scripts save their
  figure with ``savefig`` and close it, so the default matplotlib scraper finds nothing);
* :func:`reset_argv` runs every example with its default arguments;
* :func:`generate_cli_outputs` captures the real output of ``sklearn-ssse demo`` and
  ``evaluate`` for ``cli.rst``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
GALLERY = DOCS / "auto_examples"

_ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT),
        # small problems: one thread is fastest, and immune to a busy machine
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def reset_argv(gallery_conf, script_vars) -> list[str]:
    """Command-line arguments of every example: none (the full-size defaults).

    The scripts write their figure into the current folder, which sphinx-gallery sets to the
    script's own folder; :func:`example_figure_scraper` moves it out at once.
    """
    return []


def example_figure_scraper(block, block_vars, gallery_conf) -> str:
    """Move the PNG that an example wrote (its ``FIGURE``) into the gallery's image folder."""
    from sphinx_gallery.scrapers import figure_rst

    name = block_vars["example_globals"].get("FIGURE")
    if not name:
        return ""
    written = Path(block_vars["src_file"]).parent / name
    if not written.is_file():
        return ""
    target = Path(next(block_vars["image_path_iterator"]))
    shutil.move(written, target)
    return figure_rst([target], gallery_conf["src_dir"])


def _run(cmd: list[str], cwd: Path) -> str:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_ENV, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"docs: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    print(f"docs: ran {' '.join(cmd[1:4])} in {time.perf_counter() - start:.1f} s")
    return proc.stdout


def _cached(out: Path) -> bool:
    return os.environ.get("SKLEARN_SSSE_DOCS_SKIP_EXAMPLES") == "1" and out.exists()


def generate_cli_outputs(app) -> None:
    """Run ``sklearn-ssse demo`` and ``evaluate`` and keep their output for ``cli.rst``.

    ``SKLEARN_SSSE_DOCS_SKIP_EXAMPLES=1`` reuses the outputs of the last build when they exist.
    """
    GALLERY.mkdir(exist_ok=True)
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
