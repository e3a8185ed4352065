"""Spectral weight decay: the power iteration against torch.linalg.svd, the gradient of ‖W‖₂ by
finite differences, the decay step, and its place among the run's optimizers."""

import pandas as pd
import pytest
import torch

from optclaims.model import GPT
from optclaims.optim import OptimizerSet, member_hypers
from optclaims.optim.population import StackedSpectralDecay
from optclaims.optim.spectral_decay import spectrum, top_singular_triplet
from optclaims.optim.schedules import lr_lambda
from optclaims.parametrization import member_init
from optclaims.runs import make_run_config
from optclaims.shape import model_config
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


def run_cfg(**kw):
    return make_run_config({"data": "d", "vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 8,
                            "optimizer": "adamw", "lr": 1e-2, "steps": 20, "batch_size": 2, "seed": 0,
                            "weight_decay": 0.1, "weight_decay_kind": "spectral", **kw})


def stacked_decay(mats, kinds):
    """A StackedSpectralDecay over one role-"hidden" stacked matrix per entry of ``mats`` (each (K, A, B)),
    member k with weight_decay_kind kinds[k]."""
    params = [torch.nn.Parameter(m.clone()) for m in mats]
    hypers = member_hypers([run_cfg(weight_decay_kind=kind, seed=k) for k, kind in enumerate(kinds)])
    return params, StackedSpectralDecay([(f"w{i}", "hidden", p) for i, p in enumerate(params)], hypers)


def test_decay_step_shrinks_only_the_top_singular_value():
    W = matrix_with_gap().float()
    [P], decay = stacked_decay([W[None]], ["spectral"])
    before = torch.linalg.svdvals(W.double())
    decay.step({"hidden": torch.tensor([0.1])}, torch.tensor([True]))
    after = torch.linalg.svdvals(P.detach()[0].double())
    assert after[0].item() == pytest.approx(before[0].item() * (1 - 0.1), rel=1e-4)
    assert torch.allclose(after[1:], before[1:], atol=1e-4)


def test_batched_decay_equals_one_matrix_at_a_time_and_warm_start_keeps_v1():
    """Two matrices of one shape for three members (one batched power iteration) give what each
    matrix gets alone; a warm member's v1 is kept for its next step, a cold member's is not; a member
    with rate 0 does not change, and one outside the mask keeps its warm v1 too."""
    mats = [torch.stack([matrix_with_gap(seed=3 * i + k).float() for k in range(3)]) for i in range(2)]
    kinds = ["spectral", "spectral_warm", "spectral"]
    together, decay = stacked_decay(mats, kinds)
    rate = torch.tensor([0.05, 0.02, 0.0])
    decay.step({"hidden": rate}, torch.tensor([True, True, True]))
    for i, m in enumerate(mats):
        for k in range(3):
            [alone], one = stacked_decay([m[k:k + 1]], [kinds[k]])
            one.step({"hidden": rate[k:k + 1]}, torch.tensor([True]))
            assert torch.allclose(alone[0], together[i][k], atol=1e-6)
        assert torch.equal(together[i][2], m[2])  # rate 0: untouched
        v1 = decay.state_dict()["state"][f"w{i}"]["v1"]
        assert torch.equal(v1[0], torch.ones(32)) and torch.equal(v1[2], torch.ones(32))  # cold: not kept
        _, _, v = top_singular_triplet(m[1])
        assert torch.allclose(v1[1], v, atol=1e-6)  # warm: the v1 of this step, the start of the next
    frozen = [p.detach().clone() for p in together]
    kept = {n: s["v1"].clone() for n, s in decay.state_dict()["state"].items()}
    decay.step({"hidden": torch.tensor([0.05, 0.0, 0.0])}, torch.tensor([True, False, True]))  # η = 0 outside the mask
    for i, (p, f) in enumerate(zip(together, frozen)):
        assert torch.equal(p[1], f[1]) and not torch.equal(p[0], f[0])
        assert torch.equal(decay.state_dict()["state"][f"w{i}"]["v1"][1], kept[f"w{i}"][1])  # frozen warm v1


