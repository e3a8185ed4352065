"""muon_efficiency: does Muon reach AdamW's loss with about half the tokens?

Four stages (SELECTION_STAGES = 3 selections after the plan):
  1. ``plan_runs``: at the smallest size, each optimizer's LR grid at the full budget, defaults.
  2. coordinate descent at the smallest size: each tuned hyper-parameter's alternatives, one at a
     time, at the optimizer's best LR (Wen et al., arXiv 2509.02046: an AdamW tuned in its LR
     alone can manufacture a "2×" on small models).
  3. the tuned settings at every size over the LR grid again every seed, so each optimum is read from seed means with seeds at and beside it)
  4. at each best LR every budget (a full schedule each, never an intermediate checkpoint) and
     seed, and Muon at AdamW's best LR.
``analyze`` reads the multiplier inside the measured data: Muon's loss over its budgets,
interpolated in log tokens, at AdamW's full-budget loss.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optclaims.analysis import interpolated_optimum, measured, pooled_seed_sigma, sub_claim, tokens_of
from optclaims.optim.schedules import total_decay
from optclaims.plotting import (LOG2, NATS, TIMES, TOKENS, axis_label, palette, plt, reference_band, reference_line,
                                reference_lines, sns, style)

SELECTION_STAGES = 3
HYPERS = ("beta2", "weight_decay", "warmup_frac")  # what coordinate descent may tune besides the LR
OPTIMIZERS = ("adamw", "muon")

# ------------------------------------------------------------------ plan


def smallest_size(block: dict) -> str:
    return next(iter(block["sizes"]))


def run_spec(block: dict, size: str, opt: str, hypers: dict, lr: float, budget: float, seed: int) -> dict:
    """Run fields of one (size, optimizer, hyper-parameters, LR, budget fraction, seed)."""
    shape = {k: v for k, v in block["sizes"][size].items() if k != "steps"}
    steps = max(2, round(budget * block["sizes"][size]["steps"]))
    warmup = max(1, min(steps - 1, round(hypers["warmup_frac"] * steps)))
    return {**block["base"], **shape, **block["optimizers"][opt]["fields"], "beta2": hypers["beta2"],
            "weight_decay": hypers["weight_decay"], "lr": lr, "steps": steps, "warmup_steps": warmup, "seed": seed}


def defaults(block: dict, opt: str) -> dict:
    return dict(block["optimizers"][opt]["defaults"])


def plan_runs(block: dict) -> list[dict]:
    """Stage 1: the LR grid of each optimizer at the smallest size, full budget, defaults, first seed."""
    size, seed = smallest_size(block), block["seeds"][0]
    return [run_spec(block, size, opt, defaults(block, opt), lr, 1.0, seed) for opt in OPTIMIZERS for lr in block["lr_grid"]]


# ------------------------------------------------------------------ reading runs


def size_of(cfg: dict, block: dict) -> str | None:
    for name, s in block["sizes"].items():
        if all(cfg[k] == v for k, v in s.items() if k != "steps"):
            return name
    return None


FRAME_COLUMNS = ["run_id", "size", "optimizer", "lr", *HYPERS, "budget", "steps", "seed", "tokens", "n_params", "status",
                 "final_val_loss", "tokens_per_s", "population_size", "update_rms_hidden", "_cfg"]


def runs_frame(runs, block: dict) -> pd.DataFrame:
    """One row per run: size, optimizer, its hyper-parameters, LR, budget fraction, seed, results."""
    rows = []
    for r in runs:
        c, s = r.config, r.summary
        size = size_of(c, block)
        if size is None:
            continue
        full = block["sizes"][size]["steps"]
        opt = c["optimizer"]
        warm = block["optimizers"][opt]
        fracs = sorted({warm["defaults"]["warmup_frac"], *warm["tuning"].get("warmup_frac", [])})
        m = r.metrics
        rms = m["update_rms_hidden"].dropna() if "update_rms_hidden" in m else pd.Series(dtype=float)
        late = rms[m.loc[rms.index, "step"] > c["steps"] / 2] if len(rms) else rms
        rows.append({
            "run_id": r.run_id, "size": size, "optimizer": opt, "lr": c["lr"], "beta2": c["beta2"],
            "weight_decay": c["weight_decay"],
            "warmup_frac": min(fracs, key=lambda f: abs(f * c["steps"] - c["warmup_steps"])),
            "budget": c["steps"] / full, "steps": c["steps"], "seed": c["seed"], "tokens": tokens_of(c),
            "n_params": s.get("n_params_matmul"), "status": s["status"], "final_val_loss": r.final_val_loss,
            "tokens_per_s": s.get("tokens_per_s"), "population_size": (s.get("population") or {}).get("size"),
            "update_rms_hidden": float(late.mean()) if len(late) else math.nan, "_cfg": c})
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def full_budget(df: pd.DataFrame) -> pd.DataFrame:
    return df[np.isclose(df.budget, 1.0)]


def lr_sweep(df: pd.DataFrame, size: str, opt: str, hypers: dict, seeds) -> pd.DataFrame:
    """The full-budget runs of one (size, optimizer, settings) at the given seeds, by LR."""
    d = full_budget(df)
    sel = (d["size"] == size) & (d.optimizer == opt) & d.seed.isin(list(seeds))
    for h in HYPERS:
        sel &= np.isclose(d[h], hypers[h])
    return d[sel].sort_values(["lr", "seed"])


def best_of_sweep(sweep: pd.DataFrame) -> dict:
    """The grid optimum of one LR sweep by seed-mean final loss (a diverged run counts ∞), its
    interpolated log2 optimum and whether it lies on the grid's edge."""
    means = sweep.groupby("lr").final_val_loss.mean()
    if means.empty or not np.isfinite(means).any():
        return {"lr": None, "loss": math.inf, "on_edge": True, "log2_opt": math.nan}
    _, opt, edge = interpolated_optimum(np.log2(means.index.to_numpy(float)), means.to_numpy(float))
    return {"lr": float(means.idxmin()), "loss": float(means.min()), "on_edge": bool(edge), "log2_opt": opt}


