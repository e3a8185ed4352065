"""lr_batch_scaling: does the optimal learning rate grow as √B while B ≪ B_simple and saturate as
η_max/√(1 + B_simple/B), for AdamW and for Muon (Su, kexue.fm/archives/10542, 11280, 11285)?

One stage. ``plan_runs``: for each optimizer and batch size, the same power-of-2 LR grid over the
same number of tokens, every seed; every run measures its gradient noise (tr Σ, |G|²) at a few
points of training (run field ``noise_scale_every``). ``analyze``: η*(B) interpolated from the
seed-mean losses, a parametric bootstrap of everything read from them, the small-B log-slope, the
flattening at large B, the mean-field fit of B_simple against the measured one, and the surge.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optclaims.analysis import interpolated_optimum, measured, sub_claim, within_seed_sigma
from optclaims.plotting import (DIMENSIONLESS, LOG2, NATS, axis_label, plt, reference_band, reference_line, sequential,
                                style)

OPTIMIZERS = ("adamw", "muon")
BOOTSTRAP_SEED = 0
SEARCH_OCTAVES = 4      # the fit's B_simple is searched 4 octaves beyond the batch sizes on both sides
SEARCH_STEP = 1 / 32    # in log2 B
SEQUENCES = "sequences"

# ------------------------------------------------------------------ plan


def batch_run(block: dict, opt: str, batch: int, log2_lr: float, seed: int) -> dict:
    """One run: ``block["tokens"]`` tokens at batch ``batch`` (sequences), a full schedule (the default cosine)."""
    model = block["model"]
    steps = block["tokens"] // (batch * model["seq_len"])
    if steps < 2:
        raise ValueError(f"lr_batch_scaling: tokens = {block['tokens']} give {steps} step(s) at batch size {batch}")
    log_every = max(1, steps // block["log_points"])
    return {**model, **block["optimizers"][opt], "batch_size": batch, "steps": steps, "lr": 2.0 ** log2_lr,
            "seed": seed, "warmup_steps": int(block["warmup_frac"] * steps),
            "weight_decay": 0.0, "clip": None, "log_every": log_every, "eval_every": steps, "ckpt_every": steps,
            "val_batches": max(1, block["val_sequences"] // batch),
            "noise_scale_every": max(1, steps // block["noise_points"])}


def plan_runs(block: dict) -> list[dict]:
    """Every optimizer × batch size × LR × seed."""
    return [batch_run(block, opt, b, e, s) for opt in block["optimizers"] for b in block["batch_sizes"]
            for e in block["log2_lr"] for s in block["seeds"]]


# ------------------------------------------------------------------ frames


def noise_of(metrics: pd.DataFrame, steps: int, late_from: float) -> dict:
    """B_simple of a run: mean tr(Σ) / mean |G|² over its measurements after ``late_from`` of its steps
    (a ratio of means: the estimates of |G|² alone are noisy and may be negative)."""
    if "noise_trace" not in metrics:
        return {"noise_trace": math.nan, "noise_grad_sq": math.nan, "b_simple": math.nan}
    m = metrics[metrics.noise_trace.notna() & (metrics.step > late_from * steps)]
    trace, grad_sq = float(m.noise_trace.mean()) if len(m) else math.nan, float(m.noise_grad_sq.mean()) if len(m) else math.nan
    b = trace / grad_sq if len(m) and grad_sq > 0 and trace > 0 else math.nan
    return {"noise_trace": trace, "noise_grad_sq": grad_sq, "b_simple": b}


def runs_frame(runs, th: dict) -> pd.DataFrame:
    rows = []
    for r in runs:
        c = r.config
        rows.append({"run_id": r.run_id, "optimizer": c["optimizer"], "batch": c["batch_size"], "lr": c["lr"],
                     "log2_lr": math.log2(c["lr"]), "seed": c["seed"], "steps": c["steps"], "seq_len": c["seq_len"],
                     "status": r.summary["status"], "final_val_loss": r.final_val_loss,
                     **noise_of(r.metrics, c["steps"], th["late_from"])})
    return pd.DataFrame(rows)


def noise_trajectories(runs, best: pd.DataFrame) -> pd.DataFrame:
    """B_simple at every measurement of the runs at each best grid LR (first seed), by fraction of training."""
    ids, rows = set(best.run_id.dropna()), []
    for r in runs:
        if r.run_id in ids and "noise_trace" in r.metrics:
            m = r.metrics[r.metrics.noise_trace.notna()]
            for s, t, g in zip(m.step, m.noise_trace, m.noise_grad_sq):
                rows.append({"optimizer": r.config["optimizer"], "batch": r.config["batch_size"],
                             "fraction": s / r.config["steps"], "b_simple": t / g if g > 0 and t > 0 else math.nan})
    return pd.DataFrame(rows, columns=["optimizer", "batch", "fraction", "b_simple"])


# ------------------------------------------------------------------ the estimates


def optima(batches: np.ndarray, x: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(interpolated log2 η* per batch size, on the grid's edge?) from a (batch, lr) loss matrix."""
    out = [interpolated_optimum(x, row) for row in loss]
    return np.array([o[1] for o in out]), np.array([o[2] for o in out])


