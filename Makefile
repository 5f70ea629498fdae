# Every target bootstraps what it needs on first use: a virtualenv with the
# package and its dev extra, and (as root) the Debian packages the tests use.
# A second call reinstalls nothing: the venv is rebuilt only when
# pyproject.toml changes, and Debian packages only when one is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEBIAN_PACKAGES := etcd-server etcd-client prometheus nghttp2-client chromium
PYTEST_ARGS ?=

.PHONY: help run test test-deep lint format bench sim-deep debs clean compiled test-compiled

help:
	@echo "make run        start syndic on its embedded default (syndic dev: etcd API :2379, admin :2381, Consul-compatible API :8500)"
	@echo "make test       install what is needed, then run the test suite"
	@echo "make lint       ruff, mypy --strict and the import contracts"
	@echo "make bench      run every benchmark suite side by side with its peer"
	@echo "make sim-deep   a 1,000-seed simulator sweep with all faults"
	@echo "make test-deep  the test suite with the deep hypothesis profile and slow tests"
	@echo "make compiled   optional: mypyc-compile the hot modules into build/compiled (never into src/)"
	@echo "make test-compiled  the raft, kv and storage tests on the compiled build"

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Bytecode for src/, written once per change: with PYTHONDONTWRITEBYTECODE set
# (as on CI machines) every member process would otherwise compile the whole
# package again at start, about 0.3 s of CPU each time.
BYTECODE := $(VENV)/.bytecode
$(BYTECODE): $(INSTALLED) $(shell find src -name '*.py')
	$(BIN)/python -m compileall -q src
	touch $@

debs:
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)

run: $(BYTECODE)
	$(BIN)/syndic dev

test: $(BYTECODE) debs
	$(BIN)/pytest $(PYTEST_ARGS)

test-deep: $(BYTECODE) debs
	HYPOTHESIS_PROFILE=deep $(BIN)/pytest -m "slow or not slow" $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(INSTALLED)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

bench: $(BYTECODE) debs
	@set -e; for suite in bench/[a-z]*.py; do \
		echo "== $$suite"; $(BIN)/python $$suite; \
	done

sim-deep: $(BYTECODE)
	$(BIN)/syndic sim --nodes 5 --seeds 1-1000 --faults all --jobs 2

# The optional compiled build (scripts/build_compiled.py): a full copy of the
# package in build/compiled with the hot modules as mypyc extensions. It is
# used only when put first on the path, as test-compiled does; without it
# syndic is the pure-Python package. Not a prerequisite of test: it takes
# minutes to compile on a 2-core machine. SYNDIC_PURE=1 runs the same tests on
# the pure-Python package, for comparison.
COMPILED := build/compiled
COMPILED_TEST_DIRS := tests/raft tests/kv tests/storage

compiled: $(INSTALLED)
	$(BIN)/python scripts/build_compiled.py --out $(COMPILED)

test-compiled: compiled
	PYTHONPATH=$(if $(SYNDIC_PURE),,$(COMPILED)) $(BIN)/pytest $(COMPILED_TEST_DIRS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis $(COMPILED)
