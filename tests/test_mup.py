"""μP: the parametrization's multipliers, the coordinate check (which must be able to fail), and the
mup_transfer analysis on synthetic sweeps whose answer is known."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from optclaims.analysis import ClaimContext, Run, interpolated_optimum
from optclaims.claims import load_claim_module
from optclaims.errors import ConfigError
from optclaims.model import GPT, record_activations
from optclaims.optim import member_hypers
from optclaims.parametrization import lr_multipliers, member_init
from optclaims.population import population_key
from optclaims.runs import make_run_config
from optclaims.shape import model_config
from optclaims.train import train_run

ROOT = Path(__file__).resolve().parents[1]
claim = load_claim_module("mup_transfer", ROOT / "reproductions")
SPEC = yaml.safe_load((ROOT / "reproductions/mup_transfer/claim.yaml").read_text())
BLOCK, TH = SPEC["scales"]["smoke"], SPEC["thresholds"]


def cfg_at(width, **fields):
    return make_run_config({"data": "d", "vocab_size": 64, "d_model": width, "n_layers": 2, "n_heads": width // 8,
                            "seq_len": 16, "optimizer": "adamw", "lr": 0.01, "steps": 10, "batch_size": 2, "seed": 0,
                            "weight_decay": 0.1, **fields})


def role_settings(cfgs):
    """Per role, each member's (peak lr, decoupled λ) as the optimizers get them."""
    h = member_hypers(cfgs)
    return {role: list(zip(h.peak_lr[role].tolist(), h.weight_decay[role].tolist())) for role in h.peak_lr}


def one_model(cfg):
    return GPT(model_config(cfg), [member_init(cfg)], [cfg["seed"]])


# ---------------------------------------------------------------- multipliers


def test_mup_adam_scales_hidden_and_readout_lr_by_base_over_width():
    """Also beside an SP member of the same population, which keeps one learning rate."""
    got = role_settings([cfg_at(64, parametrization="mup", mup_base_width=16), cfg_at(64, seed=1)])
    assert got["hidden"][0] == pytest.approx((0.01 * 16 / 64, 0.1 * 64 / 16))  # η·λ per step unchanged
    assert got["readout"][0] == pytest.approx((0.01 * 16 / 64, 0.1 * 64 / 16))
    assert got["embed"][0] == pytest.approx((0.01, 0.0)) and got["gains"][0] == pytest.approx((0.01, 0.0))
    assert got["hidden"][1] == got["readout"][1] == pytest.approx((0.01, 0.1))
    assert got["embed"][1] == got["gains"][1] == pytest.approx((0.01, 0.0))


def test_sp_has_one_learning_rate_and_mup_equals_sp_multipliers_at_base_width():
    sp = cfg_at(64)
    assert set(lr_multipliers(sp).values()) == {1.0}
    assert set(lr_multipliers(cfg_at(64, parametrization="mup", mup_base_width=64)).values()) == {1.0}


def test_mup_muon_keeps_the_hidden_lr_and_scales_the_adamw_readout():
    cfg = cfg_at(128, parametrization="mup", mup_base_width=32, optimizer="muon", muon_scale="spectral", aux_lr=0.004)
    sp = cfg_at(128, optimizer="muon", seed=1)  # no aux_lr: the AdamW part takes lr
    lrs = {role: [lr for lr, _ in v] for role, v in role_settings([cfg, sp]).items()}
    assert lrs == {"hidden": pytest.approx([0.01, 0.01]), "embed": pytest.approx([0.004, 0.01]),
                   "readout": pytest.approx([0.001, 0.01]), "gains": pytest.approx([0.004, 0.01])}


def test_mup_init_variance_attention_and_zero_inits():
    cfg = cfg_at(256, parametrization="mup", mup_base_width=32)
    init = member_init(cfg)
    assert init.attn_scale == pytest.approx(1 / 8) and init.zero_query and init.readout_std == 0.0  # 1/d_head
    model = one_model(cfg)
    assert model.blocks[0].attn.scale.tolist() == pytest.approx([1 / 8])
    fc = model.blocks[0].mlp.fc.weight[0]  # (4d, d): fan_in d
    assert fc.std().item() == pytest.approx(1 / math.sqrt(256), rel=0.02)
    proj = model.blocks[0].mlp.proj.weight[0]  # fan_in 4d, and the 1/sqrt(2L) depth factor
    assert proj.std().item() == pytest.approx(1 / math.sqrt(4 * 256) / math.sqrt(4), rel=0.02)
    assert model.readout.weight.abs().max() == 0
    qkv = model.blocks[0].attn.qkv.weight[0]
    assert qkv[:256].abs().max() == 0 and qkv[256:].abs().min() >= 0 and qkv[256:].std() > 0
    assert model.tok_emb[0].std().item() == pytest.approx(0.02, rel=0.05)
    nonzero = member_init(cfg_at(256, parametrization="mup", mup_base_width=32, mup_zero_readout=False))
    assert nonzero.readout_std == pytest.approx(0.02 / 8)  # variance ∝ 1/d²


