"""Optimisers over the model's explicit parameter groups.

Each group keeps its role name ("hidden", "embed", "readout", "gains") and an ``lr_mult`` from the
run's parametrization (``parametrization.lr_multipliers``), so μP scales a group's learning rate
without touching the trainer; its decoupled weight decay λ is divided by the same multiplier, so
the per-step shrink η·λ stays what the run config says. ``adamw``: one
torch.optim.AdamW over every group. ``muon``: Muon on the hidden matrices, AdamW on the rest (with
``aux_lr``, or the same LR as Moonlight's reuse protocol has it). Weight decay (decoupled) applies to
the matrices that do computation (hidden, readout), not to embeddings or gains, for both;
``weight_decay_kind`` chooses decoupled decay −λW or spectral decay −λ·W v1 v1ᵀ (``spectral_decay``).
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..parametrization import lr_multipliers
from .muon import Muon, muon_update_rms, split_params
from .schedules import lr_lambda
from .spectral_decay import SpectralDecay
from .update_rms import adam_update_rms

DECAYED_ROLES = ("hidden", "readout")


def param_group_specs(model, cfg: dict) -> list[dict]:
    specs, lr_mult = [], lr_multipliers(cfg)
    for role, named in model.param_groups().items():
        if not named:
            continue
        specs.append({
            "name": role,
            "params": [p for _, p in named],
            "param_names": [n for n, _ in named],
            "lr_mult": lr_mult[role],
            "weight_decay": cfg["weight_decay"] / lr_mult[role] if role in DECAYED_ROLES else 0.0,
        })
    return specs


def _adamw(groups: list[dict], lr: float, cfg: dict, device_type: str) -> torch.optim.AdamW:
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                             fused=device_type == "cuda")


def build_optimizers(model, cfg: dict, device_type: str) -> list[torch.optim.Optimizer]:
    """The run's optimizers, in the order the trainer steps them. With ``weight_decay_kind`` spectral
    a ``SpectralDecay`` comes first and takes over the decay of the groups that had one."""
    groups = param_group_specs(model, cfg)
    spectral = cfg["weight_decay_kind"] != "decoupled"
    decay = {g["name"]: g["weight_decay"] for g in groups}
    if spectral:
        for g in groups:
            g["weight_decay"] = 0.0
    if cfg["optimizer"] == "adamw":
        optimizers = [_adamw(groups, cfg["lr"], cfg, device_type)]
    elif cfg["optimizer"] == "muon":
        matrices, rest = split_params(model, groups)
        for g in matrices:
            g["lr"] = cfg["lr"] * g["lr_mult"]
        muon = Muon(matrices, lr=cfg["lr"], momentum=cfg["muon_momentum"], nesterov=True,
                    ns_steps=cfg["muon_ns_steps"], scale=cfg["muon_scale"])
        aux_lr = cfg["aux_lr"] if cfg["aux_lr"] is not None else cfg["lr"]
        optimizers = [muon, _adamw(rest, aux_lr, cfg, device_type)]
    else:
        raise ValueError(f"unknown optimizer {cfg['optimizer']!r}")
    if spectral:
        decayed = [{"name": g["name"], "params": g["params"], "lr": g["lr"], "weight_decay": decay[g["name"]]}
                   for g in groups if decay[g["name"]] > 0]
        if decayed:
            optimizers.insert(0, SpectralDecay(decayed, lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                               warm=cfg["weight_decay_kind"] == "spectral_warm"))
    return optimizers


def build_schedulers(optimizers: list[torch.optim.Optimizer], cfg: dict) -> list[LambdaLR]:
    return [LambdaLR(opt, lr_lambda(cfg)) for opt in optimizers]


def update_rms(optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
    """The update RMS per named group, excluding the learning rate: from AdamW's moments, or as
    recorded by Muon at its last step."""
    out: dict[str, float] = {}
    for opt in optimizers:
        if isinstance(opt, torch.optim.AdamW):
            out.update(adam_update_rms(opt))
        else:
            out.update(muon_update_rms(opt))
    return out