def tuning_runs(df: pd.DataFrame, block: dict, opt: str) -> tuple[float | None, pd.DataFrame]:
    """(stage-1 best LR, the full-budget runs at the smallest size and that LR): the cells of
    coordinate descent. The LR is read from the first seed only, as stage 2 saw it."""
    size = smallest_size(block)
    best = best_of_sweep(lr_sweep(df, size, opt, defaults(block, opt), block["seeds"][:1]))
    if best["lr"] is None:
        return None, df.iloc[0:0]
    d = full_budget(df)
    return best["lr"], d[(d["size"] == size) & (d.optimizer == opt) & np.isclose(d.lr, best["lr"])]


def tuning_sigma(df: pd.DataFrame, block: dict) -> float:
    """The seed noise of one run in coordinate descent's cells, pooled over both optimizers."""
    cells = pd.concat([tuning_runs(df, block, opt)[1] for opt in OPTIMIZERS])
    return pooled_seed_sigma(cells, ["optimizer", *HYPERS]) if len(cells) else math.nan


def tuned_hypers(df: pd.DataFrame, block: dict, opt: str, th: dict) -> tuple[dict, dict]:
    """Coordinate descent's result for one optimizer: each tuned hyper-parameter keeps its default
    unless another value's seed-mean loss (at the stage-1 best LR, the others at their defaults)
    beats it by more than ``resolve_sigmas`` noise units of a difference of two seed means, then the
    best such value; and, per coordinate that lands on an end of its grid {default} ∪ alternatives,
    by how much it beats its neighbour on the grid."""
    base = defaults(block, opt)
    lr, at_lr = tuning_runs(df, block, opt)
    tuned, edge_margins = dict(base), {}
    if lr is None:
        return tuned, edge_margins
    resolve = th["resolve_sigmas"] * tuning_sigma(df, block) * math.sqrt(2 / len(block["seeds"]))
    for h, alternatives in block["optimizers"][opt]["tuning"].items():
        grid = sorted({base[h], *alternatives})
        losses = {}
        for v in grid:
            sel = np.isclose(at_lr[h], v)
            for other in HYPERS:
                if other != h:
                    sel &= np.isclose(at_lr[other], base[other])
            if sel.any():
                losses[v] = float(at_lr[sel].final_val_loss.mean())
        if base[h] not in losses or not np.isfinite(losses[base[h]]):
            continue
        better = {v: loss for v, loss in losses.items() if not loss >= losses[base[h]] - resolve}  # NaN noise: any gain
        if better:
            tuned[h] = min(better, key=lambda v: better[v])
        i = grid.index(tuned[h])
        if i in (0, len(grid) - 1) and len(grid) > 1:
            neighbour = grid[1] if i == 0 else grid[-2]
            edge_margins[h] = losses.get(neighbour, math.inf) - losses[tuned[h]]
    return tuned, edge_margins


