"""clip_norm: the recorded norm is clip_grad_norm_'s, the clip bookkeeping, and the analysis on
synthetic runs whose answer is known."""

import json
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
from optclaims.parametrization import member_init
from optclaims.shape import model_config
from optclaims.train import train_run

ROOT = Path(__file__).resolve().parents[1]
claim = load_claim_module("clip_norm", ROOT / "reproductions")
mup = load_claim_module("mup_transfer", ROOT / "reproductions")
SPEC = yaml.safe_load((ROOT / "reproductions/clip_norm/claim.yaml").read_text())
MUP_SPEC = yaml.safe_load((ROOT / "reproductions/mup_transfer/claim.yaml").read_text())
BLOCK, TH = SPEC["scales"]["smoke"], SPEC["thresholds"]
GPU = SPEC["scales"]["gpu"]


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
    assert stats["late_clipped"] == pytest.approx((m.grad_norm[m.step > 30] > 1).mean())  # the last quarter
    assert stats["early_clipped"] == pytest.approx((m.grad_norm[m.step <= 4] > 1).mean())
    assert stats["norm_init"] == m.grad_norm.iloc[0]
    third, late = m.grad_norm[(m.step > 20) & (m.step <= 30)].median(), m.grad_norm[m.step > 30].median()
    assert stats["drift"] == pytest.approx(late / third - 1)
    assert stats["settled"] == (abs(late / third - 1) <= TH["settle_drift_max"])


@pytest.mark.parametrize("scale", ["smoke", "gpu"])
def test_width_sweep_is_the_same_runs_as_mup_transfer(scale):
    """Same configs, so the same run_ids: the DAG trains them once for both claims."""
    from optclaims.runs import make_run_config, run_id

    common, block = {"data": "d", "vocab_size": 64}, SPEC["scales"][scale]
    ours = {run_id(make_run_config({**r, **common})) for r in claim.plan_runs(block)
            if r["n_layers"] == block["base"]["n_layers"] and r["optimizer"] == "adamw"}
    theirs = {run_id(make_run_config({**r, **common})) for r in mup.plan_runs(MUP_SPEC["scales"][scale])
              if r["optimizer"] == "adamw" and not r.get("activation_steps")}
    assert ours == theirs




# ---------------------------------------------------------------- synthetic worlds
#
# A world gives the truth: each run's loss is a parabola in log2 LR around its size's optimum (curvature
# CURVATURE nats per octave², about what a 600-step gpu sweep shows near its optimum), plus a τ effect
# per arm; the noise is a per-seed offset (shared by a seed's runs: it fixes init and data order) and
# an independent per-run term, SEED_NOISE each. Norms are a flat late level after an early transient.

CURVATURE, SEED_NOISE = 0.03, 0.01
N0 = claim.hidden_params({"d_model": 64, "n_layers": 4})


def sp_optimum(exponent, at_64=-8.3):
    """The SP optimum in log2 LR: ``at_64`` at width 64, moving by ``exponent`` per octave of hidden N."""
    return lambda c: at_64 + exponent * math.log2(claim.hidden_params(c) / N0)


def optimum_of(sp=sp_optimum(-0.5), mup=-8.4, sgd=-5.3, depth_sp=-9.3):
    def optimum(c):
        if c["optimizer"] == "sgd":
            return sgd
        if c["parametrization"] == "mup":
            return mup
        return sp(c) if c["n_layers"] == GPU["base"]["n_layers"] else depth_sp
    return optimum


def flat_norm(late=0.5, early=3.0, drift=0.0):
    """A norm falling from ``early`` to ``late`` over the first 5% of steps, then rising by a
    fraction ``drift`` over the last half (0: settled)."""
    def metrics(steps):
        s = np.arange(1, steps + 1, 5)
        rise = 1 + drift * np.clip((s / steps - 0.5) / 0.5, 0, 1)
        return pd.DataFrame({"step": s, "grad_norm": (late + (early - late) * np.exp(-s / (0.05 * steps))) * rise})
    return lambda c: metrics(c["steps"])


