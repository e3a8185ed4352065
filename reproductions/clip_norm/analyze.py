"""clip_norm: does the global gradient norm of a stably training model settle at or below about 1
at every size, so that clipping at τ = 1 only catches abnormal steps?

Two stages. ``plan_runs``: AdamW without clipping over a power-of-2 LR grid at every width (SP and
μP init; the same configs as mup_transfer's SP-Adam and μP-Adam sweeps, so shared) and at every
extra depth, and the control arm (heavy-ball SGD, whose step scales with the clipped gradient)
over its own LR grid at the τ-sweep widths. ``select_runs``: the τ sweep with two seeds in both arms
at each sweep width's best LR. ``analyze``: the norm at initialisation, whether it has settled, its
late-phase distribution and the fraction of steps above τ = 1 at each size's best LR, the trend with
width, the τ sweep against paired seed noise in both arms, and the best LR against the hidden-matrix
parameter count (Su's corollary η ∝ 1/√N).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

from optclaims.analysis import interpolated_optimum, measured, pooled_seed_sigma, run_fields, sub_claim
from optclaims.parametrization import with_base_width
from optclaims.plotting import (BAND_ALPHA, BAND_COLOR, COLORS, DIMENSIONS, LAYERS, LOG2, NATS, NORM, REFERENCE_COLOR, STEPS,
                                axis_label, plt, reference_band, reference_line, sequential, sns, style)
from optclaims.settings import RUN_DEFAULTS

ARMS = ("adam", "control")
BOOTSTRAP_DRAWS = 1000  # redraws of the LR-grid losses behind the corollary's interval
BOOTSTRAP_SEED = 0

# ------------------------------------------------------------------ plan


def init_fields(block: dict, init: str) -> dict:
    return with_base_width(block["inits"][init]["fields"], block["base_width"])


def sweep_run(block: dict, fields: dict, width: int, log2_lr: float, **extra) -> dict:
    return {**block["base"], **fields, "d_model": width, "n_heads": max(1, width // block["head_dim"]),
            "lr": 2.0 ** log2_lr, "seed": block["seed"], **extra}


def control_runs(block: dict) -> list[dict]:
    """The control arm's unclipped LR grid at every τ-sweep width (base depth)."""
    control = block["control"]
    return [sweep_run(block, control["fields"], w, e) for w in block["tau_sweep"]["widths"] for e in control["log2_lr"]]


def plan_runs(block: dict) -> list[dict]:
    """Stage 1: the Adam LR grid at every width (base depth) and at every extra depth, and the
    control's LR grid; no clipping."""
    depths = block["depths"]
    runs = [sweep_run(block, init_fields(block, init), w, e) for init, spec in block["inits"].items()
            for w in block["widths"] for e in spec["log2_lr"]]
    runs += [sweep_run(block, init_fields(block, init), depths["width"], e, n_layers=L) for init in block["inits"]
             for L in depths["n_layers"] for e in depths["log2_lr"][init]]
    return runs + control_runs(block)


def sweep_rows(best: pd.DataFrame, block: dict) -> pd.DataFrame:
    """The best runs the τ sweep starts from: each arm at each sweep width, base depth."""
    tau = block["tau_sweep"]
    arm_init = best.arm.eq("control") | best.init.eq(tau["init"])
    return best[arm_init & best.width.isin(tau["widths"]) & best.depth.eq(block["base"]["n_layers"])]


def tau_sweep_configs(best: pd.DataFrame, block: dict) -> list[dict]:
    """The τ sweep at each arm's best LR at each sweep width, every seed (τ = none at the first
    seed is the stage-1 run itself)."""
    tau, chosen = block["tau_sweep"], []
    for row in sweep_rows(best, block).itertuples():
        if row.cfg is not None:
            chosen += [{**run_fields(row.cfg), "clip": t, "seed": s} for t in tau["taus"] for s in tau["seeds"]]
    return chosen


def select_runs(ctx) -> list[dict]:
    """Stage 2: the τ sweep of both arms, from the stage-1 LR grids."""
    block = ctx.scale_spec
    return tau_sweep_configs(best_runs(runs_frame(ctx.runs, ctx.thresholds), block), block)


# ------------------------------------------------------------------ frames


def hidden_params(cfg: dict) -> int:
    """N of the corollary: the hidden matrices of every block, attention q, k, v, o (4d²) and MLP in
    and out (2·d·d_mlp); embeddings, readout and gains not counted."""
    d = cfg["d_model"]
    d_mlp = int(round(cfg.get("mlp_ratio", RUN_DEFAULTS["mlp_ratio"]) * d))
    return cfg["n_layers"] * (4 * d * d + 2 * d * d_mlp)


