"""spectral_weight_decay: is decaying only the top singular direction no worse than decoupled decay?

``plan_runs``: every optimizer arm of the scale (AdamW; Muon with Moonlight's update scale, which
reuses AdamW's LR and λ) × every decay setting × every seed. ``analyze``: per arm, final validation
losses compared paired by seed (a seed fixes initialisation and data order): the positive control
Frobenius − no decay, the headline spectral − Frobenius at one λ and spectral against every other
setting; the total decay lr·λ·Σschedule of each setting; σ_max and SVD entropy of the hidden and
readout matrices (``log_spectra``), each decayed setting's σ_max against no decay. The arms' statuses
combine into the claim's by the rule in claim.yaml.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optclaims.analysis import measured, paired_difference, pooled_seed_sigma, sub_claim
from optclaims.errors import ConfigError
from optclaims.optim.schedules import total_decay
from optclaims.plotting import DIMENSIONLESS, NATS, STEPS, axis_label, plt, reference_band, reference_line, sns
from optclaims.settings import RUN_DEFAULTS

ARM_LABELS = {"adamw": "AdamW", "muon": "Muon"}
CONTROL = "no_decay"


# ------------------------------------------------------------------ the plan


def plan_runs(block: dict) -> list[dict]:
    """Every optimizer arm × decay setting × seed, over the scale's base fields."""
    arms, decays = block.get("optimizers"), block.get("decays")
    for key, value in (("optimizers", arms), ("decays", decays)):
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"spectral_weight_decay: {key} = {value!r} must be a non-empty list of run-field mappings")
    optimizers = [a.get("optimizer") for a in arms]
    if None in optimizers or len(set(optimizers)) != len(optimizers):
        raise ConfigError(f"spectral_weight_decay: optimizers name {optimizers}; each arm needs its own 'optimizer'")
    names = [setting({"weight_decay_kind": RUN_DEFAULTS["weight_decay_kind"], **d}) for d in decays]
    if len(set(names)) != len(names):
        raise ConfigError(f"spectral_weight_decay: decays = {decays!r} name the settings {names} more than once")
    base = block.get("base", {})
    return [{**base, **arm, **decay, "seed": seed}
            for seed in block.get("seeds", [0]) for arm in arms for decay in decays]


def setting(cfg: dict) -> str:
    """"no_decay", "frobenius_0.3", "spectral_1", "spectral_warm_0.1", ..."""
    if cfg["weight_decay"] == 0:
        return CONTROL
    kind = "frobenius" if cfg["weight_decay_kind"] == "decoupled" else cfg["weight_decay_kind"]
    return f"{kind}_{cfg['weight_decay']:g}"


def headline(th: dict) -> dict[str, str]:
    """The three settings every arm's verdict compares."""
    lam = th["headline_lambda"]
    return {"control": CONTROL, "reference": f"frobenius_{lam:g}", "candidate": f"spectral_{lam:g}"}


# ------------------------------------------------------------------ frames


