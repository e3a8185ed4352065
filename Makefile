# make report : create .venv, install, run the smoke-scale suite, print the report's path
# make test   : create .venv if missing, run the tests
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
SCALE   ?= smoke
CORES   ?= all
STAMP   := $(VENV)/.installed

.PHONY: report test install clean-results

# torch first, alone: the pinned build is taken as it is (the CPU wheel here), and every later
# requirement that names torch is then already satisfied, so no CUDA build is pulled in.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --config scale=$(SCALE)
	@echo "report: $(CURDIR)/results/$(SCALE)/report/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest

clean-results:
	rm -rf results/$(SCALE)
