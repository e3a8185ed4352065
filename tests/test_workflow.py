"""The whole DAG at a toy size: corpus → tokenizer → shards → train → lm-eval → claim → report."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from optclaims.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TOY = {
    "scales": {"smoke": {
        "corpus": {"spec": "pycode", "max_bytes": 300000, "val_fraction": 0.2, "manifest_hash": None},
        "tokenizer": {"vocab_size": 320},
        "eval": {"limit": 4, "n_docs": 4, "n_cloze": 8, "batch_size": 8},
    }},
    "run_overrides": {"d_model": 32, "n_layers": 1, "n_heads": 2, "seq_len": 32, "batch_size": 4, "steps": 24,
                      "warmup_steps": 4, "log_every": 4, "eval_every": 12, "ckpt_every": 4, "val_batches": 2},
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working directory with the workflow's sources linked in and a toy config beside them."""
    d = tmp_path_factory.mktemp("wf")
    for name in ("workflows", "reproductions"):
        os.symlink(ROOT / name, d / name)
    (d / "toy.yaml").write_text(yaml.safe_dump(TOY))
    return d


def snakemake(workdir, *args, target=None):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # the Snakefile must find the CLI itself
    return subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
                           *([target] if target else []), "--configfile", "toy.yaml", *args], capture_output=True, text=True, env=env, timeout=900, cwd=workdir)


@pytest.mark.slow
def test_dag_end_to_end_then_nothing_to_do(workdir):
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    scale = workdir / "results" / "smoke"
    verdict = json.loads((scale / "claims/adam_update_rms/verdict.json").read_text())
    assert verdict["evidential"] is False and verdict["scale"] == "smoke"
    assert verdict["status"] in {"reproduced", "partially_reproduced", "not_reproduced", "inconclusive"}
    # lm-eval scores the claim's β grid (its evaluated_runs), not the width sweep it shares with mup_transfer
    scored = [rid for rid in verdict["runs"] if (scale / "runs" / rid / "eval.json").exists()]
    assert len(scored) == 6 and len(verdict["runs"]) > 6
    for rid in scored:
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


@pytest.mark.slow
def test_regrouped_populations_never_retrain_or_rewrite_finished_runs(workdir):
    """The same runs packed into other populations (at most 3 members each) get new population jobs;
    each finds its members finished, so no run is retrained or evaluated again and no run file is
    written again."""
    if not (workdir / "results/smoke/report/index.html").exists():
        assert snakemake(workdir).returncode == 0
    scale = workdir / "results/smoke"
    trained = ("config.json", "summary.json", "metrics.parquet", "model.safetensors", "eval.json")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for name in trained for p in (scale / "runs").glob(f"*/{name}")}
    populations = {p.parent.name for p in (scale / "populations").glob("*/population.json")}
    (workdir / "regroup.yaml").write_text(yaml.safe_dump({"scales": {"smoke": {"population": {"max_members": 3, "memory_gb": 8}}}}))
    proc = snakemake(workdir, "regroup.yaml")  # a second config file, merged over toy.yaml
    assert proc.returncode == 0, proc.stderr[-3000:]
    regrouped = {p.parent.name for p in (scale / "populations").glob("*/population.json")} - populations
    assert regrouped, "nothing was regrouped"
    for pop in regrouped:
        manifest = json.loads((scale / "populations" / pop / "population.json").read_text())
        assert 1 <= len(manifest["members"]) <= 3 and all(m["status"] in ("ok", "diverged") for m in manifest["members"])
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for name in trained for p in (scale / "runs").glob(f"*/{name}")}
    assert len(before) > 100 and after == before


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


def test_snakemake_lint_finds_nothing():
    """Snakemake's own linter on the workflow as users write it: helpers in common.smk, every path a
    rule passes derived from its files, a log and a software environment for every rule."""
    proc = subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--lint"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, \
        (proc.stdout + proc.stderr)[-4000:]


def test_the_workflow_reads_each_setting_without_a_default_of_its_own():
    """The config schema's default is a setting's only default: no rule file or helper reads the
    validated settings with `.get(key, default)`, and every default the code needs is in the schema."""
    offenders = [f"{path.name}:{n}: {line.strip()}" for path in [ROOT / "Snakefile", *sorted((ROOT / "workflows").glob("*.smk"))]
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"(SETTINGS|config)\b[^#]*\.get\(", line)]
    assert offenders == []
    from optclaims.workflow_config import validated

    config = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())
    del config["scales"]["smoke"]["train"], config["scales"]["smoke"]["eval"]["device"]
    config["scales"]["smoke"]["train"] = {}
    smoke = validated(config)["scales"]["smoke"]
    assert smoke["train"] == {"threads": 1, "gpu": False, "jobs_per_gpu": 1} and smoke["eval"]["device"] == "auto"
    assert smoke["corpus"]["manifest_hash"] and config["scales"]["gpu"]["corpus"]["manifest_hash"] is None


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


