"""mup_transfer: does the best learning rate stay put as the model widens (μP), and drift in SP?

Two stages:
  1. ``plan_runs``: a coordinate check (a few steps at a large LR, mean |activation| per layer
     recorded, at every check width) and, per variant, the power-of-2 LR grid at every transfer
     width with the first seed; same tokens and depth at every width.
  2. ``select_runs``: at the seed-check widths, every variant again with each extra seed at the
     first seed's grid optimum and its two neighbours: the three runs each seed's optimum is read
     from.
``analyze``: slopes of log mean|activation| against log width; per variant, width and seed the
optimal log2 LR (the vertex of the parabola through those three runs), the least-squares drift of
the per-seed optima against log2 width with its t interval, and the verdict per sub-claim decided
on that interval (Tensor Programs V Fig. 1; Su, kexue.fm/archives/10770 for the Muon scales).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.ticker import NullLocator
from scipy import stats

from optclaims.analysis import interpolated_optimum, measured, pooled_seed_sigma, run_fields, sub_claim, tokens_of
from optclaims.errors import ConfigError
from optclaims.parametrization import with_base_width
from optclaims.plotting import (COLORS, DIMENSIONLESS, DIMENSIONS, LOG2, NATS, Style, axis_label, plt, sequential, sns,
                                style)

# ------------------------------------------------------------------ plan


def variant_fields(block: dict, name: str) -> dict:
    return with_base_width(block["variants"][name]["fields"], block["base_width"])


def shape(width: int, head_dim: int) -> dict:
    return {"d_model": width, "n_heads": max(1, width // head_dim)}


def seed_check(block: dict) -> dict:
    """The scale's ``seed_check`` (extra seeds, and the widths that get them), checked."""
    check = block.get("seed_check")
    if not isinstance(check, dict) or set(check) != {"seeds", "widths"}:
        raise ConfigError(f"invalid mup_transfer scale: seed_check = {check!r} must be a mapping of seeds and widths")
    seeds, widths = check["seeds"], check["widths"]
    if not seeds or not all(isinstance(s, int) and s >= 0 and s != block["seed"] for s in seeds):
        raise ConfigError(f"invalid mup_transfer scale: seed_check.seeds = {seeds!r} must be seeds (integers ≥ 0) "
                          f"other than the first seed {block['seed']}")
    if not widths or not set(widths) <= set(block["widths"]):
        raise ConfigError(f"invalid mup_transfer scale: seed_check.widths = {widths!r} must be some of widths = {block['widths']}")
    return check


def plan_runs(block: dict) -> list[dict]:
    seed_check(block)
    coord = block["coord_check"]
    runs = [{**coord["base"], **variant_fields(block, v), **shape(w, block["head_dim"]), "lr": lr,
             "steps": coord["steps"], "activation_steps": coord["steps"], "seed": block["seed"]}
            for v, lr in coord["lr"].items() for w in coord["widths"]]
    runs += [{**block["base"], **variant_fields(block, v), **shape(w, block["head_dim"]), "lr": 2.0 ** e,
              "seed": block["seed"]}
             for v, spec in block["variants"].items() for w in block["widths"] for e in spec["log2_lr"]]
    return runs


def select_runs(ctx) -> list[dict]:
    """Stage 2: at each seed-check width, every variant with each extra seed at the first seed's
    grid optimum and its neighbours on the grid (the same configs but the seed)."""
    block = ctx.scale_spec
    check = seed_check(block)
    configs = {r.run_id: r.config for r in ctx.runs}
    df = transfer_frame(ctx.runs, block)
    first = df[(df.seed == block["seed"]) & df.width.isin(check["widths"])]
    chosen = []
    for _, g in first.groupby(["variant", "width"], sort=False):
        for rid in around_best(g).run_id:
            chosen += [{**run_fields(configs[rid]), "seed": s} for s in check["seeds"]]
    return chosen


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
        if not r.config.get("activation_steps"):
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


TRANSFER_COLUMNS = ["run_id", "variant", "width", "seed", "lr", "log2_lr", "status", "final_val_loss", "tokens",
                    "tokens_per_param", "wall_seconds"]


