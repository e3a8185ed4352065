"""adam_update_rms: is AdamW's update RMS ≈ √((1−β1)/(1+β1)) ≈ 0.2 after warm-up, at every size?

Three views of the same number (kexue.fm/archives/11267):
  theory      mean field, Eq. 7: RMS ≈ √((SNR + k)/(SNR + 1)), k = (1−β1)/(1+β1), no β2 in it;
  simulation  Adam on g = μ + N(0, 1) noise, no bias correction, ε = 0 (as in the post);
  runs        the RMS of u = m̂/(√v̂+ε) read from AdamW's state during real training: a β grid at
              one size, and the width sweep another claim already trains (``size_sweep``), read at
              each width's best LR.
The verdict compares the runs with the thresholds in claim.yaml, written before the runs.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from optclaims.analysis import interpolated_optimum, measured, sub_claim
from optclaims.claims import grid_runs, load_claim, load_claim_module
from optclaims.errors import ConfigError
from optclaims.plotting import (DIMENSIONLESS, DIMENSIONS, LOG2, STEPS, REFERENCE_COLOR, axis_label, markers, plt,
                                reference_band, reference_line, sequential, sns, style)

REPRO_DIR = Path(__file__).resolve().parents[1]
SIZE_SWEEP_KEYS = {"claim", "scale", "only"}

# ------------------------------------------------------------------ plan


def plan_runs(block: dict) -> list[dict]:
    """The β grid (base × grid × seeds) and the width sweep named by ``size_sweep``."""
    return grid_runs(block) + size_sweep_runs(block.get("size_sweep"))


def evaluated_runs(block: dict) -> list[dict]:
    """The runs lm-eval scores for this claim: its β grid. The width sweep is the other claim's
    (which reads no lm-eval), and scoring it would cost more than the rest of the claim."""
    return grid_runs(block)


def size_sweep_runs(sweep: dict | None, repro_dir: Path = REPRO_DIR) -> list[dict]:
    """The width sweep another claim already trains: that claim's own plan at the named scale, kept
    to its AdamW runs at base depth that record no activations (its LR grid per width and
    initialisation), narrowed by ``only`` (field → allowed values; ``log2_lr`` for the LR). The
    fields are that claim's, unchanged, so both claims ask for the same run_ids."""
    if not sweep:
        return []
    check_size_sweep(sweep)
    source = load_claim(sweep["claim"], repro_dir)
    if sweep["scale"] not in source["scales"]:
        raise ConfigError(f"size_sweep: scale = {sweep['scale']!r} is not a scale of claim {sweep['claim']!r}")
    block = source["scales"][sweep["scale"]]
    module = load_claim_module(sweep["claim"], repro_dir)
    planned = module.plan_runs(block) if hasattr(module, "plan_runs") else grid_runs(block)
    depth = block.get("base", {}).get("n_layers")
    runs = [f for f in planned if f.get("optimizer", "adamw") == "adamw" and not f.get("activation_steps")
            and f.get("n_layers", depth) == depth]
    for key, allowed in (sweep.get("only") or {}).items():
        runs = [f for f in runs if field_value(f, key) in allowed]
        if not runs:
            raise ConfigError(f"size_sweep.only: {key} = {json.dumps(allowed)} leaves no run of claim "
                              f"{sweep['claim']!r}'s width sweep at scale {sweep['scale']!r}")
    if not runs:
        raise ConfigError(f"size_sweep: claim {sweep['claim']!r} plans no AdamW run at scale {sweep['scale']!r}")
    return runs


def check_size_sweep(sweep: dict) -> None:
    if not isinstance(sweep, dict):
        raise ConfigError(f"size_sweep = {json.dumps(sweep)} must be a mapping with claim and scale")
    for key in sorted(set(sweep) - SIZE_SWEEP_KEYS):
        raise ConfigError(f"size_sweep: unknown key {key!r} (known: {', '.join(sorted(SIZE_SWEEP_KEYS))})")
    for key in ("claim", "scale"):
        if not isinstance(sweep.get(key), str):
            raise ConfigError(f"size_sweep: {key} = {json.dumps(sweep.get(key))} must name a {key}")
    only = sweep.get("only") or {}
    if not isinstance(only, dict) or not all(isinstance(v, list) for v in only.values()):
        raise ConfigError(f"size_sweep.only = {json.dumps(only)} must map run fields to lists of values")


