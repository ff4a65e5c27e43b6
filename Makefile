# RET v4 backend. `make run` serves the API, `make test` runs the checks; both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BACKEND := backend
VENV := $(BACKEND)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced-dev
# uv comes from PyPI when missing; the virtualenv always uses this machine's Python (no downloads).
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: help run test lint typecheck pytest lock install clean

help:
	@echo "make run   - install (first time) and serve the API on http://127.0.0.1:8000 (docs: /docs)"
	@echo "make test  - install (first time) and run ruff, mypy and pytest"
	@echo "make lock  - regenerate backend/requirements*.lock from backend/pyproject.toml"

$(UV):
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --user --quiet --break-system-packages uv

$(PY): | $(UV)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(UV) venv --quiet --python $(PYTHON) $(VENV)

$(STAMP): $(BACKEND)/requirements-dev.lock $(BACKEND)/pyproject.toml | $(PY)
	$(UV) pip sync --quiet --python $(PY) $(BACKEND)/requirements-dev.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e $(BACKEND)
	@touch $@

install: $(STAMP)

run: install
	cd $(BACKEND) && .venv/bin/ret serve --host 127.0.0.1 --port 8000

lint: install
	cd $(BACKEND) && .venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck: install
	cd $(BACKEND) && .venv/bin/mypy

pytest: install
	cd $(BACKEND) && .venv/bin/pytest

test: lint typecheck pytest

lock: | $(UV)
	cd $(BACKEND) && $(UV) pip compile --quiet --generate-hashes --python-version 3.11 \
		--no-emit-index-url --no-emit-find-links --custom-compile-command "make lock" \
		pyproject.toml -o requirements.lock
	cd $(BACKEND) && $(UV) pip compile --quiet --generate-hashes --python-version 3.11 \
		--no-emit-index-url --no-emit-find-links --custom-compile-command "make lock" \
		--extra dev pyproject.toml -o requirements-dev.lock

clean:
	rm -rf $(VENV) $(BACKEND)/.mypy_cache $(BACKEND)/.ruff_cache $(BACKEND)/.pytest_cache
