"""The whole DAG at a toy size: corpus → tokenizer → shards → train → lm-eval → claim → report."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TOY = {
    "scales": {"smoke": {
        "corpus": {"spec": "pycode", "max_bytes": 300000, "val_fraction": 0.2},
        "tokenizer": {"vocab_size": 320},
        "eval": {"limit": 4, "n_docs": 4, "n_cloze": 8, "batch_size": 8},
    }},
    "run_overrides": {"d_model": 32, "n_layers": 1, "n_heads": 2, "seq_len": 32, "batch_size": 4, "steps": 24,
                      "warmup_steps": 4, "log_every": 4, "eval_every": 12, "ckpt_every": 12, "val_batches": 2},
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working directory with the workflow's sources linked in and a toy config beside them."""
    d = tmp_path_factory.mktemp("wf")
    for name in ("workflows", "reproductions"):
        os.symlink(ROOT / name, d / name)
    (d / "toy.yaml").write_text(yaml.safe_dump(TOY))
    return d


def snakemake(workdir, *args):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # the Snakefile must find the CLI itself
    return subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
                           "--configfile", "toy.yaml", *args], capture_output=True, text=True, env=env, timeout=900, cwd=workdir)


@pytest.mark.slow
def test_dag_end_to_end_then_nothing_to_do(workdir):
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    scale = workdir / "results" / "smoke"
    verdict = json.loads((scale / "claims/adam_update_rms/verdict.json").read_text())
    assert verdict["evidential"] is False and verdict["scale"] == "smoke"
    assert verdict["status"] in {"reproduced", "partially_reproduced", "not_reproduced", "inconclusive"}
    assert len(verdict["runs"]) == 6
    for rid in verdict["runs"]:
        ev = json.loads((scale / "runs" / rid / "eval.json").read_text())
        assert ev["status"] == "ok" and "bits_per_byte,none" in ev["results"]["optclaims_ppl"]
    # a claim with `evaluate: false` gets its verdict from training outputs alone: no lm-eval jobs
    mup = json.loads((scale / "claims/mup_transfer/verdict.json").read_text())
    assert mup["status"] == "inconclusive"  # run_overrides pin one d_model: no width range, no power
    unevaluated = set(mup["runs"]) - set(verdict["runs"])
    assert unevaluated and not any((scale / "runs" / rid / "eval.json").exists() for rid in unevaluated)
    html = (scale / "report/index.html").read_text()
    assert "adam_update_rms" in html and "mup_transfer" in html and "data:image/png;base64," in html
    assert (scale / "report/report.md").exists()

    again = snakemake(workdir, "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # Snakemake's own report works over the same outputs
    assert snakemake(workdir, "--report", "smk-report.html").returncode == 0
    assert (workdir / "smk-report.html").stat().st_size > 10_000


@pytest.mark.parametrize("args, words", [
    (["--config", "scale=huge"], "huge"),
    (["--config", "claims=[free_lunch]"], "unknown claim 'free_lunch'"),
    (["--config", "corpus=ftp:x"], "ftp:x"),
    (["--configfile", "neg_lr.yaml"], "lr = -0.5"),
    (["--configfile", "zero_steps.yaml"], "steps = 0"),
    (["--configfile", "bad_optimizer.yaml"], 'optimizer = "lion9"'),
])
def test_bad_config_stops_before_any_job_and_writes_nothing(tmp_path, args, words):
    for name in ("workflows", "reproductions"):
        os.symlink(ROOT / name, tmp_path / name)
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(TOY))
    (tmp_path / "neg_lr.yaml").write_text(yaml.safe_dump({"run_overrides": {"lr": -0.5}}))
    (tmp_path / "zero_steps.yaml").write_text(yaml.safe_dump({"run_overrides": {"steps": 0}}))
    (tmp_path / "bad_optimizer.yaml").write_text(yaml.safe_dump({"run_overrides": {"optimizer": "lion9"}}))
    proc = snakemake(tmp_path, *args)
    assert proc.returncode != 0
    assert words in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_slurm_profile_dry_run_gives_every_job_its_resources(tmp_path):
    """The cluster profile with snakemake-executor-plugin-slurm: a dry run plans the full-scale DAG,
    with the account and partition from the command line and each rule's GPUs, CPUs, memory and runtime."""
    for name in ("workflows", "reproductions"):
        os.symlink(ROOT / name, tmp_path / name)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--profile", str(ROOT / "workflows/profiles/slurm"), "--dry-run",
                           "--default-resources", "slurm_account=acct", "slurm_partition=part"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    blocks = {}
    for block in re.split(r"\n(?:rule|checkpoint|localrule|localcheckpoint) ", out)[1:]:
        rule = block.split(":", 1)[0]
        blocks.setdefault(rule, next(line for line in block.splitlines() if line.strip().startswith("resources:")))
    assert {"corpus", "tokenizer", "tokenize", "train", "evaluate", "select_runs", "analyze"} <= set(blocks)
    train = blocks["train"]
    for want in ("slurm_account=acct", "slurm_partition=part", "gpus=1", "cpus_per_task=8", "mem_mb=64000", "runtime=720"):
        assert want in train, train
    assert "gpus" not in blocks["analyze"] and "runtime=60" in blocks["analyze"]
    assert "results/full/runs/" in out and not (tmp_path / "results").exists()