def ls_slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() > 1 else math.nan


def search_grid(log2_b: np.ndarray) -> np.ndarray:
    return np.arange(log2_b.min() - SEARCH_OCTAVES, log2_b.max() + SEARCH_OCTAVES + 1e-9, SEARCH_STEP)


def fit_mean_field(log2_b: np.ndarray, log2_eta: np.ndarray) -> tuple[float, float, bool]:
    """(log2 η_max, log2 B_simple, on the search edge?): least squares of log2 η* = log2 η_max −
    ½·log2(1 + B_simple/B), B_simple on a grid (η_max in closed form for each)."""
    ok = np.isfinite(log2_eta)
    if ok.sum() < 3:
        return math.nan, math.nan, True
    x, y = log2_b[ok], log2_eta[ok]
    grid = search_grid(log2_b)
    shape = -0.5 * np.log2(1 + 2.0 ** (grid[:, None] - x[None, :]))  # (candidates, batches)
    top = (y[None, :] - shape).mean(axis=1)
    rss = ((y[None, :] - shape - top[:, None]) ** 2).sum(axis=1)
    i = int(np.argmin(rss))
    return float(top[i]), float(grid[i]), i in (0, len(grid) - 1)


def estimates(log2_b: np.ndarray, log2_eta: np.ndarray, edge: np.ndarray, th: dict) -> dict:
    """Everything the lines read from one η*(B) curve, and for each figure whether an optimum it
    reads is on the grid's edge (``reads_edge``: the slopes read their ends, the rest every B)."""
    k = th["small_points"]
    small, large = ls_slope(log2_b[:k], log2_eta[:k]), ls_slope(log2_b[-k:], log2_eta[-k:])
    top, bs, _ = fit_mean_field(log2_b, log2_eta)  # a fit on its search edge lies beyond the batch sizes
    before = log2_eta[:-1]
    drop = float(np.nanmax(before) - log2_eta[-1]) if np.isfinite(before).any() else math.nan
    at_small, at_large, anywhere = bool(edge[:k].any()), bool(edge[-k:].any()), bool(edge.any())
    return {"slope_small": small, "slope_large": large, "flattening": small - large, "log2_eta_max": top,
            "log2_b_simple_fit": bs, "surge_drop": drop,
            "reads_edge": {"slope_small": at_small, "slope_large": at_large, "flattening": at_small or at_large,
                           "log2_eta_max": anywhere, "log2_b_simple_fit": anywhere, "surge_drop": anywhere}}


def grid_matrix(g: pd.DataFrame, batches, lrs) -> tuple[np.ndarray, np.ndarray]:
    """(seed-mean loss, seeds) as (batch, lr) matrices; a seed that diverged makes the mean ∞."""
    mean = g.pivot_table(index="batch", columns="log2_lr", values="final_val_loss", aggfunc="mean")
    n = g.pivot_table(index="batch", columns="log2_lr", values="final_val_loss", aggfunc="size")
    return (mean.reindex(index=batches, columns=lrs).to_numpy(float),
            n.reindex(index=batches, columns=lrs).to_numpy(float))