def test_sp_init_is_the_fixed_std():
    cfg = cfg_at(256)
    init = member_init(cfg)
    assert init.attn_scale is None and not init.zero_query and init.hidden_gain is None
    model = one_model(cfg)
    assert model.blocks[0].mlp.fc.weight[0].std().item() == pytest.approx(0.02, rel=0.02)
    assert model.blocks[0].attn.scale.tolist() == pytest.approx([1 / math.sqrt(8)])  # 1/sqrt(d_head)


def test_sp_and_mup_members_of_one_population_keep_their_own_init_and_multipliers():
    sp, mup = cfg_at(64), cfg_at(64, parametrization="mup", mup_base_width=16, mup_zero_readout=False, seed=1)
    model = GPT(model_config(sp), [member_init(sp), member_init(mup)], [0, 1])
    for k, cfg in enumerate((sp, mup)):
        alone = one_model(cfg)
        for name, p in alone.named_parameters():
            assert torch.equal(p[0], model.get_parameter(name)[k]), name
        assert model.blocks[1].attn.scale[k] == alone.blocks[1].attn.scale[0]
        assert model.readout.mult[k] == alone.readout.mult[0]
    x = torch.randint(0, 64, (2, 2, 16), generator=torch.Generator().manual_seed(0))
    logits, loss = model(x, x)
    for k, cfg in enumerate((sp, mup)):
        one_logits, one_loss = one_model(cfg)(x[k:k + 1], x[k:k + 1])
        assert torch.allclose(logits[k], one_logits[0], atol=1e-5)
        assert loss[k].item() == pytest.approx(one_loss.item(), rel=1e-6)


def test_mup_fields_are_refused_where_they_mean_nothing():
    with pytest.raises(ConfigError, match="needs mup_base_width"):
        cfg_at(64, parametrization="mup")
    with pytest.raises(ConfigError, match="mup_base_width = 16 is a μP setting"):
        cfg_at(64, mup_base_width=16)
    with pytest.raises(ConfigError, match="parametrization"):
        cfg_at(64, parametrization="ntk")


def test_recording_activations_does_not_change_the_forward():
    cfg = cfg_at(32)
    model = GPT(model_config(cfg), [member_init(cfg), member_init(cfg_at(32, init_std=0.1))], [0, 1])
    x = torch.randint(0, 64, (2, 2, 16), generator=torch.Generator().manual_seed(0))
    acts = []
    with record_activations(model, acts):
        logits, loss = model(x, x)
    plain_logits, plain_loss = model(x, x)
    assert torch.equal(logits, plain_logits) and torch.equal(loss, plain_loss)
    assert len(acts) == 1 and acts[0].shape == (2, cfg["n_layers"] + 2)
    assert acts[0][:, -1].tolist() == pytest.approx(logits.abs().mean(dim=(1, 2, 3)).tolist(), rel=1e-6)
    assert acts[0][1, 0] > 2 * acts[0][0, 0]  # each member's own embedding scale (std 0.1 against 0.02)
    model(x, x)
    assert len(acts) == 1  # the hooks are gone after the block


# ---------------------------------------------------------------- coordinate check


def test_coordinate_check_sp_logits_blow_up_and_mup_stays_flat(tiny_data, tiny_run, tmp_path):
    """The real trainer at the smoke check's widths and LR: the check must be able to fail (SP's
    logits grow with width) and μP must pass it (every layer flat)."""
    coord = BLOCK["coord_check"]
    runs = []
    for variant in ("sp_adam", "mup_adam"):
        for width in coord["widths"]:
            cfg = tiny_run(**{**coord["base"], **claim.variant_fields(BLOCK, variant), **claim.shape(width, BLOCK["head_dim"]),
                              "seq_len": 32, "lr": coord["lr"][variant], "steps": coord["steps"],
                              "activation_steps": coord["steps"]})
            out = tmp_path / f"{variant}{width}"
            train_run(cfg, out, tiny_data)
            runs.append(Run(out.name, cfg, {}, pd.read_parquet(out / "metrics.parquet")))
    frame = claim.coord_frame(runs, BLOCK)
    assert sorted(frame.step.unique()) == [1, 2, 3, 4]
    slopes = claim.coord_slopes(frame).set_index(["variant", "layer"]).slope
    assert slopes["sp_adam", "logits"] > TH["coord_sp_logits_min"]
    assert slopes["sp_adam", "block1"] > TH["coord_sp_logits_min"]
    assert slopes["mup_adam"].abs().max() < TH["coord_flat"], slopes["mup_adam"].to_dict()


