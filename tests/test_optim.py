import math

import pytest
import torch

from optclaims.model import GPT, GPTConfig
from optclaims.optim import adam_update_rms, build_optimizers, build_schedulers
from optclaims.optim.schedules import warmup_cosine, warmup_stable_decay
from optclaims.runs import make_run_config


def run_cfg(**kw):
    return make_run_config({"data": "d", "vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 8,
                            "optimizer": "adamw", "lr": 1e-2, "steps": 20, "batch_size": 2, "seed": 0, **kw})


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


def test_weight_decay_only_on_hidden_and_readout():
    [opt] = build_optimizers(GPT(GPTConfig(50, 32, 2, 2, 8)), run_cfg(weight_decay=0.3), "cpu")
    wd = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert wd == {"hidden": 0.3, "readout": 0.3, "embed": 0.0, "gains": 0.0}


def test_update_rms_from_state_equals_the_step_adamw_takes():
    """The RMS read from exp_avg/exp_avg_sq must be the RMS of the step torch.optim.AdamW applies
    (weight decay 0, so ΔW = −lr·m̂/(√v̂+ε) exactly)."""
    torch.manual_seed(0)
    cfg = run_cfg(weight_decay=0.0, eps=1e-8, schedule="constant")
    model = GPT(GPTConfig(50, 32, 2, 2, 8))
    [opt] = build_optimizers(model, cfg, "cpu")
    [sched] = build_schedulers([opt], cfg)
    for step in range(5):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        x = torch.randint(0, 50, (4, 8))
        model(x, x)[1].backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    measured = adam_update_rms(opt)
    lr = opt.param_groups[0]["lr"]
    for group in opt.param_groups:
        names = set(group["param_names"])
        rms = [((p.detach() - before[n]) / lr).square().mean().sqrt() for n, p in model.named_parameters() if n in names]
        assert measured[group["name"]] == pytest.approx(torch.stack(rms).mean().item(), rel=1e-4)
    assert set(measured) == {"hidden", "embed", "readout", "gains"}


def test_first_adam_step_has_unit_rms():
    """At t = 1, m̂ = g and v̂ = g², so u = sign(g) (up to ε): RMS 1 for dense gradients."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(50, 32, 2, 2, 8))
    [opt] = build_optimizers(model, run_cfg(), "cpu")
    x = torch.randint(0, 50, (4, 8))
    model(x, x)[1].backward()
    opt.step()
    assert adam_update_rms(opt)["hidden"] == pytest.approx(1.0, abs=1e-3)
    assert math.isfinite(adam_update_rms(opt)["embed"])
