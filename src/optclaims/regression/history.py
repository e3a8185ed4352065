"""The regression report (report.md, report.html, report.json) and the history of the figures: every
check leaves one entry in ``regression/history/``, and the report tabulates the latest of them. The
report is the side-by-side document `optclaims compare` renders (comparison/document.py): baseline
and current in the columns where a comparison has A and B."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import read_json, write_json, write_text
from ..comparison.document import Bullets, Document, Heading, Paragraph, Table, html_page, markdown, row_table
from .compare import STATISTICAL, detectable
from .fingerprint import FIELDS

HISTORY_COLUMNS = 8


def row_key(row: dict) -> str:
    return f"{row['claim']} · {row['name']}" if row["kind"] != "reference run" else f"run {row['name']}"


def history_entry(result: dict) -> dict:
    return {"measured_at": result["current"]["measured_at"], "git_commit": result["current"]["git_commit"],
            "torch": (result["current"]["versions"] or {}).get("torch"), "passed": result["passed"],
            "values": {row_key(r): r["current"] for r in result["rows"]}}


def record(result: dict, history_dir: Path) -> Path:
    """Add this check to the history; one file per check, named by time and commit, never overwritten."""
    entry = history_entry(result)
    stamp = entry["measured_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = Path(history_dir) / f"{stamp}_{(entry['git_commit'] or 'unknown')[:12]}.json"
    n = 1
    while path.exists():
        path, n = path.with_name(f"{path.stem.split('~')[0]}~{n}.json"), n + 1
    write_json(path, entry)
    return path


def load_history(history_dir: Path) -> list[dict]:
    """Every readable history entry, oldest first (an unreadable one is skipped, not fatal)."""
    entries = []
    for path in sorted(Path(history_dir).glob("*.json")):
        try:
            entries.append(read_json(path))
        except (json.JSONDecodeError, OSError):
            continue
    return sorted(entries, key=lambda e: e.get("measured_at") or "")


def _tolerance_line(rule: dict, statistical: bool) -> str:
    if rule["deterministic"] and not statistical:
        return ("bit-reproducible runs, float-summation noise only "
                f"(atol {rule['atol']:g} + rtol {rule['rtol']:g}·|baseline|)")
    return (f"{rule['seed_sigmas']:g} seed standard deviations, pooled over the seed groups of the reference run's "
            f"claim (over every claim's where it has none); claim figures half their reported interval, at least "
            f"max({rule['figure_rtol']:g}·|baseline|, {rule['figure_atol']:g})")


def _fingerprint_blocks(result: dict) -> list:
    fps, regime = result.get("fingerprints") or {}, result.get("regime") or {}
    base, cur = fps.get("baseline"), fps.get("current")
    if base is None and cur is None:
        return []
    differs = set(regime.get("differs") or [])
    fields = [*FIELDS, *sorted((set(base or {}) | set(cur or {})) - set(FIELDS))]
    rows = [[FIELDS.get(f, f), (base or {}).get(f), (cur or {}).get(f), "differs" if f in differs else ""]
            for f in fields]
    return [Heading("Environment fingerprints"),
            Table(["field", "baseline", "current", ""], rows, ["differ" if f in differs else None for f in fields])]


def _power_line(result: dict) -> list[str]:
    caught = detectable(result)
    if not caught:
        return []
    rel = [r for _, r in caught]
    n = sum(r < 0.01 for r in rel)
    return [f"Power: the smallest reference-run loss change this check flags is {min(rel):.2%}–{max(rel):.2%} of "
            f"the loss; a 1% change is caught on {n} of {len(rel)} reference runs"
            + ("" if n == len(rel) else
               " (on the others the seed spread is wider than 1%: " +
               ", ".join(k for k, r in caught if r >= 0.01) + ")")]


# The side-by-side columns of every check (comparison/document.row_table), as the compare report has its own.
COLUMNS = [("kind", "kind"), ("claim", "claim"), ("name", "name"), ("baseline", "baseline"), ("current", "current"),
           ("tolerance", "tolerance"), ("Δ", "delta"), ("verdict", "verdict"), ("note", "note")]


def _mark(row: dict) -> str:
    return "flipped" if row["verdict"] == "pass" and row["note"].startswith("status flipped") else row["verdict"]


def document(result: dict, history: list[dict]) -> Document:
    """The regression report, in the side-by-side document the compare report is rendered from."""
    b, cur, rule = result["baseline"], result["current"], result["tolerance"]
    regime = result.get("regime") or {"name": "blessed", "why": "", "differs": []}
    statistical = regime["name"] == STATISTICAL
    verdict = "PASSED" if result["passed"] else f"FAILED ({result['n_failed']} of {result['n_checked']} checks)"
    doc = Document(f"Regression check, {result['scale']} scale: {verdict}")
    doc.add(Bullets([
        f"Regime: **{regime['name']}** tolerances" + (f": {regime['why']}" if regime["why"] else ""),
        f"Baseline: blessed {b['at']} by {b['by']} at commit `{(b['git_commit'] or '?')[:12]}`, because: {b['reason']}",
        f"Current: measured {cur['measured_at']} at commit `{(cur['git_commit'] or '?')[:12]}`, "
        f"torch {(cur['versions'] or {}).get('torch', '?')}",
        "Tolerances: " + _tolerance_line(rule, statistical),
        *_power_line(result),
        "A status that flips, a figure outside its tolerance, or anything in the baseline missing from "
        "the results fails the check" + ("; in this regime a status may flip only where a figure of its "
                                         "claim moved beyond its spread." if statistical else "."),
    ]))
    doc.add(*_fingerprint_blocks(result))
    rows = result["rows"]
    failed = [r for r in rows if r["verdict"] == "fail"]
    if failed:
        doc.add(Heading("Failures"), row_table(failed, COLUMNS, _mark))
    flipped = [r for r in rows if _mark(r) == "flipped"]
    if flipped:
        doc.add(Heading("Flips within the spread"),
                Paragraph("Passed: every figure of the claim stayed inside its tolerance."),
                row_table(flipped, COLUMNS, _mark))
    doc.add(Heading("Every check"), row_table(rows, COLUMNS, _mark))

    recent = history[-HISTORY_COLUMNS:]
    doc.add(Heading("History"),
            Paragraph(f"The figures over the last {len(recent)} of {len(history)} checks found in `regression/history/`."
                      if history else "No earlier checks found."))
    if recent:
        columns = [f"{e['measured_at'][:16]} `{(e.get('git_commit') or '?')[:7]}`" + ("" if e.get("passed") else " ✗")
                   for e in recent]
        keys = [row_key(r) for r in rows]
        baseline_of = {row_key(r): r["baseline"] for r in rows}
        doc.add(Table(["figure", "baseline", *columns],
                      [[k, baseline_of[k], *(e["values"].get(k) for e in recent)] for k in keys]))
    return doc


def render_markdown(result: dict, history: list[dict]) -> str:
    return markdown(document(result, history))


def render_html(result: dict, history: list[dict]) -> str:
    return html_page(document(result, history))


def write_report(result: dict, out_dir: Path) -> Path:
    """report.json, report.md and report.html (self-contained) in ``out_dir``, after adding this check
    to ``out_dir/history``."""
    out_dir = Path(out_dir)
    record(result, out_dir / "history")
    write_json(out_dir / "report.json", result)
    doc = document(result, load_history(out_dir / "history"))
    md = out_dir / "report.md"
    write_text(md, markdown(doc))
    write_text(out_dir / "report.html", html_page(doc))
    return md
