"""The stacked SGD (clip_norm's control arm): member by member against torch.optim.SGD, each member
of a trained SGD population against the same run alone, a resumed SGD population against the
uninterrupted one, and the run configs it accepts."""

import pandas as pd
import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from optclaims.errors import ConfigError
from optclaims.optim.schedules import lr_lambda
from optclaims.train import Member, train_population

from test_population import assert_members_equal_references, assert_same_run, drive, opt_cfg, run, train_both


def sgd_reference(model, k, cfg):
    """Member k's weights as plain tensors, torch.optim.SGD over them (μ, dampening 0, no Nesterov,
    no L2 term) and the decoupled decay W ← W·(1 − ηλ) on the decayed roles, taken before the step
    as torch.optim.AdamW takes it."""
    params = {name: torch.nn.Parameter(p[k].detach().clone()) for name, p in model.named_parameters()}
    groups = [{"params": [params[n] for n, _ in named], "decay": cfg["weight_decay"] if role in ("hidden", "readout") else 0.0}
              for role, named in model.param_groups().items()]
    opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["sgd_momentum"], dampening=0.0, nesterov=False,
                          weight_decay=0.0, foreach=False)
    return params, opt, LambdaLR(opt, lr_lambda(cfg))


def step_sgd_reference(ref, active):
    """Decoupled decay, then torch.optim.SGD's step, where the member is active."""
    _, opt, sched = ref
    if active:
        with torch.no_grad():
            for group in opt.param_groups:
                for p in group["params"]:
                    p.mul_(1 - group["lr"] * group["decay"])
        opt.step()
    opt.zero_grad()
    sched.step()


def sgd_step_both(cfgs, steps, skip=()):
    """The stacked SGD against each member's torch.optim.SGD on the same gradients (``drive``)."""
    model, opt, refs = drive(cfgs, steps, skip, sgd_reference, step_sgd_reference)
    return model, opt, [(params, None, None) for params, _, _ in refs], refs


