"""A population of pre-norm GPTs trained as one model: every parameter has a leading member
dimension K, every matmul is a batched matmul over the members, and member k sees only its own
weights, its own tokens and its own loss. A single model is a population of one.

Each member is a GPT with token + learned position embeddings, RMSNorm, causal self-attention
through ``scaled_dot_product_attention``, a GELU MLP and an untied readout. The shape
(``GPTConfig``) is shared; what a parametrization may change per member (init stds, zero-initialised
readout or query, attention scale, readout multiplier) is a ``MemberInit``, so an SP and a μP member
can share a population. ``param_groups`` names the four kinds of parameters an optimiser treats
differently (hidden matrices, embeddings, readout, gains); parameter names are those of a plain
GPT, and ``member_state_dict`` gives one member's weights without the member dimension.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .settings import RUN_DEFAULTS
from .shape import GPTConfig


@dataclass(frozen=True)
class MemberInit:
    """One member's initialisation and fixed multipliers (``parametrization.member_init`` fills it)."""

    init_std: float = RUN_DEFAULTS["init_std"]  # embeddings, and every matrix whose own std is None
    hidden_gain: float | None = None  # hidden matrices: std gain/sqrt(fan_in) (μP); None: init_std
    readout_std: float | None = None  # 0: a zero-initialised readout
    zero_query: bool = False          # zero-initialise the query projection (uniform attention at init)
    attn_scale: float | None = None   # None: 1/sqrt(d_head), the standard parametrization
    readout_mult: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