def near_optimum(g: pd.DataFrame, batches, lrs, loss: np.ndarray) -> pd.DataFrame:
    """The runs at and next to each batch size's best seed-mean grid LR: the cells the parabola
    reads (unstable runs far from the optimum do not set the seed noise)."""
    keep = set()
    for b, row in zip(batches, loss):
        if np.isfinite(row).any():
            i = int(np.nanargmin(np.where(np.isfinite(row), row, np.nan)))
            keep |= {(b, lr) for lr in lrs[max(0, i - 1):i + 2]}
    return g[[k in keep for k in zip(g.batch, g.log2_lr)]]


def optimizer_estimates(g: pd.DataFrame, th: dict, rng) -> dict:
    """One optimizer: η*(B), its estimates and their bootstrap draws. The seed noise of a seed-mean
    loss: one run's noise about its seed's level at its B (a seed's offset, shared by its LRs, moves
    no optimum), over the cells near each B's optimum, over √seeds."""
    batches, lrs = sorted(g.batch.unique()), sorted(g.log2_lr.unique())
    log2_b, x = np.log2(np.array(batches, float)), np.array(lrs, float)
    loss, n = grid_matrix(g, batches, lrs)
    eta, edge = optima(batches, x, loss)
    point = estimates(log2_b, eta, edge, th)
    sigma = within_seed_sigma(near_optimum(g, batches, lrs, loss), "batch", "log2_lr")
    seeds = int(np.nanmin(n)) if np.isfinite(n).any() else 0
    draws = []
    if np.isfinite(sigma) and sigma > 0:
        sd = sigma / np.sqrt(np.where(np.isfinite(n) & (n > 0), n, 1))
        for _ in range(th["bootstrap"]):
            redrawn = loss + rng.normal(0, 1, loss.shape) * sd  # ∞ (diverged) stays ∞
            e, on_edge = optima(batches, x, redrawn)
            draws.append({**estimates(log2_b, e, on_edge, th), "eta": e, "edge": on_edge})
    return {"batches": batches, "log2_b": log2_b, "log2_lr": x, "loss": loss, "log2_eta": eta, "edge": edge,
            "all_diverged": ~np.isfinite(loss).any(axis=1), "sigma": sigma, "seeds": seeds, "point": point,
            "draws": draws}


def too_often_on_edge(on_edge, level: float) -> bool:
    """A draw on the grid's edge clamps its optimum there, which narrows the interval: with more
    than (1 − level)/2 of the draws on an edge, an end of the interval is a clamp, not a reading."""
    return bool(np.mean(on_edge) > (1 - level) / 2) if len(on_edge) else False


def interval(draws: list[dict], key: str, level: float) -> tuple[float, float]:
    """The bootstrap interval of figure ``key``; NaN with fewer than 10 finite draws or where too
    many draws read an optimum on the grid's edge."""
    if too_often_on_edge([d["reads_edge"][key] for d in draws], level):
        return math.nan, math.nan
    v = np.array([d[key] for d in draws], float)
    v = v[np.isfinite(v)]
    if len(v) < 10:
        return math.nan, math.nan
    return float(np.quantile(v, (1 - level) / 2)), float(np.quantile(v, (1 + level) / 2))


def eta_intervals(est: dict, level: float) -> tuple[np.ndarray, np.ndarray]:
    nan = np.full(len(est["batches"]), math.nan)
    if not est["draws"]:
        return nan, nan
    e, on_edge = np.array([d["eta"] for d in est["draws"]]), np.array([d["edge"] for d in est["draws"]])
    clamped = np.array([too_often_on_edge(col, level) for col in on_edge.T])
    lo, hi = np.nanquantile(e, (1 - level) / 2, axis=0), np.nanquantile(e, (1 + level) / 2, axis=0)
    return np.where(clamped, nan, lo), np.where(clamped, nan, hi)


def measured_b_simple(g: pd.DataFrame, est: dict) -> tuple[float, float, float, pd.DataFrame]:
    """(median, min, max) over batch sizes of B_simple of the run at each B's best grid LR (first
    seed), and those runs."""
    first = g[g.seed == g.seed.min()]
    best = []
    for b, gb in first.groupby("batch"):
        finite = gb[np.isfinite(gb.final_val_loss)]
        if len(finite):
            best.append(finite.loc[finite.final_val_loss.idxmin()])
    best = pd.DataFrame(best)
    v = best.b_simple.to_numpy(float) if len(best) else np.array([])
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan, math.nan, math.nan, best
    return float(np.median(v)), float(v.min()), float(v.max()), best