def field_value(fields: dict, key: str):
    return math.log2(fields["lr"]) if key == "log2_lr" else fields.get(key)


def in_beta_grid(runs, block: dict) -> list[bool]:
    """Which runs are the β grid's (base × grid × seeds) rather than the width sweep's: a run is the
    grid's if it agrees with one of the grid's planned field sets on every field that differs
    between the claim's runs (a field equal in every run, e.g. pinned by run_overrides, tells
    nothing)."""
    planned = grid_runs(block)
    keys = {k for f in planned for k in f}
    varying = {k for k in keys if len({json.dumps(r.config.get(k)) for r in runs}) > 1}
    return [any(all(r.config.get(k) == f[k] for k in varying & f.keys()) for f in planned) for r in runs]


# ------------------------------------------------------------------ theory and simulation


def mean_field_rms(beta1, snr=0.0):
    """Eq. 7 of the post: the update RMS at signal-to-noise ratio ‖μ‖²/‖σ‖²."""
    k = (1 - np.asarray(beta1, dtype=float)) / (1 + np.asarray(beta1, dtype=float))
    return np.sqrt((snr + k) / (snr + 1))


def implied_snr(rms, beta1):
    """Eq. 9, the inverse of Eq. 7: SNR ≈ (RMS² − k)/(1 − RMS²)."""
    k = (1 - beta1) / (1 + beta1)
    return (rms**2 - k) / (1 - rms**2)


def simulate_rms(beta1s, beta2s, snrs, n_coords: int, steps: int, seed: int = 0, tail: int = 200) -> pd.DataFrame:
    """Adam's update RMS on i.i.d. gradients g = √SNR + N(0, 1) per coordinate; every (β1, β2) pair
    sees the same gradient stream. RMS averaged over the last ``tail`` steps."""
    pairs = np.array(list(itertools.product(beta1s, beta2s)))
    b1, b2 = pairs[:, :1], pairs[:, 1:]
    rows = []
    for snr in snrs:
        rng = np.random.default_rng([seed, int(round(snr * 1000))])
        m = np.zeros((len(pairs), n_coords))
        v = np.zeros((len(pairs), n_coords))
        acc = np.zeros(len(pairs))
        for t in range(steps):
            g = np.sqrt(snr) + rng.standard_normal(n_coords)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            if t >= steps - tail:
                acc += np.sqrt(np.mean(m * m / v, axis=1))
        for (beta1, beta2), rms in zip(pairs, acc / tail):
            rows.append({"beta1": beta1, "beta2": beta2, "snr": snr, "simulated_rms": rms,
                         "mean_field_rms": float(mean_field_rms(beta1, snr))})
    df = pd.DataFrame(rows)
    df["relative_error"] = df.simulated_rms / df.mean_field_rms - 1
    return df


# ------------------------------------------------------------------ run tables


def steady_state(run, steady_from: float) -> pd.DataFrame:
    """Logged update-RMS values after warm-up and after ``steady_from`` of training, per group."""
    m = run.metrics
    start = max(run.config["warmup_steps"], steady_from * run.config["steps"])
    cols = [c for c in m.columns if c.startswith("update_rms_")]
    return m.loc[(m.step > start), cols].dropna(how="all")


