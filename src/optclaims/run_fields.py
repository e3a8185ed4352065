"""The README's table of run fields, written from the run schema (``settings``) between two marker
lines by ``optclaims run-fields``: per field its allowed values, its default (or that a run must
give it), the family it belongs to and its one-line meaning. ``out_of_sync`` is what the test and
``--check`` use."""

from __future__ import annotations

import json
from pathlib import Path

from .markdown_block import Block
from .report.build import escape_markdown
from .settings import FAMILIES, SETTINGS

TABLE = Block("run-fields", "written by `optclaims run-fields` from src/optclaims/schemas/run.schema.json; "
              "do not edit by hand")
_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))


def _value(v) -> str:
    return f"`{v if isinstance(v, str) else json.dumps(v)}`"


def allowed(prop: dict) -> str:
    """"`sp`, `mup`", "integer ≥ 1", "number > 0, < 1", "number > 0 or null", "non-empty string"."""
    if "enum" in prop:
        return ", ".join(_value(v) for v in prop["enum"])
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    kind = next(k for k in kinds if k != "null")
    text = "non-empty string" if kind == "string" and prop.get("minLength") == 1 else kind
    bounds = [f"{sign} {prop[key]}" for key, sign in _BOUNDS if key in prop]
    text = " ".join([text, ", ".join(bounds)]) if bounds else text
    return text + " or null" if "null" in kinds else text


def _default(prop: dict) -> str:
    """Its default, "absent (off)" for an ``x-optional`` field (no default: absent from a run that does
    not set it, so adding it left every other run_id as it was), or "required": a field without
    either is required (of a family: with it on)."""
    if "default" in prop:
        return _value(prop["default"])
    return "absent (off)" if prop.get("x-optional") else "required"


def _family(prop: dict) -> str:
    family = FAMILIES.get(prop.get("x-family"))
    return f"{family.switch} = {_value(family.value)}" if family else ""


def table_block() -> str:
    """The block, markers included: one row per field, in the schema's order."""
    rows = [f"| `{key}` | {allowed(p)} | {_default(p)} | {_family(p)} | {escape_markdown(p['description'])} |"
            for key, p in SETTINGS.items()]
    return TABLE.wrap(["| field | allowed | default | only with | meaning |", "| --- | --- | --- | --- | --- |", *rows])


def write_table(readme: Path) -> bool:
    """Rewrite the block in ``readme``; True if it changed."""
    return TABLE.write(readme, table_block())


def out_of_sync(readme: Path) -> list[str]:
    """What differs from the schema: the README's block. Empty when in sync."""
    if TABLE.current(readme) != table_block():
        return [f"{readme}: the table of run fields differs from the run schema (run `optclaims run-fields`)"]
    return []