def tokens_per_param(run) -> float:
    """Training tokens per non-embedding parameter (summary.json's n_params_matmul: matmul weights,
    readout and gains); NaN where the summary does not say."""
    n = run.summary.get("n_params_matmul")
    return tokens_of(run.config) / n if n else math.nan


def transfer_frame(runs, block: dict) -> pd.DataFrame:
    rows = [{"run_id": r.run_id, "variant": variant_of(r.config, block), "width": r.config["d_model"],
             "seed": r.config["seed"], "lr": r.config["lr"], "log2_lr": math.log2(r.config["lr"]),
             "status": r.summary["status"], "final_val_loss": r.final_val_loss, "tokens": tokens_of(r.config),
             "tokens_per_param": tokens_per_param(r), "wall_seconds": r.summary.get("wall_seconds")}
            for r in runs if not r.config.get("activation_steps")]
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


# ------------------------------------------------------------------ optima


def around_best(g: pd.DataFrame) -> pd.DataFrame:
    """One seed's rows at its grid's best LR (lowest final loss; the first of equals, as
    interpolated_optimum) and that LR's neighbours on the grid."""
    g = g.sort_values("log2_lr").reset_index(drop=True)
    loss = g.final_val_loss.where(np.isfinite(g.final_val_loss))
    if loss.isna().all():
        return g.iloc[0:0]
    i = int(loss.idxmin())
    return g.iloc[max(i - 1, 0):i + 2]


def seed_optimum(log2_lr: np.ndarray, loss: np.ndarray) -> tuple[float, str]:
    """(optimum, "") of one seed from its runs at three LRs, read as interpolated_optimum reads the
    first seed around its grid best: the vertex of the parabola through them (the best of the three
    if the parabola has no minimum), kept within the three LRs; or (NaN, why it is unresolved). A
    diverged run among the three leaves it unresolved, rather than read at the grid point."""
    if len(log2_lr) != 3:
        return math.nan, "its grid optimum lies on the grid's edge"
    if not np.isfinite(loss).all():
        return math.nan, "a run beside its optimum diverged"
    a, b, _ = np.polyfit(log2_lr, loss, 2)
    vertex = -b / (2 * a) if a > 0 else log2_lr[int(np.argmin(loss))]
    return float(np.clip(vertex, log2_lr[0], log2_lr[-1])), ""


def seed_readings(df: pd.DataFrame, first_seed: int) -> pd.DataFrame:
    """Per variant, width and seed: the optimum read from the first seed's grid best and its
    neighbours (every seed at the same three LRs), or why it is unresolved."""
    rows = []
    for (variant, width), g in df.groupby(["variant", "width"], sort=False):
        lrs = around_best(g[g.seed == first_seed]).log2_lr.to_numpy(float)
        for seed, s in g.groupby("seed"):
            at = s[np.isclose(s.log2_lr.to_numpy(float)[:, None], lrs[None, :]).any(axis=1)].sort_values("log2_lr")
            if at.empty:
                continue
            if len(at) < len(lrs):
                value, why = math.nan, "not run at all three LRs around the grid optimum"
            else:
                value, why = seed_optimum(at.log2_lr.to_numpy(float), at.final_val_loss.to_numpy(float))
            rows.append({"variant": variant, "width": width, "seed": seed, "optimum": value, "unresolved": why})
    return pd.DataFrame(rows, columns=["variant", "width", "seed", "optimum", "unresolved"])


