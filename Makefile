# The two commands of the README, and the checks CI runs.
# `make run`  : .venv, install, `market init`, demo accounts (printed), demo datasets listed, serve on :5000
# `make test` : .venv with dev extras, the whole test suite (in parallel; `make test-fast`: the unit layer)
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PORT ?= 5000
BIN := $(VENV)/bin
# constraints.txt pins every package, torch to the 2.13 CPU build (no multi-GB CUDA wheels).
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: run test test-fast bench-smoke lint typecheck check clean

# `make test` runs the suite in parallel (pytest-xdist), TEST_WORKERS processes, one per core
# by default; each has its own PostgreSQL and Redis databases and folders (tests/conftest.py).
# The suite is CPU-bound (serially it keeps one core busy the whole time): on 2 cores, 4
# workers measured slower than 2.
TEST_WORKERS ?= auto
# `make test-fast`: the unit layer in under a minute: no real training and no other
# processes (slow, integration: see tests/conftest.py), no browser, no PostgreSQL or Redis.
FAST_TESTS := not slow and not integration and not browser and not postgres and not redis
# `--dist worksteal`: an idle worker takes queued tests from a busy one, so one slow test at
# the end of a worker's share does not leave the other core idle. The benchmarks' smoke run
# over every benchmark (bench_smoke) is `make bench-smoke`, which CI runs after the suite.
XDIST := -n $(TEST_WORKERS) --dist worksteal

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/market init
	$(BIN)/market users demo
	$(BIN)/market demo --no-train --keep-passwords
	$(BIN)/market serve --host 127.0.0.1 --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/pytest $(XDIST) -m "not bench_smoke" $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest $(XDIST) -m "$(FAST_TESTS)" $(PYTEST_ARGS)

bench-smoke: $(VENV)/.installed-dev
	$(BIN)/pytest -m bench_smoke $(PYTEST_ARGS) tests/bench

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

check: lint typecheck test bench-smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# `make bench`: every benchmark in bench/ (each alone, in turn), one summary table, the raw
# figures in bench/results/latest.json and docs/benchmarks.md regenerated; < 30 min on 2 cores.
# DATA: a folder holding MNIST and UCI Adult (docs/reference-data.md lists the files); without
# it the benchmarks say so and use scikit-learn's bundled sets. Unset: bench/run_all.py's default.
DATA ?=
.PHONY: bench
bench: $(VENV)/.installed
	$(BIN)/python bench/run_all.py $(if $(DATA),--data $(DATA)) --out docs/benchmarks.md
