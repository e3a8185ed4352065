"""mup_transfer: does the best learning rate stay put as the model widens (μP), and drift in SP?

``plan_runs``: a coordinate check (a few steps at a large LR, mean |activation| per layer recorded,
at every check width) and, per variant, the power-of-2 LR grid at every transfer width, same
tokens and depth at every width. ``analyze``: slopes of log mean|activation| against log width;
per variant and width the optimal log2 LR (a parabola through the grid's best point and its two
neighbours), its shift across widths, and the verdict per sub-claim (Tensor Programs V Fig. 1;
Su, kexue.fm/archives/10770 for the Muon scales).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from optclaims.analysis import interpolated_optimum as optimum, measured  # noqa: E402
from optclaims.parametrization import with_base_width  # noqa: E402

# ------------------------------------------------------------------ plan


def variant_fields(block: dict, name: str) -> dict:
    return with_base_width(block["variants"][name]["fields"], block["base_width"])


def shape(width: int, head_dim: int) -> dict:
    return {"d_model": width, "n_heads": max(1, width // head_dim)}


def plan_runs(block: dict) -> list[dict]:
    coord = block["coord_check"]
    runs = [{**coord["base"], **variant_fields(block, v), **shape(w, block["head_dim"]), "lr": lr,
             "steps": coord["steps"], "activation_steps": coord["steps"], "seed": block["seed"]}
            for v, lr in coord["lr"].items() for w in coord["widths"]]
    runs += [{**block["base"], **variant_fields(block, v), **shape(w, block["head_dim"]), "lr": 2.0 ** e,
              "seed": block["seed"]}
             for v, spec in block["variants"].items() for w in block["widths"] for e in spec["log2_lr"]]
    return runs


# ------------------------------------------------------------------ frames


def variant_of(cfg: dict, block: dict) -> str:
    """The variant whose fields a run config carries."""
    for name in block["variants"]:
        if all(cfg.get(k) == v for k, v in variant_fields(block, name).items()):
            return name
    raise ValueError(f"run config matches no variant of the claim: {cfg}")


def coord_frame(runs, block: dict) -> pd.DataFrame:
    """Long frame: variant, width, step, layer, l1 (mean |activation|)."""
    rows = []
    for r in runs:
        if not r.config["activation_steps"]:
            continue
        act = r.metrics.filter(like="act_").assign(step=r.metrics.step).dropna()
        for _, row in act.iterrows():
            for col in act.columns.drop("step"):
                rows.append({"variant": variant_of(r.config, block), "width": r.config["d_model"], "step": int(row.step),
                             "layer": col.removeprefix("act_"), "l1": row[col]})
    return pd.DataFrame(rows, columns=["variant", "width", "step", "layer", "l1"])


def coord_slopes(coord: pd.DataFrame) -> pd.DataFrame:
    """Per variant and layer: slope of log l1 against log width at the last recorded step (NaN
    where some width has l1 = 0, e.g. a zero-initialised readout before its first update)."""
    last = coord[coord.step == coord.step.max()]
    out = []
    for (variant, layer), g in last.groupby(["variant", "layer"], sort=False):
        ok = (g.l1 > 0).all() and g.width.nunique() > 1
        slope = np.polyfit(np.log(g.width), np.log(g.l1), 1)[0] if ok else math.nan
        out.append({"variant": variant, "layer": layer, "slope": slope})
    return pd.DataFrame(out, columns=["variant", "layer", "slope"])


def transfer_frame(runs, block: dict) -> pd.DataFrame:
    rows = [{"run_id": r.run_id, "variant": variant_of(r.config, block), "width": r.config["d_model"],
             "lr": r.config["lr"], "log2_lr": math.log2(r.config["lr"]), "status": r.summary["status"],
             "final_val_loss": r.final_val_loss, "tokens": r.summary.get("tokens"),
             "wall_seconds": r.summary.get("wall_seconds")}
            for r in runs if not r.config["activation_steps"]]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ optima


def optima_table(df: pd.DataFrame) -> pd.DataFrame:
    """The optimum-shift table: per variant and width, the optimum and its shift from the narrowest width."""
    rows = []
    for (variant, width), g in df.groupby(["variant", "width"], sort=False):
        grid_opt, opt, edge = optimum(g.log2_lr.to_numpy(float), g.final_val_loss.to_numpy(float))
        rows.append({"variant": variant, "width": width, "best_log2_lr": grid_opt, "optimum_log2_lr": opt,
                     "best_loss": g.final_val_loss.min(), "on_edge": edge,
                     "diverged": int((g.status != "ok").sum()), "runs": len(g)})
    t = pd.DataFrame(rows).sort_values(["variant", "width"], key=lambda s: s if s.name == "width" else s.map(
        {v: i for i, v in enumerate(dict.fromkeys(df.variant))}))
    t["shift_from_narrowest"] = t.optimum_log2_lr - t.groupby("variant").optimum_log2_lr.transform("first")
    return t.reset_index(drop=True)


def drift_per_doubling(t: pd.DataFrame) -> float:
    """Least-squares slope of the optimal log2 LR against log2 width."""
    if t.width.nunique() < 2 or not np.isfinite(t.optimum_log2_lr).all():
        return math.nan
    return float(np.polyfit(np.log2(t.width), t.optimum_log2_lr, 1)[0])


def shift_range(t: pd.DataFrame) -> float:
    return float(t.optimum_log2_lr.max() - t.optimum_log2_lr.min())


def nested(df: pd.DataFrame, t: pd.DataFrame, window: float, tol: float) -> tuple[bool, str]:
    """Wider is better near the optimum: at every grid LR within ``window`` log2 steps of the narrowest
    width's optimum, the loss does not rise with width by more than ``tol``."""
    centre = t.iloc[0].optimum_log2_lr
    near = df[(df.log2_lr - centre).abs() <= window + 1e-9]
    worst = ("", -math.inf)
    for lr, g in near.groupby("log2_lr"):
        loss = g.sort_values("width").final_val_loss.to_numpy(float)
        rise = float(np.max(np.diff(loss))) if len(loss) > 1 else -math.inf
        if rise > worst[1]:
            worst = (f"at log2 LR {lr:g}", rise)
    return worst[1] <= tol, f"largest rise of the loss with width {worst[0]}: {worst[1]:+.3f} nats"