def optima_table(df: pd.DataFrame, readings: pd.DataFrame, first_seed: int) -> pd.DataFrame:
    """Per variant and width: the first seed's grid optimum, each seed's optimum, their mean and
    range, the shift of the mean from the narrowest width, tokens per parameter."""
    rows = []
    for (variant, width), g in df.groupby(["variant", "width"], sort=False):
        first = g[g.seed == first_seed]
        grid_opt, _, edge = interpolated_optimum(first.log2_lr.to_numpy(float), first.final_val_loss.to_numpy(float))
        r = readings[(readings.variant == variant) & (readings.width == width)]
        ok = r.optimum.dropna()
        rows.append({"variant": variant, "width": width, "best_log2_lr": grid_opt, "on_edge": edge,
                     "optimum_log2_lr": ok.mean() if len(ok) else math.nan,
                     "seed_low": ok.min() if len(ok) else math.nan, "seed_high": ok.max() if len(ok) else math.nan,
                     "seed_optima": ", ".join(f"seed {s.seed}: {s.optimum:.2f}" if s.unresolved == "" else
                                              f"seed {s.seed}: unresolved" for s in r.itertuples()),
                     "best_loss": g.final_val_loss.min(), "tokens_per_param": g.tokens_per_param.min(),
                     "diverged": int((g.status != "ok").sum()), "runs": len(g)})
    order = {v: i for i, v in enumerate(dict.fromkeys(df.variant))}
    t = pd.DataFrame(rows).sort_values(["variant", "width"], key=lambda s: s if s.name == "width" else s.map(order))
    t["shift_from_narrowest"] = t.optimum_log2_lr - t.groupby("variant").optimum_log2_lr.transform("first")
    return t.reset_index(drop=True)


def least_squares(readings: pd.DataFrame) -> dict:
    """The least-squares line of the resolved per-seed optima against log2 width: drift (slope per
    doubling), intercept, residual sum of squares, points, Σ(x − x̄)², doublings spanned."""
    r = readings.dropna(subset=["optimum"])
    x, y = np.log2(r.width.to_numpy(float)), r.optimum.to_numpy(float)
    out = {"drift": math.nan, "intercept": math.nan, "rss": math.nan, "n": len(x),
           "sxx": float(((x - x.mean()) ** 2).sum()) if len(x) else 0.0,
           "doublings": float(x.max() - x.min()) if len(x) else 0.0}
    if np.unique(x).size >= 2:
        out["drift"], out["intercept"] = (float(v) for v in np.polyfit(x, y, 1))
        out["rss"] = float(((y - out["drift"] * x - out["intercept"]) ** 2).sum())
    return out


def residual_scatter(readings: pd.DataFrame) -> tuple[float, int]:
    """(s, degrees of freedom): the standard deviation of one seed's optimum about its variant's
    line, pooled over the variants, Σ RSS / Σ (n − 2): seed noise and lack of fit, with the
    degrees of freedom of all four lines rather than the few of one."""
    fits = [least_squares(r) for _, r in readings.groupby("variant", sort=False)]
    fits = [f for f in fits if f["n"] > 2 and np.isfinite(f["rss"])]
    dof = sum(f["n"] - 2 for f in fits)
    return (math.sqrt(sum(f["rss"] for f in fits) / dof), dof) if dof else (math.nan, 0)


def drift_fit(readings: pd.DataFrame, level: float, scatter: tuple[float, int]) -> dict:
    """One variant's drift per doubling with Student's t interval from the pooled residual
    ``scatter`` (s / √Σ(x − x̄)², t on its degrees of freedom), and the shift over the width range
    (drift × doublings) with its interval."""
    out = least_squares(readings)
    s, dof = scatter
    out["low"] = out["high"] = math.nan
    if np.isfinite(out["drift"]) and dof > 0 and out["sxx"] > 0:
        half = float(stats.t.ppf(0.5 + level / 2, dof)) * s / math.sqrt(out["sxx"])
        out["low"], out["high"] = out["drift"] - half, out["drift"] + half
    out["dof"] = dof
    out.update({"shift": out["drift"] * out["doublings"], "shift_low": out["low"] * out["doublings"],
                "shift_high": out["high"] * out["doublings"]})
    return out


def interval_against(low: float, high: float, lo: float, hi: float) -> str:
    """Where the interval [low, high] lies against the band [lo, hi]: inside, outside or straddling."""
    if lo <= low and high <= hi:
        return "inside"
    if high < lo or low > hi:
        return "outside"
    return "straddling"


