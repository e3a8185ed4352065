"""Claim specs: reproductions/<claim>/claim.yaml, validated, and the run configs a claim needs at
a scale (its base fields × grid × seeds, plus any explicit runs)."""

from __future__ import annotations

import itertools
import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError
from .runs import make_run_config, schema_error_message

DEFAULT_REPRO_DIR = Path("reproductions")


def list_claims(repro_dir: Path = DEFAULT_REPRO_DIR) -> list[str]:
    return sorted(p.parent.name for p in Path(repro_dir).glob("*/claim.yaml"))


def load_claim(claim: str, repro_dir: Path = DEFAULT_REPRO_DIR) -> dict:
    path = Path(repro_dir) / claim / "claim.yaml"
    if not path.exists():
        known = ", ".join(list_claims(repro_dir)) or "none"
        raise ConfigError(f"unknown claim {claim!r} (known claims: {known})")
    spec = yaml.safe_load(path.read_text())
    schema = json.loads(resources.files("optclaims").joinpath("schemas/claim.schema.json").read_text())
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(spec))
    if err is not None:
        raise ConfigError(schema_error_message(err, str(path)))
    if spec["claim"] != claim:
        raise ConfigError(f"{path}: claim = {spec['claim']!r} does not match its folder name {claim!r}")
    return spec


def claim_run_configs(spec: dict, scale: str, common: dict) -> list[dict]:
    """Every run the claim needs at this scale; ``common`` (data id, vocab, user overrides) wins."""
    block = spec["scales"][scale]
    base = block.get("base", {})
    grid = block.get("grid", {})
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    extra = block.get("runs", [])
    configs = []
    for seed in block.get("seeds", [0]):
        for fields in [*combos, *extra]:
            try:
                configs.append(make_run_config({**base, **fields, "seed": seed, **common}))
            except ConfigError as e:
                raise ConfigError(f"claim {spec['claim']!r} at scale {scale!r}: {e}") from None
    return configs