def wider_worse(df: pd.DataFrame, t: pd.DataFrame) -> tuple[bool, str]:
    """At the narrowest width's best grid LR, is the widest model worse than the narrowest?"""
    lr = t.iloc[0].best_log2_lr
    at = df[np.isclose(df.log2_lr, lr)].set_index("width").final_val_loss
    lo, hi = t.width.min(), t.width.max()
    return bool(at.get(hi, math.inf) > at.get(lo, math.inf)), (
        f"at log2 LR {lr:g}: width {hi} {at.get(hi, math.inf):.3f} vs width {lo} {at.get(lo, math.inf):.3f}")


# ------------------------------------------------------------------ verdict


def sub_claims(df: pd.DataFrame, opt: pd.DataFrame, slopes: pd.DataFrame, block: dict, th: dict) -> list[dict]:
    label = {v: s["label"] for v, s in block["variants"].items()}
    w_lo, w_hi = opt.width.min(), opt.width.max()
    span = f"{w_lo}→{w_hi} ({w_hi // w_lo}×)"
    subs = []

    def line(variant, name, expected, criterion, decide):
        t, d = opt[opt.variant == variant], df[df.variant == variant]
        if t.empty:
            return
        if t.on_edge.any():
            status, text = "inconclusive", "optimum on the grid's edge at width " + ", ".join(map(str, t[t.on_edge].width))
        else:
            status, text = decide(d, t)
        subs.append({"name": name, "variant": variant, "status": status, "expected": expected,
                     "measured": text, "criterion": criterion})

    def transfers(d, t):
        r = shift_range(t)
        ok_nest, nest_text = nested(d, t, th["nested_window"], th["nested_tol"])
        text = f"optimum moves {r:.2f} log2 steps over {span}; {nest_text}"
        if r > th["transfer_max_shift"]:
            return "not_reproduced", text
        return ("reproduced" if ok_nest else "partially_reproduced"), text

    def shifts(d, t):
        r = shift_range(t)
        worse, worse_text = wider_worse(d, t)
        text = f"optimum moves {r:.2f} log2 steps over {span} (drift {drift_per_doubling(t):+.2f} per doubling); {worse_text}"
        return ("reproduced" if r >= th["sp_min_shift"] or worse else "not_reproduced"), text

    def transfers_plain(d, t):
        r = shift_range(t)
        return ("reproduced" if r <= th["transfer_max_shift"] else "not_reproduced"), (
            f"optimum moves {r:.2f} log2 steps over {span} (drift {drift_per_doubling(t):+.2f} per doubling)")

    def drifts(d, t):
        s, (lo, hi) = drift_per_doubling(t), th["moonlight_drift"]
        return ("reproduced" if lo <= s <= hi else "not_reproduced"), (
            f"drift {s:+.2f} log2 per doubling; optimum moves {t.iloc[-1].optimum_log2_lr - t.iloc[0].optimum_log2_lr:+.2f} over {span}")

    line("mup_adam", f"{label['mup_adam']}: the optimum transfers", "TP5 Fig. 1: μP optimum stable, wider better",
         f"optimum moves ≤ {th['transfer_max_shift']:g} log2 step over the width range and the loss does not rise with "
         f"width (tolerance {th['nested_tol']:g} nats) within {th['nested_window']:g} step of the optimum", transfers)
    line("sp_adam", f"{label['sp_adam']}: the optimum drifts", "TP5 Fig. 1: SP optimum shifts with width",
         f"optimum moves ≥ {th['sp_min_shift']:g} log2 steps, or the widest model is worse at the narrowest's best LR", shifts)
    line("muon_spectral", f"{label['muon_spectral']}: the optimum transfers",
         "spectral condition (arXiv 2310.17813; Su 10795): η width-independent",
         f"optimum moves ≤ {th['transfer_max_shift']:g} log2 step over the width range", transfers_plain)
    lo, hi = th["moonlight_drift"]
    line("muon_moonlight", f"{label['muon_moonlight']}: the optimum drifts ∝ 1/√d",
         "Su 10770: with 0.2·√max(A,B) the LR must scale ∝ 1/√d, −0.5 log2 per doubling",
         f"least-squares drift of the optimum in [{lo:g}, {hi:g}] log2 per doubling of width", drifts)

    if not slopes.empty:
        s = slopes.set_index(["variant", "layer"]).slope
        sp_logits = s.get(("sp_adam", "logits"), math.nan)
        mup = s.loc["mup_adam"] if "mup_adam" in s.index.get_level_values(0) else pd.Series(dtype=float)
        mup = mup.dropna()
        worst = mup.abs().max() if not mup.empty else math.nan
        ok = sp_logits > th["coord_sp_logits_min"] and worst < th["coord_flat"]
        subs.append({"name": "coordinate check", "variant": "sp_adam, mup_adam", "status": "reproduced" if ok else "not_reproduced",
                     "expected": "mup README: SP activations grow with width after a few steps, μP ones stay flat",
                     "measured": f"SP logits slope {sp_logits:+.2f}; largest μP |slope| {worst:.2f} ({mup.abs().idxmax() if not mup.empty else 'no slope: one width'})",
                     "criterion": f"SP logits slope > {th['coord_sp_logits_min']:g} (the check has power) and every μP-Adam "
                                  f"|slope| < {th['coord_flat']:g}, log mean|activation| against log width at the last check step"})
    return subs


