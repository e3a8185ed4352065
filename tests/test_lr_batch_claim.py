"""lr_batch_scaling: the plan, and the analysis on synthetic worlds whose answer is known (a world
where the claim is false must not be called reproduced)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from optclaims.analysis import ClaimContext, Run
from optclaims.claims import load_claim
from optclaims.runs import make_run_config

ROOT = Path(__file__).resolve().parents[1]
claim = __import__("optclaims.claims", fromlist=["load_claim_module"]).load_claim_module(
    "lr_batch_scaling", ROOT / "reproductions")
SPEC = yaml.safe_load((ROOT / "reproductions/lr_batch_scaling/claim.yaml").read_text())
TH, GPU, SMOKE = SPEC["thresholds"], SPEC["scales"]["gpu"], SPEC["scales"]["smoke"]


def test_claim_loads_and_its_criteria_carry_their_numbers():
    spec = load_claim("lr_batch_scaling", ROOT / "reproductions")
    assert any("[0.3, 0.7]" in c for c in ClaimContext("lr_batch_scaling", spec, "gpu", True, [], Path(".")).criteria)


@pytest.mark.parametrize("scale", ["smoke", "gpu", "full"])
def test_plan_holds_tokens_fixed_and_measures_noise(scale):
    block = SPEC["scales"][scale]
    runs = [make_run_config({**r, "data": "d", "vocab_size": 64}) for r in claim.plan_runs(block)]
    assert len(runs) == len(block["optimizers"]) * len(block["batch_sizes"]) * len(block["log2_lr"]) * len(block["seeds"])
    tokens = {r["steps"] * r["batch_size"] * r["seq_len"] for r in runs}
    assert tokens == {block["tokens"]}  # fixed tokens, not fixed steps
    for r in runs:
        assert r["noise_scale_every"] * block["noise_points"] <= r["steps"] and r["clip"] is None
        assert r["warmup_steps"] == int(block["warmup_frac"] * r["steps"])  # warm-up scales with the steps
        assert r["val_batches"] * r["batch_size"] == max(r["batch_size"], block["val_sequences"])


def test_gradient_noise_estimate_reads_late_rows_as_a_ratio_of_means():
    m = pd.DataFrame({"step": [10, 20, 30, 40], "noise_trace": [1.0, 2.0, 6.0, 10.0],
                      "noise_grad_sq": [1.0, 1.0, 0.1, 0.1]})
    assert claim.noise_of(m, 40, 0.5)["b_simple"] == pytest.approx(8.0 / 0.1)
    assert math.isnan(claim.noise_of(m.drop(columns=["noise_trace", "noise_grad_sq"]), 40, 0.5)["b_simple"])


def test_mean_field_fit_recovers_b_simple():
    log2_b = np.log2([8, 16, 32, 64, 128, 256, 512.0])
    eta = -7 - 0.5 * np.log2(1 + 100 / 2.0 ** log2_b)
    top, bs, edge = claim.fit_mean_field(log2_b, eta)
    assert not edge and top == pytest.approx(-7, abs=0.02) and 2 ** bs == pytest.approx(100, rel=0.03)
    _, bs, edge = claim.fit_mean_field(log2_b, -9 + 0.5 * log2_b)  # never saturates: the fit runs to its edge
    assert edge


# ---------------------------------------------------------------- synthetic worlds
#
# Each run's loss is a parabola in log2 LR around its batch size's optimum (curvature CURVATURE nats
# per octave², about what a gpu sweep shows near its optimum), plus a per-seed offset and an
# independent per-run term of SEED_NOISE each. Every run records the gradient noise whose late
# ratio is the world's B_simple, with 20% scatter per measurement.

CURVATURE, SEED_NOISE = 0.03, 0.01


def law(b_simple=128.0, top=-7.0):
    return lambda b: top - 0.5 * math.log2(1 + b_simple / b)


def power(exponent, at_8=-10.0):
    return lambda b: at_8 + exponent * math.log2(b / 8)


def surge(b_simple=128.0, top=-7.0, peak=128, drop_per_octave=1.0):
    base = law(b_simple, top)
    return lambda b: base(min(b, peak)) - drop_per_octave * max(0.0, math.log2(b / peak))


class World:
    def __init__(self, adamw=law(), muon=law(top=-6.5), b_simple=128.0, block=GPU, seed_noise=SEED_NOISE):
        self.optimum, self.b_simple, self.block = {"adamw": adamw, "muon": muon}, b_simple, block
        self.seed_noise = seed_noise
        self.cfgs = [{**c, "data": "d", "vocab_size": 64} for c in claim.plan_runs(block)]

    def runs(self, rng):
        shift = {s: rng.normal(0, self.seed_noise) for s in self.block["seeds"]}
        out = []
        for i, c in enumerate(self.cfgs):
            x = math.log2(c["lr"]) - self.optimum[c["optimizer"]](c["batch_size"])
            loss = 3.0 + CURVATURE * x ** 2 + shift[c["seed"]] + rng.normal(0, self.seed_noise)
            steps = np.arange(c["noise_scale_every"], c["steps"] + 1, c["noise_scale_every"])
            grad_sq = np.full(len(steps), 0.5)
            trace = self.b_simple * grad_sq * rng.lognormal(0, 0.2, len(steps))
            metrics = pd.DataFrame({"step": steps, "noise_trace": trace, "noise_grad_sq": grad_sq})
            out.append(Run(f"{i:012x}", c, {"status": "ok", "final_val_loss": loss}, metrics))
        return out

    def judged(self, seed):
        runs = self.runs(np.random.default_rng(seed))
        return claim.judge(claim.runs_frame(runs, TH), self.block, {**TH, "bootstrap": 300})


SEEDS = range(6)


def statuses(world, draws=SEEDS):
    return [world.judged(s)["status"] for s in draws]


def line_statuses(world, name, draws=SEEDS):
    return [next(s for s in world.judged(k)["subs"] if s["name"] == name)["status"] for k in draws]


def test_a_world_where_the_law_holds_is_reproduced():
    got = statuses(World())
    assert got.count("reproduced") >= 5, got


def test_a_noisier_world_where_the_law_holds_is_never_refuted():
    """lack of power (twice the seed noise) reads inconclusive, never not reproduced: the flattening
    line fails only where the bend lies beyond the grid at the stated level, not where it is unsure"""
    got = statuses(World(seed_noise=2 * SEED_NOISE), range(12))
    assert "not_reproduced" not in got and "partially_reproduced" not in got, got


class SpikyWorld(World):
    """the law, with one seed's run 1 nat worse at the top LR of the two smallest B (5 octaves above
    their η*): unstable runs far from the optimum, which move no optimum"""
    def runs(self, rng):
        out = super().runs(rng)
        for r in out:
            if (r.config["lr"] == 2.0 ** self.block["log2_lr"][-1] and r.config["batch_size"] in (8, 16)
                    and r.config["seed"] == 0):
                r.summary["final_val_loss"] += 1.0
        return out


def test_unstable_runs_far_from_the_optimum_do_not_set_the_seed_noise():
    got = statuses(SpikyWorld())
    assert got.count("reproduced") >= 5, got


def test_a_seeds_shared_offset_does_not_count_as_noise():
    """a seed's offset (shared by all its runs: the same initialisation and data order) moves no optimum"""
    class Offset(World):
        def runs(self, rng):
            out = super().runs(rng)
            for r in out:
                r.summary["final_val_loss"] += 0.2 * r.config["seed"]
            return out
    assert Offset().judged(0)["per"]["adamw"]["est"]["sigma"] == pytest.approx(
        World().judged(0)["per"]["adamw"]["est"]["sigma"])


