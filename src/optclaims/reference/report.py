"""The report of the committed references: the same HTML and Markdown as a scale's report, read
from ``results/reference/gpu/<claim>/`` folders, with each claim's provenance and a stale mark
where this checkout's claim code differs from the code its reference was made with. No training:
any CPU machine rebuilds it (``make reference-report``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import read_json
from ..report.build import (assemble, collect_claims, collect_data, collect_runs, fmt_num, subdirs,
                            write_report)
from . import layout
from .claim_code import staleness


def stale_text(claim: str, changed: list[str]) -> str:
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    return (f"the claim's code changed after this reference was made ({shown}); make a fresh one on a GPU "
            f"with `make gpu-reference CLAIMS={claim}`, then `make file-reference`.")


def claim_staleness(claim: str, prov: dict, root: Path) -> dict | None:
    """None when current; else ``{"changed", "text"}``."""
    st = staleness(prov.get("claim_code") or {}, root, claim)
    return {"changed": st["changed"], "text": stale_text(claim, st["changed"])} if st["stale"] else None


def _stages_text(stages: dict) -> str:
    return "; ".join(f"{rule} {s['jobs']} job{'s' * (s['jobs'] != 1)} {s['seconds']:.1f} s"
                     for rule, s in sorted(stages.items())) or "—"


def provenance_cells(prov: dict) -> dict:
    """A reference's provenance.json as the report's table cells."""
    tp = prov.get("throughput") or {}
    tokens = (tp.get("tokens_per_s") or {}).get("median")
    mfu = (tp.get("mfu") or {}).get("median")
    stages = prov.get("wall_seconds_per_stage") or {}
    return {
        "made": prov.get("made") or "—",
        "commit": ", ".join(c[:12] + ("-dirty" if c.endswith("-dirty") else "") for c in prov.get("git_commits") or []) or "—",
        "code_hash": ((prov.get("claim_code") or {}).get("hash") or "—")[:12],
        "device": ", ".join(prov.get("devices") or []) or "—",
        "driver": prov.get("driver") or "—",
        "torch": prov.get("torch") or "—",
        "cuda": prov.get("cuda") or "—",
        "corpus": ", ".join((c.get("hash") or "?")[:12] for c in prov.get("corpus") or []) or "—",
        "tokens_per_s": f"{tokens:,.0f}" if isinstance(tokens, (int, float)) else "—",
        "mfu": f"{100 * mfu:.3g}%" if isinstance(mfu, (int, float)) else "—",
        "wall_seconds": fmt_num(round(sum(s["seconds"] for s in stages.values()), 1)) if stages else "—",
        "stages_text": _stages_text(stages),
    }


def collect_reference(ref_dir: Path = layout.REFERENCE_DIR, root: Path = Path(".")) -> dict:
    """Everything the reference report shows."""
    ref_dir, root = Path(ref_dir), Path(root)
    warnings: list[str] = []
    folders = layout.claim_dirs(ref_dir)
    claims = collect_claims([d / layout.VERDICT for d in folders], warnings)
    for c in claims:
        prov_path = c["dir"] / layout.PROVENANCE
        prov = read_json(prov_path) if prov_path.is_file() else {}
        if not prov:
            warnings.append(f"claim {c['claim']}: no {layout.PROVENANCE} in its reference")
        c["run_anchor_prefix"] = f"{c['claim']}-"
        c["stale"] = claim_staleness(c["claim"], prov, root)
        c["reference"] = provenance_cells(prov)
    runs = [run for d in folders for run in collect_runs(subdirs(d / layout.RUNS), warnings, claim=d.name)]
    data, seen = [], set()
    for d in collect_data([x for f in folders for x in subdirs(f / layout.DATA)]):
        if (d["data_id"], d["hash"]) not in seen:
            seen.add((d["data_id"], d["hash"]))
            data.append(d)
    shown_dir = Path(os.path.relpath(ref_dir.resolve(), root.resolve())).as_posix()
    return assemble(ref_dir, layout.SCALE, claims, runs, data, [], {}, warnings, reference={"dir": shown_dir})


def report_dir(ref_dir: Path) -> Path:
    return Path(ref_dir) / layout.REPORT


def build_reference_report(ref_dir: Path = layout.REFERENCE_DIR, out_dir: Path | None = None,
                           root: Path = Path(".")) -> tuple[Path, Path]:
    """Write index.html and report.md of the references (default: ``<ref_dir>/report/``)."""
    report = collect_reference(ref_dir, root)
    if not report["claims"]:
        raise ValueError(f"reference: no claim reference in {ref_dir} yet (none has a {layout.VERDICT}); "
                         "make one on a GPU with `make gpu-reference CLAIMS=...`")
    return write_report(report, Path(out_dir) if out_dir is not None else report_dir(ref_dir))