def run_row(run, th: dict) -> dict:
    c = run.config
    row = {"run_id": run.run_id, "beta1": c["beta1"], "beta2": c["beta2"], "seed": c["seed"], "eps": c["eps"],
           "steps": c["steps"], "parametrization": c["parametrization"], "width": c["d_model"],
           "log2_lr": math.log2(c["lr"]), "status": run.summary["status"],
           "mean_field_rms": float(mean_field_rms(c["beta1"]))}
    steady = steady_state(run, th["steady_from"]) if not run.diverged else pd.DataFrame()
    if "update_rms_hidden" in steady and steady.update_rms_hidden.notna().any():
        for col in steady.columns:
            row[col.replace("update_rms_", "rms_")] = steady[col].mean()
        row["rms_hidden_p05"] = steady["update_rms_hidden"].quantile(0.05)
        row["rms_hidden_p95"] = steady["update_rms_hidden"].quantile(0.95)
        row["n_logged_steps"] = len(steady)
        row["implied_snr"] = implied_snr(row["rms_hidden"], c["beta1"])
    else:
        row["rms_hidden"] = math.nan
    row["final_val_loss"] = run.final_val_loss
    return row


def run_table(runs, th: dict, order=("beta1", "beta2", "seed")) -> pd.DataFrame:
    columns = ["run_id", "beta1", "beta2", "seed", "status", "rms_hidden", "final_val_loss"]
    if not runs:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame([run_row(r, th) for r in runs]).sort_values(list(order)).reset_index(drop=True)


# ------------------------------------------------------------------ the β grid at one size


def rms_at(table: pd.DataFrame, beta1: float, beta2: float) -> dict:
    """Mean over seeds, with the 5–95% range of logged steady-state steps pooled over seeds."""
    sel = table[np.isclose(table.beta1, beta1) & np.isclose(table.beta2, beta2) & (table.status == "ok")]
    if sel.empty or sel.rms_hidden.isna().all():
        return measured(float("nan"))
    return measured(sel.rms_hidden.mean(), sel.rms_hidden_p05.min(), sel.rms_hidden_p95.max(),
                    note="5–95% of logged steady-state steps")


def decide(table: pd.DataFrame, th: dict) -> tuple[str, dict, list[str]]:
    """The headline verdict at one size from the thresholds in claim.yaml."""
    b1_ref, b2_ref = th["reference"]
    targets = {float(k): v for k, v in th["beta1_targets"].items()}
    ref = rms_at(table, b1_ref, b2_ref)
    per_b1 = {b1: rms_at(table, b1, b2_ref)["value"] for b1 in sorted(targets)}
    meas = {f"RMS at (β1, β2) = ({b1_ref}, {b2_ref})": ref}
    for b1, v in per_b1.items():
        meas[f"RMS at β1 = {b1}, β2 = {b2_ref} (expected {targets[b1]})"] = measured(v)
    if ref["value"] is None or any(v is None or not np.isfinite(v) for v in per_b1.values()):
        return "inconclusive", meas, ["a run the verdict needs is missing or diverged"]

    r = ref["value"]
    values = [per_b1[b] for b in sorted(per_b1)]
    ordered = all(a > b for a, b in zip(values, values[1:]))
    within = {b: abs(per_b1[b] / t - 1) <= th["beta1_tolerance"] for b, t in targets.items()}
    lo, hi = th["reproduced_band"]
    rlo, rhi = th["refuted_band"]
    reasons = [f"RMS at ({b1_ref}, {b2_ref}) = {r:.3f} ({'inside' if lo <= r <= hi else 'outside'} [{lo}, {hi}])",
               f"β1 ordering {'holds' if ordered else 'fails'}: " + " > ".join(f"{v:.3f}" for v in values),
               "within ±{:.0%} of target: ".format(th["beta1_tolerance"]) + ", ".join(f"β1={b}: {'yes' if ok else 'no'}" for b, ok in within.items())]
    if lo <= r <= hi and ordered and all(within.values()):
        return "reproduced", meas, reasons
    if not (rlo <= r <= rhi) or not ordered:
        return "not_reproduced", meas, reasons
    return "partially_reproduced", meas, reasons


def with_size_line(status: str, size_status: str) -> str:
    """The claim says every size: a size line that fails caps a reproduced headline."""
    return "partially_reproduced" if status == "reproduced" and size_status == "not_reproduced" else status


