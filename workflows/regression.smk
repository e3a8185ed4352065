# The nightly regression check (`make nightly`: the suite from scratch, then `snakemake nightly`): the figures this
# run measured, compared with the committed baseline results/baselines/<scale>.json. The check
# always writes its report; the `nightly` rule then fails the workflow if the check failed.


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
        threads=THREADS,
        scale=SCALE,
        scale_dir=up(2),
    log:
        f"{SCALE_DIR}/logs/regression_figures.log",
    conda:
        CONDA_ENV
    shell:
        "optclaims regression-figures --scale {params.scale} --scale-dir {params.scale_dir} --claims {params.claims}"
        " --references {params.references:q} --tolerance {params.tolerance:q} --threads {params.threads}"
        " --out {output} > {log} 2>&1"


rule regression:
    input:
        figures=rules.regression_figures.output,
        baseline=baseline_file,
    output:
        md=report(f"{REGRESSION}/report.md", category="Regression"),
        html=f"{REGRESSION}/report.html",
        json=f"{REGRESSION}/report.json",
    params:
        out_dir=up(1),
    log:
        f"{SCALE_DIR}/logs/regression.log",
    conda:
        CONDA_ENV
    shell:
        "optclaims regress --figures {input.figures} --baseline {input.baseline} --out-dir {params.out_dir} > {log} 2>&1"


rule nightly:
    input:
        report=rules.report.output.html,
        regression=rules.regression.output.json,
    log:
        f"{SCALE_DIR}/logs/nightly.log",
    conda:
        CONDA_ENV
    shell:
        "optclaims regression-gate {input.regression} 2>&1 | tee {log}"
