# Two commands do all set-up on a fresh machine:
#   make daemon   - create .venv, install tracekeeper, run tracekeeperd in the foreground
#   make test     - create .venv, install tracekeeper with test tools, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: daemon test lint bench venv

$(BIN)/tracekeeperd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/tracekeeperd

daemon: venv
	$(BIN)/tracekeeperd

TOOLS := $(VENV)/tools

$(TOOLS)/.done: tests/tools/install.sh
	sh tests/tools/install.sh $(abspath $(TOOLS)) $(PYTHON)
	@touch $@

test: venv $(TOOLS)/.done
	TRACEKEEPER_TEST_TOOLS=$(abspath $(TOOLS)) $(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/run.py