def beta2_subclaim(table: pd.DataFrame, th: dict) -> dict:
    b2_ref = th["reference"][1]
    ratios = {}
    for b1 in sorted(table.beta1.unique()):
        base = rms_at(table, b1, b2_ref)["value"]
        for b2 in sorted(table.beta2.unique()):
            if b2 != b2_ref and base:
                other = rms_at(table, b1, b2)["value"]
                ratios[f"β1={b1}: RMS(β2={b2})/RMS(β2={b2_ref})"] = None if other is None else other / base
    # the mean field needs t ≫ 1/(1−β2): shorter runs still carry v's start (kexue.fm/archives/11267)
    needed = {b2: round(th["beta2_horizon"] / (1 - b2), 6) for b2 in table.beta2.unique()}  # 5/(1−0.999) ≠ 5000 in floats
    short = {b2: n for b2, n in needed.items() if (table[np.isclose(table.beta2, b2)].steps < n).any()}
    measured_text = ", ".join(f"{k} = {v:.3f}" if v is not None else f"{k} = n/a" for k, v in ratios.items())
    if short:
        status = "inconclusive"
        measured_text += "; out of scope at this scale: " + ", ".join(
            f"β2 = {b2} needs ≥ {n:,.0f} steps, runs have {int(table[np.isclose(table.beta2, b2)].steps.min()):,}"
            for b2, n in sorted(short.items()))
    elif not ratios or any(v is None for v in ratios.values()):
        status = "inconclusive"
    else:
        status = "reproduced" if all(abs(v - 1) <= th["beta2_tolerance"] for v in ratios.values()) else "not_reproduced"
    return sub_claim("update RMS independent of β2", status, f"ratio within 1 ± {th['beta2_tolerance']}", measured_text,
                     f"at every β1, RMS at each other β2 within ±{th['beta2_tolerance']:.0%} of RMS at β2 = {b2_ref}, "
                     f"judged only for runs of ≥ {th['beta2_horizon']:g}/(1−β2) steps")


def simulation_subclaim(sim: pd.DataFrame, th: dict) -> dict:
    min_b1, min_b2 = th["simulation_min_beta1"], th["simulation_min_beta2"]
    sel = sim[(sim.snr == 0) & (sim.beta2 >= min_b2) & (sim.beta1 >= min_b1)]
    worst_at = sel.loc[sel.relative_error.abs().idxmax()]
    worst = abs(worst_at.relative_error)
    return sub_claim("Gaussian simulation matches the mean field (zero signal)",
                     "reproduced" if worst <= th["simulation_tolerance"] else "not_reproduced",
                     f"|sim/MF − 1| ≤ {th['simulation_tolerance']:.0%}",
                     f"worst relative error {worst:.2%} over β1 ≥ {min_b1:g}, β2 ≥ {min_b2:g} "
                     f"(largest at β1={worst_at.beta1:g}, β2={worst_at.beta2:g})",
                     f"zero signal, β2 ≥ {min_b2:g}, every β1 ≥ {min_b1:g}")


# ------------------------------------------------------------------ the width sweep


