# One job per run_id; the run config travels as a param, so only a changed config retrains.
# A killed job resumes from its train_state.pt (not a declared output, so Snakemake keeps it).


rule train:
    input:
        rules.tokenize.output.meta,
    output:
        summary=f"{SCALE_DIR}/runs/{{run_id}}/summary.json",
        metrics=f"{SCALE_DIR}/runs/{{run_id}}/metrics.parquet",
        model=f"{SCALE_DIR}/runs/{{run_id}}/model.safetensors",
    params:
        config=lambda wc: canonical_json(run_config(wc.run_id)),
        out=lambda wc: f"{SCALE_DIR}/runs/{wc.run_id}",
    threads: SETTINGS["train"].get("threads", 1)
    resources:
        gpu=0 if SCALE == "smoke" else 1,
    log:
        f"{SCALE_DIR}/logs/train/{{run_id}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/train/{{run_id}}.tsv"
    shell:
        "optclaims train --config-json {params.config:q} --data {DATA} --out {params.out} --threads {threads} > {log} 2>&1"
