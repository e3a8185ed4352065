"""Run configs and run directories.

A run config is a flat mapping (DESIGN.md "Contracts"). Defaults are filled in before hashing, so
two claims that ask for the same run by different spellings share one run_id and one training.
"""

from __future__ import annotations

import hashlib
import json

import jsonschema

from .errors import ConfigError
from .settings import FAMILIES, RUN_DEFAULTS, Family, run_schema
from .shape import model_config


def schema_error_message(err: jsonschema.ValidationError, where: str) -> str:
    key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    value = err.instance if err.absolute_path else None
    shown = f" = {json.dumps(value)}" if value is not None else ""
    return f"invalid {where}: {key}{shown}: {err.message}"


def make_run_config(fields: dict) -> dict:
    """Defaults + fields, validated; raises ConfigError naming the first bad key and value. The
    schema types each field; the rules between fields are these, and the model shape's own
    (``GPTConfig``: n_heads divides d_model)."""
    on = [f for f in FAMILIES.values() if fields.get(f.switch, RUN_DEFAULTS.get(f.switch)) == f.value]
    for family in FAMILIES.values():
        _refuse_stray(fields, family, family in on)
    sgd, mup = (FAMILIES[name] in on for name in ("sgd", "mup"))
    if sgd and mup:
        raise ConfigError("invalid run config: parametrization = \"mup\" with optimizer = \"sgd\": the μP "
                          "learning-rate multipliers here are Adam's (parametrization.py), so SGD runs are SP only")
    if mup and "mup_base_width" not in fields:
        raise ConfigError("invalid run config: parametrization = \"mup\" needs mup_base_width "
                          "(the width whose learning rates μP keeps)")
    cfg = {**RUN_DEFAULTS, **{k: v for f in on for k, v in f.defaults.items()}, **fields}
    validator = jsonschema.Draft202012Validator(run_schema())  # schema parsed once per process
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(schema_error_message(errors[0], "run config"))
    model_config(cfg)
    if cfg["warmup_steps"] >= cfg["steps"]:
        raise ConfigError(f"invalid run config: warmup_steps = {cfg['warmup_steps']} must be below steps = {cfg['steps']}")
    return cfg


def _refuse_stray(fields: dict, family: Family, allowed: bool) -> None:
    stray = sorted(k for k in family.fields if k in fields and not allowed)
    if stray:
        switch = family.switch
        raise ConfigError(f"invalid run config: {stray[0]} = {json.dumps(fields[stray[0]])} is {family.setting}, "
                          f"but {switch} = {json.dumps(fields.get(switch, RUN_DEFAULTS.get(switch)))}")


def canonical_json(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def run_id(cfg: dict) -> str:
    return hashlib.sha256(canonical_json(cfg).encode()).hexdigest()[:12]
