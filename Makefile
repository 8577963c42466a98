# pgvault: `make test` and `make demo` work on a fresh Debian machine (Python 3.11+, Node/npm, apt).
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps test lint typecheck unit demo run clean chromium soak

deps: $(VENV)/.installed node_modules/.installed postgres-server chromium

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# PostgreSQL server binaries (initdb, postgres) for the throwaway test clusters.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15 ; }

# Debian's Chromium for the dashboard's browser test (Playwright drives it; no `playwright install`).
chromium:
	@command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium ; }

lint: $(VENV)/.installed
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy shared functions pgvault devhost bench function_app.py

# Two workers, each with its own Azurite and PostgreSQL; a file's tests stay on one worker (they
# share module fixtures such as a devhost), handed out in the order tests/conftest.py sorts them
# (slowest tier first). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
test: deps lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit

# The fault tests RUNS times in a row under a CPU load (RELIABILITY.md quotes the count).
RUNS ?= 10
soak: deps
	tests/soak.sh $(RUNS)

demo: deps
	$(BIN)/python -m devhost.demo

run: deps
	@test -f local.settings.json || cp local.settings.sample.json local.settings.json
	$(BIN)/python -m devhost

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
