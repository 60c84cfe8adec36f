# The two commands a fresh machine needs (README):
#   make serve   - install into .venv if needed, then run the server on embedded SQLite
#   make test    - install into .venv if needed, then run the whole test suite
#   make bench   - the benchmarks (benches/README.md), with their peers, in one run
# Pass extra arguments with ARGS="..." (serve) or PYTEST_ARGS="..." (test).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: serve test bench

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

serve: $(INSTALLED)
	$(BIN)/satchel serve $(ARGS)

test: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -r benches/requirements.txt
	$(BIN)/python benches/run.py $(ARGS)
