# One job per population: runs that share a shape, trained as one stacked model (DESIGN.md). The
# member configs travel as a param, so a changed config (a new run_id, a new population) retrains;
# members whose summary.json exists are never retrained, however the populations are regrouped.
# A killed job resumes from populations/<pop_id>/train_state.pt (not a declared output, so
# Snakemake keeps it); members that finished before the kill keep their outputs.
# On GPUs each job holds `gpu=1` of `--resources gpu=N` (N = GPUs × jobs_per_gpu) and claims its own
# device slot (optclaims.devices), since Snakemake hands out counts, not device ids.

ON_GPU = SETTINGS["train"].get("gpu", SCALE != "smoke")
JOBS_PER_GPU = SETTINGS["train"].get("jobs_per_gpu", 1)


rule train:
    input:
        rules.tokenize.output.meta,
    output:
        f"{SCALE_DIR}/populations/{{pop_id}}/population.json",
    params:
        configs=lambda wc: canonical_json([run_config(r) for r in populations()[wc.pop_id]]),
        state=lambda wc: f"{SCALE_DIR}/populations/{wc.pop_id}",
    threads: SETTINGS["train"].get("threads", 1)
    resources:
        gpu=1 if ON_GPU else 0,
    log:
        f"{SCALE_DIR}/logs/train/{{pop_id}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/train/{{pop_id}}.tsv"
    shell:
        "{KEEP_FREED_MEMORY} optclaims train-population --configs-json {params.configs:q} --data {DATA} --runs-dir {SCALE_DIR}/runs"
        " --state-dir {params.state} --id {wildcards.pop_id} --threads {threads} --jobs-per-gpu {JOBS_PER_GPU}"
        " --out {output} > {log} 2>&1"


# Per run, a stable mark that it is trained, for work on that one run (lm-eval): a regrouped
# population has a new population.json path, which Snakemake's input trigger would take as a reason
# to evaluate every member again; this mark is only made again, cheaply, and is read as ancient.
localrules:
    mark_trained,


rule mark_trained:
    input:
        lambda wc: ancient(trained([wc.run_id])),
    output:
        touch(f"{SCALE_DIR}/runs/{{run_id}}/.trained"),