def test_spectrum_sigma_max_and_entropy():
    W = matrix_with_gap().float()
    sigma_max, entropy = spectrum(W).tolist()
    assert sigma_max == pytest.approx(10.0, rel=1e-4)
    assert 0 < entropy < 1
    assert spectrum(torch.eye(8))[1].item() == pytest.approx(1.0)  # a flat spectrum


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_spectral_decay_replaces_the_decoupled_decay_of_the_decayed_groups(optimizer):
    """Spectral λ on hidden and readout only, no decoupled decay left, and the run's schedule drives
    it: with zero gradients a step only shrinks σ1 of each decayed matrix by the factor
    1 − lr·schedule(t)·λ, for each member of a population with its own kind, λ and warm-up, while a
    decoupled member beside them shrinks its whole matrices by that factor."""
    cfgs = [run_cfg(optimizer=optimizer, warmup_steps=5, weight_decay=0.5),
            run_cfg(optimizer=optimizer, warmup_steps=2, weight_decay=0.2, weight_decay_kind="spectral_warm", seed=1),
            run_cfg(optimizer=optimizer, weight_decay=0.3, weight_decay_kind="decoupled", seed=2)]
    h = member_hypers(cfgs)
    for role in ("hidden", "readout"):
        assert h.spectral_decay[role].tolist() == pytest.approx([0.5, 0.2, 0.0])
        assert h.weight_decay[role].tolist() == pytest.approx([0.0, 0.0, 0.3])
    assert all(h.spectral_decay[r].eq(0).all() for r in ("embed", "gains"))
    assert h.spectral_warm.tolist() == [False, True, False]
    model = GPT(model_config(cfgs[0]), [member_init(c) for c in cfgs], [c["seed"] for c in cfgs])
    opt = OptimizerSet(model, h, optimizer)
    assert {role for _, role, _ in opt.spectral.named} == {"hidden", "readout"}
    assert (opt.muon is not None) == (optimizer == "muon")
    groups = model.param_groups()
    decayed = groups["hidden"] + groups["readout"]
    with torch.no_grad():  # a spectral gap, so ten power iterations find σ1
        for i, (_, p) in enumerate(decayed):
            for k in range(3):
                A, B = p.shape[1:]
                seed = 10 * i + k
                p[k] = matrix_with_gap(A, B, 1.0, 0.5, seed) if A >= B else matrix_with_gap(B, A, 1.0, 0.5, seed).T
    for step in range(3):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step(step, torch.ones(3, dtype=torch.bool))
        for k, c in enumerate(cfgs):
            shrink = 1 - c["lr"] * lr_lambda(c)(step) * c["weight_decay"]  # η·λ per step, whatever the role's lr_mult
            for name, p in decayed:
                W0, W1 = before[name][k].double(), p.detach()[k].double()
                if c["weight_decay_kind"] == "decoupled":  # the whole matrix shrinks
                    assert torch.allclose(W1, W0 * shrink, rtol=1e-5, atol=1e-7), (k, name)
                else:
                    s0, s1 = torch.linalg.svdvals(W0), torch.linalg.svdvals(W1)
                    assert s1[0].item() == pytest.approx(s0[0].item() * shrink, rel=1e-5), (k, name)
                    assert torch.allclose(s1[1:], s0[1:], atol=1e-5), (k, name)
            for name, p in groups["embed"] + groups["gains"]:
                assert torch.equal(p[k], before[name][k])


def test_decoupled_decay_has_no_spectral_part():
    cfg = run_cfg(weight_decay_kind="decoupled")
    assert OptimizerSet(GPT(model_config(cfg), [member_init(cfg)]), member_hypers([cfg]), "adamw").spectral is None


def test_warm_spectral_run_resumes_exactly_and_logs_spectra(tiny_data, tiny_run, tmp_path, kill_at):
    cfg = tiny_run(weight_decay_kind="spectral_warm", weight_decay=0.5, log_spectra=True)
    full = train_run(cfg, tmp_path / "full", tiny_data)
    with pytest.raises(kill_at(13)):  # the checkpoint at step 10 holds each matrix's warm v1
        train_run(cfg, tmp_path / "resumed", tiny_data)
    resumed = train_run(cfg, tmp_path / "resumed", tiny_data)
    assert resumed["final_val_loss"] == full["final_val_loss"] and resumed["resumed_from_step"] == 10
    m = pd.read_parquet(tmp_path / "full" / "metrics.parquet")
    sig = m.filter(like="sigma_max[").dropna()
    ent = m.filter(like="svd_entropy[").dropna()
    assert sig.shape[1] == 4 * cfg["n_layers"] + 1 and len(sig) == cfg["steps"] // cfg["log_every"]
    assert ((ent > 0) & (ent <= 1)).all().all()