@pytest.mark.parametrize("name, world", [
    ("linear scaling η* ∝ B", World(adamw=power(1.0, -11.0), muon=power(1.0, -10.5))),
    ("√B without saturation although B_simple is inside the grid", World(adamw=power(0.5), muon=power(0.5, -9.5), b_simple=64.0)),
    ("the law, but B_simple 16× the fitted one", World(b_simple=2048.0)),
    ("no LR scaling at all", World(adamw=power(0.0, -8.0), muon=power(0.0, -7.5))),
])
def test_a_world_where_the_claim_is_false_is_never_reproduced(name, world):
    got = statuses(world)
    assert "reproduced" not in got and "partially_reproduced" not in got, (name, got)
    assert got.count("not_reproduced") >= 4, (name, got)


def test_a_b_simple_beyond_the_batch_sizes_is_never_read_from_the_fit():
    """the law with B_simple = 1400 > the largest B = 512: a fit beyond the batch sizes extrapolates,
    so its line never passes (a noisy fit that lands inside the grid is a reading: 1 of 24 draws)"""
    world, name = World(adamw=law(1400.0), muon=law(1400.0, -6.5), b_simple=1400.0), "adamw: fitted vs measured B_simple"
    got = []
    for k in range(12):
        j = world.judged(k)
        est, line = j["per"]["adamw"]["est"], next(s for s in j["subs"] if s["name"] == name)
        inside = GPU["batch_sizes"][0] <= 2 ** est["point"]["log2_b_simple_fit"] <= GPU["batch_sizes"][-1]
        assert inside or line["status"] != "reproduced", line
        got.append(line["status"])
    assert got.count("reproduced") <= 1, got


