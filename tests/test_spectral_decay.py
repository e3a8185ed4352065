"""Spectral weight decay: the power iteration against torch.linalg.svd, the gradient of ‖W‖₂ by
finite differences, the decay step, and its place among the run's optimizers."""

import pandas as pd
import pytest
import torch

from optclaims.model import GPT
from optclaims.optim import build_optimizers, build_schedulers
from optclaims.optim.muon import Muon
from optclaims.optim.spectral_decay import SpectralDecay, spectrum_stats, top_singular_triplet
from optclaims.parametrization import model_config
from optclaims.runs import make_run_config
from optclaims.train import train_run


def matrix_with_gap(A=64, B=32, top=10.0, rest=5.0, seed=0, dtype=torch.float64):
    """U diag(s) Vᵀ with σ1 = top and the other singular values spread in (0, rest]."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(A, B, generator=g, dtype=dtype))
    V, _ = torch.linalg.qr(torch.randn(B, B, generator=g, dtype=dtype))
    s = torch.cat([torch.tensor([top], dtype=dtype), torch.linspace(rest, 0.1, B - 1, dtype=dtype)])
    return U @ torch.diag(s) @ V.T


def test_ten_power_iterations_from_ones_give_the_top_rank_one_term():
    W = matrix_with_gap().float()
    sigma, u, v = top_singular_triplet(W)
    U, S, Vh = torch.linalg.svd(W.double())
    exact = S[0] * torch.outer(U[:, 0], Vh[0])
    ours = (sigma * torch.outer(u, v)).double()
    assert torch.linalg.matrix_norm(ours - exact) / torch.linalg.matrix_norm(exact) < 1e-3
    assert torch.allclose((W @ torch.outer(v, v)).double(), ours, atol=1e-5)  # W v1 v1ᵀ = σ1 u1 v1ᵀ


def test_gradient_of_the_spectral_norm_is_u1_v1t_by_finite_differences():
    W = matrix_with_gap()
    _, u, v = top_singular_triplet(W, iters=200)
    grad = torch.outer(u, v).double()
    g = torch.Generator().manual_seed(1)
    h = 1e-6
    for _ in range(5):
        D = torch.randn(W.shape, generator=g, dtype=torch.float64)
        fd = (torch.linalg.matrix_norm(W + h * D, 2) - torch.linalg.matrix_norm(W - h * D, 2)) / (2 * h)
        assert fd.item() == pytest.approx((grad * D).sum().item(), rel=1e-4)


def test_decay_step_shrinks_only_the_top_singular_value():
    W = torch.nn.Parameter(matrix_with_gap().float())
    before = torch.linalg.svdvals(W.detach().double())
    SpectralDecay([W], lr=0.1, weight_decay=1.0).step()
    after = torch.linalg.svdvals(W.detach().double())
    assert after[0].item() == pytest.approx(before[0].item() * (1 - 0.1), rel=1e-4)
    assert torch.allclose(after[1:], before[1:], atol=1e-4)


def test_batched_decay_equals_one_matrix_at_a_time_and_warm_start_keeps_v1():
    mats = [matrix_with_gap(seed=i).float() for i in range(3)]
    together = [torch.nn.Parameter(m.clone()) for m in mats]
    SpectralDecay(together, lr=0.05, weight_decay=0.5).step()
    for m, t in zip(mats, together):
        alone = torch.nn.Parameter(m.clone())
        SpectralDecay([alone], lr=0.05, weight_decay=0.5).step()
        assert torch.allclose(alone, t, atol=1e-6)
    warm = SpectralDecay([torch.nn.Parameter(mats[0].clone())], lr=0.05, weight_decay=0.5, warm=True)
    warm.step()
    assert set(warm.state_dict()["state"][0]) == {"v1"}
    with pytest.raises(ValueError, match="matrices only"):
        SpectralDecay([torch.nn.Parameter(torch.ones(4))], lr=0.1, weight_decay=0.1)


def test_spectrum_stats_sigma_max_and_entropy():
    W = matrix_with_gap().float()
    sigma_max, entropy = spectrum_stats(W)
    assert sigma_max == pytest.approx(10.0, rel=1e-4)
    assert 0 < entropy < 1
    assert spectrum_stats(torch.eye(8))[1] == pytest.approx(1.0)  # a flat spectrum


def run_cfg(**kw):
    return make_run_config({"data": "d", "vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 8,
                            "optimizer": "adamw", "lr": 1e-2, "steps": 20, "batch_size": 2, "seed": 0,
                            "weight_decay": 0.1, "weight_decay_kind": "spectral", **kw})


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_spectral_decay_replaces_the_decoupled_decay_of_the_decayed_groups(optimizer):
    cfg = run_cfg(optimizer=optimizer, warmup_steps=5)
    model = GPT(model_config(cfg))
    opts = build_optimizers(model, cfg, "cpu")
    decay, rest = opts[0], opts[1:]
    assert isinstance(decay, SpectralDecay) and not decay.param_groups[0]["warm"]
    assert {g["name"] for g in decay.param_groups} == {"hidden", "readout"}
    assert all(g["weight_decay"] == 0 for opt in rest for g in opt.param_groups)
    assert any(isinstance(o, Muon) for o in rest) == (optimizer == "muon")
    schedulers = build_schedulers(opts, cfg)
    for _ in range(3):
        for opt, sched in zip(opts, schedulers):
            opt.step()
            sched.step()
    lr_of = {g["name"]: g["lr"] for opt in rest for g in opt.param_groups}
    assert all(g["lr"] == pytest.approx(lr_of[g["name"]]) for g in decay.param_groups)  # one schedule drives both


def test_decoupled_decay_has_no_extra_optimizer():
    cfg = run_cfg(weight_decay_kind="decoupled")
    assert not any(isinstance(o, SpectralDecay) for o in build_optimizers(GPT(model_config(cfg)), cfg, "cpu"))


def test_warm_spectral_run_resumes_exactly_and_logs_spectra(tiny_data, tiny_run, tmp_path):
    from optclaims.train import _Stop

    cfg = tiny_run(weight_decay_kind="spectral_warm", weight_decay=0.5, log_spectra=True)
    full = train_run(cfg, tmp_path / "full", tiny_data)
    with pytest.raises(_Stop):
        train_run(cfg, tmp_path / "resumed", tiny_data, stop_at=10)
    resumed = train_run(cfg, tmp_path / "resumed", tiny_data)
    assert resumed["final_val_loss"] == full["final_val_loss"] and resumed["resumed_from_step"] == 10
    m = pd.read_parquet(tmp_path / "full" / "metrics.parquet")
    sig = m.filter(like="sigma_max[").dropna()
    ent = m.filter(like="svd_entropy[").dropna()
    assert sig.shape[1] == 4 * cfg["n_layers"] + 1 and len(sig) == cfg["steps"] // cfg["log_every"]
    assert ((ent > 0) & (ent <= 1)).all().all()


# ---------------------------------------------------------------- the claim's analysis, synthetic

import yaml  # noqa: E402
from pathlib import Path  # noqa: E402

from optclaims.analysis import ClaimContext, Run  # noqa: E402
from optclaims.claims import grid_runs, load_claim_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
claim = load_claim_module("spectral_weight_decay", ROOT / "reproductions")
SPEC = yaml.safe_load((ROOT / "reproductions/spectral_weight_decay/claim.yaml").read_text())
BLOCK = SPEC["scales"]["smoke"]


def synthetic(loss_of, sigma_of=lambda setting, step: 2.0, noise=(-0.01, 0.0, 0.01)):
    """The claim's smoke runs with final loss loss_of(setting) + a seed offset, and σ_max(step)."""
    runs = []
    for i, fields in enumerate(grid_runs(BLOCK)):
        cfg = {**fields, "data": "d", "vocab_size": 64}
        name = claim.setting(cfg)
        steps = range(cfg["log_every"], cfg["steps"] + 1, cfg["log_every"])
        metrics = pd.DataFrame({"step": list(steps),
                                "sigma_max[blocks.0.mlp.fc.weight]": [sigma_of(name, s) for s in steps],
                                "sigma_max[readout.weight]": [1.0 for _ in steps],
                                "svd_entropy[blocks.0.mlp.fc.weight]": [0.9 for _ in steps],
                                "svd_entropy[readout.weight]": [0.8 for _ in steps]})
        loss = loss_of(name) + noise[cfg["seed"]]
        runs.append(Run(f"{i:012x}", cfg, {"status": "ok", "final_val_loss": loss}, metrics))
    return runs


