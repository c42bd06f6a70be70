# Every target sets up what it needs: a fresh machine with Python 3.11 needs nothing installed by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The demo migrates the whole tenant end to end: 300 patients take a few minutes on 2 cores, 2000 about 15.
PATIENTS ?= 300
DEMO_DIR ?= data/demo

.PHONY: install browser demo demo-rollback test test-fast ui bench bench-load bench-mapping bench-staging bench-migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The browser the cockpit's end-to-end test drives (Playwright with Debian's chromium; Playwright's own download is
## not used). Installed with apt when missing and we are root; otherwise say what to install.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "install Debian's chromium package (apt-get install chromium): the browser test needs it" >&2; exit 1; }

## The whole migration of a sandbox tenant into the Dataverse emulator (limits off), with a summary; exit 1 on a failed check.
demo: install
	$(BIN)/senseimig demo --workdir $(DEMO_DIR) --patients $(PATIENTS)

## Roll the demo's migration back (restarts the demo's stand-ins and cockpit; the `rollback` job, schema removed too).
demo-rollback: install
	$(BIN)/senseimig demo --rollback --workdir $(DEMO_DIR)

## All tests, the slow ones included (what CI runs).
test: install browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## The fast suite only.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

## The cockpit on the demo (run `make demo` first): the Dataverse emulator, Graph stand-in and Sensei simulator on
## the demo's databases and current tenant, and the Dagster UI (http://127.0.0.1:3000) with the demo's settings.
ui: install
	$(BIN)/senseimig ui --workdir $(DEMO_DIR)

## Throughput and memory figures (see benchmarks/README.md).
bench: install
	$(BIN)/python benchmarks/extract.py

## Dataverse load figures: our loader against the ceiling, Microsoft's SDK and a naive loop (~5 minutes).
bench-load: install
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/load.py

## Mapping proposer accuracy: precision@1, recall and confident-wrong rate over 50 disguised tenants (~1 minute).
bench-mapping: install
	$(BIN)/python benchmarks/mapping_accuracy.py

## Staging at ~1.15M rows vs a bare Polars read + write, peak RSS, dedup scaling 100k -> 1M (~3 minutes).
bench-staging: install
	$(BIN)/python benchmarks/staging.py

## The whole migration at ~1.15M source rows with Microsoft's limits: per-phase times, throttling, projections (~15 min+).
bench-migrate: install
	$(BIN)/python benchmarks/migrate.py

clean:
	rm -rf $(VENV) data .dagster_home .pytest_cache test-artifacts
