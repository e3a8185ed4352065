# The nightly regression check (`make nightly`: the suite from scratch, then `snakemake nightly`): the figures this
# run measured, compared with the committed baseline results/baselines/<scale>.json. The check
# always writes its report; the `nightly` rule then fails the workflow if the check failed.

from optclaims.regression.figures import reference_runs, seed_group, tolerance_rule

REGRESSION = f"{SCALE_DIR}/regression"
BASELINE = f"{config['results_dir']}/baselines/{SCALE}.json"
TOLERANCE = tolerance_rule(SETTINGS.get("regression"))
REFERENCES = {key: seed_group(PLAN.runs, rid)
              for key, rid in reference_runs(PLAN.claims, TOLERANCE["reference_runs_per_claim"]).items()}


localrules:
    regression_figures,
    regression,
    nightly,


rule regression_figures:
    input:
        verdicts=expand(f"{SCALE_DIR}/claims/{{claim}}/verdict.json", claim=PLAN.claims),
        runs=lambda wc: trained({r for group in REFERENCES.values() for r in group}),
    output:
        f"{REGRESSION}/figures.json",
    params:
        claims=" ".join(PLAN.claims),
        references=canonical_json(REFERENCES),
        tolerance=canonical_json(TOLERANCE),
        threads=SETTINGS["train"]["threads"],
    log:
        f"{SCALE_DIR}/logs/regression_figures.log",
    shell:
        "optclaims regression-figures --scale {SCALE} --scale-dir {SCALE_DIR} --claims {params.claims}"
        " --references {params.references:q} --tolerance {params.tolerance:q} --threads {params.threads}"
        " --out {output} > {log} 2>&1"


def baseline_file(wildcards):
    if not os.path.exists(BASELINE):
        raise WorkflowError(f"no baseline {BASELINE} to check against: run the suite, then bless its figures with "
                            f"`make bless SCALE={SCALE} REASON=\"...\"`"
                            + (" (or, at gpu scale, bless the committed references: `make bless-reference REASON=\"...\"`)"
                               if SCALE == "gpu" else ""))
    return BASELINE


rule regression:
    input:
        figures=rules.regression_figures.output,
        baseline=baseline_file,
    output:
        md=report(f"{REGRESSION}/report.md", category="Regression"),
        json=f"{REGRESSION}/report.json",
    log:
        f"{SCALE_DIR}/logs/regression.log",
    shell:
        "optclaims regress --figures {input.figures} --baseline {input.baseline} --out-dir {REGRESSION} > {log} 2>&1"


rule nightly:
    input:
        report=rules.report.output.html,
        regression=rules.regression.output.json,
    shell:
        "optclaims regression-gate {input.regression}"
