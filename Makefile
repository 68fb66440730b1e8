# Quick start:  make demo   (set up + run the demo)    make test   (set up + run the tests)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# pytest workers: CI machines have 2 cores; each worker runs torch with one thread.
TEST_WORKERS ?= 2

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@echo "setting up $(VENV): torch from PyPI brings its CUDA libraries (about 6 GB, several minutes; runs on CPU too)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	$(BIN)/python -c "import lossensemble, torch; print('installed lossensemble', lossensemble.__version__, 'with torch', torch.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lossensemble demo -o demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -p no:cacheprovider --durations=15

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
