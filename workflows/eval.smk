# lm-evaluation-harness on every trained run, on the local tasks (plus hub tasks, if named).


rule evaluate:
    input:
        trained=ancient(f"{SCALE_DIR}/runs/{{run_id}}/.trained"),
        tokenizer=rules.tokenizer.output,
        tasks=rules.eval_tasks.output,
    output:
        f"{SCALE_DIR}/runs/{{run_id}}/eval.json",
    params:
        run=lambda wc: f"{SCALE_DIR}/runs/{wc.run_id}",
        tasks=",".join(SETTINGS["eval"]["tasks"]),
        hub=",".join(SETTINGS["eval"].get("hub_tasks", [])),
        limit=f"--limit {SETTINGS['eval']['limit']}" if SETTINGS["eval"].get("limit") else "",
        device=SETTINGS["eval"]["device"],
        batch_size=SETTINGS["eval"]["batch_size"],
    threads: SETTINGS["train"].get("threads", 1)
    resources:
        gpu=1 if SETTINGS["eval"]["device"] != "cpu" and ON_GPU else 0,
    log:
        f"{SCALE_DIR}/logs/eval/{{run_id}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/evaluate/{{run_id}}.tsv"
    shell:
        "OMP_NUM_THREADS={threads} {KEEP_FREED_MEMORY} optclaims eval --run {params.run} --data {DATA} --tasks-dir {input.tasks}"
        " --tasks {params.tasks} --hub-tasks '{params.hub}' {params.limit} --device {params.device}"
        " --batch-size {params.batch_size} --jobs-per-gpu {JOBS_PER_GPU} --out {output} > {log} 2>&1"
