# Set-up and checks. Every target creates .venv if needed and installs what it uses.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# A CPU wheel of torch 2.13.0 lies on every project machine's disk; pinning it keeps pip
# from pulling a multi-GB CUDA build. keras (dev) runs its real callbacks on the torch backend.
TORCH := torch==2.13.0
export KERAS_BACKEND ?= torch
# `make demo FRAMEWORK=numpy` or `FRAMEWORK=jax`: the same demo in another framework.
FRAMEWORK ?= torch

.PHONY: demo test lint typecheck docs docs-serve bench clean

$(VENV)/.installed-dev: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[dev]' $(TORCH)
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(PIP) install -e '.[dev,bench]' $(TORCH)
	touch $@

demo: $(VENV)/.installed-dev
	$(PY) examples/demo.py --framework $(FRAMEWORK)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check trainbus adapters tests benchmarks examples
	$(PY) -m ruff format --check trainbus adapters tests benchmarks examples

typecheck: $(VENV)/.installed-dev
	$(PY) -m mypy --strict

# The documentation site (mkdocs.yml) into site/; --strict: a broken link or reference fails it.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

# keras runs one backend per process: its callbacks on JAX loops get a pytest run of their own.
test: lint typecheck docs
	$(PY) -m pytest -q
	KERAS_BACKEND=jax $(PY) -m pytest -q tests/keras_jax

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/dispatch.py

clean:
	rm -rf $(VENV) build site *.egg-info