def nested(df: pd.DataFrame, t: pd.DataFrame, window: float, tol: float) -> tuple[bool, str]:
    """Wider is better near the optimum: at every grid LR within ``window`` log2 steps of the narrowest
    width's optimum, the seed-mean loss does not rise with width by more than ``tol``."""
    centre = t.iloc[0].optimum_log2_lr
    near = df[(df.log2_lr - centre).abs() <= window + 1e-9]
    means = near.groupby(["log2_lr", "width"]).final_val_loss.mean().reset_index()
    worst = ("", -math.inf)
    for lr, g in means.groupby("log2_lr"):
        loss = g.sort_values("width").final_val_loss.to_numpy(float)
        rise = float(np.max(np.diff(loss))) if len(loss) > 1 else -math.inf
        if rise > worst[1]:
            worst = (f"at log2 LR {lr:g}", rise)
    return worst[1] <= tol, f"largest rise of the seed-mean loss with width {worst[0]}: {worst[1]:+.3f} nats"


def wider_worse(df: pd.DataFrame, t: pd.DataFrame, sigmas: float) -> tuple[bool, str]:
    """At the narrowest width's best grid LR, is the widest model's seed-mean loss above the
    narrowest's by more than ``sigmas`` standard errors of the difference (σ: the variant's seed
    standard deviation of the loss, pooled over its seeded points)?"""
    lr, lo, hi = t.iloc[0].best_log2_lr, t.width.min(), t.width.max()
    at = df[np.isclose(df.log2_lr, lr)]
    a, b = at[at.width == hi].final_val_loss, at[at.width == lo].final_val_loss
    sigma = pooled_seed_sigma(df, ["width", "log2_lr"])
    if a.empty or b.empty or not np.isfinite(sigma):
        return False, f"at log2 LR {lr:g}: no seed σ of the loss, or a width not run there"
    diff, se = a.mean() - b.mean(), sigma * math.sqrt(1 / len(a) + 1 / len(b))
    return bool(diff > sigmas * se), (f"at log2 LR {lr:g}: width {hi} {a.mean():.3f} vs width {lo} {b.mean():.3f} "
                                      f"(difference {diff:+.3f}, {sigmas:g} standard errors = {sigmas * se:.3f} nats)")


# ------------------------------------------------------------------ verdict


def floor_gate(t: pd.DataFrame, floor: float) -> str:
    """Why a line cannot be decided for its training length: widths below the tokens-per-parameter floor."""
    low = t[~(t.tokens_per_param >= floor)]
    if low.empty:
        return ""
    at = lambda r: f"{r.width} ({r.tokens_per_param:.2f})" if np.isfinite(r.tokens_per_param) else f"{r.width} (unknown)"  # noqa: E731
    return f"below the stated tokens-per-parameter floor of {floor:g} at width " + ", ".join(map(at, low.itertuples()))


def reading_gate(t: pd.DataFrame, readings: pd.DataFrame, fit: dict) -> str:
    """Why a line's optima cannot be read: an optimum on its grid's edge, an unresolved seed, no interval."""
    why = []
    if t.on_edge.any():
        why.append("optimum on the grid's edge at width " + ", ".join(map(str, t[t.on_edge].width)))
    bad = readings[readings.unresolved != ""]
    why += [f"width {r.width}, seed {r.seed}: unresolved ({r.unresolved})" for r in bad.itertuples()]
    if not why and not np.isfinite(fit["low"]):
        why.append(f"no interval on the drift ({fit['n']} resolved optima over {t.width.nunique()} widths, "
                   f"{fit['dof']} degrees of freedom)")
    return "; ".join(why)


def fit_text(fit: dict, level: float) -> str:
    return (f"shift over the range {fit['shift']:+.2f} log2 steps [{fit['shift_low']:+.2f}, {fit['shift_high']:+.2f}] "
            f"(drift {fit['drift']:+.2f} per doubling [{fit['low']:+.2f}, {fit['high']:+.2f}], {level:.0%} t interval; "
            f"{fit['n']} per-seed optima, residual scatter pooled over the variants, {fit['dof']} degrees of freedom)")


