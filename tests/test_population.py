"""Populations (DESIGN.md, "How runs are executed: populations"): the stacked optimizers against
torch's own, member by member; each member of a trained population against the same run trained
alone; resume after a kill; the outputs each member leaves; and how runs are grouped."""

import math
from contextlib import nullcontext

import pandas as pd
import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from optclaims.atomic import read_json
from optclaims.checkpoint import MODEL_FILE, STATE_FILE, load_model, load_train_state, save_member
from optclaims.data.shards import TokenShard
from optclaims.errors import ConfigError
from optclaims.model import GPT
from optclaims.optim import DECAYED_ROLES, OptimizerSet, clip_member_grads_, member_hypers
from optclaims.optim.muon import Muon
from optclaims.optim.schedules import lr_lambda
from optclaims.parametrization import lr_multipliers, member_init
from optclaims.population import (
    POPULATION_KEYS,
    check_population,
    group_populations,
    member_bytes,
    population_id,
    population_key,
)
from optclaims.runs import make_run_config, run_id
from optclaims.shape import model_config
from optclaims.train import Member, train_population, train_run, validation_losses

from conftest import TINY_VOCAB

# ---------------------------------------------------------------- the optimizers against torch's


def opt_cfg(**kw):
    return make_run_config({"data": "d", "vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 8,
                            "optimizer": "adamw", "lr": 1e-2, "steps": 12, "warmup_steps": 3, "batch_size": 2,
                            "seed": 0, **kw})


def stacked(cfgs):
    model = GPT(model_config(cfgs[0]), [member_init(c) for c in cfgs], [c["seed"] for c in cfgs])
    return model, OptimizerSet(model, member_hypers(cfgs), cfgs[0]["optimizer"])


def reference(model, k, cfg):
    """Member k's weights as plain tensors, and torch's optimizers over them with the run's groups:
    per role, lr × the parametrization's multiplier (Muon runs: ``aux_lr`` for the AdamW part) and
    decoupled λ / multiplier on the decayed roles only; Muon (ours, the 2-D optimizer) on the
    hidden matrices of Muon runs."""
    params = {name: torch.nn.Parameter(p[k].detach().clone()) for name, p in model.named_parameters()}
    mult, muon = lr_multipliers(cfg), cfg["optimizer"] == "muon"
    adamw_groups, muon_groups = [], []
    for role, named in model.param_groups().items():
        group = {"params": [params[n] for n, _ in named],
                 "weight_decay": cfg["weight_decay"] / mult[role] if role in DECAYED_ROLES else 0.0}
        if muon and role == "hidden":
            muon_groups.append({**group, "lr": cfg["lr"] * mult[role]})
        else:
            base = cfg["aux_lr"] if muon and cfg["aux_lr"] is not None else cfg["lr"]
            adamw_groups.append({**group, "lr": base * mult[role]})
    opts = [torch.optim.AdamW(adamw_groups, betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"], foreach=False)]
    if muon:
        opts.append(Muon(muon_groups, lr=cfg["lr"], momentum=cfg["muon_momentum"], nesterov=True,
                         ns_steps=cfg["muon_ns_steps"], scale=cfg["muon_scale"]))
    return params, opts, [LambdaLR(o, lr_lambda(cfg)) for o in opts]


def drive(cfgs, steps, skip, make_reference, step_reference):
    """``steps`` steps of the population and of each member's reference (``make_reference(model, k,
    cfg)`` → (params, ...)) on the same random gradients, scaled 0.1, 1 and 10 for members 0, 1, 2;
    member k sits out the steps (k, s) in ``skip`` (outside the mask: no step, optimizer state kept),
    and ``step_reference(reference, active)`` steps its reference only where it is active."""
    model, opt = stacked(cfgs)
    refs = [make_reference(model, k, c) for k, c in enumerate(cfgs)]
    gen = torch.Generator().manual_seed(0)
    for s in range(steps):
        for name, p in model.named_parameters():
            g = torch.randn(p.shape, generator=gen) * torch.tensor([0.1, 1.0, 10.0]).view(3, *[1] * (p.ndim - 1))
            p.grad = g.clone()
            for k, (params, *_) in enumerate(refs):
                params[name].grad = g[k].clone()
        mask = torch.tensor([(k, s) not in skip for k in range(len(cfgs))])
        opt.step(s, mask)
        opt.zero_grad()
        for k, ref in enumerate(refs):
            step_reference(ref, bool(mask[k]))
    return model, opt, refs


def step_reference_optimizers(ref, active):
    _, opts, scheds = ref
    for o, sched in zip(opts, scheds):
        if active:
            o.step()
        o.zero_grad()
        sched.step()


def step_both(cfgs, steps, skip=()):
    """The population against each member's torch.optim.AdamW (and Muon) reference (``drive``)."""
    return drive(cfgs, steps, skip, reference, step_reference_optimizers)


def assert_members_equal_references(model, refs, rtol, atol):
    for k, (params, _, _) in enumerate(refs):
        for name, p in model.named_parameters():
            torch.testing.assert_close(p[k], params[name].detach(), rtol=rtol, atol=atol,
                                       msg=lambda m: f"member {k}, {name}: {m}")


ADAMW_MEMBERS = [
    dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1),
    dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.5, seed=1, parametrization="mup", mup_base_width=16,
         schedule="wsd"),
    dict(lr=2e-2, beta1=0.95, beta2=0.9, eps=1e-5, weight_decay=0.0, seed=2, schedule="constant", warmup_steps=0),
]


