# refproj: the two front-door commands are `make demo` and `make test`.
# Both create .venv (Python >= 3.11) on first use and install the project into it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/refproj_demo
export DATABASE_URL

BENCH_PROFILES ?= S,M

SOAK_SECONDS ?= 60

.PHONY: demo test check lint typecheck install clean bench soak

$(BIN)/refproj: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/refproj

## demo: create the demo database, migrate, seed the tiny profile, refresh, print the overview
demo: install
	$(BIN)/refproj migrate --create-database
	$(BIN)/refproj seed --profile tiny --replace --recent
	$(BIN)/refproj refresh
	$(BIN)/refproj list

## test: the test suite against the local PostgreSQL (REFPROJ_TEST_URL names another server)
test: install
	$(BIN)/pytest

## bench: measure the projection against its baselines; writes bench/results/ and bench/README.md
bench: install
	$(BIN)/refproj bench --profiles $(BENCH_PROFILES)

## soak: readers, a writer and watcher refreshes for SOAK_SECONDS; fails on any error or deadlock
soak: install
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS)

## check: ruff and mypy --strict on the package
check: lint typecheck

lint: install
	$(BIN)/ruff check refproj refproj_bench migrations tests bench
	$(BIN)/ruff format --check refproj refproj_bench migrations tests bench

typecheck: install
	$(BIN)/mypy refproj refproj_bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
