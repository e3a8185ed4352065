# optclaims: published claims about LLM training -> measured verdicts.
#   snakemake --cores all                        smoke scale (CPU, plumbing only)
#   snakemake --cores all --config scale=gpu     one H100, evidential at small-model scale
#   snakemake --profile workflows/profiles/gpu
#   make nightly                                 the suite from scratch, checked against results/baselines/<scale>.json
# The config is validated (schema, then claims, corpus and every run config) before any job runs.
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflows/config/config.yaml"


validate(config, "workflows/schemas/config.schema.yaml")

from optclaims.plan import build_plan
from optclaims.errors import ConfigError
from optclaims.runs import canonical_json

try:
    PLAN = build_plan(config)
except ConfigError as err:
    sys.exit(f"optclaims: {err}")

# The rules call the `optclaims` CLI installed beside this interpreter, activated venv or not.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

# glibc returns every freed block above its mmap threshold to the kernel, so a CPU training step
# that frees and reallocates tens of MB of activations pays page faults for all of it again each
# step; keeping them in the heap made smoke-scale population steps 23% faster (sys time 2.5 s → 0.3 s
# over 20 steps of an 8-member d128 population).
KEEP_FREED_MEMORY = "MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296"

SCALE = PLAN.scale
SCALE_DIR = str(PLAN.scale_dir)
DATA = str(PLAN.data_dir)
SETTINGS = PLAN.settings


def stage_file(claim, stage):
    """Where a staged claim's checkpoint writes the runs it chose for ``stage`` (2, 3, ...)."""
    return f"{SCALE_DIR}/claims/{claim}/stage{stage}.json"


def chosen_runs(claim, stage):
    """A staged claim's run configs of ``stage`` once its checkpoint has chosen them, else {}."""
    path = stage_file(claim, stage)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def run_config(run_id):
    """A run's config: from the plan, or from a claim's later-stage selection."""
    if run_id in PLAN.runs:
        return PLAN.runs[run_id]
    for claim in sorted(PLAN.staged):
        for stage in PLAN.selections(claim):
            selected = chosen_runs(claim, stage)
            if run_id in selected:
                return selected[run_id]
    raise ValueError(f"run {run_id} is in no claim's plan")


def populations():
    """Every population known now: the plan's, and each staged claim's later stages once chosen
    (each stage's runs that no earlier stage of the claim, and not the plan, already trains)."""
    pops = dict(PLAN.populations)
    for claim in sorted(PLAN.staged):
        known = set(PLAN.runs)
        for stage in PLAN.selections(claim):
            selected = chosen_runs(claim, stage)
            pops.update(PLAN.group({r: c for r, c in selected.items() if r not in known}))
            known |= set(selected)
    return pops


def trained(runs):
    """The files that mark the given runs trained: their populations' population.json."""
    owner = {r: pop for pop, members in populations().items() for r in members}
    return sorted({f"{SCALE_DIR}/populations/{owner[r]}/population.json" for r in runs})


wildcard_constraints:
    run_id="[0-9a-f]{12}",
    pop_id="[0-9a-f]{12}",
    claim="[a-z][a-z0-9_]*",
    stage="[2-9]|[1-9][0-9]+",


include: "workflows/data.smk"
include: "workflows/train.smk"
include: "workflows/eval.smk"
include: "workflows/claims.smk"
include: "workflows/report.smk"
include: "workflows/regression.smk"


rule all:
    input:
        f"{SCALE_DIR}/report/index.html",
    default_target: True


onsuccess:
    print(f"optclaims report: {SCALE_DIR}/report/index.html")
