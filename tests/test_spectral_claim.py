"""spectral_weight_decay's plan and analysis on synthetic runs: the paired-by-seed comparisons, the
positive control, the total-decay gate, the σ_max rules, the arms' combination, and the power of the
verdict in worlds where the claim is false or true at realistic seed noise."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from optclaims.analysis import ClaimContext, Run
from optclaims.claims import claim_run_configs, load_claim, load_claim_module
from optclaims.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
claim = load_claim_module("spectral_weight_decay", ROOT / "reproductions")
SPEC = load_claim("spectral_weight_decay", ROOT / "reproductions")
TH = SPEC["thresholds"]
COMMON = {"data": "d", "vocab_size": 64}

# Realistic noise, assumed (no gpu measurement of this protocol yet): a seed moves a run's final loss
# by about 0.01 nats whatever the setting (it fixes initialisation and data order), and each run
# adds its own 0.005, so a paired difference has a standard deviation of about 0.007 nats.
SEED_SD, RUN_SD = 0.01, 0.005
DRAWS = 20


def configs(scale="gpu"):
    return claim_run_configs(SPEC, scale, COMMON, claim)


GPU = configs("gpu")


def synthetic(means, rng=None, cfgs=GPU, sigma_of=lambda arm, setting, step: 2.0, diverged=(), seed_sd=SEED_SD):
    """Runs of the plan with final loss means[setting] (or means[arm][setting]) + a seed's shared
    offset + a run's own noise, and max σ_max sigma_of(arm, setting, step) at four logged steps."""
    rng = rng or np.random.default_rng(0)
    seeds = sorted({c["seed"] for c in cfgs})
    shared = dict(zip(seeds, rng.normal(0, seed_sd, len(seeds))))
    runs = []
    for i, cfg in enumerate(cfgs):
        arm, name = cfg["optimizer"], claim.setting(cfg)
        mean = means[arm][name] if arm in means else means[name]
        steps = [cfg["steps"] * k // 4 for k in range(1, 5)]
        metrics = pd.DataFrame({"step": steps,
                                "sigma_max[blocks.0.mlp.fc.weight]": [sigma_of(arm, name, s) for s in steps],
                                "sigma_max[readout.weight]": [1.0] * 4,
                                "svd_entropy[blocks.0.mlp.fc.weight]": [0.9] * 4, "svd_entropy[readout.weight]": [0.8] * 4})
        status = "diverged" if (arm, name, cfg["seed"]) in diverged else "ok"
        loss = mean + shared[cfg["seed"]] + rng.normal(0, RUN_SD)
        runs.append(Run(f"{i:012x}", cfg, {"status": status, "final_val_loss": loss}, metrics))
    return runs


def decide(runs, th=TH):
    traj = claim.trajectories(claim.per_matrix(runs))
    return claim.decide(claim.runs_frame(runs, traj), traj, th)


def status(runs, th=TH):
    return decide(runs, th)[0]


def analyse(runs, tmp_path, scale="gpu"):
    return claim.analyze(ClaimContext("spectral_weight_decay", SPEC, scale, scale != "smoke", runs, tmp_path))


def statuses(means, draws=DRAWS, **kw):
    return [status(synthetic(means, np.random.default_rng(seed), **kw)) for seed in range(draws)]


# decay helps: Frobenius λ = 1 beats no decay by 0.04 nats (a total decay of 1.6), λ = 0.3 by 0.03
HELPS = {"no_decay": 3.04, "frobenius_0.3": 3.01, "frobenius_1": 3.00}
SPECTRAL_BETTER = {**HELPS, "spectral_1": 2.98}
SPECTRAL_WORSE = {**HELPS, "spectral_1": 3.02}
TIE = {**HELPS, "spectral_1": 3.00}
NO_EFFECT = {s: 3.0 for s in (*HELPS, "spectral_1")}


# ------------------------------------------------------------------ the plan


def test_the_plan_crosses_both_arms_with_every_decay_and_seed():
    for scale in ("smoke", "gpu", "full"):
        cfgs = configs(scale)
        block = SPEC["scales"][scale]
        cells = {(c["optimizer"], claim.setting(c)) for c in cfgs}
        assert len(cfgs) == len(cells) * len(block["seeds"]) == 2 * len(block["decays"]) * len(block["seeds"])
        assert {arm for arm, _ in cells} == set(TH["arms"])
        assert set(claim.headline(TH).values()) <= {s for _, s in cells}, scale  # every verdict's settings exist
        assert all(c["muon_scale"] == "moonlight" for c in cfgs if c["optimizer"] == "muon")
        assert len(block["seeds"]) >= TH["min_seeds"] or scale == "smoke"


def test_the_gpu_plan_reaches_a_total_decay_of_one_at_the_headline_lambda():
    totals = {claim.setting(c): claim.total_decay(c) for c in GPU}
    assert totals[claim.headline(TH)["reference"]] >= TH["min_total_decay"]
    assert totals["spectral_1"] == totals["frobenius_1"] and totals["no_decay"] == 0


def test_total_decay_sums_the_schedule():
    cfg = {"lr": 0.01, "weight_decay": 0.5, "steps": 100, "warmup_steps": 0, "schedule": "constant", "min_lr_ratio": 0.1}
    assert claim.total_decay(cfg) == pytest.approx(0.5)
    warm = {**cfg, "warmup_steps": 10}  # linear warm-up (t+1)/10 for t < 10: 5.5 steps' worth
    assert claim.total_decay(warm) == pytest.approx(0.01 * 0.5 * (90 + 5.5))


@pytest.mark.parametrize("edit, words", [
    (lambda b: b.pop("decays"), "decays = None"),
    (lambda b: b.update(optimizers=[{"optimizer": "adamw"}, {"optimizer": "adamw"}]), "each arm needs its own"),
    (lambda b: b["decays"].append({"weight_decay_kind": "decoupled", "weight_decay": 1.0}), "more than once"),
])
def test_a_bad_plan_block_is_refused_naming_it(edit, words):
    block = yaml.safe_load(yaml.safe_dump(SPEC["scales"]["gpu"]))
    edit(block)
    with pytest.raises(ConfigError, match=words):
        claim.plan_runs(block)


# ------------------------------------------------------------------ the verdict's rules


def test_a_tie_with_a_resolved_control_is_the_weak_form_only(tmp_path):
    verdict, table = analyse(synthetic(TIE), tmp_path)
    assert verdict["status"] == "partially_reproduced", verdict["summary"]
    assert "no worse than Frobenius decay within m" in verdict["summary"]
    subs = {s["name"]: s["status"] for s in verdict["sub_claims"]}
    assert subs["AdamW: positive control, Frobenius λ = 1 vs no decay"] == "reproduced"
    assert subs["Muon: spectral vs Frobenius at λ = 1"] == "partially_reproduced"
    for name in ("losses", "paired_differences", "spectra", "sigma_max_per_matrix", "svd_entropy_per_matrix"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    assert list(table.setting[table.arm == "adamw"]) == ["no_decay", "frobenius_0.3", "frobenius_1", "spectral_1"]
    assert table.total_decay.max() >= TH["min_total_decay"]
    m = verdict["measured"]
    assert m["Muon: total decay lr·λ·Σschedule, frobenius_1"]["value"] >= TH["min_total_decay"]
    control = m["AdamW: control, frobenius_1 − no_decay"]
    assert control["low"] < -0.04 < control["high"] < 0
    assert "95%" in control["interval"] and "m = 0.5 ×" in verdict["criteria"][2]


def test_no_effect_of_decay_at_all_is_inconclusive_not_a_tie():
    overall, arms = decide(synthetic(NO_EFFECT))
    assert overall == "inconclusive"
    assert all("positive control fails" in a["reason"] for a in arms.values())


def test_the_comparison_is_paired_by_seed():
    """A seed offset far above the effect (0.05 nats) hides Δ from an unpaired comparison, not from the paired one."""
    runs = synthetic(SPECTRAL_BETTER, seed_sd=0.05)
    overall, arms = decide(runs)
    assert overall == "reproduced"
    df = claim.runs_frame(runs, claim.trajectories(claim.per_matrix(runs)))
    adamw = df[df.arm == "adamw"].groupby("setting").final_val_loss
    unpaired_se = math.sqrt((adamw.var()["spectral_1"] + adamw.var()["frobenius_1"]) / 5)
    assert abs(arms["adamw"]["numbers"]["delta"]["mean"]) < 2 * unpaired_se


def test_below_the_total_decay_floor_is_inconclusive():
    th = {**TH, "min_total_decay": 2.0}  # the gpu plan's 1.64 falls short
    overall, arms = decide(synthetic(SPECTRAL_BETTER), th)
    assert overall == "inconclusive" and all("total decay 1.64" in a["reason"] for a in arms.values())


def test_a_gain_that_is_only_less_decay_is_partial():
    """Decay hurts here; spectral equals no decay: better than Frobenius, but no better than none."""
    hurts = {"no_decay": 3.0, "frobenius_0.3": 3.02, "frobenius_1": 3.04, "spectral_1": 3.0}
    overall, arms = decide(synthetic(hurts, np.random.default_rng(1)))
    assert overall == "partially_reproduced" and "only less decay" in arms["adamw"]["reason"]
    got = statuses(hurts)  # beating no decay by chance in both arms: about 1 draw in 100
    assert got.count("partially_reproduced") >= 0.9 * DRAWS and got.count("reproduced") <= 1, got


def test_an_arm_that_fails_fails_the_claim_and_an_unresolved_one_makes_it_partial():
    assert status(synthetic({"adamw": SPECTRAL_BETTER, "muon": SPECTRAL_WORSE})) == "not_reproduced"
    assert status(synthetic({"adamw": SPECTRAL_BETTER, "muon": NO_EFFECT})) == "partially_reproduced"
    assert claim.overall_status(["inconclusive", "inconclusive"]) == "inconclusive"
    assert claim.overall_status(["reproduced", "reproduced"]) == "reproduced"


def test_a_missing_arm_keeps_the_claim_from_reproduced():
    runs = [r for r in synthetic(SPECTRAL_BETTER) if r.config["optimizer"] == "adamw"]
    overall, arms = decide(runs)
    assert arms["muon"]["status"] == "inconclusive" and overall == "partially_reproduced"


def test_unbounded_sigma_max_is_not_reproduced():
    def sigma(arm, name, step):
        return 2.0 + (0.01 * step if name == "spectral_1" else 0.0)
    overall, arms = decide(synthetic(TIE, sigma_of=sigma))
    assert overall == "not_reproduced" and "without bound" in arms["muon"]["reason"]


def test_sigma_max_against_no_decay_is_measured_per_decayed_setting(tmp_path):
    def sigma(arm, name, step):
        return {"no_decay": 4.0, "frobenius_0.3": 3.0, "frobenius_1": 2.0, "spectral_1": 2.5}[name]
    verdict, _ = analyse(synthetic(TIE, sigma_of=sigma), tmp_path)
    m = verdict["measured"]
    assert m["AdamW: σ_max / no decay, frobenius_1"]["value"] == pytest.approx(0.5)
    assert m["Muon: σ_max / no decay, spectral_1"]["value"] == pytest.approx(0.625)
    assert {s["name"]: s["status"] for s in verdict["sub_claims"]}["AdamW: σ_max against no decay"] == "reproduced"


def test_diverged_runs():
    only_spectral = {("muon", "spectral_1", 0)}
    overall, arms = decide(synthetic(TIE, diverged=only_spectral))
    assert overall == "not_reproduced" and "spectral decay diverged" in arms["muon"]["reason"]
    overall, arms = decide(synthetic(TIE, diverged={("adamw", "no_decay", 1)}))
    assert arms["adamw"]["status"] == "inconclusive" and "diverged in no_decay" in arms["adamw"]["reason"]


def test_too_few_seeds_is_inconclusive():
    runs = [r for r in synthetic(SPECTRAL_BETTER) if r.config["seed"] < 2]
    overall, arms = decide(runs)
    assert overall == "inconclusive" and all("2 seeds pair up" in a["reason"] for a in arms.values())


def test_the_smoke_plan_analyses_to_an_honest_inconclusive(tmp_path):
    verdict, table = analyse(synthetic(TIE, cfgs=configs("smoke")), tmp_path, "smoke")
    assert verdict["status"] == "inconclusive" and "below 1: decay barely acts" in verdict["summary"]
    assert set(table.arm) == {"adamw", "muon"}


# ------------------------------------------------------------------ power at realistic noise


def test_power_no_effect_of_any_decay_is_never_reproduced():
    """spectral = Frobenius = none: the control fails, so the verdict cannot pass as 'no worse'."""
    got = statuses(NO_EFFECT)
    assert "reproduced" not in got
    assert got.count("inconclusive") >= 0.8 * DRAWS, got


def test_power_a_worse_spectral_decay_is_not_reproduced():
    """spectral loses half of Frobenius decay's 0.04-nat gain (0.02 nats worse)."""
    got = statuses(SPECTRAL_WORSE)
    assert "reproduced" not in got and "partially_reproduced" not in got
    assert got.count("not_reproduced") >= 0.9 * DRAWS, got


def test_power_a_better_spectral_decay_is_reproduced():
    """spectral 0.02 nats better than Frobenius λ = 1, the best other setting, in both arms."""
    got = statuses(SPECTRAL_BETTER)
    assert got.count("reproduced") >= 0.9 * DRAWS, got
