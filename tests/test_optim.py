import math

import pytest
import torch

from optclaims.model import GPT
from optclaims.optim import OptimizerSet, member_hypers
from optclaims.optim.schedules import lr_lambda, warmup_cosine, warmup_stable_decay
from optclaims.parametrization import member_init
from optclaims.runs import make_run_config
from optclaims.shape import model_config


def run_cfg(**kw):
    return make_run_config({"data": "d", "vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 8,
                            "optimizer": "adamw", "lr": 1e-2, "steps": 20, "batch_size": 2, "seed": 0, **kw})


def population(cfgs):
    """The stacked model and optimizers of a population of ``cfgs``, as the trainer builds them."""
    model = GPT(model_config(cfgs[0]), [member_init(c) for c in cfgs], [c["seed"] for c in cfgs])
    return model, OptimizerSet(model, member_hypers(cfgs), cfgs[0]["optimizer"])


def backward_on_random_tokens(model, gen):
    x = torch.randint(0, 50, (model.n_members, 4, 8), generator=gen)
    model(x, x)[1].sum().backward()


def test_cosine_schedule_endpoints():
    kw = dict(warmup=10, total=110, min_ratio=0.1)
    assert warmup_cosine(0, **kw) == pytest.approx(0.1)
    assert warmup_cosine(9, **kw) == pytest.approx(1.0)
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)


def test_wsd_schedule_plateau_and_decay():
    kw = dict(warmup=10, total=100, min_ratio=0.0, decay_frac=0.2)
    assert warmup_stable_decay(50, **kw) == 1.0
    assert warmup_stable_decay(79, **kw) == 1.0
    assert warmup_stable_decay(90, **kw) == pytest.approx(0.5)


def test_schedule_table_holds_each_members_multiplier_and_zero_past_its_end():
    cfgs = [run_cfg(steps=20, warmup_steps=5), run_cfg(steps=12, schedule="wsd", seed=1),
            run_cfg(steps=16, schedule="constant", warmup_steps=2, seed=2)]
    table = member_hypers(cfgs).schedule
    assert table.shape == (20, 3)
    for k, c in enumerate(cfgs):
        want = [lr_lambda(c)(s) if s < c["steps"] else 0.0 for s in range(20)]
        assert table[:, k].tolist() == pytest.approx(want, rel=1e-7)
        assert table[c["steps"]:, k].eq(0).all() and table[: c["steps"], k].gt(0).all()


def test_weight_decay_only_on_hidden_and_readout():
    h = member_hypers([run_cfg(weight_decay=0.3), run_cfg(weight_decay=0.0, seed=1)])
    wd = {role: v.tolist() for role, v in h.weight_decay.items()}
    assert wd == {"hidden": pytest.approx([0.3, 0.0]), "readout": pytest.approx([0.3, 0.0]),
                  "embed": [0.0, 0.0], "gains": [0.0, 0.0]}
    assert all(v.eq(0).all() for v in h.spectral_decay.values())  # decoupled: no spectral decay


def test_optimizer_set_assigns_every_parameter_to_one_optimizer_by_role():
    model, opt = population([run_cfg()])
    assert opt.muon is None and opt.spectral is None
    ids = [id(p) for _, _, p in opt.adamw.named]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    roles = {name: role for name, role, _ in opt.adamw.named}
    assert roles["tok_emb"] == roles["pos_emb"] == "embed" and roles["readout.weight"] == "readout"
    assert roles["blocks.0.attn.qkv.weight"] == "hidden" and roles["blocks.1.norm_mlp.weight"] == "gains"


def test_update_rms_from_state_equals_the_step_adamw_takes():
    """The RMS read from exp_avg/exp_avg_sq must be the RMS of the step AdamW applies (weight decay
    0, so ΔW = −lr·m̂/(√v̂+ε) exactly), for each member of a population with its own lr, β and ε."""
    cfgs = [run_cfg(weight_decay=0.0, eps=1e-8, schedule="constant"),
            run_cfg(weight_decay=0.0, eps=1e-6, schedule="constant", lr=3e-3, beta1=0.8, beta2=0.99, seed=1)]
    model, opt = population(cfgs)
    gen = torch.Generator().manual_seed(0)
    for step in range(5):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        backward_on_random_tokens(model, gen)
        opt.step(step, torch.ones(2, dtype=torch.bool))
        opt.zero_grad()
    measured = opt.update_rms()
    assert set(measured) == {"hidden", "embed", "readout", "gains"}
    groups = model.param_groups()
    for k, c in enumerate(cfgs):
        for role, named in groups.items():
            rms = [((p[k].detach() - before[n][k]) / c["lr"]).square().mean().sqrt() for n, p in named]
            assert measured[role][k].item() == pytest.approx(torch.stack(rms).mean().item(), rel=1e-4)


