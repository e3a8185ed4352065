"""muon_efficiency: does Muon reach AdamW's loss with about half the compute?

Two stages. ``plan_runs``: per size, an LR grid for each optimizer at the full budget.
``select_runs``: at each optimizer's own best LR, every budget fraction (each run with its own full
schedule, never an intermediate checkpoint) and every seed. ``analyze``: fit AdamW's loss against
tokens, L(D) = a·D^(−b) + c, per size, and read off how many tokens AdamW needs for Muon's final
loss (Wen et al., arXiv 2509.02046, measure speed-ups the same way).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.optimize import curve_fit  # noqa: E402

from optclaims.analysis import measured  # noqa: E402

SHAPE_KEYS = ("d_model", "n_layers", "n_heads")


def _run_fields(block: dict, shape: dict, opt: dict, lr: float, steps: int, seed: int) -> dict:
    base = {k: v for k, v in block["base"].items() if k != "warmup_frac"}
    warmup = max(1, round(block["base"]["warmup_frac"] * steps))
    return {**base, **shape, **opt, "lr": lr, "steps": steps, "warmup_steps": warmup, "seed": seed}


def plan_runs(block: dict) -> list[dict]:
    """Stage 1: the LR grid of each optimizer at each size, full budget, first seed."""
    return [_run_fields(block, shape, opt, lr, block["base"]["steps"], block["seeds"][0])
            for shape in block["sizes"].values() for opt in block["optimizers"].values() for lr in block["lr_grid"]]


def runs_frame(runs) -> pd.DataFrame:
    rows = []
    for r in runs:
        c, s = r.config, r.summary
        rows.append({"run_id": r.run_id, "size": f"d{c['d_model']}×{c['n_layers']}", "d_model": c["d_model"],
                     "optimizer": c["optimizer"], "lr": c["lr"], "steps": c["steps"], "seed": c["seed"],
                     "tokens": c["steps"] * c["batch_size"] * c["seq_len"], "status": s["status"],
                     "final_val_loss": r.final_val_loss, "wall_seconds": s.get("wall_seconds"),
                     "tokens_per_s": s.get("tokens_per_s"), "flops": s.get("flops"), "_cfg": c})
    return pd.DataFrame(rows)


def best_lrs(df: pd.DataFrame, full_steps: int, seed: int) -> pd.DataFrame:
    """Per size and optimizer: the best LR of the full-budget sweep, and whether it sits on the grid's edge."""
    sweep = df[(df.steps == full_steps) & (df.seed == seed)]
    out = []
    for (size, opt), g in sweep.groupby(["size", "optimizer"]):
        g = g.sort_values("lr")
        best = g.loc[g.final_val_loss.idxmin()] if np.isfinite(g.final_val_loss).any() else None
        out.append({"size": size, "optimizer": opt, "best_lr": None if best is None else best.lr,
                    "best_loss": math.inf if best is None else best.final_val_loss,
                    "on_edge": best is None or best.lr in (g.lr.min(), g.lr.max()), "_cfg": None if best is None else best._cfg})
    return pd.DataFrame(out)


def select_runs(ctx) -> list[dict]:
    """Stage 2: at each optimizer's own best LR, every budget and every seed."""
    block = ctx.scale_spec
    full = ctx.runs[0].config["steps"]
    chosen = []
    for _, row in best_lrs(runs_frame(ctx.runs), full, block["seeds"][0]).iterrows():
        if row._cfg is None:
            continue
        for frac in block["budgets"]:
            steps = max(2, round(frac * full))
            for seed in block["seeds"]:
                fields = {k: v for k, v in row._cfg.items() if k not in ("data", "vocab_size")}
                fields.update(steps=steps, seed=seed, warmup_steps=max(1, min(steps - 1, round(block["base"]["warmup_frac"] * steps))))
                chosen.append(fields)
    return chosen


def power_law(d, a, b, c):
    return a * np.power(d, -b) + c


