"""Current figures against the baseline: one row per status, figure and reference-run loss, with
baseline, current, tolerance and verdict. A flipped status, a figure outside its tolerance, or
anything the baseline has that the results lack fails the check; what is new only gets a note."""

from __future__ import annotations

import math

PASS, FAIL, NEW = "pass", "fail", "new"


def _row(kind, claim, name, baseline, current, verdict, tolerance=None, note=""):
    delta = current - baseline if _number(baseline) and _number(current) else None
    return {"kind": kind, "claim": claim, "name": name, "baseline": baseline, "current": current,
            "tolerance": tolerance, "delta": delta, "verdict": verdict, "note": note}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _within(baseline, current, tol) -> bool:
    if not (_number(baseline) and _number(current)):
        return baseline == current  # None (e.g. an unbounded multiplier) or text: must stay as it was
    return math.isfinite(current) and abs(current - baseline) <= tol


def _status_rows(kind, claim, base: dict, cur: dict) -> list[dict]:
    rows = []
    for name, b in base.items():
        c = cur.get(name)
        verdict = PASS if c == b else FAIL
        note = "missing from the results" if c is None else ("status flipped" if verdict == FAIL else "")
        rows.append(_row(kind, claim, name, b, c, verdict, note=note))
    rows += [_row(kind, claim, name, None, c, NEW, note="not in the baseline") for name, c in cur.items() if name not in base]
    return rows


def _config_change(base: dict, cur: dict) -> str:
    changed = [f"{k} {base.get(k)!r} → {cur.get(k)!r}" for k in sorted(set(base) | set(cur)) if base.get(k) != cur.get(k)]
    return "config changed: " + ", ".join(changed) if changed else ""


def compare(baseline: dict, figures: dict) -> dict:
    if baseline["scale"] != figures["scale"]:
        raise ValueError(f"baseline is for scale {baseline['scale']!r}, the results for {figures['scale']!r}")
    rows: list[dict] = []
    for claim, b in baseline["claims"].items():
        c = figures["claims"].get(claim)
        if c is None:
            rows.append(_row("status", claim, "claim", b["status"], None, FAIL, note="claim not in the results"))
            continue
        rows += _status_rows("status", claim, {"claim": b["status"]}, {"claim": c["status"]})
        rows += _status_rows("sub-claim", claim, b["sub_claims"], c["sub_claims"])
        for name, f in b["figures"].items():
            if name not in c["figures"]:
                rows.append(_row("figure", claim, name, f["value"], None, FAIL, f["tolerance"], "missing from the results"))
                continue
            cur = c["figures"][name]["value"]
            ok = _within(f["value"], cur, f["tolerance"])
            rows.append(_row("figure", claim, name, f["value"], cur, PASS if ok else FAIL, f["tolerance"],
                             "" if ok else "outside tolerance"))
        rows += [_row("figure", claim, name, None, f["value"], NEW, note="not in the baseline")
                 for name, f in c["figures"].items() if name not in b["figures"]]
    rows += [_row("status", claim, "claim", None, c["status"], NEW, note="claim not in the baseline")
             for claim, c in figures["claims"].items() if claim not in baseline["claims"]]

    for key, b in baseline["reference_runs"].items():
        c = figures["reference_runs"].get(key)
        if c is None:
            rows.append(_row("reference run", b["claim"], key, b["final_val_loss"], None, FAIL, b["tolerance"],
                             "reference run not in the results"))
            continue
        notes = [_config_change(b["config"], c["config"])]
        ok = b["status"] == c["status"] and _within(b["final_val_loss"], c["final_val_loss"], b["tolerance"])
        if b["status"] != c["status"]:
            notes.append(f"status {b['status']} → {c['status']}")
        elif not ok:
            notes.append("outside tolerance")
        rows.append(_row("reference run", b["claim"], key, b["final_val_loss"], c["final_val_loss"],
                         PASS if ok else FAIL, b["tolerance"], "; ".join(n for n in notes if n)))

    failed = [r for r in rows if r["verdict"] == FAIL]
    return {"scale": figures["scale"], "passed": not failed, "n_failed": len(failed), "n_checked": len(rows),
            "baseline": baseline["blessed"], "tolerance": baseline["tolerance"],
            "current": {k: figures.get(k) for k in ("measured_at", "git_commit", "versions")}, "rows": rows}
