"""Parametrizations: how initialisation, attention scale and per-group learning rates depend on width.

Both are explicit numbers: the init stds, zero-inits and attention scale become a member's
``MemberInit`` (``member_init``), the learning-rate multipliers scale each parameter role's
learning rate (``lr_multipliers``), so members of one population may differ in parametrization.

``sp``   GPT-2's standard parametrization: std ``init_std`` for embeddings, hidden matrices
         and readout (residual projections a further 1/√(2L), a depth factor), attention 1/√d_head,
         one learning rate for every group.
``mup``  μP for Adam (Tensor Programs V, arXiv 2203.03466, Table 3; Su, kexue.fm/archives/10770),
         with width multiplier m = d_model / mup_base_width:

           group       init std              Adam LR
           embed       init_std              × 1       (variance 1/d_in with d_in fixed: constant)
           hidden      1/√fan_in             × 1/m     (variance 1/fan_in)
           readout     init_std / m, or 0    × 1/m     (variance ∝ 1/d²)
           gains       1                     × 1

         attention scale 1/d_head (TP5 Def. 4.1) and, optionally, zero-initialised query rows;
         residual projections keep SP's depth factor 1/√(2L). With Muon on the hidden matrices their LR multiplier is 1:
         Muon's own update scale carries the width dependence (``spectral`` √(fan_out/fan_in) is the
         spectral condition, arXiv 2310.17813 and Su 10795; ``moonlight`` 0.2·√max(A, B) is not), and
         the AdamW part (embeddings, readout, gains) follows the Adam rows above.

Decoupled weight decay: ``optim.hyper`` divides each group's λ by its ``lr_mult``, so the per-step
shrink η·λ of a μP-scaled group does not vanish with width (CLAIMS.md §5 pitfalls).
"""

from __future__ import annotations

from .model import MemberInit
from .settings import choices

PARAMETRIZATIONS = choices("parametrization")


def width_mult(cfg: dict) -> float:
    """d_model / mup_base_width for μP runs, 1 for SP."""
    return cfg["d_model"] / cfg["mup_base_width"] if cfg["parametrization"] == "mup" else 1.0


def member_init(cfg: dict) -> MemberInit:
    """A run config's initialisation and attention scale under its parametrization."""
    if cfg["parametrization"] == "sp":
        return MemberInit(init_std=cfg["init_std"])
    if cfg["parametrization"] == "mup":
        m, d_head = width_mult(cfg), cfg["d_model"] // cfg["n_heads"]
        return MemberInit(init_std=cfg["init_std"], hidden_gain=1.0,
                          readout_std=0.0 if cfg["mup_zero_readout"] else cfg["init_std"] / m,
                          zero_query=cfg["mup_zero_query"], attn_scale=1.0 / d_head)
    raise ValueError(f"unknown parametrization {cfg['parametrization']!r}; expected one of {PARAMETRIZATIONS}")


def lr_multipliers(cfg: dict) -> dict[str, float]:
    """The learning-rate multiplier of each parameter role ("hidden", "embed", "readout", "gains")."""
    if cfg["parametrization"] == "sp":
        return {"hidden": 1.0, "embed": 1.0, "readout": 1.0, "gains": 1.0}
    m = width_mult(cfg)
    hidden = 1.0 if cfg["optimizer"] == "muon" else 1.0 / m
    return {"hidden": hidden, "embed": 1.0, "readout": 1.0 / m, "gains": 1.0}


def with_base_width(fields: dict, base_width: int) -> dict:
    """Run fields plus ``mup_base_width`` when they ask for μP (an SP run may not carry it)."""
    return {**fields, "mup_base_width": base_width} if fields.get("parametrization") == "mup" else dict(fields)
