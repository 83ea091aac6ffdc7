# Every target bootstraps its own environment from uv.lock: nothing to install by hand.
UV_VERSION := 0.13.9
BOOT := .bootstrap
VENV := .venv
READER := .venv-reader
PY := $(VENV)/bin/python
UV := $(BOOT)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Bytecode compiled once at install: with PYTHONDONTWRITEBYTECODE set (as on CI) every process would
# otherwise compile every imported module again (4 s for the compactor's imports here).
export UV_COMPILE_BYTECODE := 1

.PHONY: env test test-soak demo lint bench dist clean

$(UV):
	python3 -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python python3 --quiet
	touch $@

# DuckDB's Iceberg reader needs DuckDB 1.5.5 (the version the PyPI extension packages are built
# for); the compactor's engine is DuckDB 2.0: readers get an environment of their own.
$(READER)/.synced: readers/duckdb-iceberg.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python python3 $(READER)
	$(UV) pip install --quiet --require-hashes --python $(READER)/bin/python -r readers/duckdb-iceberg.txt
	touch $@

env: $(VENV)/.synced $(READER)/.synced

test: env
	$(PY) -m pytest

test-soak: env
	$(PY) -m pytest -m soak

lint: env
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

demo: env  ## MODE=poll runs the demo in poll mode (default: stream)
	$(PY) -m demo --mode $(or $(MODE),stream)

bench: env
	$(PY) bench/compaction.py
	$(PY) bench/streamer.py
	$(PY) bench/schedule.py
	$(PY) bench/commit.py
	$(PY) bench/dag_parse.py

dist: | $(UV)  ## what a host installs: the wheel, the pinned (hashed) requirements, setup-host.sh
	$(UV) build --wheel --out-dir dist
	$(UV) export --frozen --no-dev --no-emit-project --quiet -o dist/requirements.txt
	$(UV) export --frozen --no-dev --no-emit-project --extra airflow --quiet -o dist/requirements-airflow.txt
	cp deploy/setup-host.sh dist/

clean:
	rm -rf $(BOOT) $(VENV) $(READER) .demo dist
