# Quick start: `make demo` runs the Boston experiment on the local backend; `make test` runs the suite.
# Both create .venv when missing and install jobman into it (the test extra only for the targets that need it).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
INSTALLED_TEST := $(VENV)/.installed-test

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(INSTALLED_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/jobman run examples/boston.toml

test: $(INSTALLED_TEST)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(INSTALLED_TEST)
	$(BIN)/ruff check jobman tests bench migrations
	$(BIN)/mypy jobman

bench: $(INSTALLED_TEST)
	$(BIN)/python bench/reconcile.py
	$(BIN)/python bench/invoke.py
	$(BIN)/python bench/transform.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/ledger.py

clean:
	rm -rf $(VENV) jobman-output .pytest_cache