# ------------------------------------------------------------------ the stages


def select_runs(ctx) -> list[dict]:
    block = ctx.scale_spec
    df = runs_frame(ctx.runs, block)
    return {2: coordinate_descent_runs, 3: tuned_sweep_runs, 4: budget_runs}[ctx.stage](df, block, ctx.thresholds)


def coordinate_descent_runs(df: pd.DataFrame, block: dict, th: dict) -> list[dict]:
    """Stage 2: at the smallest size and each optimizer's stage-1 best LR, each alternative value
    of each tuned hyper-parameter, the others at their defaults, every seed (the defaults too):
    a choice between values read from seed means."""
    size, seeds, chosen = smallest_size(block), block["seeds"], []
    for opt in OPTIMIZERS:
        base = defaults(block, opt)
        lr, _ = tuning_runs(df, block, opt)
        if lr is None:
            continue
        chosen += [run_spec(block, size, opt, base, lr, 1.0, s) for s in seeds]
        for h, alternatives in block["optimizers"][opt]["tuning"].items():
            chosen += [run_spec(block, size, opt, {**base, h: v}, lr, 1.0, s) for v in alternatives for s in seeds]
    return chosen


def tuned_sweep_runs(df: pd.DataFrame, block: dict, th: dict) -> list[dict]:
    """Stage 3: the tuned hyper-parameters at every size over the LR grid (the LR re-swept), every
    seed: the optimum is read from seed means, and every seed is then at and beside it."""
    chosen = []
    for opt in OPTIMIZERS:
        tuned, _ = tuned_hypers(df, block, opt, th)
        chosen += [run_spec(block, size, opt, tuned, lr, 1.0, s) for size in block["sizes"]
                   for lr in block["lr_grid"] for s in block["seeds"]]
    return chosen


def budget_runs(df: pd.DataFrame, block: dict, th: dict) -> list[dict]:
    """Stage 4, per size: at each optimizer's best LR (tuned settings, seed means) every budget and
    seed; Muon at AdamW's best LR at every budget (first seed)."""
    seeds, chosen = block["seeds"], []
    tuned = {opt: tuned_hypers(df, block, opt, th)[0] for opt in OPTIMIZERS}
    for size in block["sizes"]:
        best = {opt: best_of_sweep(lr_sweep(df, size, opt, tuned[opt], seeds)) for opt in OPTIMIZERS}
        for opt in OPTIMIZERS:
            lr = best[opt]["lr"]
            if lr is None:
                continue
            chosen += [run_spec(block, size, opt, tuned[opt], lr, b, s) for b in block["budgets"] for s in seeds]
        if best["adamw"]["lr"] is not None:
            chosen += [run_spec(block, size, "muon", tuned["muon"], best["adamw"]["lr"], b, seeds[0]) for b in block["budgets"]]
    return chosen


# ------------------------------------------------------------------ the multiplier


def interpolated_tokens(tokens: np.ndarray, loss: np.ndarray, target: float) -> tuple[float, str]:
    """Tokens at which a loss-vs-budget curve reaches ``target``, linear in log tokens between the
    neighbouring budgets of the first crossing from the smallest budget: (tokens, "exact"); or the
    smallest budget with "reached_below" (already at or below the target there: only a bound),
    or NaN with "never" (above the target at every budget)."""
    order = np.argsort(tokens)
    x, y = np.log(tokens[order]), loss[order]
    if y[0] <= target:
        return float(np.exp(x[0])), "reached_below"
    for i in range(1, len(x)):
        if y[i] <= target:
            t = (y[i - 1] - target) / (y[i - 1] - y[i])
            return float(np.exp(x[i - 1] + t * (x[i] - x[i - 1]))), "exact"
    return math.nan, "never"