def analyse(runs, tmp_path):
    return claim.analyze(ClaimContext("spectral_weight_decay", SPEC, "smoke", False, runs, tmp_path))


def test_the_plan_is_five_settings_times_three_seeds():
    names = [claim.setting(f) for f in grid_runs(BLOCK)]
    assert sorted(set(names)) == ["frobenius_0.1", "no_decay", "spectral_0.1", "spectral_0.3", "spectral_1"]
    assert len(names) == 15


def test_a_tie_is_the_weak_form_only(tmp_path):
    verdict, table = analyse(synthetic(lambda s: 3.0), tmp_path)
    assert verdict["status"] == "partially_reproduced" and "weak form only" in verdict["summary"]
    assert verdict["measured"]["σ_seed (pooled, one run)"]["value"] == pytest.approx(0.01)
    assert {s["name"]: s["status"] for s in verdict["sub_claims"]}["weak form: no worse than Frobenius decay"] == "reproduced"
    for name in ("losses", "spectra", "sigma_max_per_matrix", "svd_entropy_per_matrix"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    assert list(table.setting)[:2] == ["no_decay", "frobenius_0.1"]


def test_a_gain_beyond_decay_and_control_is_reproduced_and_a_loss_is_not(tmp_path):
    better = {"spectral_0.1": 2.9}
    verdict, _ = analyse(synthetic(lambda s: better.get(s, 3.0)), tmp_path / "a")
    assert verdict["status"] == "reproduced"
    verdict, _ = analyse(synthetic(lambda s: {"spectral_0.1": 2.9, "no_decay": 2.9}.get(s, 3.0)), tmp_path / "b")
    assert verdict["status"] == "partially_reproduced" and "less decay" in verdict["summary"]
    verdict, _ = analyse(synthetic(lambda s: {"spectral_0.1": 3.1}.get(s, 3.0)), tmp_path / "c")
    assert verdict["status"] == "not_reproduced"


def test_unbounded_sigma_max_is_not_reproduced(tmp_path):
    def sigma(name, step):
        return 2.0 + (0.05 * step if name == "spectral_0.1" else 0.0)
    verdict, _ = analyse(synthetic(lambda s: 3.0, sigma_of=sigma), tmp_path)
    assert verdict["status"] == "not_reproduced" and "without bound" in verdict["summary"]


def test_one_seed_is_inconclusive(tmp_path):
    runs = [r for r in synthetic(lambda s: 3.0) if r.config["seed"] == 0]
    verdict, _ = analyse(runs, tmp_path)
    assert verdict["status"] == "inconclusive"
