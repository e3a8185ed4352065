"""A pre-norm GPT: token + learned position embeddings, RMSNorm, causal self-attention through
``scaled_dot_product_attention``, a GELU MLP and an untied readout.

Every scale factor that a parametrization may change (init std per role, zero-initialised readout
or query, attention scale, readout multiplier) is a plain field of ``GPTConfig``, so torch.compile
and checkpoints carry it; nothing is patched onto tensors (``parametrization.py`` computes the
fields from a run config). ``param_groups`` names the four kinds of parameters an optimiser treats
differently (hidden matrices, embeddings, readout, gains).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    seq_len: int
    mlp_ratio: float = 4.0
    init_std: float = 0.02            # embeddings, and every matrix whose own std is None
    hidden_gain: float | None = None  # hidden matrices: std gain/sqrt(fan_in) (μP); None: init_std
    readout_std: float | None = None  # 0: a zero-initialised readout
    zero_query: bool = False          # zero-initialise the query projection (uniform attention at init)
    attn_scale: float | None = None   # None: 1/sqrt(d_head), the standard parametrization
    readout_mult: float = 1.0
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_mlp(self) -> int:
        return int(round(self.mlp_ratio * self.d_model))

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_heads, self.scale = cfg.n_heads, cfg.attn_scale
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm_attn = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.norm_mlp = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))
        return x + self.mlp(self.norm_mlp(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_out = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.readout = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        cfg = self.cfg
        readout = cfg.init_std if cfg.readout_std is None else cfg.readout_std
        for name, p in self.named_parameters():
            if p.ndim == 1:
                nn.init.ones_(p)
            elif name.startswith(("tok_emb.", "pos_emb.")):
                nn.init.normal_(p, std=cfg.init_std)
            elif name.startswith("readout."):
                nn.init.normal_(p, std=readout) if readout > 0 else nn.init.zeros_(p)
            else:
                std = cfg.init_std if cfg.hidden_gain is None else cfg.hidden_gain / math.sqrt(p.shape[1])
                if name.endswith("proj.weight"):
                    std /= math.sqrt(2 * cfg.n_layers)  # residual-branch outputs scaled by 1/sqrt(2L), as in GPT-2
                nn.init.normal_(p, std=std)
        if cfg.zero_query:
            for block in self.blocks:
                block.attn.qkv.weight[: cfg.d_model].zero_()  # rows of q in the fused q, k, v projection

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, activations: list | None = None):
        """Logits for every position; with ``targets`` also the mean cross-entropy in nats/token.
        With an ``activations`` list, appends mean |x| (a 0-d tensor) of the embedding output, each
        block's output and the logits: the coordinate check's l1 (microsoft/mup)."""
        T = idx.shape[1]
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds the model's context of {self.cfg.seq_len}")
        record = activations is not None
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        if record:
            activations.append(x.detach().abs().mean())
        for block in self.blocks:
            x = block(x)
            if record:
                activations.append(x.detach().abs().mean())
        logits = self.readout(self.norm_out(x)) * self.cfg.readout_mult
        if record:
            activations.append(logits.detach().float().abs().mean())
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        return logits, loss

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters by role. Exhaustive and disjoint (checked)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"hidden": [], "embed": [], "readout": [], "gains": []}
        for name, p in self.named_parameters():
            if name.startswith(("tok_emb.", "pos_emb.")):
                groups["embed"].append((name, p))
            elif name.startswith("readout."):
                groups["readout"].append((name, p))
            elif p.ndim == 1:
                groups["gains"].append((name, p))
            else:
                groups["hidden"].append((name, p))
        n_grouped = sum(len(v) for v in groups.values())
        assert n_grouped == len(list(self.parameters())), "parameter groups are not exhaustive"
        return groups

    def num_params(self, include_embeddings: bool = False) -> int:
        groups = self.param_groups()
        roles = ("hidden", "readout", "gains") + (("embed",) if include_embeddings else ())
        return sum(p.numel() for r in roles for _, p in groups[r])


def activation_names(n_layers: int) -> list[str]:
    """Names of the activations ``GPT.forward`` records, in order."""
    return ["embed", *(f"block{i}" for i in range(n_layers)), "logits"]


def flops_per_token(cfg: GPTConfig, n_matmul_params: int) -> float:
    """Training FLOPs per token: 6N for the weight matmuls (forward + backward) plus the attention
    scores and values, 6·2·L·T·d (PaLM appendix B convention, causal mask not discounted)."""
    return 6.0 * n_matmul_params + 12.0 * cfg.n_layers * cfg.seq_len * cfg.d_model
