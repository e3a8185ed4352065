"""Populations: the unit of execution (DESIGN.md, "How runs are executed").

Runs that agree on every ``POPULATION_KEYS`` field (what fixes tensor shapes and the step loop)
can be trained as one stacked model; they may differ in everything else (learning rates, β, ε,
weight decay and its kind, clipping, seed, schedule, warm-up, steps, parametrization, init std,
Muon scale, and how many first steps record the coordinate check's activations). ``group_populations`` packs a plan's runs into populations deterministically, at most
``max_members`` each and within a memory bound, and names each by a hash of its members' run_ids.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict

from .errors import ConfigError
from .shape import flops_per_token, model_config

POPULATION_KEYS = ("data", "vocab_size", "d_model", "n_layers", "n_heads", "seq_len", "mlp_ratio", "batch_size",
                   "optimizer", "muon_ns_steps", "dtype", "compile", "device", "log_every", "eval_every",
                   "val_batches", "ckpt_every", "log_spectra")


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


# Compiling pays back when the compiled steps save more time than compiling costs. A cold
# torch.compile of a small GPT's training step takes 30–60 s (issue 11, measured on an H100 with a
# single-run model); compiled bf16 steps run about 1.3× faster than eager ones (an estimate until
# `optclaims bench-population` and `--no-compile` measure both on a GPU); eager small-model
# populations reach about 150 TFLOP/s on an H100/H200 (issue 11's hand-stacked reference, 23% MFU of
# 989 TFLOP/s compiled, less the gain of compiling).
COMPILE_SECONDS, COMPILE_SPEEDUP, EAGER_FLOPS_PER_S = 45.0, 1.3, 150e12
# eager work whose compiled share saves the compile: t·(1 − 1/speedup) = compile, ≈ 195 s, ≈ 3·10^16 FLOPs
COMPILE_MIN_FLOPS = COMPILE_SECONDS * COMPILE_SPEEDUP / (COMPILE_SPEEDUP - 1) * EAGER_FLOPS_PER_S


def matmul_params(cfg: dict) -> int:
    """Non-embedding parameters of one member of a run config's model: hidden matrices, gains and
    readout (summary.json's ``n_params_matmul``, ``GPT.num_params()``), without building it."""
    shape = model_config(cfg)
    d, f = shape.d_model, shape.d_mlp
    return shape.n_layers * (4 * d * d + 2 * d * f + 2 * d) + d + d * shape.vocab_size


def run_flops_per_token(cfg: dict) -> float:
    """Training FLOPs per token of a run config's model (``model.flops_per_token``)."""
    return flops_per_token(model_config(cfg), matmul_params(cfg))


def population_flops(configs: list[dict]) -> float:
    """FLOPs a population computes: every member runs until its longest member's last step."""
    c = configs[0]
    return len(configs) * max(x["steps"] for x in configs) * c["batch_size"] * c["seq_len"] * run_flops_per_token(c)


def compiles(configs: list[dict], device_type: str) -> bool:
    """Whether a population trains a torch.compile'd model: as its ``compile`` field says, and for
    "auto" only on CUDA and where it pays back (``COMPILE_MIN_FLOPS``) over the steps it runs
    compiled (the coordinate check's ``activation_steps`` run eager)."""
    choice = configs[0]["compile"]
    if choice != "auto":
        return bool(choice)
    steps = max(c["steps"] for c in configs)
    compiled_share = max(0, steps - max(c["activation_steps"] for c in configs)) / steps
    return device_type == "cuda" and population_flops(configs) * compiled_share >= COMPILE_MIN_FLOPS


def member_bytes(cfg: dict) -> int:
    """An upper estimate of one member's training memory: float32 weights, gradients and two
    optimizer moments (16 bytes per parameter), and float32 activations kept for the backward pass
    (about 20 d-wide tensors per layer and token, plus the float32 logits and their gradient)."""
    shape = model_config(cfg)
    d, L, V, T, B = shape.d_model, shape.n_layers, shape.vocab_size, shape.seq_len, cfg["batch_size"]
    d_mlp = shape.mlp_ratio * d
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
