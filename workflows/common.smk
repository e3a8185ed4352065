# What the rules share: the plan's names, the scale's settings, and the lookups from a run or a
# population to its config and to the file that marks it trained. Later-stage runs (a claim whose
# analyze.py chooses more runs from earlier results) are known only through the checkpoint API.

import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import IncompleteCheckpointException, WorkflowError

from optclaims.errors import ConfigError
from optclaims.plan import build_plan
from optclaims.regression.figures import reference_runs, seed_group, tolerance_rule
from optclaims.runs import canonical_json

try:
    PLAN = build_plan(config)
except ConfigError as err:
    sys.exit(f"optclaims: {err}")

# The rules call the `optclaims` CLI installed beside this interpreter, activated venv or not.
PATH = os.environ["PATH"]
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), PATH])

# glibc returns every freed block above its mmap threshold to the kernel, so a CPU training step
# that frees and reallocates tens of MB of activations pays page faults for all of it again each
# step; keeping them in the heap made smoke-scale population steps 23% faster (sys time 2.5 s → 0.3 s
# over 20 steps of an 8-member d128 population).
KEEP_FREED_MEMORY = "MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296"

# Each rule's software under `--use-conda` (without it, the running interpreter's); the path is
# relative to the rule files.
CONDA_ENV = "envs/optclaims.yaml"

SCALE = PLAN.scale
SCALE_DIR = str(PLAN.scale_dir)
DATA = str(PLAN.data_dir)
SETTINGS = PLAN.settings  # validated against the schema, its defaults filled in
# On GPUs each training job holds `gpu=1` of `--resources gpu=N` (N = GPUs × jobs_per_gpu) and
# reserves its own device slot (optclaims.devices), since Snakemake hands out counts, not device ids.
ON_GPU = SETTINGS["train"]["gpu"]
JOBS_PER_GPU = SETTINGS["train"]["jobs_per_gpu"]
THREADS = SETTINGS["train"]["threads"]

REGRESSION = f"{SCALE_DIR}/regression"
BASELINE = f"{config['results_dir']}/baselines/{SCALE}.json"
TOLERANCE = tolerance_rule(SETTINGS["regression"])
REFERENCES = {key: seed_group(PLAN.runs, rid)
              for key, rid in reference_runs(PLAN.claims, TOLERANCE["reference_runs_per_claim"]).items()}


def up(levels):
    """A params function: the folder ``levels`` above the rule's first output (lint wants every
    path a rule passes derived from its files, not written again)."""
    return lambda wildcards, output: str(Path(output[0]).parents[levels - 1])


def chosen_runs(claim, stage):
    """The run configs a staged claim's checkpoint chose for ``stage`` (2, 3, ...). Until that
    checkpoint has run, the checkpoint API raises, and Snakemake asks again once it has."""
    with open(checkpoints.select_runs.get(claim=claim, stage=str(stage)).output[0]) as f:
        return json.load(f)


def completed_selections():
    """(claim, stage, run configs) of every selection whose checkpoint has run so far, stage by stage."""
    for claim in sorted(PLAN.staged):
        for stage in PLAN.selections(claim):
            try:
                yield claim, stage, chosen_runs(claim, stage)
            except IncompleteCheckpointException:
                break  # a claim's later stages are chosen from this one's runs


def run_config(run_id):
    """A run's config: from the plan, or from a claim's later-stage selection."""
    if run_id in PLAN.runs:
        return PLAN.runs[run_id]
    for _, _, selected in completed_selections():
        if run_id in selected:
            return selected[run_id]
    raise WorkflowError(f"run {run_id} is in no claim's plan nor in any selection made so far")


def populations():
    """Every population known now: the plan's, and those of each completed selection (its runs
    that neither the plan nor an earlier stage of the same claim already trains)."""
    pops = dict(PLAN.populations)
    known = {}
    for claim, _, selected in completed_selections():
        seen = known.setdefault(claim, set(PLAN.runs))
        pops.update(PLAN.group({r: c for r, c in selected.items() if r not in seen}))
        seen |= set(selected)
    return pops


def trained(runs):
    """The files that mark the given runs trained: their populations' population.json."""
    owner = {r: pop for pop, members in populations().items() for r in members}
    return sorted({f"{SCALE_DIR}/populations/{owner[r]}/population.json" for r in runs})


def runs_before(claim, stage):
    """A claim's run_ids of stages 1 … stage − 1 (the plan, then each earlier checkpoint's choice)."""
    runs = list(PLAN.claims[claim])
    for earlier in range(2, stage):
        runs += [r for r in chosen_runs(claim, earlier) if r not in runs]
    return runs


def claim_runs(wildcards):
    """Every run of a claim: its plan and, for a staged claim, each stage's choice."""
    if wildcards.claim not in PLAN.staged:
        return list(PLAN.claims[wildcards.claim])
    return runs_before(wildcards.claim, PLAN.selections(wildcards.claim).stop)


def analysis_inputs(wildcards):
    """Each run's population, and the lm-eval results of the runs the claim has scored (none with
    `evaluate: false`; only those of `evaluated_runs` where its analyze.py names them)."""
    runs = claim_runs(wildcards)
    return trained(runs) + [f"{SCALE_DIR}/runs/{r}/eval.json" for r in runs if PLAN.evaluates(wildcards.claim, r)]


def baseline_file(wildcards):
    if not os.path.exists(BASELINE):
        raise WorkflowError(f"no baseline {BASELINE} to check against: run the suite, then bless its figures with "
                            f"`make bless SCALE={SCALE} REASON=\"...\"`"
                            + (" (or, at gpu scale, bless the committed references: `make bless-reference REASON=\"...\"`)"
                               if SCALE == "gpu" else ""))
    return BASELINE