HARMLESS = {}
CONTROL_SENSITIVE = {0.25: 0.08, 0.5: 0.03}            # the SGD step shrinks with a small τ; τ ≥ 1 harmless
TAU_ONE_HURTS = {0.25: 0.15, 0.5: 0.10, 1.0: 0.06, 2.0: 0.01}


class World:
    """The truth (optimum, τ effects per arm, norms) and its noisy runs. ``frame(rng)`` is what
    ``judge`` reads: the stage-1 LR grids, the τ sweep that ``tau_sweep_configs`` chooses from them
    (as ``select_runs`` does), and its runs; ``runs(rng)`` the same as Run objects, for the harness."""

    def __init__(self, block=GPU, optimum=optimum_of(), adam_tau=HARMLESS, control_tau=CONTROL_SENSITIVE,
                 norm=flat_norm(), noise=SEED_NOISE):
        self.block, self.optimum, self.norm, self.noise = block, optimum, norm, noise
        self.tau_effect = {"adamw": adam_tau, "sgd": control_tau}
        self.stage1 = [fields_of(c) for c in claim.plan_runs(block)]
        self.frames = {}  # norm statistics do not depend on the noise: computed once per config

    def truth(self, c):
        return (3.0 + 0.1 * (c["optimizer"] == "sgd") + CURVATURE * (math.log2(c["lr"]) - self.optimum(c)) ** 2
                + self.tau_effect[c["optimizer"]].get(c["clip"], 0.0))

    def run(self, i, cfg, loss):
        return Run(f"{i:012x}", cfg, {"status": "ok", "final_val_loss": loss}, self.norm(cfg))

    def noisy(self, cfgs, rng, shift):
        return [self.truth(c) + shift[c["seed"]] + rng.normal(0, self.noise) for c in cfgs]

    def frame_of(self, cfgs, first):
        key = json.dumps(cfgs, sort_keys=True)
        if key not in self.frames:
            self.frames[key] = claim.runs_frame([self.run(first + i, c, 0.0) for i, c in enumerate(cfgs)], TH)
        return self.frames[key].copy()

    def stage2_of(self, best):
        return [c for c in map(fields_of, claim.tau_sweep_configs(best, self.block)) if c not in self.stage1]

    def frame(self, rng):
        shift = {s: rng.normal(0, self.noise) for s in range(4)}
        one = self.frame_of(self.stage1, 0).assign(final_val_loss=self.noisy(self.stage1, rng, shift))
        stage2 = self.stage2_of(claim.best_runs(one, self.block))
        two = self.frame_of(stage2, 10_000).assign(final_val_loss=self.noisy(stage2, rng, shift))
        return pd.concat([one, two], ignore_index=True)

    def runs(self, rng):
        shift = {s: rng.normal(0, self.noise) for s in range(4)}
        stage1 = [self.run(i, c, x) for i, (c, x) in enumerate(zip(self.stage1, self.noisy(self.stage1, rng, shift)))]
        spec = {**SPEC, "scales": {**SPEC["scales"], "gpu": self.block}}
        chosen = [c for c in map(fields_of, claim.select_runs(ClaimContext("clip_norm", spec, "gpu", False, stage1, Path("."))))
                  if c not in self.stage1]  # one run per config, as run_ids make it
        return stage1 + [self.run(10_000 + i, c, x) for i, (c, x) in enumerate(zip(chosen, self.noisy(chosen, rng, shift)))]


def fields_of(cfg):
    return {**cfg, "data": "d", "vocab_size": 64}


def judged(world, seed=0):
    return claim.judge(world.frame(np.random.default_rng(seed)), world.block, TH)


def line(j, prefix):
    return next(s for s in j["subs"] if s["name"].startswith(prefix))


