"""The README's table of gpu reference verdicts, written between two marker lines by
``optclaims readme-table`` from ``results/reference/gpu``: per claim its verdict (linked to its
section of the reference report), its headline figure (the one its claim.yaml names, else the
first of its verdict's ``measured``), its regime and where and when the reference was made, a
stale mark where the claim's code changed since, or "no gpu reference yet". ``out_of_sync`` is
what the test and ``--check`` use."""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import read_json
from ..markdown_block import Block
from ..report.build import (STATUS_LABELS, escape_markdown, fmt_measured, fmt_regime, headline_of,
                            load_verdict, render_markdown)
from . import layout
from .claim_code import known_claims
from .report import claim_staleness, collect_reference, report_dir

TABLE = Block("gpu-reference-table", "written by `optclaims readme-table` from results/reference/gpu "
              "(make readme-table); do not edit by hand")
NO_REFERENCE = "no gpu reference yet"


def headline(verdict: dict) -> str:
    """The figure claim.yaml's headline names (report.build.headline_of), or the first measured."""
    measured = verdict.get("measured")
    named = headline_of(verdict)
    if named is not None:
        name, m = named
        return f"{name}: {fmt_measured(m) if m is not None else 'not measured'}"
    return fmt_measured(measured) if measured not in (None, {}) else "—"


def _row(claim: str, ref_dir: Path, root: Path) -> str:
    folder = ref_dir / claim
    if not (folder / layout.VERDICT).is_file():
        return f"| `{claim}` | {NO_REFERENCE} | — | — | — |"
    v = load_verdict(folder / layout.VERDICT)
    prov_path = folder / layout.PROVENANCE
    prov = read_json(prov_path) if prov_path.is_file() else {}
    link = Path(os.path.relpath((report_dir(ref_dir) / "report.md").resolve(), root.resolve())).as_posix()
    status = f"[{STATUS_LABELS[v['status']]}]({link}#claim-{claim})"
    if claim_staleness(claim, prov, root):
        status += " · **stale**: its code changed since"
    made = f"{str(prov.get('made', '?'))[:10]} on {', '.join(prov.get('devices') or ['?'])}"
    return (f"| `{claim}` | {status} | {escape_markdown(headline(v))} | {escape_markdown(fmt_regime(v.get('regime')) or '—')} "
            f"| {escape_markdown(made)} |")


def table_block(ref_dir: Path = layout.REFERENCE_DIR, root: Path = Path(".")) -> str:
    """The block, markers included, for every claim of the checkout and every claim with a reference."""
    ref_dir, root = Path(ref_dir), Path(root)
    claims = sorted(set(known_claims(root)) | {d.name for d in layout.claim_dirs(ref_dir)})
    return TABLE.wrap(["| claim | gpu reference verdict | headline figure | regime | made |",
                       "| --- | --- | --- | --- | --- |", *(_row(c, ref_dir, root) for c in claims)])


def write_table(readme: Path, ref_dir: Path = layout.REFERENCE_DIR, root: Path = Path(".")) -> bool:
    """Rewrite the block in ``readme``; True if it changed."""
    return TABLE.write(readme, table_block(ref_dir, root))


def out_of_sync(readme: Path, ref_dir: Path = layout.REFERENCE_DIR, root: Path = Path(".")) -> list[str]:
    """What differs from what the references say: the README's block, and the committed reference
    report.md (absent while there is no reference). Empty when all is in sync."""
    readme, ref_dir = Path(readme), Path(ref_dir)
    problems = []
    if TABLE.current(readme) != table_block(ref_dir, root):
        problems.append(f"{readme}: the gpu reference table differs from {ref_dir} (run `make readme-table`)")
    md = report_dir(ref_dir) / "report.md"
    report = collect_reference(ref_dir, root)
    if not report["claims"]:
        if md.exists():
            problems.append(f"{md}: a reference report, but {ref_dir} holds no reference")
    elif not md.is_file() or md.read_text(encoding="utf-8") != render_markdown(report, md.parent.resolve()):
        problems.append(f"{md}: missing or differs from {ref_dir} (run `make reference-report`)")
    return problems
