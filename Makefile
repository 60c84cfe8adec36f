# The two commands a fresh machine needs (README):
#   make serve   - install into .venv if needed, then run the server on embedded SQLite, access log on
#   make test    - install into .venv if needed, then run the whole test suite
#   make bench   - the benchmarks (benches/README.md), with their peers, in one run
# Pass extra arguments with ARGS="..." (serve) or PYTEST_ARGS="..." (test);
# TEST_WORKERS=0 runs the tests in one process.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

BROWSER_DEPS := tests/browser/node_modules/.package-lock.json
# Stock npm clients the tests drive (socket.io-client), pinned in the lockfile.
NODE_CLIENT_DEPS := tests/node_clients/node_modules/.package-lock.json

.PHONY: serve test bench chromium

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

# The browser tests drive Debian's Chromium with playwright-core (npm); it
# never downloads a browser of its own.
$(BROWSER_DEPS): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error

$(NODE_CLIENT_DEPS): tests/node_clients/package.json tests/node_clients/package-lock.json
	cd tests/node_clients && npm ci --no-audit --no-fund --loglevel=error

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed and this is not root: the browser tests will be skipped"; fi; }

serve: $(INSTALLED)
	$(BIN)/satchel serve --access-log $(ARGS)

# pytest-xdist workers, each taking a whole test module at a time (so that a
# module's servers start once; tests/conftest.py hands the slowest out first).
# Three on CI's two cores: a third of the suite's time is spent waiting on
# the servers, browsers and clients it starts.
TEST_WORKERS ?= 3

test: $(INSTALLED) $(BROWSER_DEPS) $(NODE_CLIENT_DEPS) chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -r benches/requirements.txt
	$(BIN)/python benches/run.py $(ARGS)
