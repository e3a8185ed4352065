# optclaims: published claims about LLM training -> measured verdicts.
#   snakemake --cores all                        smoke scale (CPU, plumbing only)
#   snakemake --cores all --config scale=gpu     one H100, evidential at small-model scale
#   snakemake --profile workflows/profiles/gpu
#   snakemake nightly --forceall                 the regression check against results/baselines/<scale>.json
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

SCALE = PLAN.scale
SCALE_DIR = str(PLAN.scale_dir)
DATA = str(PLAN.data_dir)
SETTINGS = PLAN.settings


def run_config(run_id):
    """A run's config: from the plan, or from a claim's second-stage selection."""
    if run_id in PLAN.runs:
        return PLAN.runs[run_id]
    for claim in PLAN.staged:
        path = f"{SCALE_DIR}/claims/{claim}/stage2.json"
        if os.path.exists(path):
            selected = json.loads(open(path).read())
            if run_id in selected:
                return selected[run_id]
    raise ValueError(f"run {run_id} is in no claim's plan")


wildcard_constraints:
    run_id="[0-9a-f]{12}",
    claim="[a-z][a-z0-9_]*",


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
