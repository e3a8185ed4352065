# optclaims: published claims about LLM training -> measured verdicts.
#   snakemake --cores all                        smoke scale (CPU, plumbing only)
#   snakemake --cores all --config scale=gpu     one H100, evidential at small-model scale
#   snakemake --profile workflows/profiles/gpu
#   make nightly                                 the suite from scratch, checked against results/baselines/<scale>.json
# The config is validated (schema, then claims, corpus and every run config) before any job runs.
from snakemake.utils import min_version, validate

from optclaims.workflow_config import CONFIG_SCHEMA

min_version("9.0")


configfile: "workflows/config/config.yaml"


validate(config, str(CONFIG_SCHEMA))


envvars:
    "PATH",


include: "workflows/common.smk"


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
