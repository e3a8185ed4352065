# lm-evaluation-harness on every trained run, on the local tasks (plus hub tasks, if named).


rule evaluate:
    input:
        trained=ancient(f"{SCALE_DIR}/runs/{{run_id}}/.trained"),
        tokenizer=rules.tokenizer.output[0],
        tasks=rules.eval_tasks.output,
    output:
        f"{SCALE_DIR}/runs/{{run_id}}/eval.json",
    params:
        run=lambda wc: f"{SCALE_DIR}/runs/{wc.run_id}",
        data=lambda wc, input: os.path.dirname(input.tokenizer),
        tasks=",".join(SETTINGS["eval"]["tasks"]),
        hub=",".join(SETTINGS["eval"]["hub_tasks"]),
        limit=f"--limit {SETTINGS['eval']['limit']}" if SETTINGS["eval"]["limit"] else "",
        device=SETTINGS["eval"]["device"],
        batch_size=SETTINGS["eval"]["batch_size"],
        jobs_per_gpu=JOBS_PER_GPU,
        keep_freed_memory=KEEP_FREED_MEMORY,
    threads: THREADS
    resources:
        gpu=1 if SETTINGS["eval"]["device"] != "cpu" and ON_GPU else 0,
    log:
        f"{SCALE_DIR}/logs/eval/{{run_id}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/evaluate/{{run_id}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.keep_freed_memory} optclaims eval --run {params.run} --data {params.data}"
        " --tasks-dir {input.tasks} --tasks {params.tasks} --hub-tasks '{params.hub}' {params.limit}"
        " --device {params.device} --batch-size {params.batch_size} --jobs-per-gpu {params.jobs_per_gpu}"
        " --out {output} > {log} 2>&1"
