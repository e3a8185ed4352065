# Each claim's analysis reads the runs it needs and writes verdict.json, table.csv and figures/.
# A claim whose later runs depend on earlier results (its analyze.py defines select_runs) gets a
# checkpoint per selection stage: stage n's select_runs sees every run of stages 1 … n − 1 and
# writes stage<n>.json, and the DAG grows by those runs (SELECTION_STAGES in analyze.py: how many).


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
        scale=SCALE,
        scale_dir=up(3),
    log:
        f"{SCALE_DIR}/logs/select/{{claim}}.stage{{stage}}.log",
    conda:
        CONDA_ENV
    shell:
        "optclaims select {wildcards.claim} --stage {wildcards.stage} --scale {params.scale} --scale-dir {params.scale_dir}"
        " --runs {params.runs} --common {params.common:q} --out {output} > {log} 2>&1"


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
        evidential=("--evidential" if PLAN.evidential else "")
        + (f" --protocol-overrides {','.join(PLAN.protocol_overrides)}" if PLAN.protocol_overrides else ""),
        scale=SCALE,
        scale_dir=up(3),
    log:
        f"{SCALE_DIR}/logs/analyze/{{claim}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/analyze/{{claim}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "optclaims analyze {wildcards.claim} --scale {params.scale} --scale-dir {params.scale_dir} --runs {params.runs}"
        " {params.evidential} > {log} 2>&1"