# ------------------------------------------------------------------ the lines


def slope_line(opt: str, est: dict, bs: float, th: dict) -> dict:
    lo_band, hi_band = th["slope_band"]
    k, value = th["small_points"], est["point"]["slope_small"]
    low, high = interval(est["draws"], "slope_small", th["level"])
    small_b = est["batches"][:k]
    shown = f"{value:.2f} [{low:.2f}, {high:.2f}] over B = {', '.join(map(str, small_b))}"
    if not np.isfinite(bs) or max(small_b) > th["small_b_max"] * bs:
        status, shown = "inconclusive", shown + f"; measured B_simple {bs:.3g}: the grid has no B ≪ B_simple"
    elif not (np.isfinite(low) and np.isfinite(high)):
        status = "inconclusive"
    elif lo_band <= value <= hi_band and low > 0 and high < 1:
        status = "reproduced"
    elif high < lo_band or low > hi_band:
        status = "not_reproduced"
    else:
        status = "inconclusive"
    return sub_claim(f"{opt}: small-B slope", status, f"{th['published_slope']:g} (η* ∝ √B)", shown,
                     f"estimate in [{lo_band}, {hi_band}], interval excluding 0 and 1; judged where the {k} smallest B "
                     f"are ≤ {th['small_b_max']} × measured B_simple")


def flattening_line(opt: str, est: dict, bs: float, th: dict) -> dict:
    """Seen where the fit bends inside the grid: the upper end of the fitted B_simple's interval is
    at most the largest B (the fit uses every batch size, so it has more power than two end slopes).
    Absent only where the bend lies beyond the grid at the stated level (the interval's lower end
    above the largest B): a wide interval is a lack of power, not a refutation."""
    low, high = (2.0 ** v for v in interval(est["draws"], "log2_b_simple_fit", th["level"]))
    b_max = est["batches"][-1]
    predicted = bool(np.isfinite(bs) and bs <= th["flatten_within"] * b_max)
    seen = bool(np.isfinite(high) and high <= b_max)
    absent = bool(np.isfinite(low) and low > b_max)
    status = "reproduced" if seen else ("not_reproduced" if predicted and absent else "inconclusive")
    s_lo, s_hi = interval(est["draws"], "slope_large", th["level"])
    shown = (f"fitted B_simple interval [{low:.3g}, {high:.3g}] against the largest B = {b_max}; large-B slope "
             f"{est['point']['slope_large']:.2f} [{s_lo:.2f}, {s_hi:.2f}]; flattening "
             f"{'predicted' if predicted else 'not predicted'} inside the grid (measured B_simple {bs:.3g})")
    return sub_claim(f"{opt}: flattening", status, "η* flattens near B_simple", shown,
                     f"upper end of the fitted B_simple's interval ≤ the largest B; its lower end > the largest B although "
                     f"measured B_simple ≤ {th['flatten_within']} × largest B: not reproduced")


def b_simple_line(opt: str, est: dict, bs: tuple[float, float, float], th: dict) -> dict:
    median, lo_m, hi_m = bs
    f = th["bsimple_factor"]
    fit = 2.0 ** est["point"]["log2_b_simple_fit"]
    low, high = (2.0 ** v for v in interval(est["draws"], "log2_b_simple_fit", th["level"]))
    ratio = fit / median
    r_low, r_high = low / hi_m, high / lo_m
    shown = (f"fitted {fit:.3g} [{low:.3g}, {high:.3g}] vs measured {median:.3g} (range {lo_m:.3g}–{hi_m:.3g}) sequences; "
             f"ratio {ratio:.2f} [{r_low:.2f}, {r_high:.2f}]")
    # a fit beyond the batch sizes is a bound (the bend lies outside the grid), which can still
    # refute but never pass: read inside the data, never extrapolated
    inside = est["batches"][0] <= fit <= est["batches"][-1]
    if np.isfinite(r_low) and np.isfinite(r_high) and (r_high < 1 / f or r_low > f):
        status = "not_reproduced"
    elif inside and np.isfinite(r_low) and np.isfinite(r_high) and 1 / f <= ratio <= f:
        status = "reproduced"
    else:
        status = "inconclusive"
    if not inside:
        shown += f"; the fit lies outside the batch sizes {est['batches'][0]}–{est['batches'][-1]} (a bound)"
    return sub_claim(f"{opt}: fitted vs measured B_simple", status, "η* = η_max/√(1 + B_simple/B) with the measured B_simple",
                     shown, f"ratio within a factor {f:g} with the fit inside the batch sizes; its interval wholly "
                     "outside: not reproduced")