def draws(n=20, **kw):
    w = World(**kw)
    return [judged(w, 100 + d) for d in range(n)]


def test_select_runs_is_the_tau_sweep_at_each_arm_and_width_best_lr():
    runs = World(noise=0.0).runs(np.random.default_rng(0))
    stage2 = [r for r in runs if int(r.run_id, 16) >= 10_000]
    taus = GPU["tau_sweep"]
    per_cell = len(taus["taus"]) * len(taus["seeds"]) - 1  # τ none at seed 0 is the stage-1 run
    assert len(stage2) == 2 * len(taus["widths"]) * per_cell
    adam = {(r.config["d_model"], r.config["lr"]) for r in stage2 if r.config["optimizer"] == "adamw"}
    assert adam == {(32, 2.0 ** -7), (256, 2.0 ** -10)}  # nearest grid points to −7.3 and −10.3
    assert {r.config["lr"] for r in stage2 if r.config["optimizer"] == "sgd"} == {2.0 ** -5}
    assert {r.config["clip"] for r in stage2} == set(taus["taus"])
    assert all(r.config["parametrization"] == "sp" for r in stage2)


def test_a_true_world_is_reproduced_in_nine_of_ten_noise_draws():
    results = draws()
    assert sum(j["status"] == "reproduced" for j in results) >= 18, [j["reason"] for j in results]
    assert sum(line(j, "corollary")["status"] == "reproduced" for j in results) >= 18


def test_tau_insensitive_adam_beside_a_control_where_tau_one_hurts_is_not_reproduced():
    """Adam cannot tell τ apart, but the control arm, where τ matters, trains clearly worse at τ = 1."""
    for j in draws(10, control_tau=TAU_ONE_HURTS):
        assert line(j, "τ = 1")["status"] == "not_reproduced", line(j, "τ = 1")["measured"]
        assert j["status"] != "reproduced"


def test_a_control_without_a_tau_effect_leaves_the_tau_line_inconclusive():
    """No τ effect anywhere: "τ = 1 is as good as the best τ" holds, but the sweep had no power."""
    results = draws(10, control_tau=HARMLESS)
    statuses = [line(j, "τ = 1")["status"] for j in results]
    assert statuses.count("inconclusive") >= 9 and "reproduced" not in statuses, statuses
    assert all(j["status"] == "inconclusive" for j in results if line(j, "τ = 1")["status"] == "inconclusive")


def test_an_lr_exponent_of_minus_0_9_does_not_pass_the_corollary():
    """On the gpu grid a −0.9 exponent pushes optima to the edge (inconclusive); on a grid wide enough
    for it the interval excludes the band."""
    on_gpu = [line(j, "corollary")["status"] for j in draws(5, optimum=optimum_of(sp=sp_optimum(-0.9, at_64=-7.0)))]
    assert "reproduced" not in on_gpu, on_gpu
    wide = {**GPU, "inits": {**GPU["inits"], "sp": {**GPU["inits"]["sp"], "log2_lr": list(range(-16, -3))}}}
    statuses = [line(j, "corollary")["status"] for j in draws(10, block=wide, optimum=optimum_of(sp=sp_optimum(-0.9, at_64=-7.0)))]
    assert statuses.count("not_reproduced") >= 9 and "reproduced" not in statuses, statuses


def test_an_lr_exponent_of_minus_0_5_is_measured_against_hidden_n():
    j = judged(World(noise=0.0))
    estimate, low, high = j["exponent"]
    assert estimate == pytest.approx(-0.5, abs=0.02) and low <= estimate <= high


def test_a_norm_still_rising_in_the_last_quarter_makes_the_norm_lines_inconclusive():
    j = judged(World(norm=flat_norm(drift=1.0)))
    assert not j["sizes"].settled.any()
    for prefix in ("late-phase median", "no width trend", "few late steps"):
        assert line(j, prefix)["status"] == "inconclusive", prefix
    assert j["status"] == "inconclusive" and "could not judge" in j["reason"]