def fit_loss_curve(tokens: np.ndarray, loss: np.ndarray):
    """L(D) = a·D^(−b) + c with a > 0, 0 < b < 3, 0 ≤ c < min(L); tokens scaled to the largest budget."""
    scale = tokens.max()
    x = tokens / scale
    lo = float(loss.min())
    try:
        (a, b, c), _ = curve_fit(power_law, x, loss, p0=(max(loss.max() - lo, 1e-3), 0.5, 0.9 * lo),
                                 bounds=([1e-9, 1e-4, 0.0], [np.inf, 3.0, lo]), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return a, b, c, scale


def tokens_for_loss(fit, loss: float) -> float:
    a, b, c, scale = fit
    return math.inf if loss <= c else scale * ((loss - c) / a) ** (-1.0 / b)


def multiplier(adam: pd.DataFrame, muon: pd.DataFrame):
    """(token multiplier, AdamW fit, Muon's final loss, Muon's tokens) from seed-mean losses."""
    means = adam.groupby("tokens").final_val_loss.mean()
    fit = fit_loss_curve(means.index.to_numpy(float), means.to_numpy(float))
    d_muon = muon.tokens.max()
    l_muon = muon[muon.tokens == d_muon].final_val_loss.mean()
    if fit is None or not np.isfinite(l_muon):
        return math.nan, fit, l_muon, d_muon
    return tokens_for_loss(fit, l_muon) / d_muon, fit, l_muon, d_muon


def bootstrap(adam: pd.DataFrame, muon: pd.DataFrame, n: int, seed: int = 0) -> np.ndarray:
    """Multipliers over resamplings of the seeds (with replacement) at every budget."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = pd.concat(g.iloc[rng.integers(0, len(g), len(g))] for _, g in adam.groupby("tokens"))
        m = muon[muon.tokens == muon.tokens.max()]
        m = m.iloc[rng.integers(0, len(m), len(m))]
        out.append(multiplier(a, m)[0])
    return np.array(out)


def size_results(df: pd.DataFrame, best: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    rows = []
    for size, b in best.groupby("size"):
        lr = dict(zip(b.optimizer, b.best_lr))
        at_best = {o: df[(df["size"] == size) & (df.optimizer == o) & np.isclose(df.lr, lr[o] if lr[o] else np.nan)] for o in lr}
        adam, muon = at_best.get("adamw"), at_best.get("muon")
        row = {"size": size, "d_model": int(df[df["size"] == size].d_model.iloc[0]),
               "adamw_best_lr": lr.get("adamw"), "muon_best_lr": lr.get("muon"),
               "lr_on_edge": bool(b.on_edge.any()), "diverged_needed": False}
        if adam is None or muon is None or adam.empty or muon.empty:
            rows.append(row)
            continue
        row["diverged_needed"] = bool((adam.status != "ok").any() or (muon.status != "ok").any())
        mult, fit, l_muon, d_muon = multiplier(adam, muon)
        boots = bootstrap(adam, muon, n_boot) if adam.seed.nunique() > 1 else np.array([mult])
        finite = boots[np.isfinite(boots)]
        adam_full = adam[adam.tokens == adam.tokens.max()]
        tps_adam = adam_full.tokens_per_s.mean()
        wall_muon = muon[muon.tokens == d_muon].wall_seconds.mean()
        d_adam = mult * d_muon if np.isfinite(mult) else math.inf
        row.update({
            "token_multiplier": mult,
            "low": np.percentile(finite, 2.5) if len(finite) else math.nan,
            "high": np.percentile(finite, 97.5) if len(finite) else math.nan,
            "wall_multiplier": (d_adam / tps_adam) / wall_muon if tps_adam and wall_muon else math.nan,
            "muon_final_loss": l_muon, "adamw_final_loss": adam_full.final_val_loss.mean(),
            "adamw_tokens_needed": d_adam, "muon_tokens": d_muon, "extrapolated": bool(d_adam > adam.tokens.max()),
            "fit_a": fit[0] if fit else math.nan, "fit_b": fit[1] if fit else math.nan, "fit_c": fit[2] if fit else math.nan,
            "muon_at_adamw_lr_loss": df[(df["size"] == size) & (df.optimizer == "muon") & (df.steps == df.steps.max())
                                        & np.isclose(df.lr, lr["adamw"] or np.nan) & (df.seed == df.seed.min())].final_val_loss.min(),
        })
        rows.append(row)
    return pd.DataFrame(rows).sort_values("d_model").reset_index(drop=True)


def compute_frontier(df: pd.DataFrame, best: pd.DataFrame) -> dict | None:
    """Moonlight's view (Fig. 1a): per optimizer, the lower envelope of (FLOPs, loss) over every size
    and budget at its best LR, fitted as L(C) = a·C^(−b); the compute ratio C_Muon/C_AdamW at a loss
    both frontiers cover. Needs three or more sizes."""
    if df["size"].nunique() < 3:
        return None
    fits = {}
    for opt in ("adamw", "muon"):
        pts = []
        for _, b in best[best.optimizer == opt].iterrows():
            at = df[(df["size"] == b["size"]) & (df.optimizer == opt) & np.isclose(df.lr, b.best_lr or np.nan)]
            pts.append(at.groupby("flops").final_val_loss.mean())
        curve = pd.concat(pts).sort_index()
        curve = curve[np.isfinite(curve)]
        envelope = curve[curve <= curve.cummin()]
        if len(envelope) < 2:
            return None
        slope, intercept = np.polyfit(np.log(envelope.index.to_numpy(float)), np.log(envelope.to_numpy(float)), 1)
        fits[opt] = {"a": float(np.exp(intercept)), "b": float(-slope), "losses": envelope}
    lo = max(fits[o]["losses"].min() for o in fits)
    hi = min(fits[o]["losses"].max() for o in fits)
    if not lo <= hi or min(f["b"] for f in fits.values()) <= 0:
        return None
    loss = float(np.sqrt(lo * hi))
    compute = {o: (loss / f["a"]) ** (-1.0 / f["b"]) for o, f in fits.items()}
    return {"loss": loss, "ratio": compute["muon"] / compute["adamw"],
            **{f"{o}_{k}": f[k] for o, f in fits.items() for k in ("a", "b")}}


def decide(sizes: pd.DataFrame, th: dict) -> tuple[str, str]:
    if sizes.empty or "token_multiplier" not in sizes:
        return "inconclusive", "no size has both optimizers' runs"
    if sizes.lr_on_edge.any():
        return "inconclusive", "a best learning rate lies on the edge of its grid: " + ", ".join(sizes[sizes.lr_on_edge]["size"])
    if sizes.diverged_needed.any():
        return "inconclusive", "a run the fit needs diverged"
    m = sizes.iloc[-1].token_multiplier
    if not np.isfinite(m):
        return "inconclusive", "AdamW's loss curve could not be fitted (or never reaches Muon's loss)"
    lo, hi = th["reproduced"]
    status = ("reproduced" if lo <= m <= hi else "partially_reproduced" if m >= th["partial_low"] else "not_reproduced")
    return status, f"token multiplier at the largest size ({sizes.iloc[-1]['size']}) = {m:.2f}"


def plot_lr_sweeps(ctx, df: pd.DataFrame, full: int, seed: int) -> None:
    sweep = df[(df.steps == full) & (df.seed == seed)].copy()
    sweep["log2 lr"] = np.log2(sweep.lr)
    sweep["val loss"] = sweep.final_val_loss.replace(np.inf, np.nan)
    grid = sns.relplot(data=sweep, x="log2 lr", y="val loss", hue="optimizer", col="size", kind="line", marker="o",
                       height=3.0, aspect=1.1, facet_kws={"sharey": False})
    ctx.save_figure(grid.figure, "lr_sweeps", "Final validation loss against log2 learning rate at the full budget, "
                    "per optimizer and model size (each tuned on its own; Muon at AdamW's best LR is the point at that LR).")
    plt.close(grid.figure)


def plot_budgets(ctx, df: pd.DataFrame, best: pd.DataFrame, sizes: pd.DataFrame) -> None:
    panels = list(sizes["size"])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, (_, srow) in zip(axes[0], sizes.iterrows()):
        size = srow["size"]
        for opt, color in (("adamw", "C0"), ("muon", "C1")):
            lr = best[(best["size"] == size) & (best.optimizer == opt)].best_lr
            if lr.empty or lr.iloc[0] is None:
                continue
            pts = df[(df["size"] == size) & (df.optimizer == opt) & np.isclose(df.lr, lr.iloc[0])]
            ax.scatter(pts.tokens, pts.final_val_loss.replace(np.inf, np.nan), color=color, s=18, label=f"{opt} (lr {lr.iloc[0]:g})")
        if np.isfinite(srow.get("fit_a", np.nan)):
            d = np.geomspace(df.tokens.min(), max(df.tokens.max(), srow.adamw_tokens_needed if np.isfinite(srow.adamw_tokens_needed) else 0), 100)
            fit = (srow.fit_a, srow.fit_b, srow.fit_c, df[df["size"] == size].tokens.max())
            ax.plot(d, power_law(d / fit[3], *fit[:3]), color="C0", lw=1, label="AdamW fit a·D^−b + c")
            ax.axhline(srow.muon_final_loss, color="C1", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_title(size)
        ax.set_xlabel("tokens")
        ax.set_ylabel("final val loss (nats/token)")
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "budgets", "Final validation loss against the token budget (each point a full schedule; "
                    "seeds as separate points) at each optimizer's best LR, with AdamW's fitted L(D); dotted: Muon's final loss.")
    plt.close(fig)


def plot_multiplier(ctx, sizes: pd.DataFrame, published: dict) -> None:
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ok = sizes[np.isfinite(sizes.get("token_multiplier", pd.Series(dtype=float)))]
    if not ok.empty:
        err = np.array([ok.token_multiplier - ok.low, ok.high - ok.token_multiplier])
        ax.errorbar(ok["size"], ok.token_multiplier, yerr=np.nan_to_num(np.clip(err, 0, None)), fmt="o", color="black",
                    capsize=4, label="measured (95% bootstrap)")
    for (name, value), color in zip(published.items(), sns.color_palette("deep", len(published))):
        ax.axhline(value, color=color, ls="--", lw=1, label=name)
    ax.axhspan(1.6, 2.6, color="green", alpha=0.08, label="'≈2×' band")
    ax.set_ylabel("token multiplier D_AdamW / D_Muon")
    ax.legend(fontsize=7, loc="best")
    ctx.save_figure(fig, "multiplier", "Muon's token multiplier over AdamW per model size, beside the published figures.")
    plt.close(fig)


def analyze(ctx):
    th, block = ctx.thresholds, ctx.scale_spec
    df = runs_frame(ctx.runs)
    full, seed0 = df.steps.max(), block["seeds"][0]
    best = best_lrs(df, full, seed0)
    sizes = size_results(df, best, th["bootstrap"])
    status, reason = decide(sizes, th)

    meas = {}
    for _, s in sizes.iterrows():
        if "token_multiplier" not in s or pd.isna(s.get("muon_final_loss")):
            continue
        label = s["size"]
        if np.isfinite(s.token_multiplier):
            meas[f"token multiplier, {label}"] = measured(s.token_multiplier, s.low, s.high, "×", note="95% bootstrap over seeds")
            meas[f"wall-clock multiplier, {label}"] = measured(s.wall_multiplier, unit="×")
        else:
            meas[f"token multiplier, {label}"] = {**measured(math.nan, unit="×"), "interval": (
                f"unbounded: Muon's loss {s.muon_final_loss:.3f} is below AdamW's fitted asymptote c = {s.fit_c:.3f}")}
        meas[f"final val loss at the full budget, {label}"] = {
            **measured(s.muon_final_loss, unit="nats/token"), "interval": f"Muon; AdamW {s.adamw_final_loss:.4f}"}
    sub = []
    if len(sizes) > 1 and "token_multiplier" in sizes:
        m = sizes.token_multiplier.to_numpy()
        trend = ("cannot be read (unbounded or missing at some size)" if not np.isfinite(m).all()
                 else "falls" if m[-1] < m[0] else "rises" if m[-1] > m[0] else "is flat")
        sub.append({"name": "trend across sizes", "status": "inconclusive" if not np.isfinite(m).all() else
                    ("reproduced" if m[-1] <= m[0] else "not_reproduced"),
                    "expected": "falls with size (Wen et al. 1.4× → 1.1×; Moonlight's fit: slow fall)",
                    "measured": f"multiplier {trend}: " + " → ".join(f"{v:.2f}" for v in m),
                    "criterion": "multiplier at the largest size ≤ at the smallest"})
    for _, s in sizes.iterrows():
        if np.isfinite(s.get("muon_at_adamw_lr_loss", np.nan)):
            sub.append({"name": f"Muon at AdamW's best LR ({s['size']})", "status": "reproduced"
                        if s.muon_at_adamw_lr_loss <= s.adamw_final_loss else "not_reproduced",
                        "expected": "Moonlight's reuse protocol: Muon at AdamW's LR beats AdamW",
                        "measured": f"Muon {s.muon_at_adamw_lr_loss:.4f} vs AdamW {s.adamw_final_loss:.4f} at lr {s.adamw_best_lr:g}",
                        "criterion": "Muon's loss at AdamW's best LR ≤ AdamW's best loss"})

    frontier = compute_frontier(df, best)
    if frontier:
        meas["compute ratio C_Muon/C_AdamW at equal loss (frontier fit)"] = {
            **measured(frontier["ratio"], unit="×"), "interval": f"at loss {frontier['loss']:.3f}"}
        sub.append({"name": "compute frontier L(C) = a·C^(−b)", "status": "reproduced" if frontier["ratio"] <= 1 / th["reproduced"][0] else
                    ("partially_reproduced" if frontier["ratio"] <= 1 / th["partial_low"] else "not_reproduced"),
                    "expected": "Moonlight: 0.519× FLOPs (fits 2.506·C^−0.052 vs 2.608·C^−0.054)",
                    "measured": f"ratio {frontier['ratio']:.3f}; Muon {frontier['muon_a']:.3g}·C^−{frontier['muon_b']:.3f}, "
                                f"AdamW {frontier['adamw_a']:.3g}·C^−{frontier['adamw_b']:.3f}",
                    "criterion": "ratio ≤ 1/1.6 reproduced, ≤ 1/1.2 partially"})

    plot_lr_sweeps(ctx, df, full, seed0)
    plot_budgets(ctx, df, best, sizes)
    plot_multiplier(ctx, sizes, th["published"])
    notes = [f"{len(df)} runs ({(df.status != 'ok').sum()} diverged); best LRs: " + "; ".join(
        f"{r['size']} {r.optimizer} {r.best_lr:g}{' (edge)' if r.on_edge else ''}" for _, r in best.iterrows() if r.best_lr)]
    if "extrapolated" in sizes and sizes.extrapolated.any():
        notes.append("AdamW's fit is extrapolated beyond its largest budget at: " + ", ".join(sizes[sizes.extrapolated]["size"]))
    if len(sizes) < 2:
        notes.append("only one model size: no trend across sizes")
    table = df.drop(columns="_cfg").sort_values(["d_model", "optimizer", "lr", "steps", "seed"])
    sizes.drop(columns=[c for c in sizes.columns if c.startswith("_")]).to_csv(ctx.out_dir / "sizes.csv", index=False)
    return ctx.verdict(status, meas, reason + ".", sub, notes), table
