# Two commands on a fresh machine with Python 3.11+ and Java 17+:
#   make demo   set up, generate a synthetic acquisition, export it with Spark in local mode
#               (make demo SET=output.format=zarr3 switches the output with one --set)
#   make test   set up and run the test suite
#   make lint   ruff on the code and its tests, mypy on pipelines/ (CI runs it before the tests)
#   make bench  benchmarks (see BENCHMARKS.md); make bench-scale: a million-block export
#   make clean  delete .venv/ and data/ (the demo's tiles and every output under it), and the
#               caches (.pytest_cache, .hypothesis, *.egg-info): the next make sets up again
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamps are named by pyproject.toml's checksum: a changed file is a new stamp, and
# its mtime alone (a checkout, a touch) does not install everything again.
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.installed-bench-$(shell cksum < pyproject.toml | cut -d' ' -f1)
DEMO_DATA := data/demo
DEMO_OUT  := data/demo-out
SET ?=

.PHONY: setup demo test lint bench bench-scale clean check-java check-python

setup: check-java $(STAMP)

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "error: Python 3.11 or newer is needed as '$(PYTHON)' (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

check-java:
	@command -v java >/dev/null 2>&1 || \
	  { echo "error: Java 17 or newer is needed for Spark, and 'java' is not on PATH (install a JDK 17, e.g. apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	  [ -n "$$v" ] && [ "$$v" -ge 17 ] || \
	  { echo "error: Java 17 or newer is needed for Spark; 'java' is version $$v" >&2; exit 1; }

$(STAMP): | check-python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

$(DEMO_DATA)/tiles.json: | $(STAMP)
	$(PY) -m pipelines.testing.synthetic $(DEMO_DATA) --grid 3x3x2 --tile 512x512x128 --jitter 20 \
	    --falloff 0.4 --dark 100 --gains 0.6,1.0

demo: setup $(DEMO_DATA)/tiles.json
	rm -rf $(DEMO_OUT)
	$(PY) jobs/export.py conf/demo.toml $(if $(SET),--set '$(SET)')
	$(PY) scripts/inspect_dataset.py $(DEMO_OUT)/volume
	@echo "pictures: $(CURDIR)/$(DEMO_OUT)/volume.report/ (projections.png, stitching-before-after.png, layout.png, progress.png; summary.json)"
	@echo "stitching: $(CURDIR)/$(DEMO_DATA)/tiles-stitching.png"

# Two pytest-xdist workers, a test file each at a time (a file's fixtures, e.g. its clean
# reference runs, stay in one worker); most slow tests wait on their own Spark processes,
# so two workers on two cores take about 60 % of the serial time. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) --durations=20

# ruff (lint) on the package, its tests, benchmarks and scripts, and mypy on the package;
# CI runs this before the tests
lint: setup
	$(VENV)/bin/ruff check pipelines tests benchmarks scripts jobs
	$(VENV)/bin/mypy

# Benchmarks (figures go to BENCHMARKS.md by hand, with this command): stitching accuracy,
# then write throughput against the codec + disk limit, tensorstore and dask + zarr-python,
# planning a petabyte, and affine fusion against placement and multiview-stitcher.
# Size: BENCH_GIB (default 4) GiB of output, data generated once under data/bench/;
# `make bench BENCH_GIB=0.25` is a quick run. Needs the `bench` extra (dask), installed once.
bench: setup $(BENCH_STAMP)
	$(PY) benchmarks/stitching.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/plan_scale.py
	$(PY) benchmarks/affine.py
	$(PY) benchmarks/illumination.py

# A real export of over a million blocks and objects (4³ chunks), killed midway, resumed,
# verified: the driver's memory and time per block (about 15 minutes, 5 GB of disk).
bench-scale: setup
	$(PY) benchmarks/scale_run.py

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	rm -f $(VENV)/.installed-bench-*
	touch $@

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis *.egg-info
