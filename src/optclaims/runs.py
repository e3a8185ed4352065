"""Run configs and run directories.

A run config is a flat mapping (DESIGN.md "Contracts"). Defaults are filled in before hashing, so
two claims that ask for the same run by different spellings share one run_id and one training.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources

import jsonschema

from .atomic import read_json, write_json  # noqa: F401  (re-exported for callers of runs)
from .errors import ConfigError

RUN_DEFAULTS: dict = {
    "mlp_ratio": 4.0,
    "init_std": 0.02,
    "parametrization": "sp",
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "weight_decay_kind": "decoupled",
    "schedule": "cosine",
    "warmup_steps": 0,
    "decay_frac": 0.2,
    "min_lr_ratio": 0.1,
    "clip": 1.0,
    "log_every": 10,
    "eval_every": 100,
    "val_batches": 8,
    "ckpt_every": 100,
    "divergence_ratio": 3.0,
    "device": "auto",
    "dtype": "auto",
    "compile": "auto",
    "activation_steps": 0,
    "log_spectra": False,
}
# Filled in (and allowed) only for Muon runs, so an AdamW run's id does not carry Muon's settings.
MUON_DEFAULTS: dict = {"muon_scale": "moonlight", "muon_momentum": 0.95, "muon_ns_steps": 5, "aux_lr": None}
# Likewise only for SGD runs: heavy-ball momentum (torch.optim.SGD's, dampening 0, no Nesterov).
SGD_DEFAULTS: dict = {"sgd_momentum": 0.9}
# Likewise only for μP runs; mup_base_width has no default (the width whose learning rates μP keeps).
MUP_DEFAULTS: dict = {"mup_zero_readout": True, "mup_zero_query": True}
MUP_FIELDS = ("mup_base_width", *MUP_DEFAULTS)


@lru_cache(maxsize=1)
def run_schema() -> dict:
    return json.loads(resources.files("optclaims").joinpath("schemas/run.schema.json").read_text())


def schema_error_message(err: jsonschema.ValidationError, where: str) -> str:
    key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    value = err.instance if err.absolute_path else None
    shown = f" = {json.dumps(value)}" if value is not None else ""
    return f"invalid {where}: {key}{shown}: {err.message}"


def make_run_config(fields: dict) -> dict:
    """Defaults + fields, validated; raises ConfigError naming the first bad key and value."""
    muon, sgd = (fields.get("optimizer") == family for family in ("muon", "sgd"))
    mup = fields.get("parametrization") == "mup"
    _refuse_stray(fields, MUON_DEFAULTS, muon, "a Muon setting", "optimizer")
    _refuse_stray(fields, SGD_DEFAULTS, sgd, "an SGD setting", "optimizer")
    if sgd and mup:
        raise ConfigError("invalid run config: parametrization = \"mup\" with optimizer = \"sgd\": the μP "
                          "learning-rate multipliers here are Adam's (parametrization.py), so SGD runs are SP only")
    _refuse_stray(fields, MUP_FIELDS, mup, "a μP setting", "parametrization")
    if mup and "mup_base_width" not in fields:
        raise ConfigError("invalid run config: parametrization = \"mup\" needs mup_base_width "
                          "(the width whose learning rates μP keeps)")
    cfg = {**RUN_DEFAULTS, **(MUON_DEFAULTS if muon else {}), **(SGD_DEFAULTS if sgd else {}),
           **(MUP_DEFAULTS if mup else {}), **fields}
    validator = jsonschema.Draft202012Validator(run_schema())  # schema parsed once per process
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(schema_error_message(errors[0], "run config"))
    if cfg["d_model"] % cfg["n_heads"]:
        raise ConfigError(f"invalid run config: d_model = {cfg['d_model']} is not divisible by n_heads = {cfg['n_heads']}")
    if cfg["warmup_steps"] >= cfg["steps"]:
        raise ConfigError(f"invalid run config: warmup_steps = {cfg['warmup_steps']} must be below steps = {cfg['steps']}")
    return cfg


def _refuse_stray(fields: dict, keys, allowed: bool, what: str, switch: str) -> None:
    stray = sorted(k for k in keys if k in fields and not allowed)
    if stray:
        raise ConfigError(f"invalid run config: {stray[0]} = {json.dumps(fields[stray[0]])} is {what}, "
                          f"but {switch} = {json.dumps(fields.get(switch, RUN_DEFAULTS.get(switch)))}")


def canonical_json(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def run_id(cfg: dict) -> str:
    return hashlib.sha256(canonical_json(cfg).encode()).hexdigest()[:12]
