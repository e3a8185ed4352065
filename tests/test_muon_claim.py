"""The muon_efficiency analysis on synthetic runs whose answer is known."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from optclaims.analysis import ClaimContext, Run
from optclaims.claims import load_claim_module

ROOT = Path(__file__).resolve().parents[1]
claim = load_claim_module("muon_efficiency", ROOT / "reproductions")
SPEC = yaml.safe_load((ROOT / "reproductions/muon_efficiency/claim.yaml").read_text())
TH = SPEC["thresholds"]
BLOCK = SPEC["scales"]["smoke"]

A, B, C = 2.0, 0.5, 3.0  # AdamW's true curve, tokens in units of the full budget


def adam_loss(tokens, full):
    return A * (tokens / full) ** -B + C


def fake_run(i, cfg, loss, status="ok"):
    tokens = cfg["steps"] * cfg["batch_size"] * cfg["seq_len"]
    summary = {"status": status, "final_val_loss": loss, "wall_seconds": tokens / 1000, "tokens_per_s": 1000.0,
               "flops": 6.0 * tokens}
    return Run(f"{i:012x}", {**cfg, "data": "d", "vocab_size": 64}, summary, pd.DataFrame())


def synthetic_runs(multiplier: float, lr_loss=None):
    """Stage 1 with an interior optimum at lr 0.004, then stage 2 where Muon's final loss equals
    AdamW's loss at multiplier × the full budget."""
    lr_loss = lr_loss or (lambda lr: 0.05 * np.log2(lr / 0.004) ** 2)
    full = BLOCK["base"]["steps"]

    def loss(c):
        frac = c["steps"] / full * (multiplier if c["optimizer"] == "muon" else 1)
        return adam_loss(frac, 1) + lr_loss(c["lr"]) + 0.001 * c["seed"]

    runs = [fake_run(i, c, loss(c)) for i, c in enumerate(claim.plan_runs(BLOCK))]
    ctx = ClaimContext("muon_efficiency", SPEC, "smoke", False, runs, Path("."))
    for j, c in enumerate(claim.select_runs(ctx)):
        if c["steps"] == full and c["seed"] == BLOCK["seeds"][0]:
            continue  # the workflow trains this one once: it is the sweep's run at the best LR
        runs.append(fake_run(10_000 + j, c, loss(c)))
    return runs


def test_plan_runs_is_the_lr_grid_per_size_and_optimizer():
    runs = claim.plan_runs(BLOCK)
    assert len(runs) == len(BLOCK["sizes"]) * len(BLOCK["optimizers"]) * len(BLOCK["lr_grid"])
    assert {r["optimizer"] for r in runs} == {"adamw", "muon"}
    assert all(r["steps"] == BLOCK["base"]["steps"] and r["warmup_steps"] == 10 and "warmup_frac" not in r for r in runs)


def test_select_runs_takes_each_optimizers_best_lr_at_every_budget_and_seed():
    runs = synthetic_runs(2.0)
    stage2 = [r.config for r in runs if int(r.run_id, 16) >= 10_000]
    assert {c["lr"] for c in stage2} == {0.004}
    per = len(BLOCK["budgets"]) * len(BLOCK["seeds"]) - 1
    assert len(stage2) == per * len(BLOCK["sizes"]) * len(BLOCK["optimizers"])
    assert {c["steps"] for c in stage2} == {round(f * BLOCK["base"]["steps"]) for f in BLOCK["budgets"]}


def test_fit_recovers_a_known_curve():
    tokens = np.array([0.25, 0.5, 0.75, 1.0]) * 1e6
    fit = claim.fit_loss_curve(tokens, adam_loss(tokens, 1e6))
    assert fit[:3] == pytest.approx((A, B, C), rel=1e-3)
    assert claim.tokens_for_loss(fit, adam_loss(2e6, 1e6)) == pytest.approx(2e6, rel=1e-3)
    assert claim.tokens_for_loss(fit, C - 0.01) == np.inf  # below AdamW's asymptote


@pytest.mark.parametrize("true, status", [(2.0, "reproduced"), (1.4, "partially_reproduced"), (1.05, "not_reproduced")])
def test_measured_multiplier_and_verdict(tmp_path, true, status):
    ctx = ClaimContext("muon_efficiency", SPEC, "smoke", False, synthetic_runs(true), tmp_path)
    verdict, table = claim.analyze(ctx)
    sizes = pd.read_csv(tmp_path / "sizes.csv")
    assert sizes.token_multiplier.to_numpy() == pytest.approx(true, rel=0.02)
    assert (sizes.low <= sizes.token_multiplier + 1e-9).all() and (sizes.token_multiplier <= sizes.high + 1e-9).all()
    assert verdict["status"] == status
    assert len(table) == len(ctx.runs) and (tmp_path / "figures" / "budgets.png").exists()


def test_best_lr_on_the_grid_edge_is_inconclusive(tmp_path):
    runs = synthetic_runs(2.0, lr_loss=lambda lr: -0.01 * np.log2(lr))  # keeps improving with LR
    verdict, _ = claim.analyze(ClaimContext("muon_efficiency", SPEC, "smoke", False, runs, tmp_path))
    assert verdict["status"] == "inconclusive" and "edge" in verdict["summary"]


def test_compute_frontier_with_three_sizes():
    """Three sizes on known frontiers L = a·C^−b: the fitted ratio at equal loss is recovered."""
    rows, best = [], []
    for k, size in enumerate(("s", "m", "l")):
        for opt, a in (("adamw", 10.0), ("muon", 10.0 * 0.5**0.1)):  # Muon needs half the compute
            best.append({"size": size, "optimizer": opt, "best_lr": 1e-3, "on_edge": False})
            for frac in (0.25, 0.5, 1.0):
                flops = 1e15 * 4**k * frac
                rows.append({"size": size, "optimizer": opt, "lr": 1e-3, "flops": flops, "final_val_loss": a * flops**-0.1})
    out = claim.compute_frontier(pd.DataFrame(rows), pd.DataFrame(best))
    assert out["ratio"] == pytest.approx(0.5, rel=1e-6) and out["adamw_b"] == pytest.approx(0.1)
