# The two commands: `make demo` (the stack and the nightly reconciliation) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Parallel test workers on 2 cores: one is mostly waiting on the Dagster stack's fault tests (real timeouts),
# and much of the rest waits on sockets and subprocesses; 4 measured fastest (docs/BENCHMARKS.md).
TEST_WORKERS ?= 4

.PHONY: install test lint demo dev stop clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: install lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=30

demo: install
	$(BIN)/warp-sync demo

dev: install
	$(BIN)/warp-sync dev

stop:
	@if [ -x $(BIN)/warp-sync ]; then $(BIN)/warp-sync stop; else echo "nothing to stop (not installed)"; fi

# The private PostgreSQL's data lives outside the checkout when run as root: `warp-sync clean` finds it.
clean:
	@if [ -x $(BIN)/warp-sync ]; then $(BIN)/warp-sync clean; else rm -rf .warp-sync; fi
	rm -rf $(VENV)