def surge_line(opt: str, est: dict, th: dict) -> dict:
    value = est["point"]["surge_drop"]
    low, high = interval(est["draws"], "surge_drop", th["level"])
    seen = np.isfinite(value) and value > th["surge_min_drop"] and np.isfinite(low) and low > 0
    shown = (f"{'seen' if seen else 'not seen'}: η* at B = {est['batches'][-1]} is {value:.2f} [{low:.2f}, {high:.2f}] "
             "octaves below the largest η* at a smaller B")
    return sub_claim(f"{opt}: surge (reported)", "inconclusive", "only if Σ_{i≠j} H_ij sign(g_i g_j) > 0 (β_noise < 1)",
                     shown, f"seen if the drop exceeds {th['surge_min_drop']} octave with its interval above 0; "
                     "the condition is not measured, so this line does not decide")


def combine(statuses: list[str]) -> str:
    s = set(statuses)
    if s == {"reproduced"}:
        return "reproduced"
    if "reproduced" in s and "not_reproduced" in s:
        return "partially_reproduced"
    if "not_reproduced" in s:
        return "not_reproduced"
    return "inconclusive"


def judge(df: pd.DataFrame, block: dict, th: dict) -> dict:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    per, subs, reasons = {}, [], []
    for opt in [o for o in OPTIMIZERS if o in set(df.optimizer)]:
        g = df[df.optimizer == opt]
        est = optimizer_estimates(g, th, rng)
        median, lo_m, hi_m, best = measured_b_simple(g, est)
        lines = [slope_line(opt, est, median, th), flattening_line(opt, est, median, th),
                 b_simple_line(opt, est, (median, lo_m, hi_m), th)]
        # an edge optimum is a bound, not a reading: the lines that read it cannot decide
        k = th["small_points"]
        for line, edge in zip(lines, (est["edge"][:k].any(), est["edge"].any(), est["edge"].any())):
            if edge and line["status"] != "inconclusive":
                line.update(status="inconclusive", measured=line["measured"] + "; an optimum it reads is on the grid's edge")
        statuses = [line["status"] for line in lines]
        status = ("not_reproduced" if "not_reproduced" in statuses
                  else "reproduced" if set(statuses) == {"reproduced"} else "inconclusive")
        guard = []
        if est["edge"].any():
            guard.append("an optimum on the grid's edge at B = " + ", ".join(
                str(b) for b, e in zip(est["batches"], est["edge"]) if e))
        if est["all_diverged"].any():
            guard.append("every run diverged at some batch size")
        if not est["draws"]:
            guard.append("no seed noise (one seed), so no intervals")
        if not np.isfinite(median):
            guard.append("no B_simple measurement")
        if guard and status != "not_reproduced":
            status = "inconclusive"
        per[opt] = {"est": est, "b_simple": (median, lo_m, hi_m), "best": best, "status": status, "guard": guard}
        subs += lines + [surge_line(opt, est, th)]
        reasons.append(f"{opt}: {status.replace('_', ' ')}" + (f" ({'; '.join(guard)})" if guard else ""))
    if {"adamw", "muon"} <= set(per):
        subs.append(same_law_line(per["adamw"]["est"], per["muon"]["est"], th))
    status = combine([p["status"] for p in per.values()]) if per else "inconclusive"
    return {"status": status, "per": per, "subs": subs, "reason": "; ".join(reasons)}


def slope_difference(adamw: dict, muon: dict, level: float) -> tuple[float, float, float]:
    """Muon's small-B slope − AdamW's, with the interval over paired bootstrap draws (independent)."""
    value = muon["point"]["slope_small"] - adamw["point"]["slope_small"]
    d = [{"diff": m["slope_small"] - a["slope_small"],
          "reads_edge": {"diff": a["reads_edge"]["slope_small"] or m["reads_edge"]["slope_small"]}}
         for a, m in zip(adamw["draws"], muon["draws"])]
    return (value, *interval(d, "diff", level))


