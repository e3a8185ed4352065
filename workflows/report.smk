# Provenance of the whole workflow, then the paper-style report (self-contained HTML + Markdown).


localrules:
    provenance,
    report,


rule provenance:
    input:
        expand(f"{SCALE_DIR}/claims/{{claim}}/verdict.json", claim=PLAN.claims),
    output:
        f"{SCALE_DIR}/provenance.json",
    params:
        config=config,
        scale=SCALE,
    log:
        f"{SCALE_DIR}/logs/provenance.log",
    run:
        from optclaims.provenance import workflow_provenance
        from optclaims.atomic import write_json

        write_json(output[0], workflow_provenance(params.config, params.scale))


rule report:
    input:
        verdicts=expand(f"{SCALE_DIR}/claims/{{claim}}/verdict.json", claim=PLAN.claims),
        tables=expand(f"{SCALE_DIR}/claims/{{claim}}/table.csv", claim=PLAN.claims),
        provenance=rules.provenance.output,
    output:
        html=report(f"{SCALE_DIR}/report/index.html", caption="report/caption.rst", category="Report"),
        md=f"{SCALE_DIR}/report/report.md",
    params:
        scale_dir=up(2),
    log:
        f"{SCALE_DIR}/logs/report.log",
    conda:
        CONDA_ENV
    shell:
        "optclaims report --scale-dir {params.scale_dir} > {log} 2>&1"