def test_first_adam_step_has_unit_rms():
    """At t = 1, m̂ = g and v̂ = g², so u = sign(g) (up to ε): RMS 1 for dense gradients."""
    model, opt = population([run_cfg(), run_cfg(seed=1, lr=1e-3)])
    backward_on_random_tokens(model, torch.Generator().manual_seed(0))
    opt.step(0, torch.ones(2, dtype=torch.bool))
    rms = opt.update_rms()
    assert rms["hidden"].tolist() == pytest.approx([1.0, 1.0], abs=1e-3)
    assert torch.isfinite(rms["embed"]).all()


def test_a_member_outside_the_mask_keeps_its_weights_moments_and_step_count():
    model, opt = population([run_cfg(), run_cfg(seed=1)])
    gen = torch.Generator().manual_seed(0)
    backward_on_random_tokens(model, gen)
    opt.step(0, torch.ones(2, dtype=torch.bool))
    opt.zero_grad()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    moments = {n: {k: t.clone() for k, t in s.items()} for n, s in opt.adamw.state.items()}
    backward_on_random_tokens(model, gen)
    for p in model.parameters():
        p.grad[1] = math.nan  # a diverged member's gradients
    opt.step(1, torch.tensor([True, False]))
    assert opt.adamw.steps.tolist() == [2, 1]
    for n, p in model.named_parameters():
        assert torch.equal(p[1], weights[n][1]) and not torch.equal(p[0], weights[n][0])
        for key, t in opt.adamw.state[n].items():
            assert torch.equal(t[1], moments[n][key][1]) and not torch.equal(t[0], moments[n][key][0])
    assert torch.isfinite(torch.stack([v for v in opt.update_rms().values()])).all()


@pytest.mark.parametrize("fields", [dict(eps=0.0), dict(optimizer="muon", weight_decay_kind="spectral"),
                                    dict(weight_decay_kind="spectral_warm")])
def test_a_frozen_member_never_changes_even_when_its_update_is_nan(fields):
    """0 × NaN is NaN: a frozen member's update is zeroed, not scaled by a zero learning rate. Here
    member 1 never stepped (ε = 0: m/(√v + ε) = 0/0) or holds a NaN weight (spectral decay's σ1 u1 v1ᵀ
    and Muon's update of that matrix are NaN)."""
    model, opt = population([run_cfg(**fields), run_cfg(seed=1, **fields)])
    with torch.no_grad():
        if fields.get("eps") != 0.0:
            model.blocks[0].mlp.fc.weight[1, 0, 0] = math.nan
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    backward_on_random_tokens(model, torch.Generator().manual_seed(0))
    opt.step(0, torch.tensor([True, False]))
    for n, p in model.named_parameters():
        assert torch.equal(p[1], weights[n][1]) or (torch.isnan(p[1]) == torch.isnan(weights[n][1])).all() and \
            torch.equal(torch.nan_to_num(p[1]), torch.nan_to_num(weights[n][1])), n
        assert fields.get("eps") == 0.0 or torch.isfinite(p[0]).all(), n  # ε = 0: NaN in torch's AdamW as well


def test_warm_spectral_decay_decays_a_matrix_that_started_at_zero():
    """A zero-initialised readout (μP) gives v1 = 0 at first; the warm start must not keep it there."""
    cfg = run_cfg(parametrization="mup", mup_base_width=16, weight_decay_kind="spectral_warm", weight_decay=0.5)
    model, opt = population([cfg])
    assert not model.readout.weight.any()
    for s in range(3):
        backward_on_random_tokens(model, torch.Generator().manual_seed(s))
        opt.step(s, torch.ones(1, dtype=torch.bool))
        opt.zero_grad()
    assert torch.linalg.vector_norm(opt.spectral.state["readout.weight"]["v1"]) > 0.5


def test_state_dict_round_trip_gives_identical_steps():
    cfgs = [run_cfg(), run_cfg(seed=1, weight_decay_kind="spectral_warm")]

    def steps(model, opt, seeds):
        for s in seeds:
            backward_on_random_tokens(model, torch.Generator().manual_seed(s))
            opt.step(s, torch.ones(2, dtype=torch.bool))
            opt.zero_grad()

    model, opt = population(cfgs)
    steps(model, opt, range(3))
    saved_model = {n: t.clone() for n, t in model.state_dict().items()}
    saved_opt = opt.state_dict()
    fresh, opt2 = population(cfgs)
    fresh.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    steps(model, opt, (3, 4))
    steps(fresh, opt2, (3, 4))
    for (n, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), n
    assert torch.equal(opt.adamw.steps, opt2.adamw.steps)
