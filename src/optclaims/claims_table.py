"""The README's claim table, written from the claim folders between two marker lines by
``optclaims claims-table``: a row per folder of reproductions/ with a claim.yaml (sorted by name),
its name and ``title``, its ``source`` and what this repository measures of it (``implemented``,
its {threshold} fields filled in like the criteria). ``out_of_sync`` is what the test and
``--check`` use."""

from __future__ import annotations

from pathlib import Path

from .analysis import fill_thresholds
from .claims import DEFAULT_REPRO_DIR, list_claims, load_claim
from .markdown_block import Block
from .report.build import escape_markdown

TABLE = Block("claim-table", "written by `optclaims claims-table` from reproductions/*/claim.yaml (make claims-table); "
              "do not edit by hand")


def _row(spec: dict) -> str:
    implemented = fill_thresholds(spec["implemented"], spec.get("thresholds", {}))
    return (f"| `{spec['claim']}`: {escape_markdown(spec['title'])} | {escape_markdown(spec['source'])} "
            f"| implemented: {escape_markdown(implemented)} |")


def table_block(repro_dir: Path = DEFAULT_REPRO_DIR) -> str:
    """The block, markers included: one row per claim, each claim.yaml validated as the plan does."""
    rows = [_row(load_claim(claim, repro_dir)) for claim in list_claims(repro_dir)]
    return TABLE.wrap(["| claim | source | status in this repository |", "| --- | --- | --- |", *rows])


def write_table(readme: Path, repro_dir: Path = DEFAULT_REPRO_DIR) -> bool:
    """Rewrite the block in ``readme``; True if it changed."""
    return TABLE.write(readme, table_block(repro_dir))


def out_of_sync(readme: Path, repro_dir: Path = DEFAULT_REPRO_DIR) -> list[str]:
    """What differs from the claim folders: the README's block. Empty when in sync."""
    if TABLE.current(readme) != table_block(repro_dir):
        return [f"{readme}: the claim table differs from {repro_dir}/*/claim.yaml (run `optclaims claims-table`)"]
    return []
