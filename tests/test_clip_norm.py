"""clip_norm: the recorded norm is clip_grad_norm_'s, the clip bookkeeping, and the analysis on
synthetic runs whose answer is known."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from optclaims.analysis import ClaimContext, Run
from optclaims.claims import load_claim_module
from optclaims.data.shards import TokenShard
from optclaims.model import GPT
from optclaims.parametrization import member_init, model_config
from optclaims.train import train_run

ROOT = Path(__file__).resolve().parents[1]
claim = load_claim_module("clip_norm", ROOT / "reproductions")
mup = load_claim_module("mup_transfer", ROOT / "reproductions")
SPEC = yaml.safe_load((ROOT / "reproductions/clip_norm/claim.yaml").read_text())
MUP_SPEC = yaml.safe_load((ROOT / "reproductions/mup_transfer/claim.yaml").read_text())
BLOCK, TH = SPEC["scales"]["smoke"], SPEC["thresholds"]


@pytest.mark.parametrize("clip", [None, 1.0])
def test_recorded_norm_is_clip_grad_norm_on_the_same_step(tiny_data, tiny_run, tmp_path, clip):
    cfg = tiny_run(clip=clip, steps=1, warmup_steps=0, log_every=1)
    train_run(cfg, tmp_path / "run", tiny_data)
    recorded = pd.read_parquet(tmp_path / "run" / "metrics.parquet").grad_norm.iloc[0]

    model = GPT(model_config(cfg), [member_init(cfg)], [cfg["seed"]])
    x, y = TokenShard(tiny_data / "tokens", "train").batch(0, cfg["batch_size"], cfg["seq_len"], cfg["seed"])
    model(x[None], y[None])[1].sum().backward()
    reference = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=math.inf)
    assert recorded == pytest.approx(reference.item(), rel=1e-6)


def test_clip_flag_counts_the_steps_above_tau(tiny_data, tiny_run, tmp_path):
    train_run(tiny_run(clip=1.0, steps=40, lr=3e-2), tmp_path / "run", tiny_data)
    m = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert len(m) == 40 and (m.clipped == (m.grad_norm > 1.0)).all()
    stats = claim.norm_stats(m, 40, TH)
    assert stats["late_clipped"] == pytest.approx((m.grad_norm[m.step > 20] > 1).mean())
    assert stats["early_clipped"] == pytest.approx((m.grad_norm[m.step <= 4] > 1).mean())
    assert stats["norm_init"] == m.grad_norm.iloc[0]


def test_width_sweep_is_the_same_runs_as_mup_transfer():
    """Same configs, so the same run_ids: the DAG trains them once for both claims."""
    from optclaims.runs import make_run_config, run_id

    common = {"data": "d", "vocab_size": 64}
    ours = {run_id(make_run_config({**r, **common})) for r in claim.plan_runs(BLOCK) if r["n_layers"] == BLOCK["base"]["n_layers"]}
    theirs = {run_id(make_run_config({**r, **common})) for r in mup.plan_runs(MUP_SPEC["scales"]["smoke"])
              if r["optimizer"] == "adamw" and not r.get("activation_steps")}
    assert ours == theirs


# ---------------------------------------------------------------- synthetic runs


def metrics_for(steps, late_norm, early_norm=3.0):
    s = np.arange(1, steps + 1)
    norm = late_norm + (early_norm - late_norm) * np.exp(-s / (0.05 * steps))
    return pd.DataFrame({"step": s, "grad_norm": norm})


def fake(i, cfg, loss, late_norm, n_params=None):
    summary = {"status": "ok", "final_val_loss": loss, "n_params": n_params or 20 * cfg["d_model"] ** 2 * cfg["n_layers"]}
    return Run(f"{i:012x}", {**cfg, "data": "d", "vocab_size": 64}, summary, metrics_for(cfg["steps"], late_norm))


def synthetic(norm_of=lambda c: 0.5, tau_loss=lambda t: 0.0, optimum=lambda c: -8.0 if c["parametrization"] == "sp" else -6.0):
    stage1 = [fake(i, c, 0.05 * (math.log2(c["lr"]) - optimum(c)) ** 2 + 3.0, norm_of(c))
              for i, c in enumerate(claim.plan_runs(BLOCK))]
    ctx = ClaimContext("clip_norm", SPEC, "smoke", False, stage1, Path("."))
    offsets = {0: -0.005, 1: 0.005}
    first = [r.config for r in stage1]
    stage2 = [fake(1000 + i, c, 3.0 + tau_loss(c["clip"]) + offsets[c["seed"]], norm_of(c))
              for i, c in enumerate(claim.select_runs(ctx))
              if {**c, "data": "d", "vocab_size": 64} not in first]  # one run per config, as run_ids make it
    return stage1, stage2


def analyse(runs, tmp_path):
    return claim.analyze(ClaimContext("clip_norm", SPEC, "smoke", False, runs, tmp_path))


def test_select_runs_is_the_tau_sweep_at_each_width_best_lr():
    _, stage2 = synthetic()
    taus = BLOCK["tau_sweep"]
    assert len(stage2) == len(taus["widths"]) * (len(taus["taus"]) * len(taus["seeds"]) - 1)  # τ none, seed 0 ran
    assert {r.config["lr"] for r in stage2} == {2.0 ** -8}
    assert {r.config["clip"] for r in stage2} == set(taus["taus"])


def test_flat_norms_and_a_harmless_tau_are_reproduced(tmp_path):
    stage1, stage2 = synthetic()
    verdict, table = analyse(stage1 + stage2, tmp_path)
    assert verdict["status"] == "reproduced", verdict["summary"]
    assert table.late_median.between(0.49, 0.52).all() and (table.late_clipped == 0).all()
    corollary = next(s for s in verdict["sub_claims"] if s["name"].startswith("corollary"))
    assert corollary["status"] == "not_reproduced"  # the synthetic optimum does not move with N
    for name in ("norms", "medians", "tau_sweep", "lr_vs_params"):
        assert (tmp_path / "figures" / f"{name}.png").exists()


def test_norm_growing_with_width_is_not_reproduced(tmp_path):
    stage1, stage2 = synthetic(norm_of=lambda c: 0.1 * c["d_model"] ** 0.5)
    verdict, _ = analyse(stage1 + stage2, tmp_path)
    assert verdict["status"] == "not_reproduced" and "scales with width" in verdict["summary"]


def test_tau_one_clipping_most_late_steps_is_not_reproduced(tmp_path):
    stage1, stage2 = synthetic(norm_of=lambda c: 2.0)
    verdict, _ = analyse(stage1 + stage2, tmp_path)
    assert verdict["status"] == "not_reproduced" and "normaliser" in verdict["summary"]


def test_tau_one_worse_than_the_best_tau_is_partial(tmp_path):
    stage1, stage2 = synthetic(tau_loss=lambda t: 0.2 if t == 1.0 else 0.0)
    verdict, _ = analyse(stage1 + stage2, tmp_path)
    assert verdict["status"] == "partially_reproduced"
    assert next(s for s in verdict["sub_claims"] if s["name"].startswith("τ = 1"))["status"] == "not_reproduced"


def test_edge_optimum_or_missing_sweep_is_inconclusive(tmp_path):
    stage1, stage2 = synthetic(optimum=lambda c: -30.0)
    verdict, _ = analyse(stage1, tmp_path / "edge")
    assert verdict["status"] == "inconclusive" and "edge" in verdict["summary"] and "no τ sweep" in verdict["summary"]
