# emdig: `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/emdig demo --out emdig-demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench recipes
	$(BIN)/ruff format --check src tests bench recipes
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/particles.py
	$(BIN)/python bench/figures.py
	$(BIN)/python bench/contrastive.py

clean:
	rm -rf $(VENV) emdig-demo emdig.db emdig.db-wal emdig.db-shm emdig.db.lock emdig.db.d build/contrastive-bench