def multiplier_from_means(muon_tokens: np.ndarray, muon_loss: np.ndarray, adam_tokens: float, adam_loss: float) -> tuple[float, str]:
    """(D_AdamW / D_Muon at AdamW's full-budget loss, kind): kind "exact", "lower_bound" (Muon is
    below AdamW's loss at its smallest budget: the multiplier is at least the value) or
    "upper_bound" (Muon never reaches it: the multiplier is below 1, reported as 1)."""
    d, kind = interpolated_tokens(muon_tokens, muon_loss, adam_loss)
    if kind == "never":
        return 1.0, "upper_bound"
    return adam_tokens / d, "exact" if kind == "exact" else "lower_bound"


def multiplier_interval(muon_tokens, muon_loss, adam_tokens, adam_loss, sigma_mean: float, draws: int,
                        seed: int = 0) -> tuple[float, float]:
    """95% parametric bootstrap: every seed-mean loss redrawn around its value with ``sigma_mean``;
    bounds enter as their bound (so a lower bound widens nothing it cannot measure)."""
    if not np.isfinite(sigma_mean):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for i in range(draws):
        m = muon_loss + rng.normal(0, sigma_mean, len(muon_loss))
        a = adam_loss + rng.normal(0, sigma_mean)
        out[i] = multiplier_from_means(muon_tokens, m, adam_tokens, a)[0]
    return float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))


def budget_points(df: pd.DataFrame, size: str, opt: str, hypers: dict, lr: float) -> pd.DataFrame:
    """The runs of one (size, optimizer, settings, LR): every budget and seed."""
    d = df[(df["size"] == size) & (df.optimizer == opt) & np.isclose(df.lr, lr)]
    for h in HYPERS:
        d = d[np.isclose(d[h], hypers[h])]
    return d


def budget_curve(df: pd.DataFrame, size: str, opt: str, hypers: dict, lr: float) -> pd.DataFrame:
    """Seed-mean final loss per budget of one (size, optimizer, settings, LR); diverged counts ∞."""
    d = budget_points(df, size, opt, hypers, lr)
    return (d.assign(diverged=d.status != "ok").groupby("tokens")
            .agg(loss=("final_val_loss", "mean"), seeds=("seed", "nunique"), diverged=("diverged", "sum")).reset_index())


def read_multiplier(df: pd.DataFrame, size: str, hypers: dict, muon_lr: float, adam_lr: float, sigma: float,
                    draws: int) -> dict:
    adam = budget_curve(df, size, "adamw", hypers["adamw"], adam_lr)
    muon = budget_curve(df, size, "muon", hypers["muon"], muon_lr)
    if adam.empty or muon.empty:
        return {"multiplier": math.nan, "kind": "missing", "low": math.nan, "high": math.nan, "diverged": False}
    full = adam.loc[adam.tokens.idxmax()]
    diverged = bool(muon.diverged.sum() + full.diverged) or not np.isfinite(muon.loss).all() or not np.isfinite(full.loss)
    if diverged:
        return {"multiplier": math.nan, "kind": "diverged", "low": math.nan, "high": math.nan, "diverged": True}
    mt, ml = muon.tokens.to_numpy(float), muon.loss.to_numpy(float)
    value, kind = multiplier_from_means(mt, ml, float(full.tokens), float(full.loss))
    seeds = int(min(muon.seeds.min(), full.seeds))
    low, high = multiplier_interval(mt, ml, float(full.tokens), float(full.loss), sigma / math.sqrt(seeds), draws)
    return {"multiplier": value, "kind": kind, "low": low, "high": high, "diverged": False,
            "adamw_loss": float(full.loss), "adamw_tokens": float(full.tokens), "muon_budgets": len(muon),
            "muon_full_loss": float(muon.loss.iloc[-1]), "seeds": seeds}


def coordinate_descent(df: pd.DataFrame, block: dict, th: dict) -> dict[str, tuple[dict, dict]]:
    """Optimizer → (tuned hyper-parameters, edge margins): ``tuned_hypers`` of both, once."""
    return {opt: tuned_hypers(df, block, opt, th) for opt in OPTIMIZERS}