@pytest.mark.slow
def test_nightly_passes_against_its_blessed_baseline_and_fails_naming_a_perturbed_run(workdir):
    """Bless the toy suite's figures, check them (pass), then change one claim's learning rate: the
    nightly exits non-zero and its report names the reference runs that moved and why."""
    if not (workdir / "results/smoke/report/index.html").exists():
        assert snakemake(workdir).returncode == 0
    assert snakemake(workdir, target="regression_figures").returncode == 0
    regression = workdir / "results/smoke/regression"
    baseline = workdir / "results/baselines/smoke.json"
    bless = subprocess.run([sys.executable, "-m", "optclaims.cli", "bless", "--figures", str(regression / "figures.json"),
                            "--baseline", str(baseline), "--reason", "toy baseline"], capture_output=True, text=True)
    assert bless.returncode == 0, bless.stderr
    passed = snakemake(workdir, target="nightly")
    assert passed.returncode == 0, passed.stderr[-3000:]
    assert "PASSED" in (regression / "report.md").read_text()

    # adam_update_rms with a higher learning rate: its runs retrain, everything else is reused
    repro = workdir / "reproductions"
    os.unlink(repro)
    shutil.copytree(ROOT / "reproductions", repro)
    spec = repro / "adam_update_rms/claim.yaml"
    spec.write_text(spec.read_text().replace("lr: 0.003,", "lr: 0.0045,", 1))
    try:
        failed = snakemake(workdir, target="nightly")
    finally:
        shutil.rmtree(repro)
        os.symlink(ROOT / "reproductions", repro)
    assert failed.returncode != 0
    assert "REGRESSION adam_update_rms · adam_update_rms/0" in failed.stdout + failed.stderr
    report = json.loads((regression / "report.json").read_text())
    bad = {r["name"]: r for r in report["rows"] if r["verdict"] == "fail"}
    assert "adam_update_rms/0" in bad and "lr 0.003 → 0.0045" in bad["adam_update_rms/0"]["note"]
    assert all(r["claim"] == "adam_update_rms" for r in bad.values())  # the other claims did not move
    md = (regression / "report.md").read_text()
    assert "FAILED" in md and "adam_update_rms/0" in md.split("## Every check")[0]
    assert "last 2 of 2 checks" in md


@pytest.mark.slow
def test_a_killed_workflow_resumes_to_the_same_losses_and_verdict_on_two_simulated_gpus(workdir, tmp_path):
    """SIGKILL the whole workflow while populations are mid-training (each on its own simulated GPU),
    unlock, run it again: the same final losses and verdict as the uninterrupted toy suite in `workdir`."""
    if not (workdir / "results/smoke/report/index.html").exists():
        assert snakemake(workdir).returncode == 0
    for name in ("workflows", "reproductions"):
        os.symlink(ROOT / name, tmp_path / name)
    toy = json.loads(json.dumps(TOY))
    toy["scales"]["smoke"]["train"] = {"gpu": True}  # each training job reserves one of the devices
    toy["claims"] = ["spectral_weight_decay"]
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(toy))
    env = {**os.environ, "PATH": "/usr/bin:/bin", "OPTCLAIMS_SIMULATED_DEVICES": "2",
           "OPTCLAIMS_DEVICE_LOCKS": str(tmp_path / "locks")}
    args = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--cores", "2",
            "--resources", "gpu=2", "--configfile", "toy.yaml"]
    runs = tmp_path / "results/smoke/runs"
    populations = tmp_path / "results/smoke/populations"

    proc = subprocess.Popen(args, env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not list(populations.glob("*/train_state.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = {p.parent.name for p in populations.glob("*/train_state.pt")}
    assert interrupted, "the workflow was not caught mid-training"
    for run in runs.iterdir():  # every declared output that exists is whole: none is half-written
        if (run / "summary.json").exists():
            summary = json.loads((run / "summary.json").read_text())
            load_model(run / "model.safetensors", sha256=summary["model_sha256"])
        if (run / "metrics.parquet").exists():
            pd.read_parquet(run / "metrics.parquet")

    assert subprocess.run([*args, "--unlock"], env=env, cwd=tmp_path, capture_output=True).returncode == 0
    again = subprocess.run([*args, "--rerun-incomplete"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]

    verdict = json.loads((tmp_path / "results/smoke/claims/spectral_weight_decay/verdict.json").read_text())
    reference = json.loads((workdir / "results/smoke/claims/spectral_weight_decay/verdict.json").read_text())
    assert verdict["status"] == reference["status"] and verdict["measured"] == reference["measured"]
    for rid in verdict["runs"]:
        resumed = json.loads((runs / rid / "summary.json").read_text())
        uninterrupted = json.loads((workdir / "results/smoke/runs" / rid / "summary.json").read_text())
        assert resumed["final_val_loss"] == uninterrupted["final_val_loss"]
        assert resumed["final_train_loss"] == uninterrupted["final_train_loss"]
    summaries = [json.loads((runs / rid / "summary.json").read_text()) for rid in verdict["runs"]]
    assert any(s["resumed_from_step"] for s in summaries if s["population"]["id"] in interrupted)
    sizes = {s["population"]["id"]: s["population"]["size"] for s in summaries}
    assert len(sizes) >= 2 and max(sizes.values()) <= 8  # 18 runs in two optimizer arms, at most 8 to a population
    logs = " ".join(p.read_text() for p in (tmp_path / "results/smoke/logs/train").glob("*.log"))
    assert "device 0 (share 1 of 1)" in logs and "device 1 (share 1 of 1)" in logs
