# Each claim's analysis reads the runs it needs and writes verdict.json, table.csv and figures/.
# A claim whose later runs depend on earlier results (its analyze.py defines select_runs) gets a
# checkpoint: select_runs writes stage2.json, and the DAG grows by those runs.


checkpoint select_runs:
    input:
        spec="reproductions/{claim}/claim.yaml",
        code="reproductions/{claim}/analyze.py",
        runs=lambda wc: trained(PLAN.claims[wc.claim]),
    output:
        f"{SCALE_DIR}/claims/{{claim}}/stage2.json",
    params:
        runs=lambda wc: " ".join(PLAN.claims[wc.claim]),
        common=canonical_json(PLAN.common),
    log:
        f"{SCALE_DIR}/logs/select/{{claim}}.log",
    shell:
        "optclaims select {wildcards.claim} --scale {SCALE} --scale-dir {SCALE_DIR} --runs {params.runs}"
        " --common {params.common:q} --out {output} > {log} 2>&1"


def claim_runs(wc):
    runs = list(PLAN.claims[wc.claim])
    if wc.claim in PLAN.staged:
        with open(checkpoints.select_runs.get(claim=wc.claim).output[0]) as f:
            runs += [r for r in json.load(f) if r not in runs]
    return runs


def analysis_inputs(wc):
    """Each run's population, and its lm-eval results unless the claim says `evaluate: false`."""
    runs = claim_runs(wc)
    evaluated = PLAN.claim_specs[wc.claim].get("evaluate", True)
    return trained(runs) + ([f"{SCALE_DIR}/runs/{r}/eval.json" for r in runs] if evaluated else [])


rule analyze:
    input:
        spec="reproductions/{claim}/claim.yaml",
        code="reproductions/{claim}/analyze.py",
        runs=analysis_inputs,
    output:
        verdict=f"{SCALE_DIR}/claims/{{claim}}/verdict.json",
        table=report(f"{SCALE_DIR}/claims/{{claim}}/table.csv", category="Claims", subcategory="{claim}"),
    params:
        runs=lambda wc: " ".join(claim_runs(wc)),
        evidential="--evidential" if SETTINGS["evidential"] else "",
    log:
        f"{SCALE_DIR}/logs/analyze/{{claim}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/analyze/{{claim}}.tsv"
    shell:
        "optclaims analyze {wildcards.claim} --scale {SCALE} --scale-dir {SCALE_DIR} --runs {params.runs}"
        " {params.evidential} > {log} 2>&1"
