# Set-up and checks. Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint soak bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# The long soak: 20,000 URLs at -j 64 against the chaos server (a 600-URL one is part of test).
soak: $(STAMP)
	FETCHER_SOAK_URLS=20000 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_soak.py

lint: $(STAMP)
	$(BIN)/ruff check fetcher tests examples
	$(BIN)/ruff format --check fetcher tests examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

# docs/options.md is generated from `fetcher --help`; tests/test_docs.py fails when it is stale.
docs: $(STAMP)
	$(BIN)/python docs/generate_options.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