def test_adamw_population_equals_torch_adamw_member_by_member():
    cfgs = [opt_cfg(**m) for m in ADAMW_MEMBERS]
    model, opt, refs = step_both(cfgs, 10, skip={(2, 4), (2, 5)})
    # float32 throughout; ours takes β^t, 1 − ηλ and η/(1 − β1^t) in float32 where torch takes them in
    # float64, so the two differ by float32 rounding of the step (≈1e-7 of it), nothing more
    assert_members_equal_references(model, refs, rtol=1e-6, atol=1e-7)
    assert opt.adamw.steps.tolist() == [10, 10, 8]
    rms = opt.update_rms()
    for k, (params, [adamw], _) in enumerate(refs):
        for role, named in model.param_groups().items():
            per_matrix = []
            for name, _ in named:
                state, (beta1, beta2), eps = adamw.state[params[name]], adamw.defaults["betas"], adamw.defaults["eps"]
                t = state["step"].item()
                u = (state["exp_avg"] / (1 - beta1**t)) / ((state["exp_avg_sq"] / (1 - beta2**t)).sqrt() + eps)
                per_matrix.append(u.square().mean().sqrt())
            assert rms[role][k].item() == pytest.approx(torch.stack(per_matrix).mean().item(), rel=1e-5), (k, role)


def test_the_adamw_comparison_can_fail():
    """The same comparison with one member's β2 changed in the population only is far out of tolerance."""
    cfgs = [opt_cfg(**m) for m in ADAMW_MEMBERS]
    model, opt, refs = step_both(cfgs, 10)
    wrong = [opt_cfg(**{**m, "beta2": 0.999}) if k == 1 else opt_cfg(**m) for k, m in enumerate(ADAMW_MEMBERS)]
    model_wrong, _, _ = step_both(wrong, 10)
    with pytest.raises(AssertionError, match="member 1"):
        assert_members_equal_references(model_wrong, refs, rtol=1e-6, atol=1e-7)


def test_clipping_equals_clip_grad_norm_member_by_member():
    cfgs = [opt_cfg(seed=k) for k in range(4)]
    model, _ = stacked(cfgs)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(1)
    scale = torch.tensor([1.0, 10.0, 1e-3, 3.0])
    grads = [torch.randn(p.shape, generator=gen) * scale.view(4, *[1] * (p.ndim - 1)) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    max_norm = torch.tensor([0.5, math.inf, 1.0, 2.0])  # clipped, never clipped, below its bound, clipped
    norms = clip_member_grads_(params, max_norm)
    for k in range(4):
        ref = [torch.nn.Parameter(g[k].clone()) for g in grads]
        for q, g in zip(ref, grads):
            q.grad = g[k].clone()
        ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm[k].item())
        assert norms[k].item() == pytest.approx(ref_norm.item(), rel=1e-6)
        for p, q in zip(params, ref):
            torch.testing.assert_close(p.grad[k], q.grad, rtol=1e-6, atol=0)
    assert norms[0] > 0.5 and norms[3] > 2.0 and norms[2] < 1.0
    for p, g in zip(params, grads):
        assert torch.equal(p.grad[1], g[1]) and torch.equal(p.grad[2], g[2])  # unchanged, bit for bit