def transfer_status(fit: dict, limit: float) -> str:
    """Transfers if the shift's interval lies within ±limit; not if wholly outside; else undecided."""
    return {"inside": "reproduced", "outside": "not_reproduced", "straddling": "inconclusive"}[
        interval_against(fit["shift_low"], fit["shift_high"], -limit, limit)]


def drift_status(fit: dict, min_shift: float) -> str:
    """Drifts if the shift's interval lies wholly beyond ±min_shift; not if wholly within; else undecided."""
    if fit["shift_low"] >= min_shift or fit["shift_high"] <= -min_shift:
        return "reproduced"
    return "not_reproduced" if -min_shift < fit["shift_low"] and fit["shift_high"] < min_shift else "inconclusive"


def band_status(fit: dict, band) -> str:
    """In the band if the drift's interval lies inside it; not if wholly outside; else undecided."""
    return {"inside": "reproduced", "outside": "not_reproduced", "straddling": "inconclusive"}[
        interval_against(fit["low"], fit["high"], *band)]


def variant_lines(df: pd.DataFrame, opt: pd.DataFrame, readings: pd.DataFrame, block: dict, th: dict) -> list[dict]:
    label = {v: s["label"] for v, s in block["variants"].items()}
    level, limit, scatter = th["confidence"], th["transfer_max_shift"], residual_scatter(readings)
    subs = []

    def line(variant, name, expected, criterion, decide):
        t, d = opt[opt.variant == variant], df[df.variant == variant]
        if t.empty:
            return
        r = readings[readings.variant == variant]
        fit = drift_fit(r, level, scatter)
        floor, gate = floor_gate(t, th["min_tokens_per_param"]), reading_gate(t, r, fit)
        if floor:
            status, text = "inconclusive", floor
        else:
            status, text = decide(d, t, fit, gate)
        subs.append({**sub_claim(name, status, expected, text, criterion), "variant": variant})

    def transfers(d, t, fit, gate):
        if gate:
            return "inconclusive", gate
        ok_nest, nest_text = nested(d, t, th["nested_window"], th["nested_tol"])
        status = transfer_status(fit, limit)
        if status == "reproduced" and not ok_nest:
            status = "partially_reproduced"
        return status, f"{fit_text(fit, level)}; {nest_text}"

    def shifts(d, t, fit, gate):
        worse, worse_text = wider_worse(d, t, th["worse_sigmas"])
        if worse:
            return "reproduced", f"{worse_text}; {fit_text(fit, level) if not gate else gate}"
        if gate:
            return "inconclusive", f"{gate}; {worse_text}"
        return drift_status(fit, th["sp_min_shift"]), f"{fit_text(fit, level)}; {worse_text}"

    def transfers_plain(d, t, fit, gate):
        return ("inconclusive", gate) if gate else (transfer_status(fit, limit), fit_text(fit, level))

    def drifts(d, t, fit, gate):
        return ("inconclusive", gate) if gate else (band_status(fit, th["moonlight_drift"]), fit_text(fit, level))

    pct, lo, hi = f"{level:.0%}", *th["moonlight_drift"]
    line("mup_adam", f"{label['mup_adam']}: the optimum transfers", "TP5 Fig. 1: μP optimum stable, wider better",
         f"the {pct} interval of the optimum's shift over the width range lies within ±{limit:g} log2 steps, and the "
         f"seed-mean loss does not rise with width by more than {th['nested_tol']:g} nats within {th['nested_window']:g} "
         f"step of the narrowest width's optimum", transfers)
    line("sp_adam", f"{label['sp_adam']}: the optimum drifts", "TP5 Fig. 1: SP optimum shifts with width",
         f"the {pct} interval of the shift lies wholly beyond ±{th['sp_min_shift']:g} log2 steps, or at the narrowest "
         f"width's best LR the widest model is worse by more than {th['worse_sigmas']:g} standard errors", shifts)
    line("muon_spectral", f"{label['muon_spectral']}: the optimum transfers",
         "spectral condition (arXiv 2310.17813; Su 10795): η width-independent",
         f"the {pct} interval of the shift lies within ±{limit:g} log2 steps", transfers_plain)
    line("muon_moonlight", f"{label['muon_moonlight']}: the optimum drifts ∝ 1/√d",
         "Su 10770: with 0.2·√max(A,B) the LR must scale ∝ 1/√d, −0.5 log2 per doubling",
         f"the {pct} interval of the drift lies in [{lo:g}, {hi:g}] log2 per doubling of width", drifts)
    return subs


