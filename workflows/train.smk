# One job per population: runs that share a shape, trained as one stacked model (DESIGN.md). The
# member configs travel as a param, so a changed config (a new run_id, a new population) retrains;
# members whose summary.json exists are never retrained, however the populations are regrouped.
# A killed job resumes from populations/<pop_id>/train_state.pt (not a declared output, so
# Snakemake keeps it); members that finished before the kill keep their outputs.


rule train:
    input:
        rules.tokenize.output.meta,
    output:
        f"{SCALE_DIR}/populations/{{pop_id}}/population.json",
    params:
        configs=lambda wc: canonical_json([run_config(r) for r in populations()[wc.pop_id]]),
        state=lambda wc: f"{SCALE_DIR}/populations/{wc.pop_id}",
        data=lambda wc, input: Path(input[0]).parents[1],
        runs_dir=f"{SCALE_DIR}/runs",
        jobs_per_gpu=JOBS_PER_GPU,
        keep_freed_memory=KEEP_FREED_MEMORY,
    threads: THREADS
    resources:
        gpu=1 if ON_GPU else 0,
    log:
        f"{SCALE_DIR}/logs/train/{{pop_id}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/train/{{pop_id}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{params.keep_freed_memory} optclaims train-population --configs-json {params.configs:q} --data {params.data}"
        " --runs-dir {params.runs_dir} --state-dir {params.state} --id {wildcards.pop_id} --threads {threads}"
        " --jobs-per-gpu {params.jobs_per_gpu} --out {output} > {log} 2>&1"


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
