# make run   install patgate into .venv and start it with demo data at http://127.0.0.1:8000
# make test  install the test dependencies and run the linter and the whole suite
# make lint  ruff: lint and formatting check
#
# PYTEST_ARGS passes options to pytest, e.g. make test PYTEST_ARGS='-m "not postgres" tests/tokens'

VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint

help:
	@sed -n 's/^# \(make .*\)/\1/p' $(firstword $(MAKEFILE_LIST))

# Debian's python3 is 3.11, what patgate targets.
$(BIN)/python:
	python3 -m venv $(VENV)

# Stamps: reinstall only when the dependencies may have changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/patgate serve --demo

test: $(VENV)/.installed-test
	@if [ -f tests/clients/package-lock.json ]; then \
		echo "npm ci --prefix tests/clients"; \
		npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error; \
	fi
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