def size_results(df: pd.DataFrame, block: dict, th: dict, tuning: dict | None = None) -> pd.DataFrame:
    seed0 = block["seeds"][0]
    tuning = tuning or coordinate_descent(df, block, th)
    sigma_tuning = tuning_sigma(df, block)
    hypers = {opt: tuning[opt][0] for opt in OPTIMIZERS}
    stage1 = {opt: best_of_sweep(lr_sweep(df, smallest_size(block), opt, defaults(block, opt), [seed0])) for opt in OPTIMIZERS}
    rows = []
    for size in block["sizes"]:
        d = df[df["size"] == size]
        if d.empty:
            continue
        best = {opt: best_of_sweep(lr_sweep(df, size, opt, hypers[opt], block["seeds"])) for opt in OPTIMIZERS}
        sigma = pooled_seed_sigma(d, ["optimizer", "lr", "budget", *HYPERS])  # same config but its seed
        row = {"size": size, "d_model": int(d._cfg.iloc[0]["d_model"]), "sigma_seed": sigma,
               "n_params": d.n_params.dropna().iloc[0] if d.n_params.notna().any() else math.nan,
               "tokens_per_param": (block["sizes"][size]["steps"] * block["base"]["batch_size"] * block["base"]["seq_len"]
                                    / d.n_params.dropna().iloc[0]) if d.n_params.notna().any() else math.nan,
               "lr_on_edge": [f"{opt} LR" for opt in OPTIMIZERS if best[opt]["on_edge"]]
               + [f"{opt} LR (stage 1)" for opt in OPTIMIZERS if stage1[opt]["on_edge"]]
               + [f"{opt} {h}" for opt in OPTIMIZERS for h, margin in tuning[opt][1].items()
                  if size == smallest_size(block) and resolved_edge(margin, sigma_tuning, len(block["seeds"]), th)]}
        for opt in OPTIMIZERS:
            row[f"{opt}_best_lr"] = best[opt]["lr"]
            row[f"{opt}_log2_opt"] = best[opt]["log2_opt"]
            at = full_budget(d)[(full_budget(d).optimizer == opt) & np.isclose(full_budget(d).lr, best[opt]["lr"] or np.nan)]
            for h in HYPERS:
                at = at[np.isclose(at[h], hypers[opt][h])]
            row[f"{opt}_update_rms"] = float(at.update_rms_hidden.mean()) if len(at) else math.nan
            sweep = lr_sweep(df, size, opt, hypers[opt], block["seeds"])
            row[f"{opt}_tokens_per_s"] = float(sweep.tokens_per_s.median()) if sweep.tokens_per_s.notna().any() else math.nan
            row[f"{opt}_population_size"] = float(sweep.population_size.median()) if sweep.population_size.notna().any() else math.nan
        if best["adamw"]["lr"] is not None and best["muon"]["lr"] is not None:
            own = read_multiplier(df, size, hypers, best["muon"]["lr"], best["adamw"]["lr"], sigma, th["bootstrap"])
            reuse = read_multiplier(df, size, hypers, best["adamw"]["lr"], best["adamw"]["lr"], sigma, th["bootstrap"])
            row.update(own)
            row.update({f"reuse_{k}": v for k, v in reuse.items()})
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ verdict


def resolved_edge(margin: float, sigma: float, seeds: int, th: dict) -> bool:
    """Does a tuned value at its grid's end beat its neighbour beyond ``resolve_sigmas`` noise units
    of a difference of two seed means (σ·√(2/seeds))? Then the optimum may lie beyond the grid.
    Without a noise estimate every edge counts."""
    return not np.isfinite(sigma) or margin > th["resolve_sigmas"] * sigma * math.sqrt(2 / seeds)


def status_of(value: float, low: float, high: float, th: dict) -> str:
    """The issue's rule on an exact multiplier and its interval."""
    if not (np.isfinite(low) and np.isfinite(high)) or high / low > th["max_interval_ratio"]:
        return "inconclusive"
    lo, hi = th["reproduced"]
    if lo <= value <= hi and low > th["floor"]:
        return "reproduced"
    if high < th["floor"]:
        return "not_reproduced"
    return "partially_reproduced"