def best_per_width(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per initialisation and width: the RMS at the best LR, read at the vertex of the parabola
    through the grid's best point by final validation loss (diverged = ∞) and its two neighbours
    (``interpolated_optimum``), ln RMS interpolated linearly in log2 LR between the grid runs
    around it, since the RMS moves with the LR; ``tuned`` is false where the best LR lies on the
    grid's edge or every run diverged."""
    rows = []
    for (init, width), g in sweep.groupby(["parametrization", "width"]):
        g = per_lr(g)
        loss = g.final_val_loss.astype(float).to_numpy()
        grid_best, vertex, edge = interpolated_optimum(g.log2_lr.to_numpy(float), loss)
        row = {"parametrization": init, "width": width, "best_grid_log2_lr": grid_best, "log2_lr": vertex,
               "rms_hidden": math.nan, "final_val_loss": float(np.min(loss)) if len(loss) else math.inf,
               "run_id": None, "tuned": False, "why": "every run diverged"}
        if np.isfinite(grid_best):
            best = g[g.log2_lr == grid_best].iloc[0]
            read = g[np.isfinite(g.rms_hidden.astype(float)) & (g.rms_hidden > 0)]
            rms = float(np.exp(np.interp(vertex, read.log2_lr, np.log(read.rms_hidden)))) if len(read) else math.nan
            row.update(rms_hidden=rms, run_id=best.run_id, tuned=bool(not edge and np.isfinite(rms)),
                       why="best LR on the grid's edge" if edge else ("" if np.isfinite(rms) else "no update RMS logged"))
        rows.append(row)
    columns = ["parametrization", "width", "best_grid_log2_lr", "log2_lr", "rms_hidden", "final_val_loss", "run_id", "tuned", "why"]
    return pd.DataFrame(rows, columns=columns)


def per_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per LR of a width's grid: the mean over seeds of the final loss (∞ if a seed
    diverged) and of ln RMS, and the first seed's run_id."""
    runs = runs.assign(ln_rms=np.log(runs.rms_hidden.astype(float).where(runs.rms_hidden > 0)))
    out = runs.groupby("log2_lr", as_index=False).agg(final_val_loss=("final_val_loss", "mean"), ln_rms=("ln_rms", "mean"),
                                                      run_id=("run_id", "first"))
    return out.assign(rms_hidden=np.exp(out.ln_rms)).sort_values("log2_lr")