def coord_line(slopes: pd.DataFrame, th: dict) -> list[dict]:
    if slopes.empty:
        return []
    s = slopes.set_index(["variant", "layer"]).slope
    sp_logits = s.get(("sp_adam", "logits"), math.nan)
    mup = s.loc["mup_adam"].dropna() if "mup_adam" in s.index.get_level_values(0) else pd.Series(dtype=float)
    worst = mup.abs().max() if not mup.empty else math.nan
    ok = sp_logits > th["coord_sp_logits_min"] and worst < th["coord_flat"]
    where = mup.abs().idxmax() if not mup.empty else "no slope: one width"
    return [{**sub_claim("coordinate check", "reproduced" if ok else "not_reproduced",
                         "mup README: SP activations grow with width after a few steps, μP ones stay flat",
                         f"SP logits slope {sp_logits:+.2f}; largest μP |slope| {worst:.2f} ({where})",
                         f"SP logits slope > {th['coord_sp_logits_min']:g} (the check has power) and every μP-Adam "
                         f"|slope| < {th['coord_flat']:g}, log mean|activation| against log width at the last check step"),
             "variant": "sp_adam, mup_adam"}]


def decide(subs: list[dict]) -> tuple[str, str]:
    by = {s.get("variant"): s for s in subs}
    status = {v: s["status"] for v, s in by.items()}
    undecided = [f"{s['name']}: {s['measured'].split(';')[0]}" for s in subs if s["status"] == "inconclusive"]
    if status.get("mup_adam") == "inconclusive":
        return "inconclusive", "the μP-Adam line cannot be decided (" + by["mup_adam"]["measured"].split(";")[0] + ")"
    if status.get("sp_adam, mup_adam") == "not_reproduced" and status.get("sp_adam") == "not_reproduced":
        return "inconclusive", "neither the coordinate check nor the LR sweep shows SP failing: the test has no power"
    if status.get("mup_adam") == "not_reproduced":
        return "not_reproduced", "the interval of μP-Adam's optimum shift lies beyond the limit"
    if undecided:
        return "inconclusive", "a line cannot be decided: " + "; ".join(undecided)
    if status.get("sp_adam") == "not_reproduced":
        return "inconclusive", "the SP optimum does not move either: the width range or the grid has no power"
    if all(s["status"] == "reproduced" for s in subs):
        return "reproduced", "μP and spectral Muon transfer, SP and Moonlight-scaled Muon drift as predicted"
    failed = [f"{s['name']} ({s['status'].replace('_', ' ')})" for s in subs if s["status"] != "reproduced"]
    return "partially_reproduced", "μP-Adam's optimum stays within the limit and SP's drifts, but: " + "; ".join(failed)


def judge(runs, block: dict, th: dict) -> dict:
    """Everything the verdict rests on, without figures: frames, optima, sub-claims, status."""
    coord = coord_frame(runs, block)
    slopes = coord_slopes(coord)
    df = transfer_frame(runs, block)
    readings = seed_readings(df, block["seed"])
    opt = optima_table(df, readings, block["seed"]) if not df.empty else pd.DataFrame()
    subs = variant_lines(df, opt, readings, block, th) + coord_line(slopes, th) if not df.empty else coord_line(slopes, th)
    status, reason = decide(subs)
    return {"coord": coord, "slopes": slopes, "df": df, "readings": readings, "opt": opt, "subs": subs,
            "status": status, "reason": reason}


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
    palette = sequential(layers)
    for i, v in enumerate(variants):
        for j, t in enumerate(steps):
            ax = axes[i][j]
            g = coord[(coord.variant == v) & (coord.step == t) & (coord.l1 > 0)]
            sns.lineplot(data=g, x="width", y="l1", hue="layer", palette=palette, marker="o", ax=ax, legend=(i == 0 and j == len(steps) - 1))
            ax.set(xscale="log", yscale="log", title=f"{labels[v]}, t = {t}", xlabel=axis_label("width", DIMENSIONS),
                   ylabel=axis_label("mean |x|", DIMENSIONLESS) if j == 0 else "")
            ax.set_xticks(widths, [str(w) for w in widths])
            ax.xaxis.set_minor_locator(NullLocator())
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7)
    ctx.save_figure(fig, "coord_check", "Coordinate check (as in microsoft/mup): mean |activation| of the embedding output, "
                    "each block's output and the logits against width, at each of the first training steps (t = 1 is the "
                    "forward pass at initialisation) at a large LR. Flat lines: activations do not blow up with width.")
    plt.close(fig)