def phase(step: np.ndarray, norm: np.ndarray, steps: int, start: float, stop: float) -> np.ndarray:
    """The norms of the steps after ``start`` and up to ``stop`` (fractions of ``steps``)."""
    return norm[(step > start * steps) & (step <= stop * steps)]


def norm_stats(metrics: pd.DataFrame, steps: int, th: dict) -> dict:
    """The pre-clip global norm at step 1, over the late phase and the settling reference window
    before it (the drift between their medians decides whether it has settled), and the fractions
    of early and late steps above τ."""
    step, norm = metrics["step"].to_numpy(float), metrics["grad_norm"].to_numpy(float)
    step, norm = step[np.isfinite(norm)], norm[np.isfinite(norm)]
    late = phase(step, norm, steps, th["late_from"], 1.0)
    ref = phase(step, norm, steps, th["settle_from"], th["late_from"])
    early = norm[step <= max(1, th["early_until"] * steps)]
    stat = lambda v, f: float(f(v)) if len(v) else math.nan  # noqa: E731
    late_median, ref_median = stat(late, np.median), stat(ref, np.median)
    drift = late_median / ref_median - 1 if ref_median > 0 else math.nan
    return {"norm_init": stat(norm, lambda v: v[0]), "late_median": late_median,
            "late_p10": stat(late, lambda v: np.quantile(v, 0.1)), "late_p90": stat(late, lambda v: np.quantile(v, 0.9)),
            "ref_median": ref_median, "drift": drift, "settled": bool(abs(drift) <= th["settle_drift_max"]),
            "early_clipped": stat(early, lambda v: (v > th["tau"]).mean()),
            "late_clipped": stat(late, lambda v: (v > th["tau"]).mean())}


def check_thresholds(th: dict) -> None:
    """What the schema cannot say: windows in order, bands as [low, high]."""
    if not th["settle_from"] < th["late_from"]:
        raise ValueError(f"clip_norm thresholds: settle_from = {th['settle_from']} must be below late_from = {th['late_from']}")
    for key in ("median_band", "lr_exponent_band"):
        low, high = th[key]
        if not low < high:
            raise ValueError(f"clip_norm thresholds: {key} = {th[key]} must be [low, high] with low < high")


def arm_of(cfg: dict) -> str:
    return "adam" if cfg["optimizer"] == "adamw" else "control"


def runs_frame(runs, th: dict) -> pd.DataFrame:
    check_thresholds(th)
    rows = []
    for r in runs:
        c = r.config
        rows.append({"run_id": r.run_id, "arm": arm_of(c), "optimizer": c["optimizer"], "init": c["parametrization"],
                     "width": c["d_model"], "depth": c["n_layers"], "lr": c["lr"], "log2_lr": math.log2(c["lr"]),
                     "tau": c["clip"], "seed": c["seed"], "status": r.summary["status"],
                     "final_val_loss": r.final_val_loss, "n_hidden": hidden_params(c),
                     **norm_stats(r.metrics, c["steps"], th), "cfg": c})
    return pd.DataFrame(rows)


def best_runs(df: pd.DataFrame, block: dict) -> pd.DataFrame:
    """Per (arm, init, width, depth): the best run of the unclipped first-seed LR grid, its
    interpolated optimum, whether it sits on the grid's edge, and the grid itself (for the bootstrap)."""
    sweep = df[df.tau.isna() & (df.seed == block["seed"])]
    out = []
    for (arm, init, width, depth), g in sweep.groupby(["arm", "init", "width", "depth"]):
        g = g.sort_values("log2_lr")
        x, y = g.log2_lr.to_numpy(float), g.final_val_loss.to_numpy(float)
        grid_opt, opt, edge = interpolated_optimum(x, y)
        best = g[np.isclose(g.log2_lr, grid_opt)] if np.isfinite(grid_opt) else g.iloc[:0]
        row = best.iloc[0].to_dict() if len(best) else {"cfg": None, "n_hidden": int(g.n_hidden.iloc[0]), "settled": False}
        out.append({**row, "arm": arm, "init": init, "width": width, "depth": depth, "optimum_log2_lr": opt,
                    "on_edge": edge, "all_diverged": not np.isfinite(y).any(), "grid": (x, y)})
    return pd.DataFrame(out)