SGD_MEMBERS = [
    dict(optimizer="sgd", lr=0.1, sgd_momentum=0.9, weight_decay=0.1),
    dict(optimizer="sgd", lr=0.03, sgd_momentum=0.5, weight_decay=0.0, seed=1, schedule="wsd"),
    dict(optimizer="sgd", lr=3e-3, sgd_momentum=0.95, weight_decay=0.5, seed=2, schedule="constant", warmup_steps=0),
]


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler\.step\(\)` before")  # member 1 sits out step 0
def test_sgd_population_equals_torch_sgd_member_by_member():
    cfgs = [opt_cfg(**m) for m in SGD_MEMBERS]
    model, opt, compared, refs = sgd_step_both(cfgs, 10, skip={(2, 4), (2, 5), (1, 0)})
    # float32 throughout; ours takes η and 1 − ηλ in float32 where torch takes them in float64
    assert_members_equal_references(model, compared, rtol=1e-6, atol=1e-7)
    assert opt.adamw is None and opt.muon is None
    rms = opt.update_rms()
    for k, (params, ref, _) in enumerate(refs):
        for role, named in model.param_groups().items():
            per_matrix = [ref.state[params[n]]["momentum_buffer"].square().mean().sqrt() for n, _ in named]
            assert rms[role][k].item() == pytest.approx(torch.stack(per_matrix).mean().item(), rel=1e-5), (k, role)


def test_the_sgd_comparison_can_fail():
    """One member's momentum changed in the population only is far out of tolerance."""
    cfgs = [opt_cfg(**m) for m in SGD_MEMBERS]
    _, _, compared, _ = sgd_step_both(cfgs, 10)
    wrong = [opt_cfg(**{**m, "sgd_momentum": 0.8}) if k == 1 else opt_cfg(**m) for k, m in enumerate(SGD_MEMBERS)]
    model_wrong, _, _, _ = sgd_step_both(wrong, 10)
    with pytest.raises(AssertionError, match="member 1"):
        assert_members_equal_references(model_wrong, compared, rtol=1e-6, atol=1e-7)


SGD_POPULATION = {
    "base": dict(optimizer="sgd", lr=0.1),
    "momentum_wsd_noclip": dict(optimizer="sgd", lr=0.3, sgd_momentum=0.5, seed=1, clip=None, schedule="wsd"),
    "clipped_decayed": dict(optimizer="sgd", lr=0.2, seed=2, clip=0.25, weight_decay=0.3),
    "spectral_short": dict(optimizer="sgd", lr=0.1, seed=3, weight_decay_kind="spectral", weight_decay=0.5, steps=20),
    "diverges": dict(optimizer="sgd", lr=1e4, clip=None, seed=4),
}


@pytest.fixture(scope="module")
def sgd_population(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("sgd_population")
    return (root, *train_both(root, tiny_data, SGD_POPULATION, {}))


@pytest.mark.parametrize("name", list(SGD_POPULATION))
def test_sgd_member_equals_the_run_alone(sgd_population, name):
    root, cfgs, solo, pop = sgd_population
    assert_same_run(root / "pop" / name, root / "solo" / name, pop[name], solo[name])
    assert pop[name]["population"]["size"] == len(SGD_POPULATION)


def test_the_sgd_population_covers_what_it_claims(sgd_population):
    """The members train (loss falls), differ, clip where asked, and one diverges without the others."""
    root, cfgs, _, pop = sgd_population
    assert pop["diverges"]["status"] == "diverged"
    ok = [n for n in cfgs if n != "diverges"]
    assert all(pop[n]["status"] == "ok" and pop[n]["steps"] == cfgs[n]["steps"] for n in ok)
    assert len({pop[n]["final_val_loss"] for n in ok}) == len(ok)
    m = pd.read_parquet(root / "pop" / "clipped_decayed" / "metrics.parquet")
    assert m.clipped.any() and (m.clipped == (m.grad_norm > 0.25)).all()
    assert m.train_loss.iloc[-1] < m.train_loss.iloc[0]
    assert m.update_rms_hidden.notna().any() and m.update_rms_embed.notna().any()


def test_a_killed_sgd_population_resumes_to_the_uninterrupted_one(tiny_data, tmp_path, kill_at):
    """The momentum buffers go through the checkpoint: a resumed run repeats the uninterrupted one."""
    cfgs = {"a": run(optimizer="sgd", lr=0.1, seed=0), "b": run(optimizer="sgd", lr=0.3, seed=1, clip=0.5)}
    whole = train_population([Member(c, tmp_path / "whole" / n) for n, c in cfgs.items()], tiny_data, tmp_path / "ws")
    members = [Member(c, tmp_path / "split" / n) for n, c in cfgs.items()]
    with pytest.raises(kill_at(15)):
        train_population(members, tiny_data, tmp_path / "ss")
    resumed = train_population(members, tiny_data, tmp_path / "ss")
    for name, w, r in zip(cfgs, whole, resumed):
        assert r["resumed_from_step"] == 10 and r["final_val_loss"] == w["final_val_loss"]
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "split" / name / "metrics.parquet"),
                                      pd.read_parquet(tmp_path / "whole" / name / "metrics.parquet"))


def test_sgd_settings_belong_to_sgd_runs_and_sgd_runs_are_sp():
    assert opt_cfg(optimizer="sgd")["sgd_momentum"] == 0.9
    assert "sgd_momentum" not in opt_cfg()
    with pytest.raises(ConfigError, match="sgd_momentum = 0.5 is an SGD setting"):
        opt_cfg(sgd_momentum=0.5)
    with pytest.raises(ConfigError, match="SGD runs are SP only"):
        opt_cfg(optimizer="sgd", parametrization="mup", mup_base_width=16)
    with pytest.raises(ConfigError, match="sgd_momentum = 1"):
        opt_cfg(optimizer="sgd", sgd_momentum=1.0)
