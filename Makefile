# Two commands do the whole set-up on a fresh machine (Python >= 3.10 with venv):
#   make demo   - create .venv, install the package, run the demo on the bundled digits data
#   make test   - create .venv, install the package with its test extras, run the test suite
# torch is pinned to the 2.13.0 CPU wheel before the package is installed, so that pip never
# pulls a multi-GB CUDA build as a dependency; it is named again when the extras are installed,
# because the test extra's curvlinops pulls torchvision, whose newest release pins a newer torch.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
TORCH := torch==2.13.0

.PHONY: demo test lint docs docs-browser bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(FIND_LINKS) $(TORCH)
	$(PY) -m pip install --quiet $(FIND_LINKS) -e '.[dev]' $(TORCH)
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m sklearn_ssse demo

test: install
	$(PY) -m pytest

# the oldest versions pyproject.toml declares (.ci/oldest_requirements.py: NAME>=X.Y -> X.Y.*),
# in a separate venv, with a fast subset of the tests: the declared lower bounds are tested
OLDEST_VENV ?= .venv-oldest
OLDEST_TESTS ?= tests/test_linear.py tests/test_validation.py tests/test_metrics.py \
	tests/test_model_selection.py tests/test_unlearnable.py tests/test_torch_backend.py
test-oldest:
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet $(FIND_LINKS) $(TORCH)
	$(OLDEST_VENV)/bin/python -m pip install --quiet $(FIND_LINKS) . pytest hypothesis \
		$$($(PYTHON) .ci/oldest_requirements.py)
	$(OLDEST_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(numpy|scipy|scikit-learn|joblib|torch|skorch|threadpoolctl|tqdm) '
	# the installed package is tested (bin/pytest does not put the checkout on sys.path)
	$(OLDEST_VENV)/bin/pytest -q -p no:cacheprovider $(OLDEST_TESTS)

lint: install
	$(VENV)/bin/ruff check sklearn_ssse tests benchmarks docs examples

docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

# the built docs in headless Chromium (formulas typeset, images load, no broken link)
docs-browser: docs
	SKLEARN_SSSE_DOCS_HTML=docs/_build/html $(PY) -m pytest -q tests/test_docs_browser.py

bench: install
	$(PY) -m sklearn_ssse bench

clean:
	rm -rf $(VENV) $(OLDEST_VENV) docs/_build docs/auto_examples docs/generated
