import math

import pytest
import torch

from optclaims.model import GPT, GPTConfig, flops_per_token


def tiny(**kw):
    return GPTConfig(**{"vocab_size": 97, "d_model": 32, "n_layers": 2, "n_heads": 4, "seq_len": 16, **kw})


def test_param_groups_are_exhaustive_disjoint_and_by_role():
    model = GPT(tiny())
    groups = model.param_groups()
    ids = [id(p) for named in groups.values() for _, p in named]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {role: {n for n, _ in named} for role, named in groups.items()}
    assert names["embed"] == {"tok_emb.weight", "pos_emb.weight"}
    assert names["readout"] == {"readout.weight"}
    assert all(n.endswith("weight") and "norm" in n for n in names["gains"])
    assert len(names["hidden"]) == 4 * 2  # qkv, attn proj, mlp fc, mlp proj per layer


def test_initial_loss_is_near_uniform_and_shapes():
    torch.manual_seed(0)
    model = GPT(tiny())
    x = torch.randint(0, 97, (3, 16))
    logits, loss = model(x, x)
    assert logits.shape == (3, 16, 97)
    assert abs(loss.item() - math.log(97)) < 0.1


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = GPT(tiny())
    x = torch.randint(0, 97, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 97
    assert torch.allclose(model(x)[0][0, :10], model(y)[0][0, :10], atol=1e-6)
    assert not torch.allclose(model(x)[0][0, 10:], model(y)[0][0, 10:])


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        GPT(tiny())(torch.zeros(1, 17, dtype=torch.long))


def test_flops_count_matches_6n_plus_attention():
    cfg = tiny()
    model = GPT(cfg)
    n = model.num_params()
    hidden = sum(p.numel() for _, p in model.param_groups()["hidden"])
    assert n == hidden + 97 * 32 + 5 * 32  # hidden + readout + gains
    assert flops_per_token(cfg, n) == 6 * n + 12 * 2 * 16 * 32


def test_head_divisibility_is_checked():
    with pytest.raises(ValueError, match="divisible"):
        tiny(n_heads=5)
