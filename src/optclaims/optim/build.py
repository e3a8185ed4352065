"""torch.optim.AdamW over explicit parameter groups.

Each group keeps its role name ("hidden", "embed", "readout", "gains") and an ``lr_mult``, so a
parametrization can scale a group's learning rate without touching the trainer. Weight decay
(decoupled, as in AdamW) applies to the matrices that do computation (hidden, readout), not to
embeddings or gains.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from .schedules import lr_lambda

DECAYED_ROLES = ("hidden", "readout")


def param_group_specs(model, cfg: dict) -> list[dict]:
    specs = []
    for role, named in model.param_groups().items():
        if not named:
            continue
        specs.append({
            "name": role,
            "params": [p for _, p in named],
            "param_names": [n for n, _ in named],
            "lr_mult": 1.0,
            "weight_decay": cfg["weight_decay"] if role in DECAYED_ROLES else 0.0,
        })
    return specs


def build_optimizer(model, cfg: dict, device_type: str) -> torch.optim.Optimizer:
    if cfg["optimizer"] != "adamw":
        raise ValueError(f"unknown optimizer {cfg['optimizer']!r}")
    groups = param_group_specs(model, cfg)
    for g in groups:
        g["lr"] = cfg["lr"] * g["lr_mult"]
    return torch.optim.AdamW(
        groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
        fused=device_type == "cuda",
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict) -> LambdaLR:
    return LambdaLR(optimizer, lr_lambda(cfg))