def decide(subs: list[dict]) -> tuple[str, str]:
    by = {s.get("variant"): s["status"] for s in subs}
    edges = [s["name"] for s in subs if s["status"] == "inconclusive"]
    if edges:
        return "inconclusive", "an optimum lies on its grid's edge: " + "; ".join(edges)
    if by.get("sp_adam, mup_adam") == "not_reproduced" and by.get("sp_adam") == "not_reproduced":
        return "inconclusive", "neither the coordinate check nor the LR sweep shows SP failing: the test has no power"
    if by.get("mup_adam") == "not_reproduced":
        return "not_reproduced", "the μP-Adam optimum moves more than the criterion allows"
    if by.get("sp_adam") == "not_reproduced":
        return "inconclusive", "the SP optimum does not move either: the width range or the grid has no power"
    if all(s["status"] == "reproduced" for s in subs):
        return "reproduced", "μP and spectral Muon transfer, SP and Moonlight-scaled Muon drift as predicted"
    failed = [f"{s['name']} ({s['status'].replace('_', ' ')})" for s in subs if s["status"] != "reproduced"]
    return "partially_reproduced", "μP-Adam's optimum stays within the limit and SP's drifts, but: " + "; ".join(failed)


# ------------------------------------------------------------------ figures


def plot_coord(ctx, coord: pd.DataFrame, labels: dict) -> None:
    if coord.empty:
        return
    variants = list(dict.fromkeys(coord.variant))
    steps = sorted(coord.step.unique())
    widths = sorted(coord.width.unique())
    fig, axes = plt.subplots(len(variants), len(steps), figsize=(2.8 * len(steps), 2.4 * len(variants)),
                             squeeze=False, sharex=True, constrained_layout=True)
    layers = list(dict.fromkeys(coord.layer))
    palette = dict(zip(layers, sns.color_palette("viridis", len(layers))))
    for i, v in enumerate(variants):
        for j, t in enumerate(steps):
            ax = axes[i][j]
            g = coord[(coord.variant == v) & (coord.step == t) & (coord.l1 > 0)]
            sns.lineplot(data=g, x="width", y="l1", hue="layer", palette=palette, marker="o", ax=ax, legend=(i == 0 and j == len(steps) - 1))
            ax.set(xscale="log", yscale="log", title=f"{labels[v]}, t = {t}", xlabel="width", ylabel="mean |x|" if j == 0 else "")
            ax.set_xticks(widths, [str(w) for w in widths])
            ax.xaxis.set_minor_locator(NullLocator())
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7)
    ctx.save_figure(fig, "coord_check", "Coordinate check (as in microsoft/mup): mean |activation| of the embedding output, "
                    "each block's output and the logits against width, at each of the first training steps (t = 1 is the "
                    "forward pass at initialisation) at a large LR. Flat lines: activations do not blow up with width.")
    plt.close(fig)


