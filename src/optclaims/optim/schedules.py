"""Learning-rate multipliers as functions of the step (0-based), for torch's LambdaLR."""

from __future__ import annotations

import math
from functools import lru_cache, partial


def _warmup(step: int, warmup: int) -> float:
    return (step + 1) / warmup if step < warmup else 1.0


def warmup_cosine(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_stable_decay(step: int, *, warmup: int, total: int, min_ratio: float, decay_frac: float) -> float:
    """Warm-up, a constant plateau, then a linear decay to min_ratio over the last decay_frac of steps."""
    if step < warmup:
        return _warmup(step, warmup)
    decay_start = total - int(round(decay_frac * total))
    if step < decay_start:
        return 1.0
    progress = (step - decay_start) / max(1, total - decay_start)
    return 1.0 - (1 - min_ratio) * progress


def warmup_constant(step: int, *, warmup: int, **_) -> float:
    return _warmup(step, warmup)


SCHEDULES = {"cosine": warmup_cosine, "wsd": warmup_stable_decay, "constant": warmup_constant}


def lr_lambda(cfg: dict):
    fn = SCHEDULES[cfg["schedule"]]
    kw = dict(warmup=cfg["warmup_steps"], total=cfg["steps"], min_ratio=cfg["min_lr_ratio"])
    if cfg["schedule"] == "wsd":
        kw["decay_frac"] = cfg["decay_frac"]
    return partial(fn, **kw)


SCHEDULE_FIELDS = ("schedule", "warmup_steps", "steps", "min_lr_ratio", "decay_frac")


@lru_cache(maxsize=None)
def _schedule_sum(fields: tuple) -> float:
    cfg = dict(zip(SCHEDULE_FIELDS, fields))
    schedule = lr_lambda(cfg)
    return sum(schedule(t) for t in range(cfg["steps"]))


def total_decay(cfg: dict) -> float:
    """lr·λ·Σ_t schedule(t): decoupled decay alone multiplies a decayed matrix by Π_t(1 − η_t λ) ≈
    exp(−total) over the run (spectral decay does the same to σ1 alone). The sum is cached on the
    schedule's own fields: a sweep's runs share a few schedules."""
    return cfg["lr"] * cfg["weight_decay"] * _schedule_sum(tuple(cfg.get(k) for k in SCHEDULE_FIELDS))
