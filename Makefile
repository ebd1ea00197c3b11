# Two commands on a fresh machine: `make bench` and `make test`. Everything else
# (the venv, dependencies, compiled kernels) is set up on the way.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN    ?= $(shell ls -1dt results/*/ 2>/dev/null | grep -v baseline | head -n1)
# Empty: `make compare` lets `harness compare --auto` choose the run NEW is compared with.
BASE   ?=
# Extra options for `make bench` / `make bench-quick`, e.g. ARGS="--workloads quinn".
ARGS   ?=

KERNEL_SOURCES := $(wildcard kernels/*.pyx kernels/*.pxd kernels/*.h) kernels/_build.py setup.py

.PHONY: install test test-fast bench bench-quick bench-ci bench-compiled bench-processes charts compare lint format clean

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Build dependencies first, then the project (editable) with its dev extras; the
# kernels are compiled by the project's own build (setup.py) in place.
$(STAMP): $(VENV)/bin/python pyproject.toml $(KERNEL_SOURCES)
	$(PY) -m pip install --quiet "setuptools>=69" wheel "Cython>=3.0" "numpy>=1.26"
	$(PY) -m pip install --quiet --no-build-isolation -e ".[dev]"
	$(PY) -m harness strategies
	@touch $(STAMP)

# The complete suite (what CI runs); test-fast leaves out the tests marked slow
# (whole sweeps in subprocesses, a rebuild of the kernels) while you iterate. Both run
# on two pytest-xdist workers (addopts in pyproject.toml); `$(PY) -m pytest -n 0 ...`
# runs tests in one process, for a debugger.
test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) -m harness run $(ARGS)
	$(PY) -m harness plot $$(ls -1dt results/*/ | grep -v baseline | head -n1)

bench-quick: install
	$(PY) -m harness run --quick $(ARGS)
	$(PY) -m harness plot $$(ls -1dt results/*/ | grep -v baseline | head -n1)

bench-ci: install
	$(PY) -m harness run --quick --out results/ci-$$(date +%Y%m%d-%H%M%S) $(ARGS)
	$(PY) -m harness check $$(ls -1dt results/ci-*/ | head -n1)

bench-compiled: install
	$(PY) -m harness bench-compiled $(ARGS)

bench-processes: install
	$(PY) -m harness bench-processes $(ARGS)

charts: install
	@test -n "$(RUN)" || { echo "no run in results/; run 'make bench' first"; exit 2; }
	$(PY) -m harness plot $(RUN)

# Without BASE: a committed results/baseline* swept like RUN, else the previous run swept
# like RUN (harness/gate/pick.py says how); with BASE=..., exactly those two runs.
compare: install
	@test -n "$(RUN)" || { echo "no run in results/; run 'make bench' first"; exit 2; }
	$(PY) -m harness compare $(if $(BASE),$(BASE),--auto) $(RUN)

lint: install
	$(PY) -m ruff check harness strategies tests kernels
	$(PY) -m ruff format --check harness strategies tests kernels

format: install
	$(PY) -m ruff format harness strategies tests kernels
	$(PY) -m ruff check --fix harness strategies tests kernels

clean:
	rm -rf build *.egg-info kernels/*.c kernels/*.so kernels/*.html .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
