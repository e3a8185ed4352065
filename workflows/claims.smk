# Each claim's analysis reads the runs it needs and writes verdict.json, table.csv and figures/.
# A claim whose later runs depend on earlier results (its analyze.py defines select_runs) gets a
# checkpoint per selection stage: stage n's select_runs sees every run of stages 1 … n − 1 and
# writes stage<n>.json, and the DAG grows by those runs (SELECTION_STAGES in analyze.py: how many).


def runs_before(claim, stage):
    """A claim's run_ids of stages 1 … stage − 1 (the plan, then each earlier checkpoint's choice)."""
    runs = list(PLAN.claims[claim])
    for earlier in range(2, stage):
        with open(checkpoints.select_runs.get(claim=claim, stage=str(earlier)).output[0]) as f:
            runs += [r for r in json.load(f) if r not in runs]
    return runs


checkpoint select_runs:
    input:
        spec="reproductions/{claim}/claim.yaml",
        code="reproductions/{claim}/analyze.py",
        runs=lambda wc: trained(runs_before(wc.claim, int(wc.stage))),
    output:
        f"{SCALE_DIR}/claims/{{claim}}/stage{{stage}}.json",
    params:
        runs=lambda wc: " ".join(runs_before(wc.claim, int(wc.stage))),
        common=canonical_json(PLAN.common),
    log:
        f"{SCALE_DIR}/logs/select/{{claim}}.stage{{stage}}.log",
    shell:
        "optclaims select {wildcards.claim} --stage {wildcards.stage} --scale {SCALE} --scale-dir {SCALE_DIR}"
        " --runs {params.runs} --common {params.common:q} --out {output} > {log} 2>&1"


def claim_runs(wc):
    """Every run of a claim: its plan and, for a staged claim, each stage's choice."""
    if wc.claim not in PLAN.staged:
        return list(PLAN.claims[wc.claim])
    return runs_before(wc.claim, PLAN.selections(wc.claim).stop)


def analysis_inputs(wc):
    """Each run's population, and the lm-eval results of the runs the claim has scored (none with
    `evaluate: false`; only those of `evaluated_runs` where its analyze.py names them)."""
    runs = claim_runs(wc)
    return trained(runs) + [f"{SCALE_DIR}/runs/{r}/eval.json" for r in runs if PLAN.evaluates(wc.claim, r)]


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
