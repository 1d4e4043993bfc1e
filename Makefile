# `make demo` and `make test` each create .venv and install everything first (torch pinned to the
# CPU build 2.13.0 through constraints.txt), so both work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install test demo bench schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,dev,bench]'
	touch $(STAMP)

# --durations lists the slowest tests: where CI time goes.
test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q --durations=15

# The whole loop on a fictional company (report in runs/demo/report/); QUICK=1 for the 3-minute version.
demo: $(STAMP)
	$(OFFLINE) $(BIN)/datakit demo --data ../shared/data/external $(if $(QUICK),--quick,)

bench: $(STAMP)
	for b in registry dedup scale mix train eval generate; do $(OFFLINE) $(BIN)/python benchmarks/$${b}_bench.py || exit 1; done

schemas: $(STAMP)
	$(BIN)/python -m datakit.jsonschema

clean:
	rm -rf $(VENV) build .pytest_cache