# ---------------------------------------------------------------- optima, read per seed


def test_optimum_is_the_parabola_vertex_and_flags_edges():
    x = np.arange(-10, -3, dtype=float)
    assert interpolated_optimum(x, (x + 6.3) ** 2)[1] == pytest.approx(-6.3)
    assert interpolated_optimum(x, (x + 6.3) ** 2)[0] == -6.0
    assert interpolated_optimum(x, -x)[2] is True  # best at the largest LR: on the edge
    assert interpolated_optimum(x, np.where(x > -5, np.inf, (x + 7) ** 2))[:2] == (-7.0, pytest.approx(-7.0))


def test_a_seed_optimum_is_the_first_seeds_reading_or_unresolved():
    x = np.array([-7.0, -6.0, -5.0])
    grid = np.arange(-10, -3, dtype=float)
    assert claim.seed_optimum(x, (x + 6.3) ** 2) == (pytest.approx(interpolated_optimum(grid, (grid + 6.3) ** 2)[1]), "")
    assert claim.seed_optimum(x, (x + 5.2) ** 2) == (pytest.approx(-5.2), "")  # its best at an end, vertex inside: read
    assert claim.seed_optimum(x, (x + 4.0) ** 2) == (-5.0, "")  # kept within its runs, as interpolated_optimum
    # beside a diverged neighbour: interpolated_optimum falls back to the grid point; here it is unresolved
    loss = np.array([0.3, 0.1, np.inf])
    assert interpolated_optimum(x, loss)[1] == -6.0
    value, why = claim.seed_optimum(x, loss)
    assert np.isnan(value) and "diverged" in why
    assert "edge" in claim.seed_optimum(x[:2], (x[:2] + 6) ** 2)[1]


def test_drift_interval_is_the_t_interval_of_the_slope_with_the_scatter_pooled_over_variants():
    one = pd.DataFrame({"width": [64, 64, 128, 256, 512, 512], "optimum": [-8.1, -7.9, -8.4, -8.9, -9.6, -9.4], "seed": [0, 1, 0, 0, 0, 1]})
    other = one.assign(optimum=[-6.0, -6.3, -6.1, -5.8, -6.2, -6.0])
    readings = pd.concat([one.assign(variant="a"), other.assign(variant="b")])
    x = np.log2(one.width)
    fits = [stats.linregress(x, r.optimum) for r in (one, other)]
    rss = sum((((r.optimum - f.intercept - f.slope * x) ** 2).sum() for r, f in zip((one, other), fits)))
    s, dof = claim.residual_scatter(readings)
    assert dof == 2 * (len(x) - 2) and s == pytest.approx(math.sqrt(rss / dof))
    fit = claim.drift_fit(readings[readings.variant == "a"], 0.95, (s, dof))
    half = stats.t.ppf(0.975, dof) * s / math.sqrt(((x - x.mean()) ** 2).sum())
    assert fit["drift"] == pytest.approx(fits[0].slope) and fit["low"] == pytest.approx(fits[0].slope - half)
    assert fit["shift"] == pytest.approx(3 * fits[0].slope) and fit["shift_high"] == pytest.approx(3 * (fits[0].slope + half))
    assert np.isnan(claim.drift_fit(readings[readings.variant == "a"], 0.95, (math.nan, 0))["low"])  # no scatter, no interval


# ---------------------------------------------------------------- synthetic worlds, through select_runs

GPU = SPEC["scales"]["gpu"]


def predicted(variant, doublings):
    """The optima the claim predicts (log2 LR) at ``doublings`` of width above the narrowest."""
    return {"sp_adam": -8.3 - doublings, "mup_adam": -8.6, "muon_spectral": -6.4,
            "muon_moonlight": -7.2 - 0.5 * doublings}[variant]