MUON_MEMBERS = [
    dict(lr=0.02, muon_momentum=0.95, weight_decay=0.1, muon_scale="moonlight"),
    dict(lr=0.05, muon_momentum=0.9, weight_decay=0.0, muon_scale="keller", seed=1, aux_lr=3e-3,
         parametrization="mup", mup_base_width=16, schedule="wsd", beta2=0.99),
    dict(lr=0.01, muon_momentum=0.8, weight_decay=0.3, muon_scale="spectral", seed=2, schedule="constant",
         aux_lr=1e-2, beta1=0.8),
]


def test_muon_population_equals_muon_and_adamw_member_by_member():
    """The hidden matrices against ``muon.Muon`` on that member's 2-D matrices, the rest against
    torch.optim.AdamW with aux_lr. Both orthogonalise bit-identical momenta with the same bf16
    Newton–Schulz, so they agree to float32 rounding of η·s and 1 − ηλ (Muon's in float64), not
    only to test_muon.AGREEMENT_RTOL."""
    cfgs = [opt_cfg(optimizer="muon", **m) for m in MUON_MEMBERS]
    model, opt, refs = step_both(cfgs, 10, skip={(1, 6)})
    assert_members_equal_references(model, refs, rtol=1e-6, atol=1e-7)
    for k, (_, opts, _) in enumerate(refs):
        muon = opts[1]
        assert opt.muon.last_rms[k].item() == pytest.approx(muon.update_rms["0"].item(), rel=1e-6)


# ---------------------------------------------------------------- a member trained in a population = alone

BASE = {"data": "tiny", "vocab_size": TINY_VOCAB, "optimizer": "adamw", "d_model": 32, "n_layers": 2, "n_heads": 2,
        "seq_len": 32, "batch_size": 4, "steps": 30, "warmup_steps": 3, "lr": 3e-3, "log_every": 5, "eval_every": 10,
        "ckpt_every": 10, "val_batches": 2, "seed": 0}


def run(**fields):
    return make_run_config({**BASE, **fields})


ADAMW_POPULATION = {  # name → fields; every member shares the population keys of BASE (+ below)
    "base": {},
    "betas_wsd_noclip": dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, seed=1, clip=None, schedule="wsd"),
    "mup": dict(parametrization="mup", mup_base_width=16, lr=1e-2, seed=2, clip=0.5, weight_decay=0.2),
    "spectral": dict(weight_decay_kind="spectral", weight_decay=0.5, seed=3, lr=5e-3),
    "spectral_warm_short": dict(weight_decay_kind="spectral_warm", weight_decay=0.5, seed=4, steps=20,
                                schedule="constant"),
    "off_grid_end": dict(steps=23, seed=5, warmup_steps=0),
    "diverges_at_once": dict(lr=1e3, clip=None, seed=6),
    "diverges_mid_run": dict(lr=5.0, clip=None, warmup_steps=29, seed=7),
    "longest": dict(steps=36, seed=8, lr=2e-3, init_std=0.05),
}
MUON_POPULATION = {
    "moonlight": dict(optimizer="muon", lr=0.02, muon_scale="moonlight"),
    "keller_mup": dict(optimizer="muon", lr=0.03, muon_scale="keller", parametrization="mup", mup_base_width=16,
                       aux_lr=3e-3, seed=1, muon_momentum=0.9),
    "spectral_mup": dict(optimizer="muon", lr=0.02, muon_scale="spectral", parametrization="mup", mup_base_width=16,
                         aux_lr=1e-2, seed=2, weight_decay_kind="spectral", weight_decay=0.3, steps=25, clip=None),
}
SHARED = {"adamw": dict(activation_steps=3, log_spectra=True), "muon": {}}


def train_both(root, data, members: dict[str, dict], shared: dict):
    """Every member trained alone and the same members trained as one population."""
    cfgs = {name: run(**shared, **fields) for name, fields in members.items()}
    solo = {name: train_run(cfg, root / "solo" / name, data) for name, cfg in cfgs.items()}
    pop = train_population([Member(cfg, root / "pop" / name) for name, cfg in cfgs.items()], data, root / "state")
    return cfgs, solo, dict(zip(cfgs, pop))