def per_matrix(runs) -> pd.DataFrame:
    """Long frame, one row per run, logged step and matrix: σ_max and SVD entropy (read once)."""
    parts = []
    for r in runs:
        m = r.metrics.set_index("step")
        sig = m.filter(like="sigma_max[").dropna()
        names = [c[len("sigma_max["):-1] for c in sig.columns]
        entropy = m.loc[sig.index, [f"svd_entropy[{n}]" for n in names]]
        parts.append(pd.DataFrame({"run_id": r.run_id, "step": np.repeat(sig.index.to_numpy(), len(names)),
                                   "matrix": np.tile(names, len(sig)), "sigma_max": sig.to_numpy().ravel(),
                                   "svd_entropy": entropy.to_numpy().ravel(), "arm": r.config["optimizer"],
                                   "setting": setting(r.config), "seed": r.config["seed"]}))
    columns = ["run_id", "step", "matrix", "sigma_max", "svd_entropy", "arm", "setting", "seed"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def trajectories(matrices: pd.DataFrame) -> pd.DataFrame:
    """Per run and logged step: max σ_max and mean SVD entropy over the matrices."""
    return (matrices.groupby(["run_id", "arm", "setting", "seed", "step"], sort=False)
            .agg(sigma_max=("sigma_max", "max"), svd_entropy=("svd_entropy", "mean")).reset_index())


def runs_frame(runs, traj: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final loss, total decay, and the spectra at its last logged step."""
    last = traj.sort_values("step").groupby("run_id").last()
    rows = []
    for r in runs:
        sigma = last.sigma_max.get(r.run_id, math.nan)
        rows.append({"run_id": r.run_id, "arm": r.config["optimizer"], "setting": setting(r.config),
                     "seed": r.config["seed"], "status": r.summary["status"], "final_val_loss": r.final_val_loss,
                     "total_decay": total_decay(r.config), "sigma_max": sigma,
                     "log_sigma_max": math.log(sigma) if sigma > 0 else math.nan,
                     "svd_entropy": last.svd_entropy.get(r.run_id, math.nan), "wall_seconds": r.summary.get("wall_seconds")})
    return pd.DataFrame(rows)


def setting_order(settings) -> list[str]:
    """No decay, then Frobenius by λ, then the other kinds by λ."""
    def key(s):
        kind, _, lam = s.rpartition("_")
        return (s != CONTROL, kind != "frobenius", kind, float(lam) if s != CONTROL else 0.0)
    return sorted(set(settings), key=key)


# ------------------------------------------------------------------ one arm's numbers and status


def still_rising(traj: pd.DataFrame, name: str, start: float) -> bool:
    """Is the seed-mean max σ_max of setting ``name`` still rising after ``start`` of the steps?"""
    t = traj[traj.setting == name].groupby("step").sigma_max.mean().dropna()
    late = t[t.index >= start * t.index.max()] if len(t) else t
    return len(late) > 1 and np.polyfit(late.index.to_numpy(float), late.to_numpy(float), 1)[0] > 0


def arm_numbers(df: pd.DataFrame, traj: pd.DataFrame, th: dict) -> dict:
    """The paired comparisons of one arm (``df``, ``traj``: its runs only)."""
    h = headline(th)
    cand, ref, ctrl = h["candidate"], h["reference"], h["control"]
    level = th["level"]
    settings = setting_order(df.setting)
    control = paired_difference(df, ref, ctrl, level=level)
    ok = df[df.status == "ok"].groupby("setting").sigma_max.mean()
    ratio = ok.get(cand, math.nan) / ok.get(ref, math.nan)
    return {
        "total_decay": {s: float(df[df.setting == s].total_decay.max()) for s in settings},
        "control": control,
        "delta": paired_difference(df, cand, ref, level=level),
        "versus": {s: paired_difference(df, cand, s, level=level) for s in settings if s not in (cand, ref)},
        "margin": th["no_worse_fraction"] * abs(control["mean"]),
        "sigma_max_vs_control": {s: paired_difference(df, s, ctrl, value="log_sigma_max", level=level)
                                 for s in settings if s != ctrl},
        "sigma_max_vs_reference": ratio,
        "unbounded": bool(ratio > th["sigma_max_ratio"] and still_rising(traj, cand, th["rising_from"])),
    }


def interval(p: dict, unit: str = "nats") -> str:
    return f"{p['mean']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}] {unit}"


def arm_status(df: pd.DataFrame, num: dict, th: dict) -> tuple[str, str]:
    """(status, reason) of one arm by claim.yaml's criteria, in their order."""
    h = headline(th)
    cand, ref = h["candidate"], h["reference"]
    missing = [s for s in h.values() if s not in set(df.setting)]
    if missing:
        return "inconclusive", f"no runs of {', '.join(missing)}"
    diverged = df[df.status != "ok"]
    if len(diverged):
        where = ", ".join(sorted(set(diverged.setting)))
        if set(diverged.setting) == {cand}:
            return "not_reproduced", f"spectral decay diverged ({len(diverged)} runs) where no other setting did"
        return "inconclusive", f"runs diverged in {where}"
    pairs = min(num["delta"]["n"], num["control"]["n"])
    if pairs < th["min_seeds"]:
        return "inconclusive", f"{pairs} seeds pair up, fewer than {th['min_seeds']}"
    delta, control = num["delta"], num["control"]
    if delta["low"] > 0:
        return "not_reproduced", f"spectral decay is worse than Frobenius decay: Δ = {interval(delta)}"
    if num["unbounded"]:
        return "not_reproduced", (f"σ_max grows without bound: {num['sigma_max_vs_reference']:.2f}× Frobenius's and "
                                  f"still rising after {th['rising_from']:.0%} of training")
    total = num["total_decay"][ref]
    if total < th["min_total_decay"]:
        return "inconclusive", (f"total decay {total:.2f} at λ = {th['headline_lambda']:g}, below "
                                f"{th['min_total_decay']:g}: decay barely acts")
    if control["low"] <= 0 <= control["high"]:
        return "inconclusive", f"the positive control fails: Frobenius − no decay = {interval(control)} contains 0"
    not_beaten = [s for s, p in num["versus"].items() if not p["high"] < 0]
    if delta["high"] < 0 and not not_beaten:
        return "reproduced", f"spectral decay beats Frobenius decay (Δ = {interval(delta)}) and every other setting"
    if delta["high"] < num["margin"]:
        gain = (f"better than Frobenius, but not resolved better than {', '.join(not_beaten)}: "
                "the gain may be only less decay" if delta["high"] < 0 else "no resolved gain")
        return "partially_reproduced", (f"no worse than Frobenius decay within m = {num['margin']:.4f} "
                                        f"(Δ = {interval(delta)}); {gain}")
    return "inconclusive", f"Δ = {interval(delta)} reaches past the margin m = {num['margin']:.4f}"


def overall_status(statuses: list[str]) -> str:
    """claim.yaml's rule combining the arms."""
    if statuses and all(s == "reproduced" for s in statuses):
        return "reproduced"
    if "not_reproduced" in statuses:
        return "not_reproduced"
    if not any(s in ("reproduced", "partially_reproduced") for s in statuses):
        return "inconclusive"
    return "partially_reproduced"


def decide(df: pd.DataFrame, traj: pd.DataFrame, th: dict) -> tuple[str, dict]:
    """(overall status, {arm: {"status", "reason", "numbers"}}) for the arms claim.yaml names."""
    arms = {}
    for arm in th["arms"]:
        mine, path = df[df.arm == arm], traj[traj.arm == arm]
        if mine.empty:
            arms[arm] = {"status": "inconclusive", "reason": "no runs", "numbers": None}
            continue
        num = arm_numbers(mine, path, th)
        status, reason = arm_status(mine, num, th)
        arms[arm] = {"status": status, "reason": reason, "numbers": num}
    return overall_status([a["status"] for a in arms.values()]), arms


# ------------------------------------------------------------------ verdict pieces


def sigma_status(num: dict, candidate: str) -> str:
    p = num["sigma_max_vs_control"].get(candidate)
    if num["unbounded"] or (p is not None and p["low"] > 0):
        return "not_reproduced"
    return "reproduced" if p is not None and p["high"] < 0 else "inconclusive"


def ratio_text(p: dict) -> str:
    return f"×{math.exp(p['mean']):.3f} [{math.exp(p['low']):.3f}, {math.exp(p['high']):.3f}]"


def arm_sub_claims(arm: str, decision: dict, th: dict) -> list[dict]:
    label, num, h = ARM_LABELS.get(arm, arm), decision["numbers"], headline(th)
    lam, level = f"{th['headline_lambda']:g}", f"{th['level']:.0%}"
    rule = (f"{level} paired interval of Δ: above 0 → not reproduced; below 0 and below every other setting → "
            f"reproduced; ending below m = {th['no_worse_fraction']:g} × |Frobenius − no decay| → partially; "
            f"gates first (seeds ≥ {th['min_seeds']}, total decay ≥ {th['min_total_decay']:g}, control resolved)")
    expected = "Su: 'a weak improvement at the loss level (at worst no degradation)'"
    if num is None:
        return [sub_claim(f"{label}: spectral vs Frobenius at λ = {lam}", decision["status"], expected, "no runs", rule)]
    ref, cand = h["reference"], h["candidate"]
    control = num["control"]
    control_ok = control["n"] >= 2 and not control["low"] <= 0 <= control["high"]
    versus = "; ".join(f"− {s}: {interval(p)}" for s, p in num["versus"].items())
    sigmas = "; ".join(f"{s} {ratio_text(p)}" for s, p in num["sigma_max_vs_control"].items())
    return [
        sub_claim(f"{label}: spectral vs Frobenius at λ = {lam}", decision["status"], expected,
                  f"Δ = {interval(num['delta'])}, m = {num['margin']:.4f}; spectral {versus}; {decision['reason']}", rule),
        sub_claim(f"{label}: positive control, Frobenius λ = {lam} vs no decay", "reproduced" if control_ok else "inconclusive",
                  "decay changes the loss beyond the paired seed noise", f"{interval(control)}, total decay "
                  f"{num['total_decay'][ref]:.2f}", f"the {level} paired interval excludes 0"),
        sub_claim(f"{label}: σ_max against no decay", sigma_status(num, cand),
                  "spectral decay still pulls the top singular value in (CLAIMS.md §4, derived)",
                  f"σ_max / no decay's, paired: {sigmas}; spectral / Frobenius {num['sigma_max_vs_reference']:.3f}",
                  f"spectral's {level} ratio interval below 1; not reproduced above 1 or if unbounded "
                  f"(> {th['sigma_max_ratio']:g}× Frobenius's and rising after {th['rising_from']:.0%} of training)"),
    ]


def arm_measured(arm: str, num: dict, th: dict) -> dict:
    """The headline numbers of one arm; spectral against the other settings and every setting's total
    decay are in its sub-claims and the table."""
    label, h, level = ARM_LABELS.get(arm, arm), headline(th), f"{th['level']:.0%} paired t interval"
    ref, cand = h["reference"], h["candidate"]
    pair = lambda p, note=level: measured(p["mean"], p["low"], p["high"], "nats/token", note)  # noqa: E731
    out = {f"{label}: Δ val loss, {cand} − {ref}": pair(num["delta"], f"{level}; margin m = {num['margin']:.4f}"),
           f"{label}: control, {ref} − {CONTROL}": pair(num["control"])}
    out[f"{label}: total decay lr·λ·Σschedule, {ref}"] = measured(num["total_decay"].get(ref, math.nan))
    out.update({f"{label}: σ_max / no decay, {s}": measured(*(math.exp(p[k]) for k in ("mean", "low", "high")), "×", level)
                for s, p in num["sigma_max_vs_control"].items()})
    return out


def settings_table(df: pd.DataFrame, arms: dict, th: dict) -> pd.DataFrame:
    """One row per arm and setting: seeds, total decay, loss and its paired difference from no decay, spectra."""
    rows = []
    for (arm, name), g in df.groupby(["arm", "setting"]):
        vs = paired_difference(df[df.arm == arm], name, CONTROL, level=th["level"]) if name != CONTROL else None
        sig = (arms.get(arm, {}).get("numbers") or {}).get("sigma_max_vs_control", {}).get(name)
        rows.append({"arm": arm, "setting": name, "seeds": g.seed.nunique(), "total_decay": g.total_decay.max(),
                     "mean_val_loss": g.final_val_loss.mean(), "std_val_loss": g.final_val_loss.std(ddof=1),
                     "minus_no_decay": vs["mean"] if vs else 0.0, "minus_no_decay_low": vs["low"] if vs else math.nan,
                     "minus_no_decay_high": vs["high"] if vs else math.nan, "sigma_max": g.sigma_max.mean(),
                     "sigma_max_ratio_no_decay": math.exp(sig["mean"]) if sig else (1.0 if name == CONTROL else math.nan),
                     "svd_entropy": g.svd_entropy.mean(), "diverged": int((g.status != "ok").sum())})
    order = setting_order(df.setting)
    table = pd.DataFrame(rows)
    return table.sort_values(["arm", "setting"], key=lambda s: s.map(order.index) if s.name == "setting" else s)


# ------------------------------------------------------------------ figures


def plot_losses(ctx, df: pd.DataFrame, arms: dict, order: list[str]) -> None:
    th, h = ctx.thresholds, headline(ctx.thresholds)
    names = list(arms)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.4), squeeze=False, constrained_layout=True)
    for ax, arm in zip(axes[0], names):
        mine = df[df.arm == arm]
        x = {s: i for i, s in enumerate(order)}
        for _, runs in mine.groupby("seed"):  # one line per seed: the pairs the comparisons use
            runs = runs.set_index("setting").reindex([s for s in order if s in set(runs.setting)])
            ax.plot([x[s] for s in runs.index], runs.final_val_loss, color="0.6", lw=0.8, marker="o", ms=3)
        means = mine.groupby("setting").final_val_loss.mean().reindex(order)
        ax.plot(range(len(order)), means, "_", color="C3", ms=18, mew=2, label="seed mean")
        num = arms[arm]["numbers"]
        ref_mean = means.get(h["reference"], math.nan)
        if num is not None and np.isfinite(ref_mean) and np.isfinite(num["margin"]):
            reference_band(ax, ref_mean, ref_mean + num["margin"], "Frobenius mean + m")
        ax.set_xticks(range(len(order)), order, rotation=25, fontsize=7)
        ax.set(title=f"{ARM_LABELS.get(arm, arm)}: {arms[arm]['status'].replace('_', ' ')}", xlabel="",
               ylabel=axis_label("final val loss", NATS))
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "losses", f"Final validation loss per setting and arm; grey lines join the runs of one seed "
                    f"(the pairs compared), red: seed mean; shaded: from the Frobenius λ = {th['headline_lambda']:g} mean "
                    f"up to the non-inferiority margin m = {th['no_worse_fraction']:g} × |Frobenius − no decay|.")
    plt.close(fig)