class StackedLinear(nn.Module):
    """K bias-free linear maps, weight (K, out, in) as nn.Linear's per member: x (K, ..., in) → (K, ..., out)."""

    def __init__(self, n_members: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_members, d_out, d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, d_in = x.shape[0], x.shape[-1]
        y = torch.bmm(x.reshape(K, -1, d_in), self.weight.mT)
        return y.view(*x.shape[:-1], self.weight.shape[1])


class StackedRMSNorm(nn.Module):
    def __init__(self, n_members: int, d: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_members, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = self.weight.view(x.shape[0], *([1] * (x.ndim - 2)), x.shape[-1])
        return F.rms_norm(x, (x.shape[-1],), eps=self.eps) * gain


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, n_members: int):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = StackedLinear(n_members, cfg.d_model, 3 * cfg.d_model)
        self.proj = StackedLinear(n_members, cfg.d_model, cfg.d_model)
        self.register_buffer("scale", torch.ones(n_members), persistent=False)  # per member, set by GPT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, B, T, C = x.shape
        qkv = self.qkv(x).view(K, B, T, 3, self.n_heads, C // self.n_heads)
        # each member's own attention scale goes on its queries (in float32, rounded once to the
        # autocast dtype, as the kernel needs q, k and v in one dtype); the kernel then scales by 1
        q = (qkv[:, :, :, 0] * self.scale.view(K, 1, 1, 1, 1)).to(qkv.dtype)
        q, k, v = (t.reshape(K * B, T, self.n_heads, -1).transpose(1, 2) for t in (q, qkv[:, :, :, 1], qkv[:, :, :, 2]))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
        return self.proj(y.transpose(1, 2).reshape(K, B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig, n_members: int):
        super().__init__()
        self.fc = StackedLinear(n_members, cfg.d_model, cfg.d_mlp)
        self.proj = StackedLinear(n_members, cfg.d_mlp, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, n_members: int):
        super().__init__()
        self.norm_attn = StackedRMSNorm(n_members, cfg.d_model, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg, n_members)
        self.norm_mlp = StackedRMSNorm(n_members, cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg, n_members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))
        return x + self.mlp(self.norm_mlp(x))


class Readout(StackedLinear):
    """The untied readout with each member's output multiplier: its output is the logits."""

    def __init__(self, n_members: int, d_in: int, d_out: int):
        super().__init__(n_members, d_in, d_out)
        self.register_buffer("mult", torch.ones(n_members), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.mult.view(x.shape[0], *([1] * (x.ndim - 1)))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig, members: Sequence[MemberInit], seeds: Sequence[int] | None = None):
        super().__init__()
        K = len(members)
        if K < 1 or (seeds is not None and len(seeds) != K):
            raise ValueError(f"a population needs one MemberInit (and one seed) per member; got {K} and {seeds}")
        self.cfg, self.members = cfg, tuple(members)
        self.tok_emb = nn.Parameter(torch.empty(K, cfg.vocab_size, cfg.d_model))
        self.pos_emb = nn.Parameter(torch.empty(K, cfg.seq_len, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg, K) for _ in range(cfg.n_layers))
        self.norm_out = StackedRMSNorm(K, cfg.d_model, cfg.norm_eps)
        self.readout = Readout(K, cfg.d_model, cfg.vocab_size)
        with torch.no_grad():
            for block in self.blocks:
                block.attn.scale.copy_(torch.tensor([_attn_scale(cfg, m) for m in members]))
            self.readout.mult.copy_(torch.tensor([m.readout_mult for m in members]))
        self.reset_parameters(seeds if seeds is not None else [0] * K)

    @property
    def n_members(self) -> int:
        return len(self.members)

    @torch.no_grad()
    def reset_parameters(self, seeds: Sequence[int]) -> None:
        """Member k drawn from its own generator seeded with seeds[k], parameter by parameter in a
        fixed order, on the CPU: a member's weights do not depend on the population or the device."""
        for k, (member, seed) in enumerate(zip(self.members, seeds)):
            gen = torch.Generator().manual_seed(seed)
            for name, p in self.named_parameters():
                std = _init_std(name, p, self.cfg, member)
                value = torch.ones(p.shape[1:]) if std is None else torch.zeros(p.shape[1:])
                if std:
                    value.normal_(0.0, std, generator=gen)
                if member.zero_query and name.endswith("attn.qkv.weight"):
                    value[: self.cfg.d_model] = 0.0  # rows of q in the fused q, k, v projection
                p[k].copy_(value)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (K, B, T) → logits (K, B, T, V); with ``targets`` also each member's mean
        cross-entropy in nats/token, a (K,) float32 tensor (sum it to train all members at once)."""
        K, B, T = idx.shape
        if K != self.n_members:
            raise ValueError(f"got tokens for {K} members, the population has {self.n_members}")
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds the model's context of {self.cfg.seq_len}")
        V, d = self.cfg.vocab_size, self.cfg.d_model
        offsets = torch.arange(K, device=idx.device).view(K, 1, 1) * V  # member k's rows of the stacked table
        x = F.embedding(idx + offsets, self.tok_emb.view(K * V, d)) + self.pos_emb[:, None, :T]
        for block in self.blocks:
            x = block(x)
        logits = self.readout(self.norm_out(x))
        if targets is None:
            return logits, None
        per_token = F.cross_entropy(logits.float().view(-1, V), targets.reshape(-1), reduction="none")
        return logits, per_token.view(K, -1).mean(1)

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters by role. Exhaustive and disjoint (checked)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"hidden": [], "embed": [], "readout": [], "gains": []}
        for name, p in self.named_parameters():
            groups[param_role(name, p.ndim - 1)].append((name, p))
        assert sum(len(v) for v in groups.values()) == len(list(self.parameters())), "parameter groups are not exhaustive"
        return groups

    def num_params(self, include_embeddings: bool = False) -> int:
        """Parameters of one member."""
        groups = self.param_groups()
        roles = ("hidden", "readout", "gains") + (("embed",) if include_embeddings else ())
        return sum(p[0].numel() for r in roles for _, p in groups[r])

    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's weights, named as a plain GPT's, without the member dimension."""
        return {name: p[k].detach() for name, p in self.named_parameters()}

    def load_member_state_dict(self, k: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self.named_parameters():
                p[k].copy_(state[name])


def param_role(name: str, ndim: int) -> str:
    """"embed", "readout", "gains" or "hidden" for a parameter of a plain GPT (``ndim`` without the member dim)."""
    if name in ("tok_emb", "pos_emb"):
        return "embed"
    if name.startswith("readout."):
        return "readout"
    return "gains" if ndim == 1 else "hidden"


def _init_std(name: str, p: torch.Tensor, cfg: GPTConfig, member: MemberInit) -> float | None:
    """The normal init std of a parameter (0: zeros), or None for a gain (ones)."""
    role = param_role(name, p.ndim - 1)
    if role == "gains":
        return None
    if role == "embed":
        return member.init_std
    if role == "readout":
        return member.init_std if member.readout_std is None else member.readout_std
    std = member.init_std if member.hidden_gain is None else member.hidden_gain / math.sqrt(p.shape[-1])
    if name.endswith("proj.weight"):
        std /= math.sqrt(2 * cfg.n_layers)  # residual-branch outputs scaled by 1/sqrt(2L), as in GPT-2
    return std


def _attn_scale(cfg: GPTConfig, member: MemberInit) -> float:
    return 1.0 / math.sqrt(cfg.d_head) if member.attn_scale is None else member.attn_scale


def activation_names(n_layers: int) -> list[str]:
    """Names of the activations ``record_activations`` records, in order."""
    return ["embed", *(f"block{i}" for i in range(n_layers)), "logits"]


@contextlib.contextmanager
def record_activations(model: GPT, out: list[torch.Tensor]):
    """While active, every forward appends one (K, n_layers + 2) tensor to ``out``: each member's
    mean |x| of the embedding output, of each block's output and of the logits, in float32 — the
    coordinate check's l1 (microsoft/mup), recorded by forward hooks."""
    row: list[torch.Tensor] = []

    def l1(x: torch.Tensor) -> torch.Tensor:
        return x.detach().float().abs().mean(dim=tuple(range(1, x.ndim)))

    def on_embedding(_module, args):
        row.clear()
        row.append(l1(args[0]))

    def on_block(_module, _args, y):
        row.append(l1(y))

    def on_logits(_module, _args, y):
        row.append(l1(y))
        out.append(torch.stack(row, dim=1))

    handles = [model.blocks[0].register_forward_pre_hook(on_embedding),
               *(b.register_forward_hook(on_block) for b in model.blocks),
               model.readout.register_forward_hook(on_logits)]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
