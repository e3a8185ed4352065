"""Per-member hyper-parameters of a population, as device tensors with one entry per member.

Each parameter role ("hidden", "embed", "readout", "gains") gets a peak learning rate, a decoupled
weight decay λ and a spectral weight decay λ per member. The peak LR is the run's ``lr`` (or, for
Muon runs, ``aux_lr`` on the roles AdamW trains) times its parametrization's multiplier for the
role (``parametrization.lr_multipliers``); λ is divided by the same multiplier, so the per-step
shrink η·λ of a μP-scaled role stays what the run config says. Decay applies to the matrices that
do computation (hidden, readout), not to embeddings or gains; ``weight_decay_kind`` chooses which of
the two decays carries λ (for SGD runs too: W ← W·(1 − η·λ), not torch.optim.SGD's L2 term). The
LR schedule is a (steps, K) table: row s holds each member's multiplier at step s, 0 past the
member's own last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..parametrization import lr_multipliers
from .muon import MUON_ROLES, update_scale
from .schedules import lr_lambda

ROLES = ("hidden", "embed", "readout", "gains")
DECAYED_ROLES = ("hidden", "readout")


@dataclass
class MemberHypers:
    peak_lr: dict[str, torch.Tensor]         # role → (K,)
    weight_decay: dict[str, torch.Tensor]    # role → (K,), decoupled: W ← W·(1 − η·λ)
    spectral_decay: dict[str, torch.Tensor]  # role → (K,), W ← W − η·λ·σ1 u1 v1ᵀ
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    clip: torch.Tensor                       # (K,), inf: no clipping
    divergence_ratio: torch.Tensor
    schedule: torch.Tensor                   # (max steps, K)
    muon_momentum: torch.Tensor | None
    muon_scale: list[str] | None
    sgd_momentum: torch.Tensor | None        # (K,) for SGD runs: the heavy-ball μ
    spectral_warm: torch.Tensor              # (K,) bool: power iteration from the previous step's v1

    def muon_scales(self, shape) -> torch.Tensor:
        """(K,) multipliers of the orthogonalised update of a matrix of torch shape (..., A, B)."""
        return torch.tensor([update_scale(shape, s) for s in self.muon_scale], device=self.beta1.device)


def member_hypers(configs: list[dict], device: torch.device | str = "cpu") -> MemberHypers:
    def one_per_member(values, dtype=torch.float32):
        return torch.tensor(values, dtype=dtype, device=device)

    muon, sgd = (configs[0]["optimizer"] == family for family in ("muon", "sgd"))
    peak, decay, spectral = {}, {}, {}
    for role in ROLES:
        lr, wd, swd = [], [], []
        for c in configs:
            mult = lr_multipliers(c)[role]
            base = c["lr"] if not muon or role in MUON_ROLES or c["aux_lr"] is None else c["aux_lr"]
            lam = c["weight_decay"] / mult if role in DECAYED_ROLES else 0.0
            lr.append(base * mult)
            wd.append(lam if c["weight_decay_kind"] == "decoupled" else 0.0)
            swd.append(0.0 if c["weight_decay_kind"] == "decoupled" else lam)
        peak[role], decay[role], spectral[role] = one_per_member(lr), one_per_member(wd), one_per_member(swd)
    steps = max(c["steps"] for c in configs)
    table = [[lr_lambda(c)(s) if s < c["steps"] else 0.0 for c in configs] for s in range(steps)]
    return MemberHypers(
        peak_lr=peak, weight_decay=decay, spectral_decay=spectral,
        beta1=one_per_member([c["beta1"] for c in configs]), beta2=one_per_member([c["beta2"] for c in configs]),
        eps=one_per_member([c["eps"] for c in configs]),
        clip=one_per_member([math.inf if c["clip"] is None else c["clip"] for c in configs]),
        divergence_ratio=one_per_member([c["divergence_ratio"] for c in configs]),
        schedule=one_per_member(table).view(steps, len(configs)),
        muon_momentum=one_per_member([c["muon_momentum"] for c in configs]) if muon else None,
        muon_scale=[c["muon_scale"] for c in configs] if muon else None,
        sgd_momentum=one_per_member([c["sgd_momentum"] for c in configs]) if sgd else None,
        spectral_warm=one_per_member([c["weight_decay_kind"] == "spectral_warm" for c in configs], torch.bool),
    )
