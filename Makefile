# Cascade: `make up` installs and runs everything; `make check` runs every check and test.
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install up test lint typecheck check format bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --all-extras --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

up: install
	$(VENV)/bin/dispatcher up

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy dispatcher providers config tests bench

check: lint typecheck test

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(VENV)/bin/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) data .pytest_cache .mypy_cache .ruff_cache