def comparison_rows(arm: str, num: dict, th: dict) -> list[dict]:
    h = headline(th)
    rows = [{"comparison": f"{h['reference']} − {CONTROL} (control)", **num["control"]},
            {"comparison": f"{h['candidate']} − {h['reference']} (Δ)", **num["delta"]}]
    rows += [{"comparison": f"{h['candidate']} − {s}", **p} for s, p in num["versus"].items()]
    return [{"arm": ARM_LABELS.get(arm, arm), **r} for r in rows]


def plot_paired_differences(ctx, arms: dict) -> None:
    th = ctx.thresholds
    shown = {arm: a for arm, a in arms.items() if a["numbers"] is not None}
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 2.8), squeeze=False, constrained_layout=True)
    for ax, (arm, a) in zip(axes[0], shown.items()):
        rows = pd.DataFrame(comparison_rows(arm, a["numbers"], th))
        y = np.arange(len(rows))[::-1]
        ax.errorbar(rows["mean"], y, xerr=[rows["mean"] - rows["low"], rows["high"] - rows["mean"]], fmt="o", color="C0",
                    capsize=3)
        ax.axvline(0, color="0.3", lw=0.8)
        reference_line(ax, a["numbers"]["margin"], "margin m", axis="x", index=1, lw=0.8)
        ax.set_yticks(y, rows.comparison, fontsize=7)
        ax.set(xlabel=axis_label("paired difference of final val loss", NATS), title=ARM_LABELS.get(arm, arm))
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "paired_differences", f"Paired-by-seed differences of final validation loss with their "
                    f"{th['level']:.0%} Student-t intervals: the positive control, the headline Δ at "
                    f"λ = {th['headline_lambda']:g} and spectral against every other setting; dotted: the margin m.")
    plt.close(fig)


