# Each claim's analysis reads the runs it needs and writes verdict.json, table.csv and figures/.


def claim_inputs(wc):
    runs = PLAN.claims[wc.claim]
    return {
        "spec": f"reproductions/{wc.claim}/claim.yaml",
        "code": f"reproductions/{wc.claim}/analyze.py",
        "summaries": expand(f"{SCALE_DIR}/runs/{{r}}/summary.json", r=runs),
        "metrics": expand(f"{SCALE_DIR}/runs/{{r}}/metrics.parquet", r=runs),
        "evals": expand(f"{SCALE_DIR}/runs/{{r}}/eval.json", r=runs),
    }


rule analyze:
    input:
        unpack(claim_inputs),
    output:
        verdict=f"{SCALE_DIR}/claims/{{claim}}/verdict.json",
        table=report(f"{SCALE_DIR}/claims/{{claim}}/table.csv", category="Claims", subcategory="{claim}"),
    params:
        runs=lambda wc: " ".join(PLAN.claims[wc.claim]),
        evidential="--evidential" if SETTINGS["evidential"] else "",
    log:
        f"{SCALE_DIR}/logs/analyze/{{claim}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/analyze/{{claim}}.tsv"
    shell:
        "optclaims analyze {wildcards.claim} --scale {SCALE} --scale-dir {SCALE_DIR} --runs {params.runs}"
        " {params.evidential} > {log} 2>&1"