def plot_transfer(ctx, df: pd.DataFrame, opt: pd.DataFrame, labels: dict) -> None:
    variants = list(dict.fromkeys(df.variant))
    fig, axes = plt.subplots(1, len(variants), figsize=(3.8 * len(variants), 3.2), squeeze=False, constrained_layout=True)
    palette = dict(zip(sorted(df.width.unique()), sns.color_palette("rocket_r", df.width.nunique())))
    for ax, v in zip(axes[0], variants):
        d = df[df.variant == v].assign(loss=lambda x: x.final_val_loss.replace(np.inf, np.nan))
        sns.lineplot(data=d, x="log2_lr", y="loss", hue="width", palette=palette, marker="o", ax=ax, legend=(v == variants[-1]))
        for _, o in opt[opt.variant == v].iterrows():
            ax.axvline(o.optimum_log2_lr, color=palette[o.width], lw=0.8, ls=":")
        finite = d.loss.dropna()
        if not finite.empty:  # diverged and unstable points would squash the curves: clip the view
            ax.set_ylim(finite.min() - 0.05, min(finite.max(), finite.min() + 1.5) + 0.05)
        ax.set(title=labels[v], xlabel="log2 learning rate", ylabel="final val loss (nats/token)" if v == variants[0] else "")
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="width")
    ctx.save_figure(fig, "transfer", "Final validation loss against log2 learning rate, one curve per width, same tokens "
                    "and depth at every width (the Tensor Programs V Figure 1 plot); dotted: the interpolated optimum.")
    plt.close(fig)