def size_exponents(best: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per initialisation, α of RMS ∝ width^α over its tuned widths: least squares of ln RMS on
    ln width, a slope and intercept per initialisation and one residual variance (a reading
    scatters by the protocol, mostly the LR optimum's error times the RMS's slope in LR, alike for
    both), with Student's t interval at ``level``; NaN where an initialisation has fewer than two
    widths or no residual is left."""
    from scipy import stats

    fits, ssr, dof = {}, 0.0, 0
    for init, g in best.groupby("parametrization"):
        g = g[g.tuned & (g.rms_hidden > 0)]
        fits[init] = {"parametrization": init, "n_widths": len(g), "alpha": math.nan, "intercept": math.nan,
                      "low": math.nan, "high": math.nan, "sxx": math.nan}
        if len(g) < 2:
            continue
        x, y = np.log(g.width.to_numpy(float)), np.log(g.rms_hidden.to_numpy(float))
        alpha, intercept = np.polyfit(x, y, 1)
        ssr += float(((y - intercept - alpha * x) ** 2).sum())
        dof += len(g) - 2
        fits[init].update(alpha=float(alpha), intercept=float(intercept), sxx=float(((x - x.mean()) ** 2).sum()))
    frame = pd.DataFrame(list(fits.values()), columns=["parametrization", "n_widths", "alpha", "intercept", "low", "high", "sxx"])
    if dof > 0:
        half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(ssr / dof) / np.sqrt(frame.sxx)
        frame["low"], frame["high"] = frame.alpha - half, frame.alpha + half
    frame["dof"] = dof
    return frame


def sweep_betas(sweep: pd.DataFrame) -> list[tuple[float, float]]:
    return sorted({(float(b1), float(b2)) for b1, b2 in zip(sweep.beta1, sweep.beta2)})


def decide_size(best: pd.DataFrame, fits: pd.DataFrame, betas: list[tuple[float, float]], th: dict) -> tuple[str, list[str]]:
    """The model-size line from the thresholds in claim.yaml (its criterion says the order)."""
    if best.empty:
        return "inconclusive", ["no width sweep at this scale"]
    ref = tuple(float(b) for b in th["reference"])
    other = [b for b in betas if not np.allclose(b, ref)]
    if other:
        b1, b2 = other[0]
        return "inconclusive", [f"the width sweep runs at β = ({b1:g}, {b2:g}), not the reference {ref}; "
                                f"the mean field there is {float(mean_field_rms(b1)):.3f}"]
    lo, hi = th["reproduced_band"]
    rlo, rhi = th["refuted_band"]
    bound = th["size_exponent_max"]
    tuned, untuned = best[best.tuned], best[~best.tuned]
    reasons = [size_reading(init, best[best.parametrization == init], fit) for init, fit in fits.set_index("parametrization").iterrows()]
    if len(untuned):
        reasons.append("untuned: " + ", ".join(f"{r.parametrization} d={r.width} ({r.why})" for r in untuned.itertuples()))
    if ((tuned.rms_hidden < rlo) | (tuned.rms_hidden > rhi)).any() or ((fits.low > bound) | (fits.high < -bound)).any():
        return "not_reproduced", reasons
    if len(untuned) or (fits.n_widths < th["size_min_widths"]).any() or fits.low.isna().any():
        return "inconclusive", reasons
    if ((fits.low < -bound) | (fits.high > bound)).any():
        return "inconclusive", reasons + [f"an exponent's interval reaches beyond ±{bound:g}: the sweep cannot resolve a trend that small"]
    if ((tuned.rms_hidden >= lo) & (tuned.rms_hidden <= hi)).all():
        return "reproduced", reasons
    return "partially_reproduced", reasons


def size_reading(init: str, rows: pd.DataFrame, fit: pd.Series) -> str:
    ok = rows[np.isfinite(rows.rms_hidden.astype(float))]
    rms = ", ".join(f"{r.rms_hidden:.3f}" for r in ok.itertuples())
    widths = "–".join(str(int(w)) for w in (ok.width.min(), ok.width.max())) if len(ok) else "none"
    alpha = f"α = {fit.alpha:+.3f}" if np.isfinite(fit.alpha) else "α n/a (fewer than two tuned widths)"
    interval = f" [{fit.low:+.3f}, {fit.high:+.3f}]" if np.isfinite(fit.low) else ""
    return f"{init}: RMS {rms} at widths {widths}, {alpha}{interval}"


def size_subclaim(best: pd.DataFrame, fits: pd.DataFrame, betas, th: dict) -> dict:
    status, reasons = decide_size(best, fits, betas, th)
    lo, hi = th["reproduced_band"]
    return sub_claim("update RMS the same at every model size", status,
                     f"RMS in [{lo:g}, {hi:g}] at every width, |α| ≤ {th['size_exponent_max']:g}",
                     "; ".join(reasons),
                     f"each width at its best LR (final validation loss); RMS ∝ width^α, the {th['size_interval']:.0%} "
                     f"interval of α inside ±{th['size_exponent_max']:g} for each initialisation "
                     f"(wholly outside, or a width outside [{th['refuted_band'][0]:g}, {th['refuted_band'][1]:g}]: not reproduced)")


def size_measured(fits: pd.DataFrame, level: float) -> dict:
    return {f"RMS exponent against width ({r.parametrization})": measured(r.alpha, r.low, r.high, note=f"{level:.0%} t interval")
            for r in fits.itertuples()}


# ------------------------------------------------------------------ figures


def plot_simulation(ctx, sim: pd.DataFrame) -> None:
    beta1s = sorted(sim.beta1.unique())
    colors = sequential(beta1s)
    grid = sns.relplot(data=sim, x="snr", y="simulated_rms", hue="beta1", col="beta2", kind="scatter",
                       palette=colors, height=2.6, aspect=0.9, s=30)
    snr = np.linspace(0, sim.snr.max(), 50)
    for ax in grid.axes.flat:
        for b1 in beta1s:
            ax.plot(snr, mean_field_rms(b1, snr), color=colors[b1], lw=1)
    grid.set_axis_labels(axis_label("SNR = ‖μ‖²/‖σ‖²", DIMENSIONLESS), axis_label("update RMS", DIMENSIONLESS))
    ctx.save_figure(grid.figure, "simulation", "Adam's update RMS on Gaussian gradients (points) against the "
                    "mean-field prediction √((SNR+k)/(SNR+1)) (lines), one panel per β2.")
    plt.close(grid.figure)


def plot_runs(ctx, runs, table: pd.DataFrame) -> None:
    frames = []
    for run in runs:
        m = run.metrics.dropna(subset=["update_rms_hidden"])
        frames.append(pd.DataFrame({"step": m.step, "update RMS (hidden)": m.update_rms_hidden,
                                    "β1": run.config["beta1"], "β2": run.config["beta2"], "seed": run.config["seed"]}))
    curves = pd.concat(frames)
    beta1s = sorted(curves["β1"].unique())
    colors = sequential(beta1s)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    sns.lineplot(data=curves, x="step", y="update RMS (hidden)", hue="β1", style="β2", palette=colors, ax=ax, errorbar=None)
    for b1 in beta1s:
        reference_line(ax, float(mean_field_rms(b1)), index=1, color=colors[b1])
    ax.axvline(runs[0].config["warmup_steps"], color="grey", lw=0.8)
    ax.set(xlabel=axis_label("step", STEPS), ylabel=axis_label("update RMS of the hidden matrices", DIMENSIONLESS))
    ctx.save_figure(fig, "runs_rms", "Update RMS of the hidden matrices during training (mean over matrices, from "
                    "AdamW's state), dotted: the zero-signal mean field per β1; grey line: end of warm-up.")
    plt.close(fig)

    ok = table[table.status == "ok"]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    b1 = np.linspace(min(beta1s) - 0.05, min(max(beta1s) + 0.02, 0.99), 100)
    ax.plot(b1, mean_field_rms(b1), color=REFERENCE_COLOR, lw=1, label="mean field (zero signal)")
    sns.pointplot(data=ok, x="beta1", y="rms_hidden", hue="beta2", native_scale=True, ax=ax, linestyle="none",
                  palette=sequential(sorted(ok.beta2.unique())), dodge=0.004, errorbar=("pi", 100))
    ax.set_xlabel(axis_label("β1", DIMENSIONLESS))
    ax.set_ylabel(axis_label("steady-state update RMS", DIMENSIONLESS))
    ax.legend(title="β2 (runs)", fontsize=8)
    ctx.save_figure(fig, "steady_rms", "Steady-state update RMS of the hidden matrices against β1, per β2 "
                    "(range over seeds), with the zero-signal mean field.")
    plt.close(fig)


def plot_size(ctx, sweep: pd.DataFrame, best: pd.DataFrame, fits: pd.DataFrame) -> None:
    th = ctx.thresholds
    (lo, hi), (rlo, rhi) = th["reproduced_band"], th["refuted_band"]
    inits = sorted(sweep.parametrization.unique())
    colors = {init: style(init).color for init in inits}
    fig, (ax_w, ax_lr) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    reference_band(ax_w, lo, hi)
    for y in (rlo, rhi):
        reference_line(ax_w, y, lw=0.8)
    for init in inits:
        b = best[best.parametrization == init]
        ax_w.scatter(b.width, b.rms_hidden, color=colors[init], marker=style(init).marker, label=f"{init} (best LR)",
                     facecolors=[colors[init] if t else "none" for t in b.tuned])
        fit = fits.set_index("parametrization").loc[init] if init in set(fits.parametrization) else None
        if fit is not None and np.isfinite(fit.alpha):
            w = np.geomspace(b.width.min(), b.width.max(), 20)
            ax_w.plot(w, np.exp(fit.intercept) * w ** fit.alpha, color=colors[init], lw=1)
    ax_w.set_xscale("log", base=2)
    ax_w.set_xlabel(axis_label("width d_model", DIMENSIONS))
    ax_w.set_ylabel(axis_label("steady-state update RMS, hidden", DIMENSIONLESS))
    ax_w.legend(fontsize=8)
    ok = sweep[np.isfinite(sweep.rms_hidden.astype(float))].assign(d=lambda f: f.width.astype(int).astype(str))
    widths = [str(w) for w in sorted(ok.width.astype(int).unique())]
    sns.lineplot(data=ok, x="log2_lr", y="rms_hidden", hue="d", hue_order=widths, style="parametrization",
                 markers=markers(sorted(ok.parametrization.unique())), palette=sequential(widths), ax=ax_lr)
    ax_lr.scatter(best.log2_lr, best.rms_hidden, color="black", marker="x", zorder=3, label="read at the best LR")
    reference_band(ax_lr, lo, hi)
    ax_lr.set_xlabel(axis_label("peak learning rate", LOG2))
    ax_lr.set_ylabel(axis_label("steady-state update RMS, hidden", DIMENSIONLESS))
    ax_lr.legend(fontsize=7)
    ctx.save_figure(fig, "size_rms", f"Left: steady-state update RMS of the hidden matrices at each width's best LR "
                    f"(final validation loss; open: best LR on the grid's edge, untuned), with the least-squares power "
                    f"law per initialisation; shaded: the reproduced band [{lo:g}, {hi:g}]; dashed: the refuted band "
                    f"[{rlo:g}, {rhi:g}]. Right: the RMS at every LR of each width's grid; ×: where it is read (the "
                    f"parabola vertex of final validation loss against log2 LR).")
    plt.close(fig)


# ------------------------------------------------------------------ verdict


def analyze(ctx):
    th = ctx.thresholds
    sim_cfg = {**ctx.spec["simulation"], **ctx.scale_spec["simulation"]}
    sim = simulate_rms(sim_cfg["beta1"], sim_cfg["beta2"], sim_cfg["snr"], sim_cfg["n_coords"], sim_cfg["steps"], sim_cfg["seed"])
    sim.to_csv(ctx.out_dir / "simulation.csv", index=False)
    grid_mask = in_beta_grid(ctx.runs, ctx.scale_spec)
    grid = [r for r, g in zip(ctx.runs, grid_mask) if g]
    sweep_runs = [r for r, g in zip(ctx.runs, grid_mask) if not g]
    table = run_table(grid, th)
    sweep = run_table(sweep_runs, th, order=("parametrization", "width", "log2_lr"))
    best = best_per_width(sweep)
    fits = size_exponents(best, th["size_interval"])

    status, meas, reasons = decide(table, th)
    size = size_subclaim(best, fits, sweep_betas(sweep), th)
    status = with_size_line(status, size["status"])
    meas.update(size_measured(fits, th["size_interval"]))
    subs = [size, beta2_subclaim(table, th), simulation_subclaim(sim, th)]
    plot_simulation(ctx, sim)
    if grid:
        plot_runs(ctx, grid, table)
    if not sweep.empty:
        plot_size(ctx, sweep, best, fits)

    ok = table[table.status == "ok"]
    groups = [c for c in ("rms_readout", "rms_embed", "rms_gains") if c in ok]
    notes = [f"ε = {', '.join(str(e) for e in sorted(table.eps.unique()))} (β grid), "
             f"{', '.join(str(e) for e in sorted(sweep.eps.unique())) or 'none'} (width sweep); "
             f"{len(grid)} β-grid runs, {(table.status != 'ok').sum()} diverged; "
             f"{len(sweep_runs)} width-sweep runs, {(sweep.status != 'ok').sum()} diverged."]
    if groups:
        notes.append("Other groups in the β grid (mean over runs): " + ", ".join(
            f"{g.removeprefix('rms_')} {ok[g].mean():.3f}" for g in groups) + " (not part of the criteria).")
    if ok.get("implied_snr") is not None and not ok.empty:
        notes.append(f"Implied gradient SNR (Eq. 9) over runs: {ok.implied_snr.min():.3f} to {ok.implied_snr.max():.3f}.")
    summary = "; ".join(reasons) + f"; model size: {size['status'].replace('_', ' ')}."
    best_ids = set(best.run_id.dropna())
    out = pd.concat([table.assign(family="beta_grid", best_lr=False),
                     sweep.assign(family="width_sweep", best_lr=sweep.run_id.isin(best_ids))], ignore_index=True)
    return ctx.verdict(status, meas, summary, subs, notes), out
