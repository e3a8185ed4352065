"""A new claim is one folder, reproductions/<claim>/, and nothing else: a throwaway claim, added to
a copy of the checkout's claim folders, is planned, trained, analysed and reported by the workflow
with no config, list, test registry or README edited, and pytest finds the tests inside it."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from optclaims.analysis import STATUSES
from optclaims.claims import list_claims
from test_workflow import TOY, snakemake

ROOT = Path(__file__).resolve().parents[1]
TOY_LRS = [0.0003, 0.001, 0.003]
BASE = {"optimizer": "adamw", "d_model": 32, "n_layers": 1, "n_heads": 2, "seq_len": 32, "batch_size": 4, "steps": 24}

TOY_CLAIM = {
    "claim.yaml": yaml.safe_dump({
        "claim": "toy_claim",
        "title": "A larger learning rate gives a lower loss after the same few steps",
        "source": "a throwaway claim of tests/test_new_claim.py",
        "implemented": "a grid of three learning rates, one seed; each larger one must gain {min_gain} nats/token",
        "short_title": "Larger LR, lower loss (toy)",
        # a claim cites by key of reproductions/sources.yaml; this throwaway one borrows an entry there
        "sources": [{"key": "liu2025muon", "note": "a stand-in: the throwaway claim rests on no source"}],
        "headline": {"measured": "loss gain, smallest to largest LR",
                     "published": {"source": "liu2025muon", "note": "no published value: a throwaway claim"}},
        "expected": "the final validation loss falls as the learning rate rises",
        "criteria": ["Reproduced if each larger learning rate of the grid ends at least {min_gain} nats/token below "
                     "the one before; not reproduced if the largest ends above the smallest; inconclusive if a run "
                     "diverged or fewer than two ran; otherwise partially reproduced."],
        "thresholds": {"min_gain": 0.01},
        "evaluate": False,
        "scales": {scale: {"base": BASE, "grid": {"lr": TOY_LRS}, "seeds": [0]} for scale in ("smoke", "gpu", "full")},
    }, allow_unicode=True, sort_keys=False),
    "thresholds.schema.yaml": yaml.safe_dump({
        "type": "object", "additionalProperties": False, "required": ["min_gain"],
        "properties": {"min_gain": {"type": "number", "minimum": 0,
                                    "description": "nats/token each larger learning rate must gain over the one before"}},
    }, sort_keys=False),
    "analyze.py": '''"""toy_claim: does a larger learning rate end lower after the same steps?"""

import math

import pandas as pd

from optclaims.analysis import measured


def decide(points, min_gain):
    """(status, reason) from (lr, final validation loss) pairs."""
    losses = [loss for _, loss in sorted(points)]
    if len(losses) < 2 or not all(math.isfinite(x) for x in losses):
        return "inconclusive", "a run diverged or fewer than two ran"
    gains = [a - b for a, b in zip(losses, losses[1:])]
    if losses[-1] > losses[0]:
        return "not_reproduced", f"the largest learning rate ends {losses[-1] - losses[0]:.3g} nats/token above the smallest"
    if min(gains) >= min_gain:
        return "reproduced", f"every larger learning rate gains at least {min_gain:g} (smallest gain {min(gains):.3g})"
    return "partially_reproduced", f"the smallest gain is {min(gains):.3g}, below {min_gain:g}"


def analyze(ctx):
    df = pd.DataFrame([{"run_id": r.run_id, "lr": r.config["lr"], "final_val_loss": r.final_val_loss,
                        "status": r.summary["status"]} for r in ctx.runs]).sort_values("lr")
    status, reason = decide(list(zip(df.lr, df.final_val_loss)), ctx.thresholds["min_gain"])
    gain = measured(df.final_val_loss.iloc[0] - df.final_val_loss.iloc[-1], unit="nats/token")
    return ctx.verdict(status, {"loss gain, smallest to largest LR": gain}, reason + "."), df
''',
    "README.md": "# toy_claim\n\nA throwaway claim: three learning rates, the same steps; the criteria and the "
                 "numbers are in `claim.yaml`.\n",
    "test_analyze.py": '''from pathlib import Path

from optclaims.claims import load_claim_module

toy = load_claim_module("toy_claim", Path(__file__).resolve().parents[1])


def test_the_verdict_follows_the_losses():
    assert toy.decide([(0.003, 4.0), (0.001, 4.5), (0.0003, 5.0)], 0.01)[0] == "reproduced"
    assert toy.decide([(0.003, 4.995), (0.001, 5.0), (0.0003, 5.2)], 0.01)[0] == "partially_reproduced"
    assert toy.decide([(0.003, 5.5), (0.0003, 5.0)], 0.01)[0] == "not_reproduced"
    assert toy.decide([(0.003, float("inf")), (0.0003, 5.0)], 0.01)[0] == "inconclusive"
''',
}


def add_claim(repro: Path, name: str, files: dict[str, str]) -> Path:
    folder = repro / name
    folder.mkdir(parents=True)
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


def pytest_in(folder: Path) -> subprocess.CompletedProcess:
    """pytest as `make test` runs it (no paths given: the project's testpaths) in ``folder``."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider"], cwd=folder,
                          capture_output=True, text=True, timeout=300)