def plot_optima(ctx, opt: pd.DataFrame, labels: dict) -> None:
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for (v, t), color in zip(opt.groupby("variant", sort=False), sns.color_palette("deep")):
        ax.plot(np.log2(t.width), t.optimum_log2_lr, "o-", color=color, label=labels[v])
        if v == "muon_moonlight":
            x = np.log2(t.width.to_numpy(float))
            ax.plot(x, t.optimum_log2_lr.iloc[0] - 0.5 * (x - x[0]), ls="--", color=color, lw=1, label="−0.5 per doubling (Su)")
    widths = sorted(opt.width.unique())
    ax.set_xticks(np.log2(widths), [str(w) for w in widths])
    ax.set(xlabel="width (log2 scale)", ylabel="optimal log2 LR")
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "optima", "Optimal log2 learning rate against log2 width per variant (flat = transfers).")
    plt.close(fig)


# ------------------------------------------------------------------ analysis


def analyze(ctx):
    th, block = ctx.thresholds, ctx.scale_spec
    labels = {v: s["label"] for v, s in block["variants"].items()}
    coord = coord_frame(ctx.runs, block)
    slopes = coord_slopes(coord)
    df = transfer_frame(ctx.runs, block)
    opt = optima_table(df)
    subs = sub_claims(df, opt, slopes, block, th)
    status, reason = decide(subs)

    meas = {}
    for v, t in opt.groupby("variant", sort=False):
        meas[f"optimum shift, {labels[v]}"] = measured(
            shift_range(t), t.optimum_log2_lr.min(), t.optimum_log2_lr.max(), "log2 steps",
            note=f"range of the optimal log2 LR over widths; drift {drift_per_doubling(t):+.2f} per doubling")
    s = slopes.set_index(["variant", "layer"]).slope if not slopes.empty else pd.Series(dtype=float)
    if ("sp_adam", "logits") in s.index:
        meas["coordinate check, SP-Adam logits slope"] = measured(s["sp_adam", "logits"], unit="log l1 / log width")
    if "mup_adam" in s.index.get_level_values(0):
        meas["coordinate check, largest μP-Adam |slope|"] = measured(s["mup_adam"].abs().max(), unit="log l1 / log width")

    plot_coord(ctx, coord, labels)
    plot_transfer(ctx, df, opt, labels)
    plot_optima(ctx, opt, labels)
    notes = [f"{len(df)} transfer runs ({(df.status != 'ok').sum()} diverged, counted as ∞), {coord.width.nunique()} "
             f"coordinate-check widths; widths {', '.join(map(str, sorted(df.width.unique())))}, depth "
             f"{block['base']['n_layers']}, head dim {block['head_dim']}, μP base width {block['base_width']}"]
    for v, g in slopes.groupby("variant", sort=False):
        notes.append(f"coordinate-check slopes, {labels[v]}: " + ", ".join(f"{r.layer} {r.slope:+.2f}" for r in g.itertuples()))
    slopes.assign(label=slopes.variant.map(labels)).to_csv(ctx.out_dir / "coord_slopes.csv", index=False)
    df.to_csv(ctx.out_dir / "runs.csv", index=False)
    table = opt.assign(variant=opt.variant.map(labels))
    return ctx.verdict(status, meas, reason + ".", subs, notes), table