def fake_run(i, cfg, loss, tpp):
    """A finished (or diverged, loss None) run whose summary says its non-embedding parameters."""
    summary = {"status": "ok" if loss is not None else "diverged", "final_val_loss": loss,
               "n_params_matmul": claim.tokens_of(cfg) / tpp}
    return Run(f"{i:012x}", cfg, summary, pd.DataFrame())


def coord_runs(block, start):
    runs = []
    for k, (variant, lr) in enumerate(block["coord_check"]["lr"].items()):
        for j, w in enumerate(block["coord_check"]["widths"]):
            growth = (w / 64) ** (0.6 if variant == "sp_adam" else 0.02)
            metrics = pd.DataFrame({"step": [1, 2], "act_embed": [0.5, 0.5], "act_block0": [1.0, growth],
                                    "act_logits": [0.0, growth]})
            cfg = {**block["coord_check"]["base"], **claim.variant_fields(block, variant), "d_model": w, "lr": lr,
                   "steps": 2, "seed": block["seed"], "activation_steps": 2}
            runs.append(Run(f"{start + 100 * k + j:012x}", cfg, {"status": "ok", "final_val_loss": 5.0}, metrics))
    return runs


def world(optimum_of=predicted, block=GPU, scale="gpu", sigma=0.01, curvature=0.05, seed=0, jitter=0.1,
          loss_at_width=lambda d: 3.0 - 0.05 * d, tpp=lambda w: 10.0, diverged=lambda v, w, e, s: False):
    """Synthetic runs of both stages: loss = curvature·(log2 lr − optimum)² + a floor falling with
    width + a per-seed offset + independent noise σ per run; each variant's optimum shifted off the
    grid by a random offset and jittered per width (lack of fit). Stage 2 is what select_runs picks."""
    rng = np.random.default_rng(seed)
    offset = {v: rng.uniform(-0.5, 0.5) for v in block["variants"]}
    lack = {(v, w): rng.normal(0, jitter) for v in block["variants"] for w in block["widths"]}
    seed_shift = {s: rng.normal(0, sigma) for s in range(4)}
    w0 = block["widths"][0]

    def loss(cfg):
        v, w, e = claim.variant_of(cfg, block), cfg["d_model"], math.log2(cfg["lr"])
        if diverged(v, w, e, cfg["seed"]):
            return None
        d = math.log2(w / w0)
        opt = optimum_of(v, d) + offset[v] + lack[v, w]
        return curvature * (e - opt) ** 2 + loss_at_width(d) + seed_shift[cfg["seed"]] + rng.normal(0, sigma)

    first = [cfg for cfg in claim.plan_runs(block) if not cfg.get("activation_steps")]
    runs = [fake_run(i, cfg, loss(cfg), tpp(cfg["d_model"])) for i, cfg in enumerate(first)] + coord_runs(block, 10**6)
    ctx = ClaimContext("mup_transfer", SPEC, scale, False, runs, Path("."))
    second = claim.select_runs(ctx)
    return runs + [fake_run(2 * 10**6 + i, cfg, loss(cfg), tpp(cfg["d_model"])) for i, cfg in enumerate(second)]


def judged(runs, block=GPU):
    return claim.judge(runs, block, TH)


def line(j, variant):
    return next(s for s in j["subs"] if s.get("variant") == variant)


def test_select_runs_adds_each_extra_seed_at_and_beside_the_first_seeds_optimum():
    runs = world(sigma=0.0, jitter=0.0)
    extra = [r for r in runs if r.config["seed"] != GPU["seed"]]
    assert {r.config["d_model"] for r in extra} == set(GPU["seed_check"]["widths"])
    assert len(extra) == 3 * len(GPU["variants"]) * len(GPU["seed_check"]["widths"]) * len(GPU["seed_check"]["seeds"])
    first = {json.dumps({**r.config, "seed": None}, sort_keys=True): r for r in runs if r.config["seed"] == GPU["seed"]}
    for r in extra:  # the same config as a first-stage run but the seed
        assert json.dumps({**r.config, "seed": None}, sort_keys=True) in first
    j = judged(runs)
    for row in j["opt"][j["opt"].width.isin(GPU["seed_check"]["widths"])].itertuples():
        lrs = sorted(math.log2(r.config["lr"]) for r in extra
                     if r.config["d_model"] == row.width and claim.variant_of(r.config, GPU) == row.variant)
        assert lrs == [row.best_log2_lr - 1, row.best_log2_lr, row.best_log2_lr + 1]