@pytest.fixture(scope="module")
def adamw_population(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("adamw_population")
    return (root, *train_both(root, tiny_data, ADAMW_POPULATION, SHARED["adamw"]))


@pytest.fixture(scope="module")
def muon_population(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("muon_population")
    return (root, *train_both(root, tiny_data, MUON_POPULATION, SHARED["muon"]))


def assert_same_run(pop_dir, solo_dir, pop, solo, rtol=1e-5):
    """Every per-step metric (train loss, grad norm, clipped, lr, update RMS, val loss, activations,
    spectra) and the summary's results of a population member equal those of the run alone."""
    a, b = pd.read_parquet(pop_dir / "metrics.parquet"), pd.read_parquet(solo_dir / "metrics.parquet")
    assert sorted(a.columns) == sorted(b.columns)
    pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)], check_exact=False, rtol=rtol, atol=0)
    for key in ("run_id", "status", "steps", "tokens", "n_params", "n_params_matmul", "flops"):
        assert pop[key] == solo[key], key
    for key in ("final_val_loss", "final_train_loss", "val_bpb"):
        assert (pop[key] is None) == (solo[key] is None), key
        if solo[key] is not None:
            assert pop[key] == pytest.approx(solo[key], rel=rtol), key


@pytest.mark.parametrize("name", list(ADAMW_POPULATION))
def test_adamw_member_equals_the_run_alone(adamw_population, name):
    root, cfgs, solo, pop = adamw_population
    assert_same_run(root / "pop" / name, root / "solo" / name, pop[name], solo[name])
    assert pop[name]["population"]["size"] == len(ADAMW_POPULATION)
    assert solo[name]["population"]["size"] == 1


@pytest.mark.parametrize("name", list(MUON_POPULATION))
def test_muon_member_equals_the_run_alone(muon_population, name):
    root, cfgs, solo, pop = muon_population
    assert_same_run(root / "pop" / name, root / "solo" / name, pop[name], solo[name])
    m = pd.read_parquet(root / "pop" / name / "metrics.parquet")
    assert m.update_rms_hidden.notna().any() and m.update_rms_embed.notna().any()


def test_the_population_covers_what_it_claims(adamw_population):
    """The mixes the equivalence tests rely on are really there: divergence (at once and mid-run)
    leaves the others trained, and members of different length stop at their own step."""
    _, cfgs, solo, pop = adamw_population
    assert pop["diverges_at_once"]["status"] == "diverged" and pop["diverges_at_once"]["steps"] <= 3
    assert pop["diverges_mid_run"]["status"] == "diverged" and 5 < pop["diverges_mid_run"]["steps"] < 30
    ok = [n for n in cfgs if not n.startswith("diverges")]
    assert all(pop[n]["status"] == "ok" and pop[n]["steps"] == cfgs[n]["steps"] for n in ok)
    assert all(pop[n]["final_val_loss"] < math.log(TINY_VOCAB) for n in ok)
    assert len({pop[n]["final_val_loss"] for n in ok}) == len(ok)  # the members really differ
    assert sorted(p["population"]["index"] for p in pop.values()) == list(range(len(cfgs)))
    assert len({p["population"]["id"] for p in pop.values()}) == 1


def test_the_equivalence_comparison_can_fail(adamw_population):
    """Another member's run, or the same train losses 3e-5 off, fail the comparison: it resolves
    far less than the differences a wrong hyper-parameter or a leak between members would make."""
    root, cfgs, solo, pop = adamw_population
    with pytest.raises(AssertionError):
        assert_same_run(root / "pop" / "base", root / "solo" / "mup", pop["base"], solo["mup"])
    a = pd.read_parquet(root / "pop" / "base" / "metrics.parquet")
    b = a.assign(train_loss=a.train_loss * (1 + 3e-5))
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=0)


# ---------------------------------------------------------------- outputs


def test_each_member_leaves_the_run_outputs(adamw_population, tiny_data):
    root, cfgs, _, pop = adamw_population
    val = TokenShard(tiny_data / "tokens", "val")
    batches = val.eval_batches(BASE["val_batches"], BASE["batch_size"], BASE["seq_len"])
    for name, cfg in cfgs.items():
        out = root / "pop" / name
        assert {p.name for p in out.iterdir()} == {"config.json", "summary.json", "metrics.parquet", MODEL_FILE}
        assert read_json(out / "config.json") == cfg
        s = read_json(out / "summary.json")
        assert s == pop[name] and s["run_id"] == run_id(cfg)
        assert set(s["population"]) >= {"id", "index", "size"}
        assert s["population"]["id"] == population_id(run_id(c) for c in cfgs.values())
        m = pd.read_parquet(out / "metrics.parquet")
        assert m.step.tolist() == list(range(1, s["steps"] + 1))
        model = load_model(out / MODEL_FILE, sha256=s["model_sha256"])
        assert model.n_members == 1 and model.members[0] == member_init(cfg)
        if s["status"] == "ok":  # the saved member alone scores what it scored inside the population
            loss = validation_losses(model, batches, torch.device("cpu"), nullcontext)[0].item()
            assert loss == pytest.approx(s["final_val_loss"], rel=1e-5), name
    assert not (root / "state" / STATE_FILE).exists()


