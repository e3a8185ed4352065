"""Current figures against the baseline: one row per status, figure and reference-run loss, with
baseline, current, tolerance and verdict. A flipped status, a figure outside its tolerance, or
anything the baseline has that the results lack fails the check; what is new only gets a note.
In the statistical regime a flip whose claim's figures all stayed within their spread passes, noted.

The tolerance regime is chosen by the environment fingerprint: the same environment as the
baseline's → the tolerances blessed for the scale (tight where runs repeat bit for bit); a different
one → the statistical tolerances blessed beside them (the seed spread). A baseline blessed before
fingerprints is compared in its blessed regime."""

from __future__ import annotations

from ..comparison.agreement import delta as _delta
from ..comparison.agreement import number as _number
from ..comparison.agreement import paired
from ..comparison.agreement import within as _within
from .fingerprint import FIELDS, differences

PASS, FAIL, NEW = "pass", "fail", "new"
BLESSED, STATISTICAL = "blessed", "statistical"
NO_FINGERPRINT = "baseline has no environment fingerprint (blessed before fingerprints): bless again to record one"


def regime(baseline: dict, figures: dict) -> dict:
    """Which tolerances apply, why, and the fingerprint fields that differ."""
    base, cur = baseline.get("fingerprint"), figures.get("fingerprint")
    if base is None:
        return {"name": BLESSED, "differs": [], "why": NO_FINGERPRINT}
    differs = differences(base, cur)
    if not differs:
        return {"name": BLESSED, "differs": [], "why": "same environment fingerprint as the baseline's"}
    what = ("the results have no environment fingerprint" if cur is None
            else "environment differs from the baseline's in " + ", ".join(FIELDS.get(f, f) for f in differs))
    return {"name": STATISTICAL, "differs": differs,
            "why": f"{what}: tolerances from the seed spread measured for the baseline"}


def _tolerance(entry: dict, key: str, regime_name: str) -> float:
    if regime_name == BLESSED:
        return entry["tolerance"]
    stat = entry.get("statistical")
    if not isinstance(stat, dict) or "tolerance" not in stat:
        raise ValueError(f"baseline entry {key!r} has no statistical tolerance (statistical={stat!r}): bless again")
    return stat["tolerance"]


def _row(kind, claim, name, baseline, current, verdict, tolerance=None, note=""):
    """One side-by-side row (the shape comparison/document.row_table renders): baseline and current."""
    return {"kind": kind, "claim": claim, "name": name, "baseline": baseline, "current": current,
            "tolerance": tolerance, "delta": _delta(baseline, current), "verdict": verdict, "note": note}


def _status_rows(kind, claim, base: dict, cur: dict) -> list[dict]:
    """Statuses paired by name (comparison/agreement.paired): a changed one fails, a new one is noted.
    (A figure, None e.g. for an unbounded multiplier, or text must stay as it was: agreement.within.)"""
    rows = []
    for name, b, c in paired(base, cur):
        if b is None:
            rows.append(_row(kind, claim, name, None, c, NEW, note="not in the baseline"))
            continue
        verdict = PASS if c == b else FAIL
        note = "missing from the results" if c is None else ("status flipped" if verdict == FAIL else "")
        rows.append(_row(kind, claim, name, b, c, verdict, note=note))
    return rows


def _config_change(base: dict, cur: dict) -> str:
    changed = [f"{k} {base.get(k)!r} → {cur.get(k)!r}" for k in sorted(set(base) | set(cur)) if base.get(k) != cur.get(k)]
    return "config changed: " + ", ".join(changed) if changed else ""


