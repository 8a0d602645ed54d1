# Quick start: `make demo` runs the Boston experiment on the local backend; `make test` runs the suite.
# Both create .venv when missing and install jobman into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jobman run examples/boston.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check jobman tests bench migrations
	$(BIN)/mypy jobman

bench: $(STAMP)
	$(BIN)/python bench/reconcile.py
	$(BIN)/python bench/invoke.py

clean:
	rm -rf $(VENV) jobman-output .pytest_cache
