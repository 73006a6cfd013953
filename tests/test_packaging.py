"""Packaging: lazy imports, the version, and what the sdist and the wheel contain."""

import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import sklearn_ssse

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_and_help_do_not_import_skorch_or_torch():
    out = _python("""
        import sys
        import sklearn_ssse
        from sklearn_ssse.__main__ import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        print([m for m in ("skorch", "torch", "sklearn") if m in sys.modules])
    """)
    assert out.splitlines()[-1] == "[]"


def test_linear_models_do_not_import_skorch():
    out = _python("""
        import sys
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn_ssse import UnlearnableClassifier

        X = np.random.default_rng(0).normal(size=(60, 3))
        y = (X[:, 0] > 0).astype(int)
        clf = UnlearnableClassifier(LogisticRegression()).fit(X, y)
        clf.forget(X[:2], y[:2])
        print("skorch" in sys.modules)
    """)
    assert out == "False"


def test_lazy_public_names():
    assert sklearn_ssse.UnlearnableClassifier.__module__ == "sklearn_ssse._unlearnable"
    assert set(sklearn_ssse.__all__) <= set(dir(sklearn_ssse))
    for name in sklearn_ssse.__all__:
        assert getattr(sklearn_ssse, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sklearn_ssse.nope  # noqa: B018


def test_version_has_one_source():
    """The version is pyproject.toml's, read from the installed metadata."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)
    assert sklearn_ssse.__version__ == declared
    assert "__version__ =" not in (ROOT / "sklearn_ssse" / "__init__.py").read_text().replace(
        "__version__ = _version()", "")


def test_sdist_and_wheel_contents(tmp_path):
    """Build the sdist, then the wheel from the unpacked sdist (as pip does), without network.

    The sdist holds the test helpers, so the suite collects from it; the wheel holds
    ``py.typed`` and the licence; the metadata uses the SPDX licence expression, and the build
    prints no deprecation warning.
    """
    pytest.importorskip("setuptools", minversion="77")
    build = ("import sys; from setuptools import build_meta as b; "
             "print(getattr(b, sys.argv[1])(sys.argv[2]))")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", build, "build_sdist",
                           str(tmp_path)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "deprecat" not in (proc.stdout + proc.stderr).lower()
    sdist = tmp_path / proc.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "src", **safe)
    for needed in ("tests/conftest.py", "tests/_model_state.py", "LICENSE",
                   "sklearn_ssse/py.typed", "tests/test_cli.py"):
        assert needed in names, needed
    src = tmp_path / "src" / sdist.name.removesuffix(".tar.gz")

    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-W", "default", "-c", build, "build_wheel",
                           str(wheels)], capture_output=True, text=True, timeout=600, cwd=src)
    assert proc.returncode == 0, proc.stderr
    assert "deprecat" not in (proc.stdout + proc.stderr).lower()
    wheel = wheels / proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        metadata = zf.read(f"{dist_info}/METADATA").decode()
    assert "sklearn_ssse/py.typed" in names
    assert f"{dist_info}/licenses/LICENSE" in names
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "Classifier: Programming Language :: Python :: 3" in metadata
    assert not any(n.startswith("tests/") for n in names)

    # the test suite collects from the unpacked sdist (running it all is the CI's job)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests"], capture_output=True, text=True,
                          timeout=600, cwd=src)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "error" not in summary.lower() and int(summary.split()[0]) > 100, summary
