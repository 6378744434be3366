# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench check clean venv services

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The engine on its embedded defaults: built-in simulator, embedded PostgreSQL, demo traffic.
run: $(STAMP)
	$(BIN)/callrouter demo

# What tests need from Debian's packages (Prometheus and promtool), installed only when missing.
services:
	bash .ci/services.sh

test: $(STAMP) services
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

check: $(STAMP)
	$(BIN)/callrouter check dialplans

clean:
	rm -rf $(VENV) var build *.egg-info