def test_select_runs_at_a_grid_edge_takes_the_neighbour_there_is():
    runs = world(optimum_of=lambda v, d: -20.0 if v == "mup_adam" else predicted(v, d))
    extra = [r for r in runs if r.config["seed"] != GPU["seed"] and claim.variant_of(r.config, GPU) == "mup_adam"]
    low = min(GPU["variants"]["mup_adam"]["log2_lr"])
    assert sorted({math.log2(r.config["lr"]) for r in extra}) == [low, low + 1]
    j = judged(runs)
    assert line(j, "mup_adam")["status"] == "inconclusive" and "edge" in line(j, "mup_adam")["measured"]
    assert j["status"] == "inconclusive"


def test_power_the_claims_world_is_reproduced_in_nine_of_ten_noise_draws():
    """μP and spectral Muon flat, SP drifting one step per doubling (TP5: Adam's SP optimum ∝ 1/width),
    Moonlight −0.5 per doubling, wider better; seed noise 0.01 nats per run, 0.1 log2 lack of fit."""
    statuses = [judged(world(seed=k))["status"] for k in range(20)]
    assert statuses.count("reproduced") >= 18, statuses


def test_power_a_drifting_mup_optimum_is_never_reproduced():
    def drifting(variant, d):
        return -8.6 - 0.5 * d if variant == "mup_adam" else predicted(variant, d)
    results = [judged(world(optimum_of=drifting, seed=k)) for k in range(20)]
    assert not any(j["status"] == "reproduced" for j in results)
    assert sum(line(j, "mup_adam")["status"] == "not_reproduced" for j in results) >= 14  # the rest straddle: inconclusive


def test_power_moonlight_without_its_drift_is_not_reproduced():
    def flat(variant, d):
        return -7.2 if variant == "muon_moonlight" else predicted(variant, d)
    results = [judged(world(optimum_of=flat, seed=k)) for k in range(10)]
    assert all(line(j, "muon_moonlight")["status"] == "not_reproduced" for j in results)
    assert all(j["status"] == "partially_reproduced" for j in results)


def test_an_optimum_beside_a_diverged_neighbour_makes_its_line_inconclusive():
    """μP-Adam at the widest width: the run one step above the optimum diverges (first seed, then
    only the extra seed). interpolated_optimum would read the grid point; the line says unresolved."""
    widest = GPU["widths"][-1]
    best = round(predicted("mup_adam", 3))

    for only_seed in (0, 1):
        def diverged(v, w, e, s):
            return v == "mup_adam" and w == widest and e >= best + 1 and s == only_seed
        j = judged(world(seed=3, diverged=diverged, jitter=0.0))
        mup = line(j, "mup_adam")
        assert mup["status"] == "inconclusive" and "diverged" in mup["measured"], mup
        assert f"width {widest}, seed {only_seed}" in mup["measured"]
        assert j["status"] == "inconclusive" and "μP-Adam" in j["reason"]
        assert line(j, "sp_adam")["status"] == "reproduced"  # the other lines still decided


def test_a_width_below_the_tokens_per_parameter_floor_leaves_its_lines_inconclusive():
    floor = TH["min_tokens_per_param"]
    widest = GPU["widths"][-1]
    j = judged(world(tpp=lambda w: floor / 4 if w == widest else 10 * floor))
    for variant in GPU["variants"]:
        s = line(j, variant)
        assert s["status"] == "inconclusive" and "below the stated tokens-per-parameter floor" in s["measured"]
        assert f"width {widest} ({floor / 4:.2f})" in s["measured"]
    assert line(j, "sp_adam, mup_adam")["status"] == "reproduced"  # the 4-step check does not need tokens
    assert j["status"] == "inconclusive" and "floor" in j["reason"]
    assert judged(world(tpp=lambda w: floor))["status"] == "reproduced"  # a plan that meets the floor is decided


def test_mup_that_is_worse_when_wider_is_partial():
    j = judged(world(loss_at_width=lambda d: 3.0 + 0.05 * d))
    assert line(j, "mup_adam")["status"] == "partially_reproduced" and j["status"] == "partially_reproduced"


def test_without_sp_drift_or_a_failing_coordinate_check_it_is_inconclusive():
    def flat_sp(variant, d):
        return -8.3 if variant == "sp_adam" else predicted(variant, d)
    runs = [r for r in world(optimum_of=flat_sp, loss_at_width=lambda d: 3.0) if not r.config.get("activation_steps")]
    j = judged(runs + [Run(r.run_id, r.config, r.summary, r.metrics.assign(act_logits=r.metrics.act_logits.clip(upper=1.0),
                                                                           act_block0=1.0))
                       for r in coord_runs(GPU, 10**6)])
    assert line(j, "sp_adam")["status"] == "not_reproduced" and j["status"] == "inconclusive" and "power" in j["reason"]


