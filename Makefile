# Two commands do all set-up on a fresh machine:
#   make daemon   - create .venv, install tracekeeper, run tracekeeperd in the foreground
#   make test     - create .venv, install tracekeeper with test tools, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: daemon links test lint bench venv

$(BIN)/tracekeeperd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(BIN)/tracekeeperd

# Puts `tracekeeper` and `tracekeeperd` on the PATH the way pipx does (links in ~/.local/bin;
# a dangling link is replaced, another install's file or link never), then runs the daemon.
LOCALBIN ?= $(HOME)/.local/bin

links: venv
	@mkdir -p $(LOCALBIN)
	@for exe in tracekeeper tracekeeperd; do \
		target=$(abspath $(BIN))/$$exe; link=$(LOCALBIN)/$$exe; \
		if [ ! -e "$$link" ] && [ ! -L "$$link" ]; then ln -s "$$target" "$$link"; \
		elif [ "$$(readlink "$$link")" = "$$target" ]; then :; \
		elif [ -L "$$link" ] && [ ! -e "$$link" ]; then ln -sfn "$$target" "$$link"; \
		else echo "make: $$link is another install's; leaving it (this one: $$target)"; fi; \
	done
	@case ":$$PATH:" in *":$(LOCALBIN):"*) ;; \
		*) echo "make: add $(LOCALBIN) to your PATH to run 'tracekeeper' from anywhere";; esac

daemon: links
	@echo "tracekeeperd runs in the foreground; Ctrl-C stops it. To keep it running: tracekeeper service install"
	$(BIN)/tracekeeperd

TOOLS := $(VENV)/tools

$(TOOLS)/.done: tests/tools/install.sh
	sh tests/tools/install.sh $(abspath $(TOOLS)) $(PYTHON)
	@touch $@

# Four workers (pytest-xdist): most tests wait on real processes (git, the daemon, a browser),
# so two cores keep four busy; every test has its own HOME, socket and ports. On this 2-core
# machine: 1,453 tests in 256 s with -n 4 against 442 s in one process.
TEST_WORKERS ?= 4

test: venv $(TOOLS)/.done
	TRACEKEEPER_TEST_TOOLS=$(abspath $(TOOLS)) $(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/run.py
