import math

import pytest
import torch

from optclaims.model import GPT, GPTConfig, MemberInit
from optclaims.shape import flops_per_token


def tiny(**kw):
    return GPTConfig(**{"vocab_size": 97, "d_model": 32, "n_layers": 2, "n_heads": 4, "seq_len": 16, **kw})


def population(K=1, seeds=None, **init):
    return GPT(tiny(), [MemberInit(**init)] * K, seeds if seeds is not None else list(range(K)))


def tokens(*shape, seed=0):
    return torch.randint(0, 97, shape, generator=torch.Generator().manual_seed(seed))


def test_param_groups_are_exhaustive_disjoint_and_by_role():
    model = population(K=3)
    groups = model.param_groups()
    ids = [id(p) for named in groups.values() for _, p in named]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {role: {n for n, _ in named} for role, named in groups.items()}
    assert names["embed"] == {"tok_emb", "pos_emb"}
    assert names["readout"] == {"readout.weight"}
    assert all(n.endswith("weight") and "norm" in n for n in names["gains"])
    assert len(names["hidden"]) == 4 * 2  # qkv, attn proj, mlp fc, mlp proj per layer
    assert all(p.shape[0] == 3 for p in model.parameters())  # the member dimension leads


def test_initial_loss_is_near_uniform_and_shapes():
    model = population(K=2)
    x = tokens(2, 3, 16)
    logits, loss = model(x, x)
    assert logits.shape == (2, 3, 16, 97) and loss.shape == (2,) and loss.dtype == torch.float32
    assert (loss - math.log(97)).abs().max().item() < 0.1
    assert model(x)[1] is None


def test_causality_future_tokens_do_not_change_past_logits():
    model = population()
    x = tokens(1, 1, 16)
    y = x.clone()
    y[0, 0, 10:] = (y[0, 0, 10:] + 1) % 97
    assert torch.allclose(model(x)[0][0, 0, :10], model(y)[0][0, 0, :10], atol=1e-6)
    assert not torch.allclose(model(x)[0][0, 0, 10:], model(y)[0][0, 0, 10:])


def test_a_member_is_its_seeds_model_whatever_the_population():
    """Member k's weights come from seeds[k] alone, and its logits and loss from its own weights and
    tokens: the same as a population of one with that seed, whoever shares the population."""
    pop = population(K=3, seeds=[5, 3, 5])
    alone = population(K=1, seeds=[3])
    for name, p in alone.named_parameters():
        assert torch.equal(pop.get_parameter(name)[1], p[0]), name
        assert torch.equal(pop.get_parameter(name)[0], pop.get_parameter(name)[2])
    assert not torch.equal(pop.tok_emb[0], pop.tok_emb[1])
    x = tokens(3, 2, 16)
    logits, loss = pop(x, x)
    one_logits, one_loss = alone(x[1:2], x[1:2])
    assert torch.allclose(logits[1], one_logits[0], atol=1e-6)
    assert loss[1].item() == pytest.approx(one_loss.item(), rel=1e-6)


def test_member_gradients_stay_with_their_member():
    model = population(K=3)
    x = tokens(3, 2, 16)
    model(x, x)[1][1].backward()  # member 1's loss only
    for name, p in model.named_parameters():
        assert p.grad[0].abs().max() == 0 and p.grad[2].abs().max() == 0, name
    assert model.blocks[0].attn.qkv.weight.grad[1].abs().max() > 0


def test_member_state_dict_round_trip():
    pop, other = population(K=2, seeds=[0, 1]), population(K=2, seeds=[7, 8])
    state = pop.member_state_dict(1)
    assert set(state) == {n for n, _ in pop.named_parameters()}
    assert state["blocks.0.mlp.fc.weight"].shape == (4 * 32, 32)  # no member dimension
    untouched = other.member_state_dict(1)
    untouched = {n: t.clone() for n, t in untouched.items()}
    other.load_member_state_dict(0, state)
    for name, p in other.named_parameters():
        assert torch.equal(p[0], pop.get_parameter(name)[1]) and torch.equal(p[1], untouched[name])


def test_too_long_input_and_a_wrong_member_count_are_refused():
    with pytest.raises(ValueError, match="exceeds"):
        population()(torch.zeros(1, 1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="2 members"):
        population(K=3)(torch.zeros(2, 1, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="one MemberInit"):
        GPT(tiny(), [MemberInit()] * 2, seeds=[0])


def test_flops_count_matches_6n_plus_attention():
    cfg = tiny()
    model = population(K=2)
    n = model.num_params()
    hidden = sum(p[0].numel() for _, p in model.param_groups()["hidden"])
    assert n == hidden + 97 * 32 + 5 * 32  # hidden + readout + gains, of one member
    assert model.num_params(include_embeddings=True) == n + 97 * 32 + 16 * 32
    assert flops_per_token(cfg, n) == 6 * n + 12 * 2 * 16 * 32


def test_head_divisibility_is_checked():
    with pytest.raises(ValueError, match="divisible"):
        GPT(tiny(n_heads=5), [MemberInit()])