def plot_spectra(ctx, traj: pd.DataFrame, order: list[str]) -> None:
    if traj.empty:
        return
    arms = list(dict.fromkeys(traj.arm))
    fig, axes = plt.subplots(2, len(arms), figsize=(4.6 * len(arms), 5.6), squeeze=False, constrained_layout=True)
    for j, arm in enumerate(arms):
        for i, (col, label) in enumerate((("sigma_max", "largest σ_max over matrices"), ("svd_entropy", "mean SVD entropy"))):
            ax = axes[i][j]
            sns.lineplot(data=traj[traj.arm == arm], x="step", y=col, hue="setting", hue_order=order, errorbar=("pi", 100),
                         ax=ax, legend=(i == 0 and j == len(arms) - 1))
            ax.set(xlabel=axis_label("step", STEPS), ylabel=axis_label(label, DIMENSIONLESS),
                   title=ARM_LABELS.get(arm, arm) if i == 0 else "")
    legend = axes[0][-1].get_legend()
    if legend:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7)
    ctx.save_figure(fig, "spectra", "Largest singular value over the hidden and readout matrices and their mean SVD "
                    "entropy (Moonlight Eq. 13) during training per arm, seed mean with the range over seeds.")
    plt.close(fig)


def plot_per_matrix(ctx, frame: pd.DataFrame, order: list[str]) -> None:
    if frame.empty:
        return
    for col, label in (("sigma_max", "σ_max"), ("svd_entropy", "SVD entropy")):
        grid = sns.relplot(data=frame, x="step", y=col, hue="setting", hue_order=order, style="arm", col="matrix",
                           col_wrap=4, kind="line", errorbar=None, height=2.0, aspect=1.3, facet_kws={"sharey": False})
        grid.set_titles("{col_name}", size=7)
        grid.set_axis_labels(axis_label("step", STEPS), axis_label(label, DIMENSIONLESS))
        ctx.save_figure(grid.figure, f"{col}_per_matrix", f"{label} of each hidden and readout matrix during training, "
                        "seed mean per setting (line style: optimizer arm).")
        plt.close(grid.figure)