def same_law_line(adamw: dict, muon: dict, th: dict) -> dict:
    """Own line (CLAIMS §6c): Muon's small-B slope like AdamW's."""
    value, low, high = slope_difference(adamw, muon, th["level"])
    m = th["muon_slope_diff_max"]
    edge = adamw["edge"][:th["small_points"]].any() or muon["edge"][:th["small_points"]].any()
    if edge or not (np.isfinite(low) and np.isfinite(high)):
        status = "inconclusive"
    elif -m <= low and high <= m:
        status = "reproduced"
    elif high < -m or low > m:
        status = "not_reproduced"
    else:
        status = "inconclusive"
    return sub_claim("Muon's small-B slope like AdamW's (own line)", status, "the same law: a difference of 0",
                     f"Muon − AdamW {value:.2f} [{low:.2f}, {high:.2f}]",
                     f"interval within ±{m:g}; wholly outside: not reproduced; not part of the verdict")


def measurements(j: dict, th: dict) -> dict:
    label = {"adamw": "AdamW", "muon": "Muon"}
    out = {}
    for opt, p in j["per"].items():
        est, pt, name = p["est"], p["est"]["point"], label[opt]
        for key, text in (("slope_small", "small-B log-slope"), ("slope_large", "large-B log-slope"),
                          ("flattening", "flattening (small − large slope)"), ("surge_drop", "surge drop")):
            low, high = interval(est["draws"], key, th["level"])
            out[f"{name} {text}"] = measured(pt[key], low, high, "octaves" if key == "surge_drop" else DIMENSIONLESS,
                                             f"{th['level']:.0%} parametric bootstrap")
        low, high = interval(est["draws"], "log2_b_simple_fit", th["level"])
        out[f"{name} fitted B_simple"] = measured(2.0 ** pt["log2_b_simple_fit"], 2.0 ** low, 2.0 ** high, SEQUENCES,
                                                  f"{th['level']:.0%} parametric bootstrap")
        median, lo_m, hi_m = p["b_simple"]
        out[f"{name} measured B_simple"] = measured(median, lo_m, hi_m, SEQUENCES, "range over batch sizes")
        e_lo, e_hi = eta_intervals(est, th["level"])
        for b, e, lo, hi in zip(est["batches"], est["log2_eta"], e_lo, e_hi):
            out[f"{name} log2 η* at B={b}"] = measured(e, lo, hi, LOG2, f"{th['level']:.0%} parametric bootstrap")
    return out


# ------------------------------------------------------------------ figures