def judge(row: dict, th: dict, prefix: str = "") -> tuple[str, str]:
    """(status, reason) of one multiplier reading (``prefix`` "reuse_" for Muon at AdamW's LR)."""
    kind = row.get(prefix + "kind", "missing")
    value, low, high = (row.get(prefix + k, math.nan) for k in ("multiplier", "low", "high"))
    if kind in ("missing", "diverged"):
        return "inconclusive", "a run the multiplier needs is missing" if kind == "missing" else "a run the multiplier needs diverged"
    if kind == "lower_bound":
        return "inconclusive", (f"Muon is below AdamW's full-budget loss already at its smallest budget: the multiplier is "
                                f"≥ {value:.2f}, beyond the measured budgets (never extrapolated)")
    if kind == "upper_bound" and high < th["floor"]:
        return "not_reproduced", "Muon does not reach AdamW's full-budget loss at its own full budget (multiplier ≤ 1)"
    status = status_of(value, low, high, th)
    reason = f"multiplier {value:.2f} [{low:.2f}, {high:.2f}]"
    if status == "inconclusive":
        reason += f": the 95% interval spans more than a factor {th['max_interval_ratio']:g}"
    return status, reason


def decide(sizes: pd.DataFrame, th: dict) -> tuple[str, str]:
    if sizes.empty or "multiplier" not in sizes:
        return "inconclusive", "no size has both optimizers' budget runs"
    edges = sorted({e for row in sizes.lr_on_edge for e in row})
    if edges:
        return "inconclusive", "an optimum lies on the edge of its grid: " + ", ".join(edges)
    tpp = sizes.tokens_per_param.to_numpy(float)
    if np.isfinite(tpp).all() and len(tpp) > 1 and tpp.max() / tpp.min() - 1 > th["tokens_per_param_tolerance"]:
        return "inconclusive", "tokens per parameter differ across sizes: " + ", ".join(f"{t:.2f}" for t in tpp)
    last = sizes.iloc[-1].to_dict()
    status, reason = judge(last, th)
    return status, f"at the largest size ({last['size']}): {reason}"


def sub_claims(sizes: pd.DataFrame, th: dict) -> list[dict]:
    subs = []
    for _, s in sizes.iterrows():
        if np.isfinite(s.get("adamw_log2_opt", np.nan)) and np.isfinite(s.get("muon_log2_opt", np.nan)):
            ratio = 2.0 ** (s.muon_log2_opt - s.adamw_log2_opt)
            ok = 1 / th["reuse_lr_factor"] <= ratio <= th["reuse_lr_factor"]
            subs.append(sub_claim(f"Muon's best LR near AdamW's ({s['size']})", "reproduced" if ok else "not_reproduced",
                                  "Moonlight: Muon reuses AdamW's LR (update RMS matched to 0.2)",
                                  f"Muon {2 ** s.muon_log2_opt:.3g} vs AdamW {2 ** s.adamw_log2_opt:.3g} (×{ratio:.2f})",
                                  f"within a factor {th['reuse_lr_factor']:g}"))
        if "reuse_kind" in s and isinstance(s.get("reuse_kind"), str):
            status, reason = judge(s.to_dict(), th, "reuse_")
            subs.append(sub_claim(f"multiplier with Muon at AdamW's best LR ({s['size']})", status,
                                  "Moonlight's protocol: Muon at AdamW's tuned LR and decay, ≈ 2×", reason,
                                  f"as the main verdict: estimate in [{th['reproduced'][0]:g}, {th['reproduced'][1]:g}], "
                                  f"interval above {th['floor']:g}"))
        a, m = s.get("adamw_update_rms", np.nan), s.get("muon_update_rms", np.nan)
        if np.isfinite(a) and np.isfinite(m):
            ratio = m / a
            ok = 1 / th["rms_ratio_max"] <= ratio <= th["rms_ratio_max"]
            subs.append(sub_claim(f"Muon's update RMS against AdamW's ({s['size']})", "reproduced" if ok else "not_reproduced",
                                  "Moonlight: 0.2·√max(A,B) matches AdamW's update RMS (0.2–0.4)",
                                  f"Muon {m:.3f} vs AdamW {a:.3f} (×{ratio:.2f}) on the hidden matrices",
                                  f"within a factor {th['rms_ratio_max']:g}"))
    exact = sizes[sizes.get("kind", pd.Series(dtype=str)) == "exact"] if "kind" in sizes else sizes.iloc[0:0]
    if len(sizes) > 1 and "kind" in sizes:
        if len(exact) == len(sizes):
            m = exact.multiplier.to_numpy(float)
            falls = m[-1] < m[0]
            subs.append(sub_claim("trend across sizes", "reproduced" if falls else "not_reproduced",
                                  "falls with size (Wen et al. 1.4× → 1.1×; Moonlight's fit: slow fall)",
                                  "multiplier " + " → ".join(f"{v:.2f}" for v in m), "multiplier at the largest size below the smallest's"))
        else:
            subs.append(sub_claim("trend across sizes", "inconclusive", "falls with size (Wen et al.)",
                                  "the multiplier is a bound or missing at some size", "an exact multiplier at every size"))
    return subs


