# syncsim — the two commands of the README, and their parts.
#   make demo   set everything up, then run the main job on the embedded default (SQLite, FakeStrava): demo jobs,
#               a FakeStrava sync, and the simulator's reference sweep (the success-metric scorecard)
#   make test   set everything up (PostgreSQL binaries included), then lint, type-check and run every test,
#               the notebooks included (nbval, small parameters); then install the built wheel as a user does
#               (scripts/check-install.sh) and run the simulator's tests on Python 3.12/3.13 (scripts/test-sim-pythons.sh)
#   make lab    open notebooks/ in JupyterLab

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint postgres notebooks lab clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/syncsim demo
	$(BIN)/syncsim sync --fake 1500 --quiet
	$(BIN)/syncsim simulate

postgres:
	bash scripts/ensure-postgres.sh

# .venv-vercel: Python 3.12 with Vercel's own runtime, for tests/integration/test_vercel_runtime.py
.PHONY: vercel-runtime
vercel-runtime:
	bash scripts/ensure-vercel-runtime.sh

lint: setup
	$(BIN)/ruff check syncsim tests benchmarks
	$(BIN)/ruff format --check syncsim tests benchmarks
	$(BIN)/mypy

test: setup postgres vercel-runtime lint
	SYNCSIM_NOTEBOOK_SMALL=1 $(BIN)/pytest -q --nbval-lax tests notebooks
	bash scripts/check-install.sh $(BIN)/python
	bash scripts/test-sim-pythons.sh

notebooks: setup
	$(BIN)/python scripts/regen_notebooks.py

lab: setup
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .venv-py3* .venv-vercel .pytest_cache .mypy_cache .ruff_cache syncsim.db syncsim.db-*
