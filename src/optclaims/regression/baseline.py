"""Blessing a baseline: the figures of one results directory become ``results/baselines/<scale>.json``,
each with its tolerance and the reason for it, and the blessing itself (when, which commit, why)
is recorded beside the earlier ones. Every figure gets two tolerances: the scale's own (tight where
runs are bit-reproducible) and the statistical one (the seed spread, widened to the spread measured
over replicas in other environments), which the check uses when the environment's fingerprint
differs from the baseline's. Nothing here runs on its own: blessing is
always asked for."""

from __future__ import annotations

import getpass
import math
import statistics
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import read_json, write_json
from .figures import tolerance_rule


def tolerance(value, rule: dict, *, spread: tuple[float, int, str] | None = None,
              interval: tuple | None = None) -> tuple[float, str]:
    """(tolerance, how it was set) for one figure.

    Bit-reproducible scales: float-summation noise only, atol + rtol·|value|. Otherwise the seed
    spread: k·σ_seed, ``spread`` = (σ, its degrees of freedom, what it was pooled over) from
    ``seed_spreads``; for a claim figure half its reported interval, never below
    figure_rtol·|value| or figure_atol."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return 0.0, "exact (not a number)"
    if rule["deterministic"]:
        return rule["atol"] + rule["rtol"] * abs(value), f"bit-reproducible: {rule['atol']:g} + {rule['rtol']:g}·|value|"
    k = rule["seed_sigmas"]
    if spread is not None:
        sigma, _, over = spread
        return k * sigma, f"{k:g}·σ_seed pooled over {over}"
    floor = max(rule["figure_rtol"] * abs(value), rule["figure_atol"])
    if interval and None not in interval:
        half = (interval[1] - interval[0]) / 2
        if half > floor:
            return half, "half its reported interval"
    return floor, f"max({rule['figure_rtol']:g}·|value|, {rule['figure_atol']:g})"


# Fewest degrees of freedom a claim's own pooled σ_seed needs to be used: with 3, s falls below σ/3 in
# under one draw of twenty (P(χ²₃/3 < 1/9) = 0.046); with fewer, every claim's groups are pooled.
MIN_CLAIM_SEED_DOF = 3


def seed_spreads(runs: dict) -> tuple[dict[str, tuple[float, int, str]], tuple[float, int, str] | None]:
    """σ_seed of one run's final validation loss, pooled over each claim's seed groups, and over
    every claim's (a run two claims share counted once) for a claim whose groups have fewer than
    MIN_CLAIM_SEED_DOF degrees of freedom: s² = Σ (n_g − 1)·s_g² / Σ (n_g − 1), over the reference
    runs' groups g of n_g finished seeds.

    Pooled, not each group's own: a group of two seeds measures σ with one degree of freedom, and
    its s falls below σ/3 in one draw of four (P(χ²₁ < 1/9) = 0.26), where 3·s would pass
    nothing wider than σ. One σ for all of a claim's runs assumes the seed moves the loss about as
    much everywhere on its grid (widths and batch sizes differ within some claims); where an
    environment change was measured to move a run more, the replica's spread widens it."""
    def pooled(groups: list[dict], over: str):
        dof = sum(r["n_seeds"] - 1 for r in groups)
        ss = sum((r["n_seeds"] - 1) * r["seed_sigma"] ** 2 for r in groups)
        return (math.sqrt(ss / dof), dof, f"{over} ({dof} degree{'s' * (dof != 1)} of freedom)") if dof else None

    seeded = [r for r in runs.values() if r.get("seed_sigma") is not None and r.get("n_seeds", 0) >= 2]
    by_claim = {}
    for claim in sorted({r["claim"] for r in seeded}):
        spread = pooled([r for r in seeded if r["claim"] == claim], f"the seed groups of {claim}")
        if spread is not None and spread[1] >= MIN_CLAIM_SEED_DOF:
            by_claim[claim] = spread
    once = list({r["run_id"]: r for r in seeded}.values())
    return by_claim, pooled(once, "every claim's seed groups")


