"""The regression report (report.md, report.json) and the history of the figures: every check
leaves one entry in ``regression/history/``, and the report tabulates the latest of them."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import read_json, write_json, write_text
from ..report.build import fmt_num
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


def _cell(x) -> str:
    if x is None:
        return "—"
    return fmt_num(x, 7) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x).replace("|", "\\|")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]


def _tolerance_line(rule: dict, statistical: bool) -> str:
    if rule["deterministic"] and not statistical:
        return ("bit-reproducible runs, float-summation noise only "
                f"(atol {rule['atol']:g} + rtol {rule['rtol']:g}·|baseline|)")
    return (f"{rule['seed_sigmas']:g} seed standard deviations of a reference run's seed group (pooled over the "
            f"seeded reference runs where it has none); claim figures half their reported interval, at least "
            f"max({rule['figure_rtol']:g}·|baseline|, {rule['figure_atol']:g})")


def _fingerprint_lines(result: dict) -> list[str]:
    fps, regime = result.get("fingerprints") or {}, result.get("regime") or {}
    base, cur = fps.get("baseline"), fps.get("current")
    if base is None and cur is None:
        return []
    differs = set(regime.get("differs") or [])
    fields = [*FIELDS, *sorted((set(base or {}) | set(cur or {})) - set(FIELDS))]
    rows = [[FIELDS.get(f, f), (base or {}).get(f), (cur or {}).get(f), "differs" if f in differs else ""]
            for f in fields]
    return ["## Environment fingerprints", "", *_table(["field", "baseline", "current", ""], rows), ""]


def _power_line(result: dict) -> list[str]:
    caught = detectable(result)
    if not caught:
        return []
    rel = [r for _, r in caught]
    n = sum(r < 0.01 for r in rel)
    return [f"- Power: the smallest reference-run loss change this check flags is {min(rel):.2%}–{max(rel):.2%} of "
            f"the loss; a 1% change is caught on {n} of {len(rel)} reference runs"
            + ("" if n == len(rel) else
               " (on the others the seed spread is wider than 1%: " +
               ", ".join(k for k, r in caught if r >= 0.01) + ")")]


def render_markdown(result: dict, history: list[dict]) -> str:
    b, cur, rule = result["baseline"], result["current"], result["tolerance"]
    regime = result.get("regime") or {"name": "blessed", "why": "", "differs": []}
    statistical = regime["name"] == STATISTICAL
    verdict = "PASSED" if result["passed"] else f"FAILED ({result['n_failed']} of {result['n_checked']} checks)"
    lines = [f"# Regression check, {result['scale']} scale: {verdict}", "",
             f"- Regime: **{regime['name']}** tolerances" + (f": {regime['why']}" if regime["why"] else ""),
             f"- Baseline: blessed {b['at']} by {b['by']} at commit `{(b['git_commit'] or '?')[:12]}`, because: {b['reason']}",
             f"- Current: measured {cur['measured_at']} at commit `{(cur['git_commit'] or '?')[:12]}`, "
             f"torch {(cur['versions'] or {}).get('torch', '?')}",
             "- Tolerances: " + _tolerance_line(rule, statistical),
             *_power_line(result),
             "- A status that flips, a figure outside its tolerance, or anything in the baseline missing from "
             "the results fails the check" + ("; in this regime a status may flip only where a figure of its "
                                              "claim moved beyond its spread." if statistical else "."),
             "", *_fingerprint_lines(result)]
    header = ["kind", "claim", "name", "baseline", "current", "tolerance", "Δ", "verdict", "note"]
    as_list = [[r["kind"], r["claim"], r["name"], r["baseline"], r["current"], r["tolerance"], r["delta"],
                r["verdict"], r["note"]] for r in result["rows"]]
    failed = [row for row, r in zip(as_list, result["rows"]) if r["verdict"] == "fail"]
    if failed:
        lines += ["## Failures", "", *_table(header, failed), ""]
    flipped = [row for row, r in zip(as_list, result["rows"]) if r["verdict"] == "pass" and r["note"].startswith("status flipped")]
    if flipped:
        lines += ["## Flips within the spread", "", "Passed: every figure of the claim stayed inside its tolerance.", "",
                  *_table(header, flipped), ""]
    lines += ["## Every check", "", *_table(header, as_list), ""]

    recent = history[-HISTORY_COLUMNS:]
    lines += ["## History", "",
              f"The figures over the last {len(recent)} of {len(history)} checks found in `regression/history/`."
              if history else "No earlier checks found.", ""]
    if recent:
        columns = [f"{e['measured_at'][:16]} `{(e.get('git_commit') or '?')[:7]}`" + ("" if e.get("passed") else " ✗")
                   for e in recent]
        keys = [row_key(r) for r in result["rows"]]
        baseline_of = {row_key(r): r["baseline"] for r in result["rows"]}
        lines += _table(["figure", "baseline", *columns],
                        [[k, baseline_of[k], *(e["values"].get(k) for e in recent)] for k in keys])
    return "\n".join(lines) + "\n"


def write_report(result: dict, out_dir: Path) -> Path:
    """report.json and report.md in ``out_dir``, after adding this check to ``out_dir/history``."""
    out_dir = Path(out_dir)
    record(result, out_dir / "history")
    write_json(out_dir / "report.json", result)
    md = out_dir / "report.md"
    write_text(md, render_markdown(result, load_history(out_dir / "history")))
    return md
