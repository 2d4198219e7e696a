# `make demo` and `make test` work on a fresh clone: they build .venv and install harmony into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.harmony-installed
PYTEST_WORKERS ?= 2

.PHONY: demo test install clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; the package itself is installed editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

# Until the quickstart experiment exists: write the IBSI digital phantom and extract it.
demo: $(STAMP)
	@echo "demo: extracting the built-in IBSI 1 digital phantom (the quickstart experiment is not built yet)"
	$(BIN)/python -c "from harmony.phantoms import write_ibsi_phantom; write_ibsi_phantom('reports/demo')"
	$(BIN)/harmony extract reports/demo/cases.csv --params experiments/params/ibsi.yaml --out reports/demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