# ------------------------------------------------------------------ figures


def plot_lr_sweeps(ctx, df: pd.DataFrame, block: dict) -> None:
    sweep = full_budget(df[df.seed == block["seeds"][0]]).copy()
    if sweep.empty:
        return
    sweep["settings"] = [f"β2 {b:g}, λ {w:g}, warm-up {f:g}" for b, w, f in zip(sweep.beta2, sweep.weight_decay, sweep.warmup_frac)]
    sweep["log2 lr"] = np.log2(sweep.lr)
    sweep["val loss"] = sweep.final_val_loss.replace(np.inf, np.nan)
    grid = sns.relplot(data=sweep, x="log2 lr", y="val loss", hue="optimizer", style="settings", col="size", kind="line",
                       palette=palette(sorted(sweep.optimizer.unique())), marker="o", height=3.0, aspect=1.2,
                       facet_kws={"sharey": False})
    grid.set_axis_labels(axis_label("learning rate", LOG2), axis_label("final val loss", NATS))
    ctx.save_figure(grid.figure, "lr_sweeps", "Final validation loss against log2 learning rate at the full budget, first "
                    "seed: the default settings (stage 1), the coordinate-descent alternatives at the best LR (stage 2) "
                    "and the tuned settings re-swept at every size (stage 3).")
    plt.close(grid.figure)


def plot_budgets(ctx, df: pd.DataFrame, sizes: pd.DataFrame, tuned: dict) -> None:
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.4 * len(sizes), 3.4), squeeze=False)
    for ax, (_, s) in zip(axes[0], sizes.iterrows()):
        for opt in OPTIMIZERS:
            color = style(opt).color
            lr = s.get(f"{opt}_best_lr")
            if lr is None or not np.isfinite(lr):
                continue
            curve = budget_curve(df, s["size"], opt, tuned[opt], lr)
            pts = budget_points(df, s["size"], opt, tuned[opt], lr)
            ax.scatter(pts.tokens, pts.final_val_loss.replace(np.inf, np.nan), color=color, s=14, alpha=0.6)
            ax.plot(curve.tokens, curve.loss.replace(np.inf, np.nan), color=color, marker=style(opt).marker,
                    label=f"{opt} (lr {lr:g})")
        if np.isfinite(s.get("adamw_loss", np.nan)):
            reference_line(ax, s.adamw_loss, "AdamW at its full budget", index=1)
        ax.set(xscale="log", title=s["size"], xlabel=axis_label("training budget", TOKENS),
               ylabel=axis_label("final val loss", NATS))
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "budgets", "End-of-schedule validation loss against the token budget (each point a full schedule "
                    "of its own; dots: seeds, line: seed mean) at each optimizer's best LR with its tuned settings; the "
                    "multiplier is where Muon's line crosses AdamW's full-budget loss (dotted).")
    plt.close(fig)


