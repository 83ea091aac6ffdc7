# Every target bootstraps its own environment from uv.lock: nothing to install by hand.
UV_VERSION := 0.13.9
BOOT := .bootstrap
VENV := .venv
PY := $(VENV)/bin/python
UV := $(BOOT)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: env test test-soak demo lint bench clean

$(UV):
	python3 -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python python3 --quiet
	touch $@

env: $(VENV)/.synced

test: env
	$(PY) -m pytest

test-soak: env
	$(PY) -m pytest -m soak

lint: env
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

demo: env
	$(PY) -m tweetlake.demo

bench: env
	$(PY) bench/compaction.py
	$(PY) bench/streamer.py

clean:
	rm -rf $(BOOT) $(VENV) .demo