def environment_tolerance(value, elsewhere: list, level: float) -> float | None:
    """How far another environment's value may fall from the baseline's ``value``, from the values
    measured in n ≥ 2 environments (the baseline's and its replicas'): the baseline's distance from
    their mean plus the half-width of the ``level`` prediction interval of one more observation,
    t(level, n − 1)·s·√(1 + 1/n). With two environments t is 12.7 at 95%: one replica measures a
    spread, but says little about its size, and the tolerance says so."""
    from scipy import stats

    xs = [v for v in [value, *elsewhere] if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(xs) < 2 or xs[0] != value:
        return None
    n, mean, sd = len(xs), statistics.fmean(xs), statistics.stdev(xs)
    return abs(value - mean) + float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd * math.sqrt(1 + 1 / n)


def _widened(stat: dict, tol: float | None, level: float, n: int) -> dict:
    """The statistical tolerance, widened to the environment tolerance where that is wider."""
    if tol is None or tol <= stat["tolerance"]:
        return stat
    return {"tolerance": tol, "basis": f"{level:.0%} prediction interval over {n} environments (the baseline's and its replicas')"}


def bless(figures: dict, reason: str, previous: dict | None = None, replicas: list[dict] = ()) -> dict:
    """The baseline for these figures. ``reason`` is required: a baseline without one is refused.

    ``replicas``: the same suite measured in other environments (e.g. other CPU kernels; `make
    bless` makes one). Each figure's and reference run's statistical tolerance then covers, where
    that is wider than the seed spread, the prediction interval of another environment's value from
    the values measured (``environment_tolerance``): a figure with no interval has no seed spread
    of its own."""
    if not reason or not reason.strip():
        raise ValueError("blessing a baseline needs a reason (what changed and why the new figures are right)")
    if previous is not None and previous.get("scale") != figures["scale"]:
        raise ValueError(f"the existing baseline is for scale {previous.get('scale')!r}, these figures for {figures['scale']!r}")
    for i, rep in enumerate(replicas):
        if rep["scale"] != figures["scale"]:
            raise ValueError(f"replica {i + 1} is for scale {rep['scale']!r}, the figures for {figures['scale']!r}")
    rule = tolerance_rule(figures["tolerance"])  # figures measured before a setting existed get its default
    spread = {**rule, "deterministic": False}  # the statistical regime: the seed spread, whatever the scale
    level, n_env = spread["environment_level"], 1 + len(replicas)
    by_claim, everywhere = seed_spreads(figures["reference_runs"])

    def tolerances(value, elsewhere: list, **spread_of) -> dict:
        tol, basis = tolerance(value, rule, **spread_of)
        stat, stat_basis = tolerance(value, spread, **spread_of)
        stat = _widened({"tolerance": stat, "basis": stat_basis}, environment_tolerance(value, elsewhere, level), level, n_env)
        return {"tolerance": tol, "basis": basis, "statistical": stat}

    def replica_values(get) -> list:
        out = []
        for rep in replicas:
            try:
                out.append(get(rep))
            except KeyError:
                pass  # not measured there: no spread from this replica
        return out

    claims = {}
    for claim, c in figures["claims"].items():
        figs = {name: {"value": f["value"], "unit": f["unit"],
                       **tolerances(f["value"], replica_values(lambda r: r["claims"][claim]["figures"][name]["value"]),
                                    interval=(f["low"], f["high"]))}
                for name, f in c["figures"].items()}
        claims[claim] = {"status": c["status"], "sub_claims": c["sub_claims"], "figures": figs}
    runs = {}
    for key, r in figures["reference_runs"].items():
        runs[key] = {k_: r[k_] for k_ in ("run_id", "claim", "config", "status", "final_val_loss", "n_seeds", "device",
                                          "seed_sigma")}
        runs[key].update(tolerances(r["final_val_loss"], replica_values(lambda x: x["reference_runs"][key]["final_val_loss"]),
                                    spread=by_claim.get(r["claim"]) or everywhere))

    blessing = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": _user(),
                "reason": reason.strip(), "git_commit": figures.get("git_commit"),
                "measured_at": figures.get("measured_at"), "versions": figures.get("versions")}
    blessing["replicas"] = [{"fingerprint": rep.get("fingerprint"), "measured_at": rep.get("measured_at")} for rep in replicas]
    return {"scale": figures["scale"], "tolerance": rule, "fingerprint": figures.get("fingerprint"), "blessed": blessing,
            "blessings": [*(previous or {}).get("blessings", []), blessing],
            "claims": claims, "reference_runs": runs}


def bless_file(figures_path: Path, baseline_path: Path, reason: str, replica_paths: list[Path] = ()) -> dict:
    """Bless the figures in ``figures_path`` (with the replicas' spread) into ``baseline_path`` (written atomically)."""
    previous = read_json(baseline_path) if Path(baseline_path).exists() else None
    baseline = bless(read_json(figures_path), reason, previous, [read_json(p) for p in replica_paths])
    write_json(baseline_path, baseline)
    return baseline


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