def plot_multiplier(ctx, sizes: pd.DataFrame, th: dict) -> None:
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ok = sizes[sizes.get("kind", pd.Series(dtype=str)).isin(["exact", "upper_bound", "lower_bound"])] if "kind" in sizes else sizes.iloc[0:0]
    if not ok.empty:
        err = np.nan_to_num(np.clip(np.array([ok.multiplier - ok.low, ok.high - ok.multiplier], float), 0, None))
        ax.errorbar(ok["size"], ok.multiplier, yerr=err, fmt="o", color="black", capsize=4, label="measured (95% interval)")
    reference_lines(ax, th["published"])
    lo, hi = th["reproduced"]
    reference_band(ax, lo, hi, f"'≈2×' band [{lo:g}, {hi:g}]")
    ax.axhline(th["floor"], color="0.5", lw=0.8, label=f"floor {th['floor']:g}")
    ax.set(ylabel=axis_label("token multiplier D_AdamW / D_Muon", TIMES), xlabel=axis_label("model size", "d_model"))
    ax.legend(fontsize=7, loc="best")
    ctx.save_figure(fig, "multiplier", "Muon's token multiplier over a tuned AdamW per model size (interpolated, 95% "
                    "parametric bootstrap), beside the published figures.")
    plt.close(fig)


# ------------------------------------------------------------------ analysis


def gains_decay_note(df: pd.DataFrame, sizes: pd.DataFrame) -> str:
    """Why RMSNorm gains are not decayed here (Moonlight App. D decays them), with the number."""
    why = ("weight decay on the hidden and readout matrices only, for both optimizers; not on the RMSNorm gains, which "
           "Moonlight (App. D) decays for stability over runs of 100B tokens")
    if sizes.empty or not np.isfinite(sizes.iloc[-1].get("adamw_best_lr", np.nan) or np.nan):
        return why
    s = sizes.iloc[-1]
    d = full_budget(df)
    at = d[(d["size"] == s["size"]) & (d.optimizer == "adamw") & np.isclose(d.lr, s.adamw_best_lr)]
    if at.empty:
        return why
    shrink = total_decay(at.iloc[0]._cfg)
    return why + f": here η·λ·Σschedule = {shrink:.3f} over AdamW's full run at {s['size']}, so a decayed gain would shrink by {1 - math.exp(-shrink):.1%}"


def analyze(ctx):
    th, block = ctx.thresholds, ctx.scale_spec
    df = runs_frame(ctx.runs, block)
    tuned = coordinate_descent(df, block, th)
    sizes = size_results(df, block, th, tuned)
    status, reason = decide(sizes, th)

    meas = {}
    for _, s in sizes.iterrows():
        if not isinstance(s.get("kind"), str) or s.kind in ("missing", "diverged"):
            continue
        label = s["size"]
        note = {"exact": "95% parametric bootstrap over seed noise", "lower_bound": "lower bound: Muon already below "
                "AdamW's loss at its smallest budget", "upper_bound": "upper bound: Muon never reaches AdamW's loss"}[s.kind]
        meas[f"token multiplier, {label}"] = measured(s.multiplier, s.low, s.high, "×", note=note)
        speed = s.muon_tokens_per_s / s.adamw_tokens_per_s
        if np.isfinite(speed) and s.kind == "exact":
            meas[f"wall-clock multiplier, {label}"] = measured(s.multiplier * speed, s.low * speed, s.high * speed, "×", timing=True,
                                                               note=f"token multiplier × Muon/AdamW steady tokens/s per member ({speed:.2f}; "
                                                                    f"median population sizes {s.muon_population_size:g} and {s.adamw_population_size:g})")
        meas[f"AdamW full-budget loss, {label}"] = measured(s.adamw_loss, unit="nats/token", note=f"σ_seed {s.sigma_seed:.4f}")
    subs = sub_claims(sizes, th)

    plot_lr_sweeps(ctx, df, block)
    if not sizes.empty:
        plot_budgets(ctx, df, sizes, {opt: t[0] for opt, t in tuned.items()})
    plot_multiplier(ctx, sizes, th)
    notes = [f"{len(df)} runs ({int((df.status != 'ok').sum())} diverged)" if len(df) else "no runs"]
    notes += [f"{opt} tuned: " + ", ".join(f"{h} {v:g}" for h, v in tuned[opt][0].items()) for opt in OPTIMIZERS]
    notes.append(gains_decay_note(df, sizes))
    if len(sizes) < 2:
        notes.append("only one model size: no trend across sizes")
    table = df.drop(columns="_cfg").sort_values(["size", "optimizer", "lr", "budget", "seed"]) if len(df) else df
    sizes.drop(columns=[c for c in sizes.columns if c.startswith("_")]).to_csv(ctx.out_dir / "sizes.csv", index=False)
    return ctx.verdict(status, meas, reason + ".", subs, notes), table
