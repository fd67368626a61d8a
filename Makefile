PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv run test test-fast lint bench clean

# `make run` needs only turnout itself (the quickstart uses scikit-learn, in the base
# install); tests, linters and benchmarks need every optional flavor and the dev tools.
venv: $(VENV)/.stamp-dev

$(VENV)/.stamp-base: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@touch $@ $(VENV)/.stamp-base

run: $(VENV)/.stamp-base
	$(BIN)/turnout quickstart

test:
	bash scripts/ensure-system-deps.sh
	$(MAKE) venv
	$(BIN)/pytest $(PYTEST_ARGS)

# unit tests only: no server, no PostgreSQL, nothing marked slow (tests/conftest.py)
test-fast: venv
	$(BIN)/pytest -m "not server and not slow and not postgres" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests && $(BIN)/ruff format --check src tests && $(BIN)/mypy

bench: venv
	bash bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info .hypothesis
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
