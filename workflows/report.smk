# Provenance of the whole workflow, then the paper-style report (self-contained HTML + Markdown,
# and LaTeX: report.tex, references.bib, tables/, figures/; report.pdf by `make report-pdf`).


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
        sources="reproductions/sources.yaml",
    output:
        html=report(f"{SCALE_DIR}/report/index.html", caption="report/caption.rst", category="Report"),
        md=f"{SCALE_DIR}/report/report.md",
        tex=f"{SCALE_DIR}/report/report.tex",
        bib=f"{SCALE_DIR}/report/references.bib",
        verdict_table=f"{SCALE_DIR}/report/tables/verdicts.tex",
        claim_tables=expand(f"{SCALE_DIR}/report/tables/{{claim}}.tex", claim=PLAN.claims),
        figures=directory(f"{SCALE_DIR}/report/figures"),
    params:
        scale_dir=up(2),
    log:
        f"{SCALE_DIR}/logs/report.log",
    conda:
        CONDA_ENV
    shell:
        "optclaims report --scale-dir {params.scale_dir} --sources {input.sources} > {log} 2>&1"
