# make report : create .venv, install, run the smoke-scale suite, print the report's path
# make test   : create .venv if missing, run the tests
# make nightly: rerun the whole suite from scratch (runs and populations removed, every other
#               stage forced) and check it against
#               results/baselines/$(SCALE).json; exits non-zero on a flipped status or a figure
#               outside its tolerance (results/$(SCALE)/regression/report.md says which)
# make bless REASON="..." : make the current results the new baseline, recording why
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
SCALE   ?= smoke
CORES   ?= all
STAMP   := $(VENV)/.installed

.PHONY: report test nightly bless install clean-results

# torch first, alone: the pinned build is taken as it is (the CPU wheel here), and every later
# requirement that names torch is then already satisfied, so no CUDA build is pulled in.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete --config scale=$(SCALE)
	@echo "report: $(CURDIR)/results/$(SCALE)/report/index.html"

# A finished run is never retrained in place (its population skips it), so from scratch means without them.
nightly: $(STAMP)
	rm -rf results/$(SCALE)/runs results/$(SCALE)/populations
	$(BIN)/snakemake nightly --cores $(CORES) --forceall --config scale=$(SCALE)

bless: $(STAMP)
	@test -n "$(REASON)" || { echo 'make bless needs REASON="what changed and why the new figures are right"' >&2; exit 2; }
	$(BIN)/snakemake regression_figures --cores $(CORES) --config scale=$(SCALE)
	$(BIN)/optclaims bless --figures results/$(SCALE)/regression/figures.json \
		--baseline results/baselines/$(SCALE).json --reason "$(REASON)"

test: $(STAMP)
	$(BIN)/python -m pytest

clean-results:
	rm -rf results/$(SCALE)
