"""μP: the parametrization's multipliers, the coordinate check (which must be able to fail), and the
mup_transfer analysis on synthetic sweeps whose answer is known."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from optclaims.analysis import ClaimContext, Run, interpolated_optimum
from optclaims.claims import load_claim_module
from optclaims.errors import ConfigError
from optclaims.model import GPT, record_activations
from optclaims.optim import member_hypers
from optclaims.parametrization import lr_multipliers, member_init, model_config
from optclaims.runs import make_run_config
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


# ---------------------------------------------------------------- the analysis, synthetic


def test_optimum_is_the_parabola_vertex_and_flags_edges():
    x = np.arange(-10, -3, dtype=float)
    assert interpolated_optimum(x, (x + 6.3) ** 2)[1] == pytest.approx(-6.3)
    assert interpolated_optimum(x, (x + 6.3) ** 2)[0] == -6.0
    assert interpolated_optimum(x, -x)[2] is True  # best at the largest LR: on the edge
    assert interpolated_optimum(x, np.where(x > -5, np.inf, (x + 7) ** 2))[:2] == (-7.0, pytest.approx(-7.0))


def synthetic_runs(optimum_of, loss_at_width=lambda w: 3.0 - 0.1 * math.log2(w), widths=None, coord_widths=None):
    """Loss = curvature·(log2 lr − optimum(variant, width))² + a floor that falls with width; the
    coordinate check from slopes that pass it."""
    runs, i = [], 0
    for variant, spec in BLOCK["variants"].items():
        for w in widths or BLOCK["widths"]:
            for e in spec["log2_lr"]:
                cfg = {**BLOCK["base"], **claim.variant_fields(BLOCK, variant), **claim.shape(w, BLOCK["head_dim"]),
                       "lr": 2.0 ** e, "activation_steps": 0}
                loss = 0.05 * (e - optimum_of(variant, w)) ** 2 + loss_at_width(w)
                runs.append(Run(f"{i:012x}", cfg, {"status": "ok", "final_val_loss": loss}, pd.DataFrame()))
                i += 1
    for variant, lr in BLOCK["coord_check"]["lr"].items():
        for w in coord_widths or BLOCK["coord_check"]["widths"]:
            growth = (w / 64) ** (0.6 if variant == "sp_adam" else 0.02)
            metrics = pd.DataFrame({"step": [1, 2], "act_embed": [0.5, 0.5], "act_block0": [1.0, growth],
                                    "act_logits": [0.0, growth]})
            cfg = {**BLOCK["coord_check"]["base"], **claim.variant_fields(BLOCK, variant), "d_model": w, "lr": lr,
                   "activation_steps": 2}
            runs.append(Run(f"{i:012x}", cfg, {"status": "ok", "final_val_loss": 5.0}, metrics))
            i += 1
    return runs


def analyse(runs, tmp_path):
    ctx = ClaimContext("mup_transfer", SPEC, "smoke", False, runs, tmp_path)
    return claim.analyze(ctx)


def predicted(variant, w):
    doublings = math.log2(w / BLOCK["widths"][0])
    return {"sp_adam": -7 - doublings, "mup_adam": -6.8, "muon_spectral": -5.2,
            "muon_moonlight": -3.4 - 0.5 * doublings}[variant]


def test_analysis_reproduces_when_the_optima_behave_as_predicted(tmp_path):
    verdict, table = analyse(synthetic_runs(predicted), tmp_path)
    assert verdict["status"] == "reproduced", verdict["summary"]
    assert all(s["status"] == "reproduced" for s in verdict["sub_claims"])
    sp = table[(table.variant == "SP-Adam")]
    assert sp.shift_from_narrowest.iloc[-1] == pytest.approx(-3.0, abs=1e-6)
    assert "drift -0.50 per doubling" in verdict["measured"]["optimum shift, Muon-moonlight"]["interval"]
    assert verdict["measured"]["coordinate check, SP-Adam logits slope"]["value"] == pytest.approx(0.6, rel=0.01)
    for name in ("coord_check", "transfer", "optima"):
        assert (tmp_path / "figures" / f"{name}.png").exists()


def test_analysis_fails_mup_that_drifts_like_sp(tmp_path):
    def drifting(variant, w):
        return predicted("sp_adam", w) + 1 if variant == "mup_adam" else predicted(variant, w)
    verdict, _ = analyse(synthetic_runs(drifting), tmp_path)
    assert verdict["status"] == "not_reproduced"


def test_analysis_is_partial_when_wider_is_worse_under_mup(tmp_path):
    verdict, _ = analyse(synthetic_runs(predicted, loss_at_width=lambda w: 3.0 + 0.05 * math.log2(w)), tmp_path)
    mup = next(s for s in verdict["sub_claims"] if s.get("variant") == "mup_adam")
    assert mup["status"] == "partially_reproduced" and verdict["status"] == "partially_reproduced"


def test_analysis_is_inconclusive_on_an_edge_optimum_or_without_power(tmp_path):
    def edge(variant, w):
        return -20 if variant == "muon_spectral" else predicted(variant, w)
    verdict, _ = analyse(synthetic_runs(edge), tmp_path / "edge")
    assert verdict["status"] == "inconclusive" and "edge" in verdict["summary"]

    def flat_sp(variant, w):
        return -7.0 if variant == "sp_adam" else predicted(variant, w)
    runs = synthetic_runs(flat_sp, loss_at_width=lambda w: 3.0)
    verdict, _ = analyse(runs, tmp_path / "flat")
    assert verdict["status"] == "inconclusive" and "power" in verdict["summary"]


def test_analysis_of_a_single_width_is_inconclusive_not_a_crash(tmp_path):
    """What a toy run_overrides (one d_model for every run) leaves the analysis."""
    verdict, table = analyse(synthetic_runs(predicted, widths=[32], coord_widths=[32]), tmp_path)
    assert verdict["status"] == "inconclusive" and len(table) == 4


def test_plan_has_the_grid_and_the_coordinate_check():
    runs = claim.plan_runs(BLOCK)
    coord = [r for r in runs if r.get("activation_steps")]
    sweep = [r for r in runs if not r.get("activation_steps")]
    assert len(coord) == len(BLOCK["coord_check"]["lr"]) * len(BLOCK["coord_check"]["widths"])
    assert len(sweep) == sum(len(v["log2_lr"]) for v in BLOCK["variants"].values()) * len(BLOCK["widths"])
    assert max(BLOCK["widths"]) / min(BLOCK["widths"]) >= 8
    assert all(len(v["log2_lr"]) >= 7 for v in BLOCK["variants"].values())
    widths = {r["d_model"]: r["n_heads"] for r in sweep}
    assert all(w // h == BLOCK["head_dim"] for w, h in widths.items())  # head dim fixed, heads ∝ width
    assert {r["steps"] * r["batch_size"] * r["seq_len"] for r in sweep} == {BLOCK["base"]["steps"] * 8 * 64}
    assert all(r["mup_base_width"] == BLOCK["base_width"] for r in runs if r["parametrization"] == "mup")