def _judge_flips(status_rows: list[dict], figure_rows: list[dict]) -> None:
    """In the statistical regime a status may flip only where a figure of its claim moved beyond its
    spread: a flip with every figure inside its tolerance is the noise of another environment, and
    passes, noted (which figure decides a status is not recorded, so all of the claim's figures
    count; a claim with no figures keeps every flip a failure)."""
    moved = [r["name"] for r in figure_rows if r["verdict"] == FAIL]
    for r in status_rows:
        if r["verdict"] != FAIL or r["note"] != "status flipped":
            continue
        if moved or not figure_rows:
            r["note"] = ("status flipped; its claim's figures moved beyond their spread: " + ", ".join(moved) if moved
                         else "status flipped; its claim has no figures to weigh the flip against")
        else:
            r["verdict"] = PASS
            r["note"] = (f"status flipped within the spread: all {len(figure_rows)} figures of its claim stayed "
                         "inside their tolerances, so the flip is not a change")


def detectable(result: dict) -> list[tuple[str, float]]:
    """(reference run, the smallest relative loss change its tolerance lets through unflagged)."""
    return [(r["name"], r["tolerance"] / abs(r["baseline"])) for r in result["rows"]
            if r["kind"] == "reference run" and _number(r["baseline"]) and r["baseline"] and r["tolerance"] is not None]


def compare(baseline: dict, figures: dict) -> dict:
    if baseline["scale"] != figures["scale"]:
        raise ValueError(f"baseline is for scale {baseline['scale']!r}, the results for {figures['scale']!r}")
    chosen = regime(baseline, figures)
    mode = chosen["name"]
    rows: list[dict] = []
    for claim, b in baseline["claims"].items():
        c = figures["claims"].get(claim)
        if c is None:
            rows.append(_row("status", claim, "claim", b["status"], None, FAIL, note="claim not in the results"))
            continue
        status = _status_rows("status", claim, {"claim": b["status"]}, {"claim": c["status"]})
        status += _status_rows("sub-claim", claim, b["sub_claims"], c["sub_claims"])
        figs = []
        for name, f in b["figures"].items():
            tol = _tolerance(f, f"{claim} · {name}", mode)
            if name not in c["figures"]:
                figs.append(_row("figure", claim, name, f["value"], None, FAIL, tol, "missing from the results"))
                continue
            cur = c["figures"][name]["value"]
            ok = _within(f["value"], cur, tol)
            figs.append(_row("figure", claim, name, f["value"], cur, PASS if ok else FAIL, tol,
                             "" if ok else "outside tolerance"))
        if mode == STATISTICAL:
            _judge_flips(status, figs)
        rows += status + figs
        rows += [_row("figure", claim, name, None, f["value"], NEW, note="not in the baseline")
                 for name, f in c["figures"].items() if name not in b["figures"]]
    rows += [_row("status", claim, "claim", None, c["status"], NEW, note="claim not in the baseline")
             for claim, c in figures["claims"].items() if claim not in baseline["claims"]]

    for key, b in baseline["reference_runs"].items():
        tol = _tolerance(b, f"run {key}", mode)
        c = figures["reference_runs"].get(key)
        if c is None:
            rows.append(_row("reference run", b["claim"], key, b["final_val_loss"], None, FAIL, tol,
                             "reference run not in the results"))
            continue
        notes = [_config_change(b["config"], c["config"])]
        ok = b["status"] == c["status"] and _within(b["final_val_loss"], c["final_val_loss"], tol)
        if b["status"] != c["status"]:
            notes.append(f"status {b['status']} → {c['status']}")
        elif not ok:
            notes.append("outside tolerance")
        rows.append(_row("reference run", b["claim"], key, b["final_val_loss"], c["final_val_loss"],
                         PASS if ok else FAIL, tol, "; ".join(n for n in notes if n)))

    failed = [r for r in rows if r["verdict"] == FAIL]
    return {"scale": figures["scale"], "passed": not failed, "n_failed": len(failed), "n_checked": len(rows),
            "baseline": baseline["blessed"], "tolerance": baseline["tolerance"], "regime": chosen,
            "fingerprints": {"baseline": baseline.get("fingerprint"), "current": figures.get("fingerprint")},
            "current": {k: figures.get(k) for k in ("measured_at", "git_commit", "versions")}, "rows": rows}
