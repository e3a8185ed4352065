# make report : create .venv, install, run the smoke-scale suite, print the report's path
# make test   : create .venv if missing, run the tests
# make report-pdf : results/$(SCALE)/report/report.pdf from the LaTeX report beside index.html (latexmk,
#               or pdflatex + bibtex; on Debian: apt-get install --no-install-recommends texlive-latex-base
#               texlive-latex-recommended texlive-fonts-recommended latexmk)
# make nightly: rerun the whole suite from scratch (runs and populations removed, every other
#               stage forced) and check it against
#               results/baselines/$(SCALE).json; exits non-zero on a flipped status or a figure
#               outside its tolerance (results/$(SCALE)/regression/report.md says which)
# make bless REASON="..." : make the current results the new baseline, recording why (runs the suite once
#               more in results/replica with other CPU kernels, to measure the spread an environment change causes)
# make gpu-reference CLAIMS="a b" : on a GPU, the gpu scale of those claims, packed into $(ARCHIVE)
# make rehearse-gpu [CLAIMS="a b"] : on a CPU, the gpu scale's plan with every run cut to a few short steps
#               (workflows/config/rehearsal.yaml), through every stage to the report in $(REHEARSAL_DIR)/gpu:
#               the code paths only the gpu scale takes run before a GPU slot is spent (not evidence)
# make file-reference ARCHIVE=... : file a packed archive into results/reference/gpu, then rebuild
#               the reference report and the README's table (commit results/reference and README.md)
# make reference-report : the HTML and Markdown report of results/reference/gpu (any CPU, no training)
# make readme-table     : rewrite the README's gpu reference table from results/reference/gpu
# make run-fields       : rewrite the README's table of run fields from src/optclaims/schemas/run.schema.json
# make claims-table     : rewrite the README's claim table from reproductions/*/claim.yaml
# make bless-reference REASON="..." : results/baselines/gpu.json from the committed gpu references
# make compare A=results/gpu B=results/reference/gpu : two results folders of one scale side by side
#               (verdict flips, headline figures and their agreement, figures overlaid) in $(COMPARE_OUT)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
SCALE   ?= smoke
CORES   ?= all
STAMP   := $(VENV)/.installed

ARCHIVE ?= results/reference-gpu.tgz
REPLICA_DIR ?= results/replica
REPLICA_ENV ?= ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
GPUS    ?= 1
REFERENCE := results/reference/gpu
REHEARSAL_DIR ?= results/rehearsal
COMPARE_OUT ?= results/compare
comma   := ,
empty   :=
space   := $(empty) $(empty)

.PHONY: report report-pdf test nightly bless install clean-results rehearse-gpu gpu-reference file-reference reference-report readme-table run-fields claims-table bless-reference compare

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

report-pdf: $(STAMP)
	$(BIN)/optclaims report-pdf --scale-dir results/$(SCALE)

# A finished run is never retrained in place (its population skips it), so from scratch means without them.
nightly: $(STAMP)
	rm -rf results/$(SCALE)/runs results/$(SCALE)/populations
	$(BIN)/snakemake nightly --cores $(CORES) --forceall --config scale=$(SCALE)

# The replica: the same suite again, in results/replica, with torch's CPU libraries held to scalar and
# SSE4.2 kernels (another environment on this machine), so the statistical tolerances cover the spread
# an environment change was measured to cause.
bless: $(STAMP)
	@test -n "$(REASON)" || { echo 'make bless needs REASON="what changed and why the new figures are right"' >&2; exit 2; }
	$(BIN)/snakemake regression_figures --cores $(CORES) --config scale=$(SCALE)
	env $(REPLICA_ENV) $(BIN)/snakemake regression_figures --cores $(CORES) --config scale=$(SCALE) results_dir=$(REPLICA_DIR)
	$(BIN)/optclaims bless --figures results/$(SCALE)/regression/figures.json \
		--replica $(REPLICA_DIR)/$(SCALE)/regression/figures.json \
		--baseline results/baselines/$(SCALE).json --reason "$(REASON)"

# The claims are checked (known, evidential at gpu scale) by the plan before any job and by the pack after.
gpu-reference: $(STAMP)
	@test -n "$(strip $(CLAIMS))" || { echo 'make gpu-reference needs CLAIMS="claim [claim...]"' >&2; exit 2; }
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete --config scale=gpu "claims=[$(subst $(space),$(comma),$(strip $(CLAIMS)))]" --resources gpu=$(GPUS)
	$(BIN)/optclaims pack-reference --scale-dir results/gpu --claims "$(CLAIMS)" --out $(ARCHIVE)

rehearse-gpu: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete --configfile workflows/config/rehearsal.yaml \
		--config scale=gpu results_dir=$(REHEARSAL_DIR) $(if $(strip $(CLAIMS)),"claims=[$(subst $(space),$(comma),$(strip $(CLAIMS)))]")
	@echo "rehearsal: $(CURDIR)/$(REHEARSAL_DIR)/gpu/report/index.html"

file-reference: $(STAMP)
	@test -n "$(ARCHIVE)" -a -f "$(ARCHIVE)" || { echo 'make file-reference needs ARCHIVE=<an archive from make gpu-reference> (got "$(ARCHIVE)")' >&2; exit 2; }
	$(BIN)/optclaims file-reference $(ARCHIVE) --reference $(REFERENCE)
	$(BIN)/optclaims reference-report --reference $(REFERENCE)
	$(BIN)/optclaims readme-table --reference $(REFERENCE)

reference-report: $(STAMP)
	$(BIN)/optclaims reference-report --reference $(REFERENCE)

readme-table: $(STAMP)
	$(BIN)/optclaims readme-table --reference $(REFERENCE)

run-fields: $(STAMP)
	$(BIN)/optclaims run-fields

claims-table: $(STAMP)
	$(BIN)/optclaims claims-table

bless-reference: $(STAMP)
	@test -n "$(REASON)" || { echo 'make bless-reference needs REASON="which references and why they are right"' >&2; exit 2; }
	$(BIN)/optclaims reference-figures --reference $(REFERENCE) --out results/gpu-reference-figures.json
	$(BIN)/optclaims bless --figures results/gpu-reference-figures.json --baseline results/baselines/gpu.json --reason "$(REASON)"

compare: $(STAMP)
	@test -n "$(A)" -a -n "$(B)" || { echo 'make compare needs A=<results folder> B=<results folder of the same scale> (results/<scale> or $(REFERENCE))' >&2; exit 2; }
	$(BIN)/optclaims compare $(A) $(B) --out $(COMPARE_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

clean-results:
	rm -rf results/$(SCALE)
