"""What a nightly compares, read from one scale's results: every claim's status, its sub-claims'
statuses and its measured figures (verdict.json ``measured``), and the final losses of a fixed
set of reference runs, each with the seed spread of its configuration where the plan has seeds."""

from __future__ import annotations

import statistics
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import read_json

# How tolerances are set when a baseline is blessed (a scale's `regression:` block overrides these).
TOLERANCE_DEFAULTS = {
    "reference_runs_per_claim": 3,
    "deterministic": False,   # true where seeded runs are bit-reproducible (CPU, one thread)
    "rtol": 1e-5,             # deterministic: relative tolerance, float-summation noise only
    "atol": 1e-9,
    "seed_sigmas": 3.0,       # otherwise: this many seed standard deviations
    "figure_rtol": 0.05,      # otherwise, for a claim figure with no seed interval: relative ...
    "figure_atol": 0.02,      # ... or absolute, whichever is larger
    "environment_level": 0.95,  # blessed with replicas: the prediction level of another environment's value
}


def tolerance_rule(settings: dict | None) -> dict:
    rule = {**TOLERANCE_DEFAULTS, **(settings or {})}
    unknown = set(rule) - set(TOLERANCE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown regression setting(s): {', '.join(sorted(unknown))}")
    return rule


def reference_runs(claim_runs: dict[str, list[str]], per_claim: int) -> dict[str, str]:
    """A fixed set: per claim, ``per_claim`` runs evenly spaced through its first-stage plan (first
    and last included, so the grid's corners are watched). Keyed "<claim>/<index in the plan>"."""
    refs = {}
    for claim, ids in claim_runs.items():
        k = min(per_claim, len(ids))
        picks = sorted({round(i * (len(ids) - 1) / (k - 1)) for i in range(k)}) if k > 1 else range(k)
        refs.update({f"{claim}/{i}": ids[i] for i in picks})
    return refs


def seed_group(runs: dict[str, dict], rid: str) -> list[str]:
    """The run and every planned run whose config differs from it in the seed alone (run first)."""
    def sans_seed(cfg):
        return {k: v for k, v in cfg.items() if k != "seed"}

    target = sans_seed(runs[rid])
    return [rid] + [r for r, cfg in runs.items() if r != rid and sans_seed(cfg) == target]


def claim_figures(verdict: dict) -> dict:
    """A claim's status, its sub-claims' statuses and its measured figures, from its verdict; not
    the figures that rest on wall time (``timing``): speed is the benchmarks' to watch."""
    return {
        "status": verdict["status"],
        "sub_claims": {s["name"]: s["status"] for s in verdict.get("sub_claims") or []},
        "figures": {name: {k: m.get(k) for k in ("value", "low", "high", "unit")}
                    for name, m in (verdict.get("measured") or {}).items() if isinstance(m, dict) and not m.get("timing")},
    }


def reference_run_figures(key: str, group: list[str], summaries: list[dict], config: dict) -> dict:
    """One reference run (``group[0]``, its summary first) with the seed spread of its seed group."""
    s = summaries[0]
    losses = [x["final_val_loss"] for x in summaries if x["status"] == "ok"]
    return {
        "run_id": group[0], "claim": key.rsplit("/", 1)[0], "config": config,
        "status": s["status"], "final_val_loss": s["final_val_loss"],
        "seed_sigma": statistics.stdev(losses) if len(losses) >= 2 else None, "n_seeds": len(losses),
        "device": s.get("device"), "git_commit": s.get("git_commit"), "versions": s.get("versions"),
    }


def figures_of(scale: str, measured_at: str, rule: dict, claims: dict, runs: dict,
               fingerprint: dict | None = None) -> dict:
    """figures.json from its parts; the code version is that of the first reference run. Without a
    ``fingerprint`` (figures not measured here, e.g. from committed references) none is recorded."""
    first = next(iter(runs.values()), {})
    return {"scale": scale, "measured_at": measured_at, "tolerance": tolerance_rule(rule), "claims": claims,
            "reference_runs": runs, "git_commit": first.get("git_commit"), "versions": first.get("versions"),
            "fingerprint": fingerprint}


def data_dir_of(scale_dir: Path, runs: dict) -> Path:
    """The one data directory (results/<scale>/data/<data_id>) the reference runs trained on."""
    ids = sorted({r["config"].get("data") for r in runs.values()} - {None})
    if len(ids) != 1:
        raise ValueError(f"environment fingerprint: the reference runs must share one data id, got data={ids!r}")
    return Path(scale_dir) / "data" / ids[0]


def collect(scale_dir: Path, scale: str, claims: list[str], groups: dict[str, list[str]], rule: dict,
            threads: int) -> dict:
    """figures.json: the measured state of one results directory, with the environment's
    fingerprint (``threads``: the scale's train.threads)."""
    from .fingerprint import fingerprint

    scale_dir = Path(scale_dir)
    figures = {c: claim_figures(read_json(scale_dir / "claims" / c / "verdict.json")) for c in claims}
    runs = {key: reference_run_figures(key, group, [read_json(scale_dir / "runs" / r / "summary.json") for r in group],
                                       read_json(scale_dir / "runs" / group[0] / "config.json"))
            for key, group in groups.items()}
    env = fingerprint(data_dir_of(scale_dir, runs), threads, [r["device"] for r in runs.values()])
    return figures_of(scale, datetime.now(timezone.utc).isoformat(timespec="seconds"), rule, figures, runs, env)
