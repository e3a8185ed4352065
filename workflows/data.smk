# corpus -> tokenizer -> token shards, and the local lm-eval tasks from the held-out split.


rule corpus:
    output:
        train=f"{DATA}/corpus/train.jsonl",
        val=f"{DATA}/corpus/val.jsonl",
        manifest=f"{DATA}/corpus/manifest.json",
    params:
        spec=PLAN.data.corpus,
        max_bytes=f"--max-bytes {PLAN.data.max_bytes}" if PLAN.data.max_bytes else "",
        val_fraction=PLAN.data.val_fraction,
        expected_hash=f"--expect-hash {PLAN.data.expected_hash}" if PLAN.data.expected_hash else "",
        out=up(1),
    log:
        f"{SCALE_DIR}/logs/corpus.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/corpus/{PLAN.data.data_id}.tsv"
    conda:
        CONDA_ENV
    shell:
        "optclaims corpus --spec {params.spec:q} {params.max_bytes} --val-fraction {params.val_fraction}"
        " {params.expected_hash} --out {params.out} > {log} 2>&1"


rule tokenizer:
    input:
        rules.corpus.output.train,
    output:
        f"{DATA}/tokenizer.json",
    params:
        corpus=lambda wc, input: os.path.dirname(input[0]),
        vocab_size=PLAN.data.vocab_size,
    log:
        f"{SCALE_DIR}/logs/tokenizer.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/tokenizer/{PLAN.data.data_id}.tsv"
    conda:
        CONDA_ENV
    shell:
        "optclaims tokenizer --corpus {params.corpus} --vocab-size {params.vocab_size} --out {output} > {log} 2>&1"


rule tokenize:
    input:
        train=rules.corpus.output.train,
        val=rules.corpus.output.val,
        tokenizer=rules.tokenizer.output,
    output:
        train=f"{DATA}/tokens/train.bin",
        val=f"{DATA}/tokens/val.bin",
        meta=f"{DATA}/tokens/shards.json",
    params:
        corpus=lambda wc, input: os.path.dirname(input.train),
        out=up(1),
    log:
        f"{SCALE_DIR}/logs/tokenize.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/tokenize/{PLAN.data.data_id}.tsv"
    conda:
        CONDA_ENV
    shell:
        "optclaims tokenize --corpus {params.corpus} --tokenizer {input.tokenizer} --out {params.out} > {log} 2>&1"


rule eval_tasks:
    input:
        rules.corpus.output.val,
    output:
        directory(f"{DATA}/tasks"),
    params:
        n_docs=SETTINGS["eval"]["n_docs"],
        n_cloze=SETTINGS["eval"]["n_cloze"],
    log:
        f"{SCALE_DIR}/logs/eval_tasks.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/eval_tasks/{PLAN.data.data_id}.tsv"
    conda:
        CONDA_ENV
    shell:
        "optclaims tasks --val {input} --out {output} --n-docs {params.n_docs} --n-cloze {params.n_cloze} > {log} 2>&1"