# ------------------------------------------------------------------ analysis


def analyze(ctx):
    th = ctx.thresholds
    matrices = per_matrix(ctx.runs)
    traj = trajectories(matrices)
    df = runs_frame(ctx.runs, traj)
    status, arms = decide(df, traj, th)

    meas = {"σ_seed (pooled over settings, one run)": measured(pooled_seed_sigma(df, ["arm", "setting"]), unit="nats/token")}
    subs = []
    for arm, a in arms.items():
        subs += arm_sub_claims(arm, a, th)
        if a["numbers"] is not None:
            meas.update(arm_measured(arm, a["numbers"], th))
    order = setting_order(df.setting)
    plot_losses(ctx, df, arms, order)
    plot_paired_differences(ctx, arms)
    plot_spectra(ctx, traj, order)
    plot_per_matrix(ctx, matrices, order)

    reason = "; ".join(f"{ARM_LABELS.get(arm, arm)}: {a['status'].replace('_', ' ')} ({a['reason']})" for arm, a in arms.items())
    notes = [f"{len(df)} runs: {df.arm.nunique()} arms × {df.setting.nunique()} settings × {df.seed.nunique()} seeds; "
             "spectral decay: 10 power iterations from the all-ones vector at every step (Su's rule), on the hidden and "
             "readout matrices, before the optimizer's step; total decay for the hidden matrices"]
    df.to_csv(ctx.out_dir / "runs.csv", index=False)
    return ctx.verdict(status, meas, reason + ".", subs, notes), settings_table(df, arms, th)