def test_one_unsettled_size_is_named_and_blocks_reproduced():
    settled, rising = flat_norm(), flat_norm(drift=1.0)
    j = judged(World(norm=lambda c: rising(c) if c["d_model"] == 256 and c["optimizer"] == "adamw" else settled(c)))
    measured = line(j, "late-phase median")["measured"]
    assert "not settled:" in measured and "sp d256×4 (drift +40%)" in measured and "sp d128×4 (drift" not in measured
    assert line(j, "late-phase median")["status"] == "inconclusive" and j["status"] != "reproduced"


def test_norm_growing_with_width_is_not_reproduced():
    j = judged(World(norm=lambda c: flat_norm(late=0.02 * c["d_model"] ** 0.5)(c)))
    assert j["status"] == "not_reproduced" and "scales with width" in j["reason"]


def test_tau_one_clipping_most_late_steps_is_not_reproduced():
    j = judged(World(norm=flat_norm(late=2.0)))
    assert j["status"] == "not_reproduced" and "normaliser" in j["reason"]


def test_edge_optimum_or_missing_sweep_is_inconclusive():
    w = World(optimum=optimum_of(mup=-30.0))
    stage1 = w.frame(np.random.default_rng(0)).iloc[:len(w.stage1)]
    j = claim.judge(stage1, GPU, TH)
    assert j["status"] == "inconclusive" and "edge" in j["reason"] and "no τ sweep" in j["reason"]
    assert line(j, "τ = 1")["status"] == "inconclusive"


def test_a_control_optimum_on_its_grid_edge_leaves_the_tau_line_inconclusive():
    j = judged(World(optimum=optimum_of(sgd=5.0)))
    assert line(j, "τ = 1")["status"] == "inconclusive" and "edge" in line(j, "τ = 1")["measured"]


def test_the_analysis_writes_its_figures_and_fills_criteria_from_thresholds(tmp_path):
    runs = World(block=BLOCK, optimum=optimum_of(sp=lambda c: -8.0, mup=-6.0, sgd=-1.5, depth_sp=-8.0)).runs(
        np.random.default_rng(0))
    ctx = ClaimContext("clip_norm", SPEC, "smoke", False, runs, tmp_path)
    verdict, table = claim.analyze(ctx)
    for name in ("norms", "medians", "tau_sweep", "lr_vs_params"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    text = " ".join(verdict["criteria"])
    assert "{" not in text.replace("{0.25, 0.5, 1, 2, 4, none}", "")
    assert f"[{TH['lr_exponent_band'][0]:g}, {TH['lr_exponent_band'][1]:g}]" in text
    assert {"arm", "settled", "drift", "n_hidden"} <= set(table.columns)
    assert set(table.arm) == {"adam", "control"}


def test_batched_optimum_is_the_shared_interpolated_optimum_row_by_row():
    from optclaims.analysis import interpolated_optimum

    rng = np.random.default_rng(3)
    x = np.arange(-13.0, -5.0)
    losses = 3 + 0.03 * (x - rng.uniform(-14, -5, (300, 1))) ** 2 + rng.normal(0, 0.02, (300, len(x)))
    losses[rng.random(losses.shape) < 0.1] = np.inf  # diverged points, also beside the optimum
    losses[0] = np.inf                               # a size whose every run diverged
    got = claim.batched_optimum(x, losses)
    want = [interpolated_optimum(x, row)[1] for row in losses]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.isnan(got[0]) and np.isfinite(got[1:]).all()


@pytest.mark.parametrize("bad, match", [({"settle_from": 0.8}, "settle_from = 0.8 must be below late_from = 0.75"),
                                        ({"lr_exponent_band": [-0.35, -0.65]}, r"lr_exponent_band = \[-0.35, -0.65\]")])
def test_thresholds_out_of_order_are_refused_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        claim.runs_frame([], {**TH, **bad})