# ---------------------------------------------------------------- resume and finished members


def kill_and_resume(root, data, cfgs, kill_at, step):
    members = [Member(cfg, root / name) for name, cfg in cfgs.items()]
    with pytest.raises(kill_at(step)):
        train_population(members, data, root / "state")
    return members


def test_a_killed_population_resumes_to_the_uninterrupted_one(tiny_data, tmp_path, kill_at):
    cfgs = {"short": run(steps=5, seed=0, lr=1e-2),
            "a": run(seed=1, weight_decay_kind="spectral_warm", weight_decay=0.5),
            "b": run(seed=2, lr=1e-2, parametrization="mup", mup_base_width=16, clip=None)}
    whole = dict(zip(cfgs, train_population([Member(c, tmp_path / "whole" / n) for n, c in cfgs.items()], tiny_data,
                                            tmp_path / "whole" / "state")))
    split = tmp_path / "split"
    members = kill_and_resume(split, tiny_data, cfgs, kill_at, 15)  # dies at step 16; the step-10 checkpoint survives
    assert (split / "short" / "summary.json").exists()
    assert not (split / "a" / "summary.json").exists() and not (split / "b" / "summary.json").exists()
    state = load_train_state(split / "state" / STATE_FILE)
    assert state["step"] == 10
    # the short member stopped changing at its step 5: its weights in the step-10 checkpoint are those it saved
    k = state["run_ids"].index(run_id(cfgs["short"]))
    saved = load_model(split / "short" / MODEL_FILE)
    for name, p in saved.named_parameters():
        assert torch.equal(state["model"][name][k], p[0]), name
    finished = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (split / "short").iterdir()}

    resumed = dict(zip(cfgs, train_population(members, tiny_data, split / "state")))
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (split / "short").iterdir()} == finished
    timing = ("wall_seconds", "tokens_per_s", "population")
    assert resumed["short"]["resumed_from_step"] is None and resumed["short"]["status"] == "ok"
    assert {k: v for k, v in resumed["short"].items() if k not in timing} == \
        {k: v for k, v in whole["short"].items() if k not in timing}  # as if never killed
    for name in ("a", "b"):
        assert resumed[name]["resumed_from_step"] == 10
        assert resumed[name]["final_val_loss"] == whole[name]["final_val_loss"]
        assert resumed[name]["final_train_loss"] == whole[name]["final_train_loss"]
        pd.testing.assert_frame_equal(pd.read_parquet(split / name / "metrics.parquet"),
                                      pd.read_parquet(tmp_path / "whole" / name / "metrics.parquet"))
    assert not (split / "state" / STATE_FILE).exists()


def test_a_finished_member_is_not_retrained_in_a_new_population(tiny_data, tmp_path):
    done_cfg, new_cfg = run(steps=10), run(steps=10, seed=1, lr=1e-2)
    train_run(done_cfg, tmp_path / "done", tiny_data)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "done").iterdir()}
    summaries = train_population([Member(done_cfg, tmp_path / "done"), Member(new_cfg, tmp_path / "new")], tiny_data,
                                 tmp_path / "state")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "done").iterdir()} == before
    assert summaries[0] == read_json(tmp_path / "done" / "summary.json")
    assert summaries[1]["status"] == "ok"
    assert summaries[1]["population"]["size"] == 1  # the only member left to train
    alone = train_run(new_cfg, tmp_path / "alone", tiny_data)
    assert summaries[1]["final_val_loss"] == pytest.approx(alone["final_val_loss"], rel=1e-5)
    again = train_population([Member(done_cfg, tmp_path / "done"), Member(new_cfg, tmp_path / "new")], tiny_data,
                             tmp_path / "state")
    assert again == summaries  # nothing left to train


# ---------------------------------------------------------------- which runs form a population


