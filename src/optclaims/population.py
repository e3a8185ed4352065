"""Populations: the unit of execution (DESIGN.md, "How runs are executed").

Runs that agree on every ``POPULATION_KEYS`` field (what fixes tensor shapes and the step loop)
can be trained as one stacked model; they may differ in everything else (learning rates, β, ε,
weight decay and its kind, clipping, seed, schedule, warm-up, steps, parametrization, init std,
Muon scale). ``group_populations`` packs a plan's runs into populations deterministically, at most
``max_members`` each and within a memory bound, and names each by a hash of its members' run_ids.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict

from .errors import ConfigError

POPULATION_KEYS = ("data", "vocab_size", "d_model", "n_layers", "n_heads", "seq_len", "mlp_ratio", "batch_size",
                   "optimizer", "muon_ns_steps", "dtype", "compile", "device", "log_every", "eval_every",
                   "val_batches", "ckpt_every", "activation_steps", "log_spectra")


def population_key(cfg: dict) -> str:
    return json.dumps([cfg.get(k) for k in POPULATION_KEYS])


def check_population(configs: list[dict]) -> None:
    """ConfigError naming the first shared field on which the members disagree."""
    if not configs:
        raise ConfigError("a population needs at least one run config")
    for key in POPULATION_KEYS:
        values = sorted({json.dumps(c.get(key)) for c in configs})
        if len(values) > 1:
            raise ConfigError(f"invalid population: its members must share {key}, but have {key} = {', '.join(values)}")


def population_id(run_ids) -> str:
    return hashlib.sha256(",".join(sorted(run_ids)).encode()).hexdigest()[:12]


def member_bytes(cfg: dict) -> int:
    """An upper estimate of one member's training memory: float32 weights, gradients and two
    optimizer moments (16 bytes per parameter), and float32 activations kept for the backward pass
    (about 20 d-wide tensors per layer and token, plus the float32 logits and their gradient)."""
    d, L, V, T, B = cfg["d_model"], cfg["n_layers"], cfg["vocab_size"], cfg["seq_len"], cfg["batch_size"]
    d_mlp = cfg.get("mlp_ratio", 4.0) * d
    params = V * d + T * d + L * (4 * d * d + 2 * d * d_mlp + 2 * d) + d + V * d
    activations = B * T * (L * (16 * d + 2 * d_mlp) + 3 * V) * 4
    return int(16 * params + activations)


def group_populations(runs: dict[str, dict], max_members: int, memory_bytes: float | None = None) -> dict[str, list[str]]:
    """{population_id: [run_id, ...]}: runs grouped by ``population_key``, each group sorted by
    (steps, run_id) so members of similar length train together, then split into the fewest
    populations that respect ``max_members`` and ``memory_bytes``, as even in size as possible."""
    if max_members < 1:
        raise ConfigError(f"invalid population settings: max_members = {max_members} must be at least 1")
    groups: dict[str, list[str]] = defaultdict(list)
    for rid, cfg in runs.items():
        groups[population_key(cfg)].append(rid)
    populations = {}
    for key in sorted(groups):
        ids = sorted(groups[key], key=lambda r: (runs[r]["steps"], r))
        cap = max_members
        if memory_bytes:
            cap = max(1, min(cap, int(memory_bytes // member_bytes(runs[ids[0]]))))
        n = math.ceil(len(ids) / cap)
        for i in range(n):
            members = ids[i * len(ids) // n:(i + 1) * len(ids) // n]
            populations[population_id(members)] = members
    return populations
