# mirg — two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first, pinned to the CPU wheel this project is tested with, but only when the venv has
# no torch at all: a user whose venv already holds a CUDA build keeps it (pyproject only asks torch>=2.4).
TORCH_SPEC ?= torch==2.13.0
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.mirg-installed

.PHONY: venv test test-fast lint format demo tinybase bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || { echo "installing $(TORCH_SPEC) ..."; $(PIP) install "$(TORCH_SPEC)"; }
	@echo "installing mirg and its test extras into $(VENV) ..."
	@$(PIP) install -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks lab conftest.py
	$(VENV)/bin/ruff format --check src tests benchmarks lab conftest.py
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks lab conftest.py
	$(VENV)/bin/ruff format --check src tests benchmarks lab conftest.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks lab conftest.py
	$(VENV)/bin/ruff format src tests benchmarks lab conftest.py

# the demo on its defaults (docs/demo.md); any setting as ARGS, e.g. make demo ARGS="--seed 1 --out runs/demo-s1"
demo: $(STAMP)
	$(VENV)/bin/mirg demo $(ARGS)

# the lab's pretraining of the tiny base (outside the package), e.g. make tinybase ARGS="--out runs/x --steps 100"
tinybase: $(STAMP)
	$(PY) -m lab.tinybase $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist src/*.egg-info
