"""Run settings, each defined once: in ``schemas/run.schema.json``, a property per field with its type
and allowed range, its ``default`` (where it has one) and a one-line ``description``. A setting that
only one optimizer or parametrization reads names its family (``x-family``); the schema's
``x-families`` says when each family is on (``when``: the field and value that switch it on).
Everything else is derived from it: here the defaults every run gets (``RUN_DEFAULTS``) and each
family's fields and defaults (``FAMILIES``); the checks in ``runs.make_run_config``; the model's
shape (``shape.GPTConfig``); the README's table of run fields (``run_fields``). No torch, no
jsonschema: the plan, the CLI and the model import this cheaply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def run_schema() -> dict:
    return json.loads(resources.files("optclaims").joinpath("schemas/run.schema.json").read_text())


@dataclass(frozen=True)
class Family:
    """Settings allowed (and filled in) only when ``switch`` = ``value``, so a run without the
    family does not carry them in its run_id."""

    name: str
    switch: str
    value: str
    setting: str            # how an error names one of its fields: "a Muon setting"
    fields: tuple[str, ...]
    defaults: dict


SETTINGS: dict[str, dict] = run_schema()["properties"]
DEFAULTS: dict = {key: p["default"] for key, p in SETTINGS.items() if "default" in p}  # of every field
RUN_DEFAULTS: dict = {key: v for key, v in DEFAULTS.items() if "x-family" not in SETTINGS[key]}


def _family(name: str, spec: dict) -> Family:
    ((switch, value),) = spec["when"].items()
    fields = tuple(key for key, p in SETTINGS.items() if p.get("x-family") == name)
    return Family(name, switch, value, spec["setting"], fields, {k: DEFAULTS[k] for k in fields if k in DEFAULTS})


FAMILIES: dict[str, Family] = {name: _family(name, spec) for name, spec in run_schema()["x-families"].items()}


def choices(key: str) -> tuple:
    """The values an enum setting allows, in the schema's order."""
    return tuple(SETTINGS[key]["enum"])
