# The two commands of the README: `make run` (set up and run) and `make test` (set up and test);
# `make lint` runs ruff and mypy as configured in pyproject.toml (CI runs it before the tests).
# Both create .venv in the repository root. torch is installed first, pinned, so that pip takes
# the local CPU wheel instead of downloading a CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PORT ?= 8000
HOST ?= 127.0.0.1
DATA_DIR ?= .hm2bp

.PHONY: setup run lint test bench clean

# snnTorch (with nirtorch) is the independent NIR importer of tests/test_nir_export.py and the BPTT
# baseline of benchmarks/speed.py; --no-deps keeps them from pulling another torch (what they import
# besides, torch, numpy, nir and h5py, is installed before them).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH) numpy
	$(BIN)/pip install --quiet -e ".[test,bench]"
	$(BIN)/pip install --quiet --no-deps nirtorch==2.6 snntorch==1.0.0
	@# the C++ CPU kernels, built now (once per environment) so that no training job waits for the compiler
	$(BIN)/hm2bp kernels build || echo "hm2bp: no CPU kernels (no C++ compiler?); training uses the tensor code"
	touch $@

setup: $(VENV)/.installed

# the service with embedded defaults: API + one worker + SQLite + an embedded Redis, data in .hm2bp/;
# another port, interface or data folder: make run PORT=8123 HOST=0.0.0.0 DATA_DIR=/srv/hm2bp
run: setup
	$(BIN)/hm2bp serve --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup
	$(BIN)/python -m pytest -q -ra

bench: setup
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
