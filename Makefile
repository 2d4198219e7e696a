# `make demo` and `make test` work on a fresh clone: they build .venv and install harmony into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.harmony-installed
PYTEST_WORKERS ?= 2
# neuroHarmonize pins numpy < 2: the benchmark runs it in an environment of its own; the tests find it here
# (tests/conftest.py: neuroharmonize_python) and, under CI=true, fail without it.
NH_VENV := .venv-nh
NH_STAMP := $(NH_VENV)/.neuroharmonize-installed
NH_PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: demo test install clean browser neuroharmonize

install: $(STAMP)

neuroharmonize: $(NH_STAMP)

$(NH_STAMP):
	test -x $(NH_VENV)/bin/python || $(NH_PYTHON) -m venv $(NH_VENV)
	$(NH_VENV)/bin/python -m pip install --quiet neuroHarmonize==2.5.2 'numpy<2' 'pandas<3' statsmodels
	touch $(NH_STAMP)

# Re-installs only when pyproject.toml changes; the package itself is installed editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

# The quickstart experiment: a simulated 3-scanner cohort, perturbed, extracted, assessed, harmonized.
demo: $(STAMP)
	$(BIN)/harmony run experiments/quickstart.toml --out reports/quickstart
	@echo "demo: open reports/quickstart/report.html"

# The report's browser test needs Chromium: install it when absent and we may (root or sudo); never fail here.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else exit 0; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	  { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "make: could not install chromium; the browser test will skip"; }

# The import contract first (layers, no cycles): a new upward import or cycle fails the build.
test: $(STAMP) $(NH_STAMP) browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15

clean:
	rm -rf $(VENV) $(NH_VENV) build *.egg-info .pytest_cache .hypothesis