def test_check_population_names_the_shared_key_members_disagree_on(tiny_data, tmp_path):
    check_population([run(), run(lr=1e-2, seed=3, parametrization="mup", mup_base_width=16, steps=20)])
    with pytest.raises(ConfigError, match="d_model"):
        check_population([run(), run(d_model=64)])
    with pytest.raises(ConfigError, match="optimizer"):
        check_population([run(), run(optimizer="muon")])
    with pytest.raises(ConfigError, match="batch_size"):
        train_population([Member(run(), tmp_path / "a"), Member(run(batch_size=8), tmp_path / "b")], tiny_data,
                         tmp_path / "state")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything is written
    with pytest.raises(ConfigError):
        check_population([])


def sweep():
    runs = [run(lr=lr, seed=seed, steps=steps) for lr in (1e-3, 3e-3, 1e-2) for seed in (0, 1) for steps in (20, 30)]
    runs += [run(d_model=64, lr=lr) for lr in (1e-3, 3e-3, 1e-2)]
    runs += [run(optimizer="muon", lr=lr, seed=s) for lr in (0.01, 0.02) for s in (0, 1)]
    return {run_id(c): c for c in runs}


def test_group_populations_is_deterministic_bounded_and_never_mixes_keys():
    runs = sweep()
    for max_members in (1, 4, 5, 100):
        groups = group_populations(runs, max_members)
        assert group_populations(dict(reversed(list(runs.items()))), max_members) == groups  # order of the plan
        ids = [r for members in groups.values() for r in members]
        assert sorted(ids) == sorted(runs)  # every run exactly once
        for pid, members in groups.items():
            assert pid == population_id(members) and 1 <= len(members) <= max_members
            assert len({population_key(runs[r]) for r in members}) == 1
            check_population([runs[r] for r in members])
    assert len(group_populations(runs, 100)) == 3  # one per shape and optimizer: 12 + 3 + 4 runs
    sizes = sorted(len(m) for m in group_populations(runs, 5).values())
    assert sizes == [3, 4, 4, 4, 4]  # 12 → 4+4+4, 3, 4: the fewest populations, even in size


def test_group_populations_respects_the_memory_bound():
    runs = sweep()
    small = member_bytes(next(c for c in runs.values() if c["d_model"] == 32 and c["optimizer"] == "adamw"))
    big = member_bytes(next(c for c in runs.values() if c["d_model"] == 64))
    assert big > small
    bound = 3.5 * small
    groups = group_populations(runs, 100, bound)
    for members in groups.values():
        assert sum(member_bytes(runs[r]) for r in members) <= bound or len(members) == 1
    assert max(len(m) for m in groups.values()) == 3
    assert all(len(m) == 1 for m in group_populations(runs, 100, small / 2).values())  # none fits: one each
    with pytest.raises(ConfigError, match="max_members"):
        group_populations(runs, 0)


def test_population_keys_are_run_fields():
    """Every population key is a field a run config has (a typo would group everything together)."""
    cfg = run(optimizer="muon")
    assert set(POPULATION_KEYS) <= set(cfg)


def test_a_saved_member_is_the_same_file_every_time(tmp_path):
    """Identical runs give identical model files, so summary.json's model_sha256 is reproducible."""
    cfgs = [opt_cfg(), opt_cfg(seed=1, parametrization="mup", mup_base_width=16)]
    model, _ = stacked(cfgs)
    for i in range(6):
        save_member(model, 1, tmp_path / f"{i}.safetensors")
    assert len({(tmp_path / f"{i}.safetensors").read_bytes() for i in range(6)}) == 1
    loaded = load_model(tmp_path / "0.safetensors")
    assert loaded.members == (member_init(cfgs[1]),) and loaded.cfg == model.cfg
    for name, p in loaded.named_parameters():
        assert torch.equal(p[0], model.get_parameter(name)[1])


def test_a_checkpoint_past_an_unfinished_members_end_is_not_resumed(tmp_path):
    """A member whose outputs were deleted after the checkpoint passed its last step could never
    finish from there: the population starts again instead."""
    from optclaims.train import Member, _members_to_train

    short, long_ = Member(run(steps=5), tmp_path / "a"), Member(run(steps=30, seed=1), tmp_path / "b")
    saved = {"run_ids": [short.run_id, long_.run_id], "step": 10}
    assert _members_to_train(saved, [short, long_], [long_]) == ([short, long_], saved)  # short finished: rides along
    assert _members_to_train(saved, [short, long_], [short, long_]) == ([short, long_], None)