def tau_table(df: pd.DataFrame, best: pd.DataFrame, block: dict) -> pd.DataFrame:
    """Each arm's τ-sweep runs at each sweep width's best LR (τ = none at the first seed is the
    stage-1 run), with τ as a label ("none" for no clipping)."""
    parts = []
    for row in sweep_rows(best, block).itertuples():
        if row.cfg is None:
            continue
        d = df[(df.arm == row.arm) & (df.init == row.init) & (df.width == row.width) & (df.depth == row.depth)
               & np.isclose(df.lr, row.lr) & df.seed.isin(block["tau_sweep"]["seeds"])]
        parts.append(d)
    if not parts:
        return pd.DataFrame(columns=[*df.columns, "tau_label"])
    out = pd.concat(parts).drop_duplicates("run_id")
    return out.assign(tau_label=out.tau.map(lambda t: "none" if t is None or pd.isna(t) else f"{t:g}"))


def slope(x, y) -> float:
    """Least-squares exponent of y against x on log axes (finite positive points only)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0]) if ok.sum() > 1 else math.nan


# ------------------------------------------------------------------ the τ sweep against paired seed noise


@lru_cache(maxsize=None)
def studentized_range_quantile(level: float, k: int, dof: int) -> float:
    return float(stats.studentized_range.ppf(level, k, dof))


def tau_matrix(g: pd.DataFrame, taus: list[str], seeds: list[int]) -> np.ndarray:
    """Final losses as a (τ, seed) matrix; a missing run is NaN, a diverged one ∞."""
    table = g.pivot_table(index="tau_label", columns="seed", values="final_val_loss", aggfunc="first")
    return table.reindex(index=taus, columns=seeds).to_numpy(float)


def block_residuals(y: np.ndarray) -> tuple[float, int]:
    """(sum of squares, degrees of freedom) of the residuals of y[τ, seed] = τ effect + seed effect
    (a randomized block design: a seed fixes initialisation and data order), over the τ rows whose
    every seed finished."""
    y = y[np.isfinite(y).all(axis=1)]
    k, n = y.shape
    if k < 2 or n < 2:
        return 0.0, 0
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    return float((resid ** 2).sum()), (k - 1) * (n - 1)


def tau_effects(taus: pd.DataFrame, block: dict, th: dict) -> pd.DataFrame:
    """Per arm and sweep width: the mean loss per τ, τ = 1's gap to the best τ, the range (worst −
    best τ), and Tukey's honest significant difference q·σ/√n with σ the paired seed noise pooled
    over the arm's widths (NaN where it cannot be estimated). A missing τ or seed leaves the
    width ``complete`` false."""
    spec = block["tau_sweep"]
    labels = ["none" if t is None else f"{t:g}" for t in spec["taus"]]
    seeds, tau_label = list(spec["seeds"]), f"{th['tau']:g}"
    if tau_label not in labels:
        raise ValueError(f"clip_norm: thresholds tau = {th['tau']} is not one of tau_sweep.taus = {spec['taus']}")
    rows = []
    for arm, ga in taus.groupby("arm"):
        mats = {w: tau_matrix(g, labels, seeds) for w, g in ga.groupby("width")}
        ss, dof = map(sum, zip(*(block_residuals(m) for m in mats.values())))
        sigma = math.sqrt(ss / dof) if dof else math.nan
        q = studentized_range_quantile(th["tau_test_level"], len(labels), dof) if dof else math.nan
        hsd = q * sigma / math.sqrt(len(seeds))
        for w, m in mats.items():
            means = dict(zip(labels, np.where(np.isnan(m).any(axis=1), np.nan, m.mean(axis=1))))  # ∞: a seed diverged
            known = {t: v for t, v in means.items() if not math.isnan(v)}
            best_tau = min(known, key=known.get) if known else None
            best = known[best_tau] if known else math.nan
            rows.append({"arm": arm, "width": w, "means": means, "best_tau": best_tau, "gap": means[tau_label] - best,
                         "range": max(known.values()) - best if known else math.nan, "sigma": sigma, "dof": dof,
                         "hsd": hsd, "complete": not np.isnan(m).any()})
    out = pd.DataFrame(rows, columns=["arm", "width", "means", "best_tau", "gap", "range", "sigma", "dof", "hsd", "complete"])
    return out.assign(tau1_worse=out.gap > out.hsd, resolved=out.range > out.hsd)


def tau_line(effects: pd.DataFrame, best: pd.DataFrame, block: dict, th: dict) -> dict:
    """τ = 1 against the best τ in both arms, judged only where the control arm resolves a τ effect."""
    tau, widths = f"{th['tau']:g}", block["tau_sweep"]["widths"]
    name, expected = f"τ = {tau} as good as the best τ", "the default threshold costs nothing, also where τ matters"
    criterion = (f"at every sweep width and in both arms, loss(τ = {tau}) − min over τ ≤ the honest significant "
                 f"difference (Tukey, {th['tau_test_level']:.0%}); judged only where the control arm's best and worst τ "
                 "differ by more than it (else inconclusive)")
    control_best = sweep_rows(best, block)
    control_edge = control_best[control_best.arm.eq("control") & control_best.on_edge]
    have = {(a, w) for a, w in zip(effects.arm, effects.width)}
    missing = [f"{a} d{w}" for a in ARMS for w in widths if (a, w) not in have]
    shown = "; ".join(f"{r.arm} d{r.width}: τ={tau} − best = {r.gap:+.4f}, worst − best = {r.range:.4f} (HSD {r.hsd:.4f})"
                      for r in effects.itertuples())
    worse = effects[effects.tau1_worse & effects.complete]
    control = effects[effects.arm == "control"]
    if len(worse):
        status = "not_reproduced"
    elif missing or not effects.complete.all() or effects.hsd.isna().any():
        status, shown = "inconclusive", shown + "; τ sweep incomplete: " + (", ".join(missing) or "some τ or seed missing")
    elif len(control_edge):
        status, shown = "inconclusive", shown + "; the control's best LR is on its grid's edge at d" + \
            ", d".join(str(w) for w in control_edge.width)
    elif not control.resolved.all():
        status, shown = "inconclusive", shown + "; the control resolves no τ effect at d" + \
            ", d".join(str(w) for w in control[~control.resolved].width) + " (no power)"
    else:
        status = "reproduced"
    return sub_claim(name, status, expected, shown or "no τ sweep", criterion)


# ------------------------------------------------------------------ the norm lines (settled sizes only)


def size_label(r) -> str:
    return f"{r.init} d{r.width}×{r.depth}"


def unsettled_note(sizes: pd.DataFrame) -> str:
    bad = sizes[~sizes.settled.astype(bool)]
    return "" if bad.empty else "; not settled: " + ", ".join(f"{size_label(r)} (drift {r.drift:+.0%})" for r in bad.itertuples())


def band_line(sizes: pd.DataFrame, th: dict) -> dict:
    lo, hi = th["median_band"]
    settled = sizes[sizes.settled.astype(bool)]
    out = ~settled.late_median.between(lo, hi)
    status = "not_reproduced" if out.any() else ("inconclusive" if len(settled) < len(sizes) else "reproduced")
    return sub_claim(f"late-phase median norm in [{lo:g}, {hi:g}]", status, "Su: the norm settles at or below about 1",
                     "medians " + ", ".join(f"{size_label(r)}: {r.late_median:.3g}" for r in sizes.itertuples()) + unsettled_note(sizes),
                     f"every settled size's late median in [{lo:g}, {hi:g}]; inconclusive while a size has not settled "
                     f"(|late / reference median − 1| > {th['settle_drift_max']:.0%})")


def width_lines(sizes: pd.DataFrame, block: dict, th: dict) -> list[dict]:
    lines = []
    for init, g in sizes[sizes.depth == block["base"]["n_layers"]].groupby("init"):
        ratio, alpha = g.late_median.max() / g.late_median.min(), slope(g.width, g.late_median)
        if not g.settled.astype(bool).all():
            status = "inconclusive"
        elif abs(alpha) > th["alpha_max"]:
            status = "not_reproduced"
        else:
            status = "reproduced" if ratio <= th["max_width_ratio"] else "partially_reproduced"
        lines.append(sub_claim(f"no width trend ({init})", status, "independent of parameter count",
                               f"max/min {ratio:.2f} over widths {g.width.min()}–{g.width.max()}; fitted α = {alpha:+.2f}"
                               + unsettled_note(g),
                               f"every width settled, ratio ≤ {th['max_width_ratio']:g}; not reproduced if |α| > {th['alpha_max']:g}"))
    return lines


def clipped_line(sizes: pd.DataFrame, th: dict) -> dict:
    settled = sizes[sizes.settled.astype(bool)]
    worst = settled.late_clipped.max() if len(settled) else math.nan
    if worst > th["late_clipped_most"]:
        status = "not_reproduced"
    elif worst > th["late_clipped_max"]:
        status = "partially_reproduced"
    else:
        status = "inconclusive" if len(settled) < len(sizes) else "reproduced"
    return sub_claim(f"few late steps above τ = {th['tau']:g}", status, f"τ = {th['tau']:g} separates normal from abnormal steps",
                     f"largest late fraction of settled sizes {worst:.0%}; early fractions "
                     f"{sizes.early_clipped.min():.0%}–{sizes.early_clipped.max():.0%}" + unsettled_note(sizes),
                     f"≤ {th['late_clipped_max']:.0%} at every settled size; not reproduced above {th['late_clipped_most']:.0%}")


# ------------------------------------------------------------------ the corollary η ∝ N^−0.5


def batched_optimum(x: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """``interpolated_optimum`` (optclaims.analysis) of every row of ``losses`` (draws × grid, over
    the sorted grid ``x``) at once: the vertex of the parabola through the best point and its
    neighbours, kept within one grid step; the grid's best point on the edge, beside a non-finite
    neighbour or where the parabola opens downward; NaN where no loss is finite."""
    y = np.where(np.isfinite(losses), losses, np.inf)
    rows, n = np.arange(len(y)), len(x)
    i = np.argmin(y, axis=1)
    j = np.clip(i, 1, n - 2) if n >= 3 else i
    if n < 3:
        return np.where(np.isfinite(y).any(axis=1), x[i], np.nan)
    (x0, x1, x2), (y0, y1, y2) = (x[j - 1], x[j], x[j + 1]), (y[rows, j - 1], y[rows, j], y[rows, j + 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2 ** 2 * (y0 - y1) + x1 ** 2 * (y2 - y0) + x0 ** 2 * (y1 - y2)) / denom
        vertex = np.clip(np.where(a > 0, -b / (2 * a), x1), x0, x2)
    interior = (i > 0) & (i < n - 1) & np.isfinite(y0) & np.isfinite(y1) & np.isfinite(y2)
    out = np.where(interior, vertex, x[i])
    return np.where(np.isfinite(y).any(axis=1), out, np.nan)


def lr_exponent(sp: pd.DataFrame, sigma: float, level: float) -> tuple[float, float, float]:
    """(exponent, low, high): the least-squares slope of the interpolated best log2 LR against log2 N,
    and its ``level`` percentile interval from redrawing every grid loss with noise ``sigma`` and
    fitting again (a parametric bootstrap of the LR-grid fits)."""
    x = np.log2(sp.n_hidden.to_numpy(float))
    estimate = float(np.polyfit(x, sp.optimum_log2_lr.to_numpy(float), 1)[0])
    if not (np.isfinite(sigma) and sigma > 0):
        return estimate, math.nan, math.nan
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    optima = np.stack([batched_optimum(gx, gy + rng.normal(0.0, sigma, (BOOTSTRAP_DRAWS, len(gy))))
                       for gx, gy in sp.grid], axis=1)  # draws × widths
    centred = x - x.mean()
    slopes = (optima - optima.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(slopes, [tail, 100 - tail])
    return estimate, float(low), float(high)


def corollary_line(best: pd.DataFrame, sigma: float, block: dict, th: dict) -> tuple[dict | None, tuple]:
    sp = best[(best.arm == "adam") & (best.init == "sp") & (best.depth == block["base"]["n_layers"])].sort_values("width")
    if len(sp) < 2:
        return None, (math.nan,) * 3
    a, b = th["lr_exponent_band"]
    estimate, low, high = lr_exponent(sp, sigma, th["lr_exponent_level"])
    if sp.on_edge.any() or not np.isfinite(low):
        status = "inconclusive"
    elif a <= low and high <= b:
        status = "reproduced"
    elif high < a or low > b:
        status = "not_reproduced"
    else:
        status = "inconclusive"
    edge = " (a width's optimum on its grid's edge)" if sp.on_edge.any() else ""
    no_noise = " (no seed noise to bound the fits)" if not np.isfinite(low) else ""
    line = sub_claim("corollary: best Adam LR ∝ N^−0.5 (SP)", status, "Su: η ∝ 1/√N",
                     f"fitted exponent {estimate:+.3f} [{low:+.3f}, {high:+.3f}] over hidden N = "
                     f"{int(sp.n_hidden.min()):,}–{int(sp.n_hidden.max()):,}{edge}{no_noise}",
                     f"the {th['lr_exponent_level']:.0%} interval within [{a:g}, {b:g}]; not reproduced if wholly outside")
    return line, (estimate, low, high)


# ------------------------------------------------------------------ verdict


def judge(df: pd.DataFrame, block: dict, th: dict) -> dict:
    """Everything the verdict says, without figures: status, reason, sub-claims and the frames."""
    best = best_runs(df, block)
    sizes = best[best.arm == "adam"]
    taus = tau_table(df, best, block)
    effects = tau_effects(taus, block, th)
    adam_taus = taus[taus.arm == "adam"]
    sigma = pooled_seed_sigma(adam_taus, ["width", "tau_label"]) if len(adam_taus) else math.nan
    # the grid points of an LR sweep share a seed (init and data order): their noise is the paired one
    paired = effects.loc[effects.arm == "adam", "sigma"]
    paired_sigma = float(paired.iloc[0]) if len(paired) else math.nan
    corollary, exponent = corollary_line(best, paired_sigma, block, th)
    out = {"best": best, "sizes": sizes, "taus": taus, "effects": effects, "sigma": sigma, "paired_sigma": paired_sigma,
           "exponent": exponent}
    if sizes.empty:
        return {**out, "status": "inconclusive", "reason": "no sweep runs", "subs": []}

    core = [band_line(sizes, th), *width_lines(sizes, block, th), clipped_line(sizes, th), tau_line(effects, best, block, th)]
    subs = core + ([corollary] if corollary else [])
    problems = []
    if sizes.on_edge.any():
        problems.append("best LR on the grid's edge at " + ", ".join(size_label(r) for r in sizes[sizes.on_edge].itertuples()))
    if sizes.all_diverged.any():
        problems.append("every run diverged at some size")
    if taus.empty or taus.tau.notna().sum() == 0:
        problems.append("no τ sweep")
    status, reason = overall(core, problems, th)
    return {**out, "status": status, "reason": reason, "subs": subs}


def overall(core: list[dict], problems: list[str], th: dict) -> tuple[str, str]:
    by_name = {s["name"]: s["status"] for s in core}
    if problems:
        return "inconclusive", "; ".join(problems)
    trend_fails = any(n.startswith("no width trend") and s == "not_reproduced" for n, s in by_name.items())
    if trend_fails:
        return "not_reproduced", f"the settled late median scales with width (|α| > {th['alpha_max']:g})"
    if by_name[f"few late steps above τ = {th['tau']:g}"] == "not_reproduced":
        return "not_reproduced", f"τ = {th['tau']:g} clips most late steps: a normaliser, not a threshold"
    failing = [n for n, s in by_name.items() if s in ("not_reproduced", "partially_reproduced")]
    if failing:
        return "partially_reproduced", "not all of: " + "; ".join(failing)
    open_lines = [n for n, s in by_name.items() if s == "inconclusive"]
    if open_lines:
        return "inconclusive", "could not judge: " + "; ".join(open_lines)
    lo, hi = th["median_band"]
    return "reproduced", (f"the settled late norm sits in [{lo:g}, {hi:g}] at every size without a width trend, and "
                          f"τ = {th['tau']:g} is as good as any τ, also in a control arm where τ matters")


# ------------------------------------------------------------------ figures


def plot_norms(ctx, runs, best: pd.DataFrame, block: dict, th: dict) -> None:
    by_id = {r.run_id: r for r in runs}
    panels = [("adam", init) for init in sorted(best[best.arm == "adam"].init.unique())]
    panels += [("control", "sp")] if (best.arm == "control").any() else []
    steps = block["base"]["steps"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.3), squeeze=False, sharey=True,
                             constrained_layout=True)
    for ax, (arm, init) in zip(axes[0], panels):
        rows = best[(best.arm == arm) & (best.init == init)].sort_values(["depth", "width"])
        for color, r in zip(sequential(range(len(rows))).values(), rows.itertuples()):
            if r.run_id in by_id:
                m = by_id[r.run_id].metrics
                ax.plot(m.step, m.grad_norm, color=color, lw=0.9, ls="-" if r.settled else ":",
                        label=f"d{r.width}×{r.depth}" + ("" if r.settled else " (not settled)"))
        ax.axvspan(th["settle_from"] * steps, th["late_from"] * steps, color="0.5", alpha=0.08)
        ax.axvspan(th["late_from"] * steps, steps, color=COLORS[9], alpha=0.08)
        reference_line(ax, th["tau"])
        title = f"{init.upper()} Adam" if arm == "adam" else "SGD control"
        ax.set(yscale="log", title=f"{title}, each size at its best LR", xlabel=axis_label("step", STEPS),
               ylabel=axis_label("pre-clip global gradient norm", NORM) if ax is axes[0][0] else "")
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "norms", "Pre-clip global gradient norm (as clip_grad_norm_ computes it) at every step, each size "
                    f"at its own best LR, no clipping. Grey: the settling reference (after {th['settle_from']:.0%} of training), "
                    f"blue: the late phase (after {th['late_from']:.0%}); a size has settled if its late median is within "
                    f"{th['settle_drift_max']:.0%} of its reference median (dotted: not settled); dashed: τ = {th['tau']:g}.")
    plt.close(fig)


def plot_medians(ctx, sizes: pd.DataFrame, block: dict, th: dict) -> None:
    base_depth = block["base"]["n_layers"]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.2), constrained_layout=True)
    for ax, (col, sub) in zip(axes, (("width", sizes[sizes.depth == base_depth]),
                                     ("depth", sizes[sizes.width == block["depths"]["width"]]))):
        for init, g in sub.groupby("init"):
            g, color = g.sort_values(col), style(init).color
            ax.errorbar(g[col], g.late_median, yerr=[g.late_median - g.late_p10, g.late_p90 - g.late_median],
                        marker=style(init).marker, capsize=3, color=color, label=init)
            open_ = g[~g.settled.astype(bool)]
            ax.scatter(open_[col], open_.late_median, s=70, marker=style(init).marker, facecolors="white",
                       edgecolors=color, zorder=3)
        reference_band(ax, *th["median_band"])
        reference_line(ax, th["tau"])
        ax.set(xscale="log", yscale="log", xlabel=axis_label(col, DIMENSIONS if col == "width" else LAYERS),
               ylabel=axis_label("late-phase median norm, 10–90%", NORM))
        ax.set_xticks(sorted(sub[col].unique()), [str(v) for v in sorted(sub[col].unique())])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    lo, hi = th["median_band"]
    ctx.save_figure(fig, "medians", f"Median pre-clip norm over the late phase (after {th['late_from']:.0%} of training) "
                    f"against width (left) and depth (right), with its 10–90% range; hollow: not settled; grey band: "
                    f"[{lo:g}, {hi:g}]; dashed: τ = {th['tau']:g}.")
    plt.close(fig)


def tau_order(labels) -> list[str]:
    return sorted(set(labels), key=lambda t: math.inf if t == "none" else float(t))


def plot_taus(ctx, taus: pd.DataFrame, effects: pd.DataFrame, th: dict) -> None:
    if taus.empty:
        return
    arms = [a for a in ARMS if (taus.arm == a).any()]
    fig, axes = plt.subplots(1, len(arms), figsize=(4.8 * len(arms), 3.2), squeeze=False, constrained_layout=True)
    order = tau_order(taus.tau_label)
    for ax, arm in zip(axes[0], arms):
        d = taus[taus.arm == arm].copy()
        best = d.groupby(["width", "tau_label"]).final_val_loss.mean().groupby(level=0).min()
        d["above_best"] = d.final_val_loss - d.width.map(best)
        sns.pointplot(data=d, x="tau_label", y="above_best", hue="width", order=order, errorbar=("pi", 100), dodge=0.2,
                      palette=sequential(sorted(d.width.unique())), ax=ax)
        hsd = effects.loc[effects.arm == arm, "hsd"]
        if len(hsd) and np.isfinite(hsd.iloc[0]):
            ax.axhline(hsd.iloc[0], color="0.3", ls="--", lw=1, label="HSD")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(xlabel=axis_label("clip threshold τ", NORM), ylabel=axis_label("final val loss − best τ's", NATS),
               title="AdamW" if arm == "adam" else "SGD control")
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "tau_sweep", "Final validation loss above the best τ's, against the clipping threshold τ at two "
                    "widths, each arm at its best unclipped LR (mean and range over seeds); dashed: Tukey's honest "
                    f"significant difference at {th['tau_test_level']:.0%} from the paired seed noise of the arm.")
    plt.close(fig)


def plot_lr_vs_params(ctx, best: pd.DataFrame, block: dict, th: dict, exponent: tuple) -> None:
    sub = best[(best.arm == "adam") & (best.depth == block["base"]["n_layers"])]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for init, g in sub.groupby("init"):
        g = g.sort_values("width")
        ax.plot(np.log2(g.n_hidden.astype(float)), g.optimum_log2_lr, "-", **style(init).kwargs() | {"label": init})
    ref = sub[sub.init == "sp"]
    a, b = th["lr_exponent_band"]
    if len(ref) > 1:
        x = np.log2(ref.n_hidden.astype(float).to_numpy())
        x0, y0 = x.mean(), ref.optimum_log2_lr.mean()
        ends = np.array([x.min(), x.max()])
        ax.plot(ends, y0 + (a + b) / 2 * (ends - x0), "--", color=REFERENCE_COLOR, lw=1, label=f"∝ N^{(a + b) / 2:g} (Su)")
        ax.fill_between(ends, y0 + a * (ends - x0), y0 + b * (ends - x0), color=BAND_COLOR, alpha=BAND_ALPHA, lw=0,
                        label=f"band [{a:g}, {b:g}]")
    estimate, low, high = exponent
    ax.set(xlabel=axis_label("hidden-matrix parameters N", f"{LOG2} of parameters"), ylabel=axis_label("best learning rate", LOG2),
           title=f"SP exponent {estimate:+.2f} [{low:+.2f}, {high:+.2f}]" if np.isfinite(estimate) else None)
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "lr_vs_params", "Best Adam learning rate (interpolated) against the hidden-matrix parameter count "
                    "L·(4d² + 2·d·d_mlp) over the width sweep; dashed: Su's exponent through the SP points' centre, grey: the "
                    f"band [{a:g}, {b:g}]; title: the SP exponent with its {th['lr_exponent_level']:.0%} bootstrap interval.")
    plt.close(fig)


# ------------------------------------------------------------------ analysis


def measurements(j: dict, block: dict) -> dict:
    sizes, effects = j["sizes"], j["effects"]
    meas = {}
    for init, g in sizes[sizes.depth == block["base"]["n_layers"]].groupby("init"):
        meas[f"late median norm over widths, {init}"] = measured(g.late_median.median(), g.late_median.min(),
                                                                 g.late_median.max(), note="median [min, max] over widths")
        meas[f"width exponent α of the late median, {init}"] = measured(slope(g.width, g.late_median))
    control = j["best"][j["best"].arm == "control"]
    if len(control):
        meas["late median norm of the SGD control"] = measured(control.late_median.median(), control.late_median.min(),
                                                               control.late_median.max(), note="median [min, max] over widths")
    meas["norm at initialisation"] = measured(sizes.norm_init.median(), sizes.norm_init.min(), sizes.norm_init.max(),
                                              note="median [min, max] over sizes")
    meas["late-median drift from the settling reference"] = measured(sizes.drift.abs().max(), note="largest |drift| over sizes")
    meas["late steps above τ (largest)"] = measured(sizes.late_clipped.max(), unit="fraction")
    meas["σ_seed of the Adam τ sweep"] = measured(j["sigma"], unit="nats/token", note="unpaired, pooled over (width, τ)")
    meas["paired seed noise of the Adam τ sweep"] = measured(j["paired_sigma"], unit="nats/token",
                                                             note="residual of τ effect + seed effect")
    for r in effects.itertuples():
        meas[f"τ range (worst − best), {r.arm} d{r.width}"] = measured(r.range, unit="nats/token",
                                                                       note=f"HSD {r.hsd:.4g}" if np.isfinite(r.hsd) else None)
    estimate, low, high = j["exponent"]
    meas["exponent of the best SP LR against hidden N"] = measured(estimate, low, high, note="parametric bootstrap")
    return meas


def analyze(ctx):
    th, block = ctx.thresholds, ctx.scale_spec
    df = runs_frame(ctx.runs, th)
    j = judge(df, block, th)
    best, sizes, taus = j["best"], j["sizes"], j["taus"]

    plot_norms(ctx, ctx.runs, best, block, th)
    plot_medians(ctx, sizes, block, th)
    plot_taus(ctx, taus, j["effects"], th)
    plot_lr_vs_params(ctx, best, block, th, j["exponent"])
    notes = [f"{len(df)} runs ({(df.status != 'ok').sum()} diverged); sizes: " + ", ".join(
        f"{r.arm} {size_label(r)} at lr 2^{r.optimum_log2_lr:.1f}{' (edge)' if r.on_edge else ''}" for r in best.itertuples()),
        "the sweep runs do not clip: 'above τ' counts the steps a threshold τ would have clipped",
        "corollary N: hidden matrices only (attention and MLP weights of every block), embeddings, readout and gains excluded"]
    df.drop(columns="cfg").to_csv(ctx.out_dir / "runs.csv", index=False)
    if not taus.empty:
        taus.drop(columns="cfg").to_csv(ctx.out_dir / "tau_sweep.csv", index=False)
    columns = ["arm", "init", "width", "depth", "lr", "optimum_log2_lr", "on_edge", "n_hidden", "final_val_loss",
               "norm_init", "ref_median", "late_median", "drift", "settled", "late_p10", "late_p90", "early_clipped",
               "late_clipped"]
    table = best[[c for c in columns if c in best]]
    verdict = ctx.verdict(j["status"], measurements(j, block), j["reason"] + ".", j["subs"], notes)
    return verdict, table.sort_values(["arm", "init", "depth", "width"])
