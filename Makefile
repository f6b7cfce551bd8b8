# saliencylab: the two commands of the README are `make demo` and `make test`.
# Both create the virtual environment .venv on first use (torch is a ~3 minute install).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its test tools

demo: $(STAMP)  ## run every built stage on the bundled demo data (CPU, local storage)
	$(BIN)/saliencylab demo --workdir demo-run

test: $(STAMP)  ## run the test suite (starts a local SeaweedFS S3 server for the S3 tests)
	$(BIN)/python -m pytest -q

clean:  ## remove the demo run (keeps .venv)
	rm -rf demo-run
