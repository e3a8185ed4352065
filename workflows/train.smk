# One job per run_id; the run config travels as a param, so only a changed config retrains.
# A killed job resumes from its train_state.pt (not a declared output, so Snakemake keeps it).
# On GPUs each job holds `gpu=1` of `--resources gpu=N` (N = GPUs × jobs_per_gpu) and claims its own
# device slot (optclaims.devices), since Snakemake hands out counts, not device ids.

ON_GPU = SETTINGS["train"].get("gpu", SCALE != "smoke")
JOBS_PER_GPU = SETTINGS["train"].get("jobs_per_gpu", 1)


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
        gpu=1 if ON_GPU else 0,
    log:
        f"{SCALE_DIR}/logs/train/{{run_id}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/train/{{run_id}}.tsv"
    shell:
        "optclaims train --config-json {params.config:q} --data {DATA} --out {params.out} --threads {threads}"
        " --jobs-per-gpu {JOBS_PER_GPU} > {log} 2>&1"