def test_analysis_writes_the_verdict_figures_and_seed_table(tmp_path):
    ctx = ClaimContext("mup_transfer", SPEC, "gpu", True, world(), tmp_path)
    verdict, table = claim.analyze(ctx)
    assert verdict["status"] == "reproduced", verdict["summary"]
    shift = verdict["measured"]["optimum shift, SP-Adam"]
    assert shift["low"] < shift["value"] < shift["high"] < -TH["sp_min_shift"]
    assert verdict["regime"]["seeds"] == 2 and verdict["regime"]["tokens_per_param"] == {"min": 10.0, "max": 10.0}
    assert "seed 1" in table[table.width == GPU["widths"][0]].seed_optima.iloc[0]
    assert (tmp_path / "seed_optima.csv").exists()
    for name in ("coord_check", "transfer", "optima"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    assert any(f"±{TH['transfer_max_shift']:g}" in f["caption"] for f in verdict["figures"])
    assert all("{" not in c for c in verdict["criteria"])


def test_analysis_of_a_single_width_is_inconclusive_not_a_crash(tmp_path):
    """What a toy run_overrides (one d_model for every run) leaves the analysis: no seed-check width, one width."""
    runs = [Run(r.run_id, {**r.config, "d_model": 48}, r.summary, r.metrics) for r in world()
            if r.config["seed"] == GPU["seed"] and r.config["d_model"] == GPU["widths"][0]]
    assert claim.select_runs(ClaimContext("mup_transfer", SPEC, "gpu", False, runs, tmp_path)) == []
    verdict, table = claim.analyze(ClaimContext("mup_transfer", SPEC, "gpu", False, runs, tmp_path))
    assert verdict["status"] == "inconclusive" and len(table) == 4


# ---------------------------------------------------------------- plan


@pytest.mark.parametrize("scale", ["smoke", "gpu", "full"])
def test_plan_has_the_grid_the_coordinate_check_and_valid_seed_checks(scale):
    block = SPEC["scales"][scale]
    runs = claim.plan_runs(block)
    coord = [r for r in runs if r.get("activation_steps")]
    sweep = [r for r in runs if not r.get("activation_steps")]
    assert len(coord) == len(block["coord_check"]["lr"]) * len(block["coord_check"]["widths"])
    assert len(sweep) == sum(len(v["log2_lr"]) for v in block["variants"].values()) * len(block["widths"])
    assert max(block["widths"]) / min(block["widths"]) >= 8
    assert max(block["coord_check"]["widths"]) / min(block["coord_check"]["widths"]) >= 8
    assert all(len(v["log2_lr"]) >= 7 for v in block["variants"].values())
    widths = {r["d_model"]: r["n_heads"] for r in sweep}
    assert all(w // h == block["head_dim"] for w, h in widths.items())  # head dim fixed, heads ∝ width
    assert len({claim.tokens_of(r) for r in sweep}) == 1  # the same tokens at every width
    assert all(r["mup_base_width"] == block["base_width"] for r in runs if r["parametrization"] == "mup")
    assert {r["seed"] for r in runs} == {block["seed"]}  # extra seeds come in stage 2
    assert claim.seed_check(block)["widths"] == sorted(claim.seed_check(block)["widths"])


def test_gpu_coordinate_check_runs_join_their_widths_sweep_populations():
    """Same batch and cadence as the sweep, so a check run costs no population start-up of its own."""
    common = {"data": "d", "vocab_size": 64}
    runs = [make_run_config({**r, **common}) for r in claim.plan_runs(GPU)]
    sweep_keys = {population_key(r) for r in runs if not r["activation_steps"]}
    shared = [r for r in runs if r["activation_steps"] and r["d_model"] in GPU["widths"]]
    assert shared and all(population_key(r) in sweep_keys for r in shared)


@pytest.mark.parametrize("check, message", [
    (None, "seed_check = None"),
    ({"seeds": [0], "widths": [16]}, "seed_check.seeds = [0]"),
    ({"seeds": [1], "widths": [24]}, "seed_check.widths = [24]"),
    ({"seeds": [1], "widths": [16], "lrs": 3}, "seed_check = {"),
])
def test_a_bad_seed_check_is_refused_naming_key_and_value(check, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        claim.plan_runs({**BLOCK, "seed_check": check})