def plot_optima(ctx, j: dict, th: dict) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for opt, p in j["per"].items():
        est, st = p["est"], style(opt)
        lo, hi = eta_intervals(est, th["level"])
        b = np.array(est["batches"], float)
        yerr = np.vstack([est["log2_eta"] - lo, hi - est["log2_eta"]]) if np.isfinite(lo).any() else None
        ax.errorbar(b, est["log2_eta"], yerr=yerr, ls="none", capsize=2, **st.kwargs())
        top, bs = est["point"]["log2_eta_max"], est["point"]["log2_b_simple_fit"]
        if np.isfinite(bs):
            fine = np.geomspace(b.min(), b.max(), 100)
            ax.plot(fine, top - 0.5 * np.log2(1 + 2.0 ** bs / fine), color=st.color, lw=1.0,
                    label=f"{st.label} fit, B_simple = {2.0 ** bs:.3g}")
        median = p["b_simple"][0]
        if np.isfinite(median):
            reference_line(ax, median, f"{st.label} measured B_simple", axis="x", color=st.color, index=1)
    first = next(iter(j["per"].values()), None)
    if first is not None and np.isfinite(first["est"]["log2_eta"][0]):
        b = np.array(first["est"]["batches"], float)
        ax.plot(b, first["est"]["log2_eta"][0] + th["published_slope"] * np.log2(b / b[0]), color="0.25", ls="--",
                lw=1.0, label=f"slope {th['published_slope']:g} (√B)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(axis_label("batch size B", SEQUENCES))
    ax.set_ylabel(axis_label("optimal learning rate log2 η*", LOG2))
    ax.legend(fontsize=6)
    ctx.save_figure(fig, "optimal_lr", f"log2 η* against B at fixed tokens ({th['level']:.0%} bootstrap intervals), "
                    "the mean-field fit η_max/√(1 + B_simple/B) and the measured B_simple; dashed: slope 1/2")
    plt.close(fig)


def plot_grids(ctx, j: dict) -> None:
    per = j["per"]
    fig, axes = plt.subplots(1, max(1, len(per)), figsize=(4.2 * max(1, len(per)), 3.2), squeeze=False)
    for ax, (opt, p) in zip(axes[0], per.items()):
        est = p["est"]
        colours = sequential(est["batches"])
        for b, row in zip(est["batches"], est["loss"]):
            ax.plot(est["log2_lr"], np.where(np.isfinite(row), row, np.nan), marker=style(opt).marker, ms=3,
                    color=colours[b], label=f"B = {b}")
        ax.set_title(style(opt).label)
        ax.set_xlabel(axis_label("log2 learning rate", LOG2))
        ax.set_ylabel(axis_label("final val loss (seed mean)", NATS))
        ax.legend(fontsize=6)
    ctx.save_figure(fig, "lr_grids", "seed-mean final validation loss against log2 LR per batch size (diverged runs left out)")
    plt.close(fig)


def plot_noise(ctx, traj: pd.DataFrame, th: dict) -> None:
    if traj.empty:
        return
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    colours = sequential(sorted(traj.batch.unique()))
    for (opt, b), g in traj.groupby(["optimizer", "batch"]):
        ax.plot(g.fraction, g.b_simple, marker=style(opt).marker, ms=3, color=colours[b],
                ls="-" if opt == "adamw" else ":", label=f"{style(opt).label} B = {b}")
    reference_band(ax, th["late_from"], 1.0, "late (counted)", axis="x")
    ax.set_yscale("log", base=2)
    ax.set_xlabel(axis_label("fraction of training", DIMENSIONLESS))
    ax.set_ylabel(axis_label("B_simple = tr(Σ)/|G|²", SEQUENCES))
    ax.legend(fontsize=5, ncol=2)
    ctx.save_figure(fig, "b_simple", "B_simple measured from micro-batch gradients during training, at each batch "
                    "size's best LR (first seed); the shaded late phase gives the measured B_simple")
    plt.close(fig)


def analyze(ctx):
    th = ctx.thresholds
    df = runs_frame(ctx.runs, th)
    j = judge(df, ctx.scale_spec, th)
    best = pd.concat([p["best"] for p in j["per"].values()], ignore_index=True) if j["per"] else pd.DataFrame()
    traj = noise_trajectories(ctx.runs, best) if len(best) else noise_trajectories([], pd.DataFrame({"run_id": []}))
    plot_optima(ctx, j, th)
    plot_grids(ctx, j)
    plot_noise(ctx, traj, th)
    rows = []
    for opt, p in j["per"].items():
        est = p["est"]
        lo, hi = eta_intervals(est, th["level"])
        for b, e, low, high, edge, losses in zip(est["batches"], est["log2_eta"], lo, hi, est["edge"], est["loss"]):
            bs = p["best"][p["best"].batch == b].b_simple if len(p["best"]) else pd.Series(dtype=float)
            best_loss = float(np.min(losses[np.isfinite(losses)])) if np.isfinite(losses).any() else math.inf
            rows.append({"optimizer": opt, "batch": b, "log2_eta_star": e, "low": low, "high": high, "on_edge": bool(edge),
                         "best_seed_mean_loss": best_loss,
                         "b_simple_late": float(bs.iloc[0]) if len(bs) else math.nan, "seeds": est["seeds"],
                         "sigma_seed": est["sigma"]})
    table = pd.DataFrame(rows)
    df.to_csv(ctx.out_dir / "runs.csv", index=False)
    notes = [f"{len(df)} runs ({(df.status != 'ok').sum()} diverged) at {ctx.scale_spec['tokens']:,} tokens each "
             f"(batch sizes {', '.join(map(str, ctx.scale_spec['batch_sizes']))} sequences of "
             f"{ctx.scale_spec['model']['seq_len']} tokens)",
             "B_simple in sequences: multiply by seq_len for tokens; Muon's B_simple is measured on the same global "
             "gradient (all parameters), Su's 11285 derives it per matrix"]
    verdict = ctx.verdict(j["status"], measurements(j, th), j["reason"] + ".", j["subs"], notes)
    return verdict, table