def plot_transfer(ctx, df: pd.DataFrame, opt: pd.DataFrame, labels: dict, first_seed: int) -> None:
    variants = list(dict.fromkeys(df.variant))
    fig, axes = plt.subplots(1, len(variants), figsize=(3.8 * len(variants), 3.2), squeeze=False, constrained_layout=True)
    palette = sequential(sorted(df.width.unique()))
    for ax, v in zip(axes[0], variants):
        d = df[df.variant == v].assign(loss=lambda x: x.final_val_loss.replace(np.inf, np.nan))
        first, extra = d[d.seed == first_seed], d[d.seed != first_seed]
        sns.lineplot(data=first, x="log2_lr", y="loss", hue="width", palette=palette, marker="o", ax=ax, legend=(v == variants[-1]))
        if not extra.empty:
            ax.scatter(extra.log2_lr, extra.loss, marker="x", s=22, c=[palette[w] for w in extra.width], zorder=3)
        for _, o in opt[opt.variant == v].iterrows():
            ax.axvline(o.optimum_log2_lr, color=palette[o.width], lw=0.8, ls=":")
        finite = d.loss.dropna()
        if not finite.empty:  # diverged and unstable points would squash the curves: clip the view
            ax.set_ylim(finite.min() - 0.05, min(finite.max(), finite.min() + 1.5) + 0.05)
        ax.set(title=labels[v], xlabel=axis_label("learning rate", LOG2),
               ylabel=axis_label("final val loss", NATS) if v == variants[0] else "")
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="width")
    ctx.save_figure(fig, "transfer", "Final validation loss against log2 learning rate, one curve per width (first seed, "
                    "the whole grid), same tokens and depth at every width (the Tensor Programs V Figure 1 plot); crosses: "
                    "the extra seeds at the grid optimum and its neighbours; dotted: the seed-mean optimum.")
    plt.close(fig)


def plot_optima(ctx, readings: pd.DataFrame, labels: dict, th: dict) -> None:
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    limit, (lo, hi) = th["transfer_max_shift"], th["moonlight_drift"]
    for i, (v, r) in enumerate(readings.groupby("variant", sort=False)):
        look = style(v, fallback=Style(labels[v], COLORS[i % len(COLORS)], "o"))
        color = look.color
        r = r.dropna(subset=["optimum"])
        fit = least_squares(r)
        if r.empty:
            continue
        x = np.log2(r.width.to_numpy(float))
        ax.scatter(x, r.optimum, color=color, marker=look.marker, s=18, label=labels[v])
        if not np.isfinite(fit["drift"]):
            continue
        xs = np.linspace(x.min(), x.max(), 2)
        start = r.optimum.mean() - fit["drift"] * (x.mean() - x.min())
        ax.plot(xs, start + fit["drift"] * (xs - xs[0]), color=color, lw=1)
        allowed = {"mup_adam": (-limit / fit["doublings"], limit / fit["doublings"]),
                   "muon_spectral": (-limit / fit["doublings"], limit / fit["doublings"]), "muon_moonlight": (lo, hi)}
        if v in allowed:
            ax.fill_between(xs, start + allowed[v][0] * (xs - xs[0]), start + allowed[v][1] * (xs - xs[0]),
                            color=color, alpha=0.12, lw=0)
    widths = sorted(readings.width.unique())
    ax.set_xticks(np.log2(widths), [str(w) for w in widths])
    ax.set(xlabel=axis_label("width", f"{DIMENSIONS}, log2 scale"), ylabel=axis_label("optimal learning rate", LOG2))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "optima", f"Optimal log2 learning rate of each seed against log2 width per variant, with the "
                    f"least-squares drift (lines). Shaded from each fitted start: where the line may end and still pass, "
                    f"a shift within ±{limit:g} log2 steps over the range for μP-Adam and Muon-spectral, a drift of "
                    f"{lo:g} to {hi:g} per doubling for Muon-moonlight (the verdict asks this of the line's "
                    f"{th['confidence']:.0%} interval, not only of the line).")
    plt.close(fig)