def test_an_optimum_whose_draws_often_sit_on_the_edge_has_no_interval():
    """η* at the two largest B 0.6–0.75 octave below the grid's top LR: the points mostly read inside,
    but many bootstrap draws clamp to the edge, which would narrow the interval"""
    top_lr = GPU["log2_lr"][-1]
    world = World(adamw=law(top=top_lr - 0.45), muon=law(top=top_lr - 0.45))
    got = []
    for k in range(6):
        j = world.judged(k)
        est = j["per"]["adamw"]["est"]
        if not est["edge"].any():  # the point reads no edge: only the draws can say
            low, high = claim.interval(est["draws"], "log2_b_simple_fit", TH["level"])
            got.append(math.isnan(low) and math.isnan(high))
            line = next(s for s in j["subs"] if s["name"] == "adamw: fitted vs measured B_simple")
            assert line["status"] == "inconclusive", line
    assert got and all(got), got


def test_one_optimizer_off_the_law_is_partially_reproduced():
    got = statuses(World(muon=power(1.0, -10.5)))
    assert "reproduced" not in got and got.count("partially_reproduced") >= 4, got


def test_the_surge_is_reported_and_does_not_decide():
    j = World(adamw=surge(), muon=law(top=-6.5)).judged(0)
    line = next(s for s in j["subs"] if s["name"] == "adamw: surge (reported)")
    assert line["measured"].startswith("seen") and line["status"] == "inconclusive"
    calm = next(s for s in World().judged(0)["subs"] if s["name"] == "adamw: surge (reported)")
    assert calm["measured"].startswith("not seen")


def test_an_edge_optimum_is_inconclusive_not_a_pass():
    j = World(adamw=law(top=-4.0), muon=law(top=-4.0)).judged(0)  # η* beyond the grid's top at large B
    assert j["status"] == "inconclusive" and "edge" in j["reason"]


def test_analysis_writes_figures_and_a_verdict(tmp_path):
    spec = {**SPEC, "thresholds": {**TH, "bootstrap": 100}}
    ctx = ClaimContext("lr_batch_scaling", spec, "gpu", True, World().runs(np.random.default_rng(0)), tmp_path)
    verdict, table = claim.analyze(ctx)
    assert verdict["status"] in ("reproduced", "inconclusive", "not_reproduced", "partially_reproduced")
    assert {f["file"] for f in verdict["figures"]} == {"figures/optimal_lr.png", "figures/lr_grids.png", "figures/b_simple.png"}
    assert verdict["headline"]["measured"] in verdict["measured"]
    assert len(table) == 2 * len(GPU["batch_sizes"])


def test_the_same_law_line_compares_muon_with_adamw():
    name = "Muon's small-B slope like AdamW's (own line)"
    same = line_statuses(World(), name, range(12))
    apart = line_statuses(World(muon=power(1.0, -10.5)), name, range(12))
    # at the gpu plan's noise the equivalence rarely resolves (the interval of a slope difference is
    # ±0.3 or wider): the line must never refute the same law, and never pass a Muon on another law
    # (measured over 24 draws: same law passes 10, apart fails 17; the bounds leave room for chance)
    assert "not_reproduced" not in same and "reproduced" in same, same
    assert "reproduced" not in apart and apart.count("not_reproduced") >= 5, apart
