# Every target sets up what it needs: a fresh clone needs only python3 (>=3.11).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Run the demo procedure room in-process on the embedded default config (no broker, no hardware),
## and serve its wall display on http://127.0.0.1:8090/ (Ctrl-C ends).
demo: $(STAMP)
	$(BIN)/roommon demo --speed 20 --minutes 10 --display 127.0.0.1:8090

## Run the whole test suite (needs the `mosquitto` binary on PATH; .ci/run installs it).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## ruff, mypy --strict (package and tests) and the import-linter layer contracts (pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check roommon simulators tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/ecg_accuracy.py
	$(BIN)/python bench/ecg_alarms.py
	$(BIN)/python bench/checks.py
	$(BIN)/python bench/hl7_out.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/scenarios.py
	$(BIN)/python bench/display.py
	$(BIN)/python bench/record_replay.py
	$(BIN)/python bench/record_spo2.py
	$(BIN)/python bench/ops_overhead.py
	$(BIN)/python bench/input_cost.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