# ------------------------------------------------------------------ analysis


def regime_notes(opt: pd.DataFrame, th: dict) -> str:
    per_width = opt.groupby("width").tokens_per_param.min()
    return ("tokens per non-embedding parameter by width: " + ", ".join(f"{w} {v:.2f}" for w, v in per_width.items())
            + f" (floor {th['min_tokens_per_param']:g})")


def analyze(ctx):
    th, block = ctx.thresholds, ctx.scale_spec
    labels = {v: s["label"] for v, s in block["variants"].items()}
    j = judge(ctx.runs, block, th)
    df, opt, readings, slopes, coord = j["df"], j["opt"], j["readings"], j["slopes"], j["coord"]

    meas, scatter = {}, residual_scatter(readings)
    for v, r in readings.groupby("variant", sort=False):
        fit = drift_fit(r, th["confidence"], scatter)
        meas[f"optimum shift, {labels[v]}"] = measured(
            fit["shift"], fit["shift_low"], fit["shift_high"], "log2 steps",
            note=f"least-squares drift × {fit['doublings']:g} doublings; {th['confidence']:.0%} t interval from "
                 f"{fit['n']} per-seed optima (residual scatter {scatter[0]:.2f} log2, pooled over the variants, "
                 f"{scatter[1]} dof)")
        meas[f"drift per doubling, {labels[v]}"] = measured(fit["drift"], fit["low"], fit["high"], "log2 LR per doubling")
    s = slopes.set_index(["variant", "layer"]).slope if not slopes.empty else pd.Series(dtype=float)
    if ("sp_adam", "logits") in s.index:
        meas["coordinate check, SP-Adam logits slope"] = measured(s["sp_adam", "logits"], unit="log l1 / log width")
    if "mup_adam" in s.index.get_level_values(0):
        meas["coordinate check, largest μP-Adam |slope|"] = measured(s["mup_adam"].abs().max(), unit="log l1 / log width")

    plot_coord(ctx, coord, labels)
    plot_transfer(ctx, df, opt, labels, block["seed"])
    plot_optima(ctx, readings, labels, th)
    notes = [f"{len(df)} transfer runs ({(df.status != 'ok').sum()} diverged, counted as ∞) over seeds "
             f"{', '.join(map(str, sorted(df.seed.unique())))}, {coord.width.nunique()} coordinate-check widths; widths "
             f"{', '.join(map(str, sorted(df.width.unique())))}, depth {block['base']['n_layers']}, head dim "
             f"{block['head_dim']}, μP base width {block['base_width']}", regime_notes(opt, th)]
    for v, g in slopes.groupby("variant", sort=False):
        notes.append(f"coordinate-check slopes, {labels[v]}: " + ", ".join(f"{r.layer} {r.slope:+.2f}" for r in g.itertuples()))
    slopes.assign(label=slopes.variant.map(labels)).to_csv(ctx.out_dir / "coord_slopes.csv", index=False)
    readings.assign(label=readings.variant.map(labels)).to_csv(ctx.out_dir / "seed_optima.csv", index=False)
    df.to_csv(ctx.out_dir / "runs.csv", index=False)
    table = opt.assign(variant=opt.variant.map(labels))
    return ctx.verdict(j["status"], meas, j["reason"] + ".", j["subs"], notes), table