def test_pytest_finds_each_claims_tests_in_its_folder_however_they_are_named(tmp_path):
    """The project's pytest settings collect tests/ and every claim folder; two claims' test files of
    one name (and one in tests/) do not clash."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for where in ("tests", "reproductions/alpha", "reproductions/beta"):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "test_analyze.py").write_text(
            f"def test_here():\n    assert __file__.endswith({f'{where}/test_analyze.py'!r})\n")
    proc = pytest_in(tmp_path)
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout[-3000:]
    for where in ("tests", "reproductions/alpha", "reproductions/beta"):
        assert f"PASSED {where}/test_analyze.py::test_here" in proc.stdout


def test_a_verdict_from_runs_with_protocol_overrides_is_no_evidence_and_says_why(tmp_path):
    """An evidential scale whose runs were changed by run_overrides (fewer steps, a smaller batch) is
    analysed as usual, but its verdict is not evidential, names the changed fields, and the report's
    banner says so; without overrides the same runs give an evidential verdict."""
    import pandas as pd

    from optclaims.analysis import run_analysis
    from optclaims.atomic import write_json
    from optclaims.claims import load_claim
    from optclaims.report.build import collect

    repro = tmp_path / "reproductions"
    add_claim(repro, "toy_claim", TOY_CLAIM)
    shutil.copy(ROOT / "reproductions" / "sources.yaml", repro)
    runs = tmp_path / "results" / "gpu" / "runs"
    for i, lr in enumerate(TOY_LRS):
        rid = f"toy{i:09d}"
        write_json(runs / rid / "config.json", {**BASE, "lr": lr, "seed": 0, "steps": 4})
        write_json(runs / rid / "summary.json", {"run_id": rid, "status": "ok", "final_val_loss": 5.0 - 0.1 * i})
        pd.DataFrame({"step": [0, 1], "train_loss": [6.0, 5.5]}).to_parquet(runs / rid / "metrics.parquet")
    spec = load_claim("toy_claim", repro)

    def verdict(out, **kw):
        return run_analysis("toy_claim", spec, "gpu", True, sorted(runs.iterdir()), out, repro, **kw)

    plain = verdict(tmp_path / "plain")
    assert plain["evidential"] is True and "protocol_overrides" not in plain
    v = verdict(tmp_path / "results" / "gpu" / "claims" / "toy_claim", protocol_overrides=["steps", "batch_size"])
    assert v["evidential"] is False and v["protocol_overrides"] == ["batch_size", "steps"]
    assert v["status"] == plain["status"] and any("batch_size, steps" in n for n in v["notes"])
    banner = collect(tmp_path / "results" / "gpu", ROOT / "reproductions" / "sources.yaml")["banner"]
    assert "batch_size, steps" in banner and "no verdict below is evidence" in banner


@pytest.mark.slow
def test_a_new_claim_folder_is_planned_trained_analysed_and_reported_with_nothing_else_edited(tmp_path):
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copytree(ROOT / "reproductions", work / "reproductions", ignore=shutil.ignore_patterns("__pycache__"))
    os.symlink(ROOT / "workflows", work / "workflows")
    shutil.copy(ROOT / "pyproject.toml", work)
    (work / "toy.yaml").write_text(yaml.safe_dump(TOY))  # the toy sizes; no list of claims anywhere
    assert "claims" not in TOY and "claims" not in yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())
    add_claim(work / "reproductions", "toy_claim", TOY_CLAIM)

    # planned: the DAG has an analysis job for the new claim beside every claim of the checkout
    dry = snakemake(work, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    for claim in [*list_claims(ROOT / "reproductions"), "toy_claim"]:
        assert f"claim={claim}" in dry.stdout + dry.stderr, claim

    # its own tests are found where they are, by the project's pytest settings
    tests = pytest_in(work)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "PASSED reproductions/toy_claim/test_analyze.py::test_the_verdict_follows_the_losses" in tests.stdout

    # trained, analysed, reported: the whole workflow over a checkout whose only claim folder is the new one
    for folder in (work / "reproductions").iterdir():
        if folder.is_dir() and folder.name != "toy_claim":  # the bibliography (sources.yaml) stays
            shutil.rmtree(folder)
    start = time.time()
    proc = snakemake(work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"toy claim workflow: {time.time() - start:.0f} s")
    scale = work / "results" / "smoke"
    verdict = json.loads((scale / "claims/toy_claim/verdict.json").read_text())
    assert verdict["claim"] == "toy_claim" and verdict["status"] in STATUSES and verdict["scale"] == "smoke"
    assert "at least 0.01 nats/token" in verdict["criteria"][0]  # its thresholds fill its criteria
    configs = [json.loads((scale / "runs" / rid / "config.json").read_text()) for rid in verdict["runs"]]
    assert sorted(c["lr"] for c in configs) == TOY_LRS
    for rid in verdict["runs"]:
        summary = json.loads((scale / "runs" / rid / "summary.json").read_text())
        assert summary["status"] in ("ok", "diverged") and summary["final_val_loss"] is not None
    md = (scale / "report/report.md").read_text()
    assert '<a id="claim-toy_claim"></a>' in md and "A larger learning rate gives a lower loss" in md
    assert "toy_claim" in (scale / "report/index.html").read_text()
    assert json.loads((scale / "provenance.json").read_text())["config"]["claims"] == ["toy_claim"]
