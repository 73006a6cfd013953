# Two commands do the whole set-up on a fresh machine (Python >= 3.10 with venv):
#   make demo   - create .venv, install the package, run the demo on the bundled digits data
#   make test   - create .venv, install the package with its test extras, run the test suite
# torch is pinned to the 2.13.0 CPU wheel before the package is installed, so that pip never
# pulls a multi-GB CUDA build as a dependency.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: demo test lint docs bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(FIND_LINKS) torch==2.13.0
	$(PY) -m pip install --quiet $(FIND_LINKS) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m sklearn_ssse demo

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check sklearn_ssse tests benchmarks docs examples

docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: install
	$(PY) -m sklearn_ssse bench

clean:
	rm -rf $(VENV) docs/_build
