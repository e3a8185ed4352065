"""stability_conditions: are a model's three Θ(1) conditions flat in width where the posts say so?

Su, kexue.fm/archives/11340: a good model f(x; ω) keeps, as maxima over inputs (not averages),
  forward stability     max_x       ‖f(x; ω)‖_RMS             = Θ(1)
  dependency stability  max_{x1,x2} ‖f(x1; ω) − f(x2; ω)‖_RMS = Θ(1)
  update stability      max_x       ‖f(x; ω + Δω) − f(x; ω)‖_RMS = Θ(1), Δω one optimizer update.

No training of its own: the runs are another claim's coordinate check (``coord_sweep``, e.g.
mup_transfer's: a few steps at a large LR, the same LR at every width), the same run_ids, trained
once. After training, each run is measured from its saved weights (``model.safetensors``, ω_k after
its k steps) and from its initialisation (ω_0, rebuilt from the config, as the trainer builds it):
the statistics on a fixed probe batch from the validation split, each input one token position
(its context), the maximum taken over the probe's positions (and over all pairs of them); Δω is
one step of the run's own optimizer (its per-group LRs at the schedule's peak, fresh state: at ω_0
exactly the run's first update) on the run's next training batch.
``judge`` fits each statistic's width exponent (least squares of ln statistic on ln width, a t
interval from the line's own residuals) and decides it against the band in claim.yaml.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from scipy import stats

from optclaims.analysis import measured, sub_claim
from optclaims.claims import load_claim, load_claim_module
from optclaims.data.shards import TokenShard
from optclaims.errors import ConfigError
from optclaims.model import activation_names
from optclaims.optim import clip_member_grads_
from optclaims.plotting import DIMENSIONLESS, DIMENSIONS, axis_label, plt, reference_band, reference_line, style
from optclaims.train import build_population

REPRO_DIR = Path(__file__).resolve().parents[1]
CONDITIONS = ("forward", "dependency", "update")
OUTPUT = "logits"  # the model's output f(x; ω): the statistic each verdict line is decided on
TIMES = ("init", "trained")
FRAME_COLUMNS = ["run_id", "variant", "width", "time", "layer", "condition", "value"]

# ------------------------------------------------------------------ plan


def source_block(block: dict, repro_dir: Path = REPRO_DIR) -> tuple[dict, object]:
    """The named claim's scale block and analysis module (``coord_sweep: {claim, scale}``)."""
    sweep = block.get("coord_sweep")
    if not isinstance(sweep, dict) or set(sweep) != {"claim", "scale"}:
        raise ConfigError(f"invalid stability_conditions scale: coord_sweep = {sweep!r} must be a mapping of claim and scale")
    source = load_claim(sweep["claim"], repro_dir)
    if sweep["scale"] not in source["scales"]:
        raise ConfigError(f"coord_sweep: scale = {sweep['scale']!r} is not a scale of claim {sweep['claim']!r}")
    src = source["scales"][sweep["scale"]]
    missing = [v for v in block["variants"] if v not in src.get("variants", {}) or v not in src.get("coord_check", {}).get("lr", {})]
    if missing:
        raise ConfigError(f"coord_sweep: variants {missing} are not in claim {sweep['claim']!r}'s coordinate check")
    return src, load_claim_module(sweep["claim"], repro_dir)


def plan_runs(block: dict) -> list[dict]:
    """The named claim's own coordinate-check runs (its plan_runs, unchanged: the same run_ids),
    kept to this claim's variants."""
    src, module = source_block(block)
    runs = [f for f in module.plan_runs(src) if f.get("activation_steps")]
    keep = [f for f in runs if module.variant_of(f, src) in block["variants"]]
    if not keep:
        raise ConfigError(f"coord_sweep: claim {block['coord_sweep']['claim']!r} plans no coordinate-check run")
    return keep


# ------------------------------------------------------------------ the three statistics


def layer_outputs(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Member 0's embedding output, each block's output and the logits on tokens ``x`` (B, T), as
    (B·T, dim) float32: one row per input (a position and its context). Recorded by hooks."""
    out: dict[str, torch.Tensor] = {}
    names = activation_names(len(model.blocks))
    flat = lambda t: t.detach().float()[0].reshape(-1, t.shape[-1])  # noqa: E731
    hooks = [model.blocks[0].register_forward_pre_hook(lambda _m, a: out.__setitem__(names[0], flat(a[0]))),
             *(b.register_forward_hook(lambda _m, _a, y, n=n: out.__setitem__(n, flat(y)))
               for b, n in zip(model.blocks, names[1:-1])),
             model.readout.register_forward_hook(lambda _m, _a, y: out.__setitem__(names[-1], flat(y)))]
    try:
        with torch.no_grad():
            model(x[None])
    finally:
        for h in hooks:
            h.remove()
    return {n: out[n] for n in names}


def rms_rows(t: torch.Tensor) -> torch.Tensor:
    return t.pow(2).mean(dim=-1).sqrt()


def diameter_rms(f: torch.Tensor) -> float:
    """max over all pairs of rows of ‖f_i − f_j‖_RMS, from the Gram matrix of the rows centred on
    their mean (the differences do not change, the cancellation in ‖f_i‖² + ‖f_j‖² − 2 f_i·f_j does)."""
    c = f - f.mean(dim=0)
    sq = c.pow(2).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (c @ c.T)
    return math.sqrt(max(float(d2.max()), 0.0) / f.shape[1])


def probe_update(model, optimizers, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> None:
    """One step of the run's own optimizer on ``batch`` (member 0), at the schedule's LR of ``step``,
    with the run's clipping: as ``train.train_step``, without the divergence bookkeeping."""
    x, y = batch
    loss = model(x[None], y[None])[1]
    loss.sum().backward()
    clip_member_grads_(optimizers.params, optimizers.h.clip)
    optimizers.step(step, torch.ones(1, dtype=torch.bool, device=loss.device))
    optimizers.zero_grad()


def stability_statistics(model, optimizers, probe: torch.Tensor, batch, step: int) -> list[dict]:
    """Per layer, the three conditions as maxima over the probe's inputs: max ‖f(x)‖_RMS,
    max over all pairs of ‖f(x1) − f(x2)‖_RMS, and max ‖f(x; ω + Δω) − f(x; ω)‖_RMS after one
    ``probe_update`` (which moves the model's weights)."""
    before = layer_outputs(model, probe)
    probe_update(model, optimizers, batch, step)
    after = layer_outputs(model, probe)
    rows = []
    for name, f in before.items():
        rows += [{"layer": name, "condition": "forward", "value": float(rms_rows(f).max())},
                 {"layer": name, "condition": "dependency", "value": diameter_rms(f)},
                 {"layer": name, "condition": "update", "value": float(rms_rows(after[name] - f).max())}]
    return rows


def peak_step(cfg: dict) -> int:
    """The 0-based step at which the schedule reaches its peak LR (the end of warm-up)."""
    return min(cfg["warmup_steps"], cfg["steps"] - 1)


def measure_run(cfg: dict, model_path: Path, data_dir: Path, probe_spec: dict) -> list[dict]:
    """A run's statistics at initialisation (its first update: the batch and LR of step 0) and
    after training (its saved weights; one update on the batch of its next step at peak LR)."""
    torch.manual_seed(0)
    val, train = (TokenShard(Path(data_dir) / "tokens", split) for split in ("val", "train"))
    probe = val.eval_batches(1, probe_spec["sequences"], probe_spec["tokens"])[0][0]
    rows = []
    for time in TIMES:
        model, optimizers, _ = build_population([cfg], torch.device("cpu"))
        if time == "trained":
            model.load_member_state_dict(0, load_file(str(model_path)))
            step, batch_step = peak_step(cfg), cfg["steps"]
        else:
            step = batch_step = 0
        batch = train.batch(batch_step, cfg["batch_size"], cfg["seq_len"], cfg["seed"])
        rows += [{**r, "time": time} for r in stability_statistics(model, optimizers, probe, batch, step)]
    return rows


def measurement_frame(runs, block: dict, scale_dir: Path) -> pd.DataFrame:
    """Long frame (FRAME_COLUMNS) of every run that finished; diverged runs are left out (their
    width then has no point), and so are runs whose weights are not on disk."""
    src, module = source_block(block)
    rows = []
    for r in runs:
        path = Path(scale_dir) / "runs" / r.run_id / "model.safetensors"
        if r.summary.get("status") != "ok" or not path.exists():
            continue
        data_dir = Path(scale_dir) / "data" / r.config["data"]
        meta = {"run_id": r.run_id, "variant": module.variant_of(r.config, src), "width": r.config["d_model"]}
        rows += [{**meta, **m} for m in measure_run(r.config, path, data_dir, block["probe"])]
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


# ------------------------------------------------------------------ width exponents


def width_exponent(widths, values, level: float) -> dict:
    """α of statistic ∝ width^α: the least-squares slope of ln value on ln width, with the
    ``level`` t interval from the line's own residuals (n − 2 degrees of freedom); NaN bounds with
    fewer than three positive points."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    ok = np.isfinite(v) & (v > 0)
    x, y = np.log(w[ok]), np.log(v[ok])
    out = {"exponent": math.nan, "low": math.nan, "high": math.nan, "n": int(ok.sum()), "widths": int(np.unique(x).size)}
    if np.unique(x).size < 2:
        return out
    slope, intercept = np.polyfit(x, y, 1)
    out["exponent"] = float(slope)
    dof = len(x) - 2
    sxx = float(((x - x.mean()) ** 2).sum())
    if dof > 0:
        s = math.sqrt(float(((y - slope * x - intercept) ** 2).sum()) / dof)
        half = float(stats.t.ppf(0.5 + level / 2, dof)) * s / math.sqrt(sxx)
        out["low"], out["high"] = float(slope) - half, float(slope) + half
    return out


def exponent_table(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per variant, time, layer and condition: the width exponent with its interval."""
    rows = []
    for (variant, time, layer, condition), g in frame.groupby(["variant", "time", "layer", "condition"], sort=False):
        rows.append({"variant": variant, "time": time, "layer": layer, "condition": condition,
                     **width_exponent(g.width, g.value, level)})
    return pd.DataFrame(rows, columns=["variant", "time", "layer", "condition", "exponent", "low", "high", "n", "widths"])


def line_status(fit: dict, prediction: str, th: dict) -> tuple[str, str]:
    """(status, why) of one predicted line from its exponent's interval."""
    low, high = fit["low"], fit["high"]
    if fit["widths"] < th["min_widths"] or not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive", f"{fit['widths']} widths with a positive statistic (at least {th['min_widths']} needed)"
    band = th["flat_band"]
    if prediction == "flat":
        if -band <= low and high <= band:
            return "reproduced", f"interval within ±{band:g}"
        if high < -band or low > band:
            return "not_reproduced", f"interval wholly outside ±{band:g}"
        return "inconclusive", f"interval straddles ±{band:g}"
    grow = th["grows_min"]
    if low > grow:
        return "reproduced", f"interval wholly above {grow:g}"
    if high < grow:
        return "not_reproduced", f"interval wholly below {grow:g}"
    return "inconclusive", f"interval straddles {grow:g}"


def fit_text(fit: dict, level: float) -> str:
    return f"α = {fit['exponent']:+.3f} [{fit['low']:+.3f}, {fit['high']:+.3f}] ({level:.0%}, {fit['widths']} widths)"


def judge(frame: pd.DataFrame, block: dict, th: dict, labels: dict) -> dict:
    """Everything the verdict rests on, without figures: exponents, predicted lines, status."""
    level = th["confidence"]
    exps = exponent_table(frame, level)
    at = exps[(exps.time == "trained") & (exps.layer == OUTPUT)].set_index(["variant", "condition"])
    subs = []
    for variant in block["variants"]:
        for condition, prediction in th["predictions"].get(variant, {}).items():
            fit = at.loc[(variant, condition)].to_dict() if (variant, condition) in at.index else \
                {"exponent": math.nan, "low": math.nan, "high": math.nan, "n": 0, "widths": 0}
            status, why = line_status(fit, prediction, th)
            word = "flat in width" if prediction == "flat" else "grows with width"
            crit = (f"the {level:.0%} interval of the exponent lies within ±{th['flat_band']:g}" if prediction == "flat"
                    else f"the {level:.0%} interval of the exponent lies wholly above {th['grows_min']:g}")
            subs.append({**sub_claim(f"{labels[variant]}: {condition} stability {word}", status,
                                     f"Su 11340: max over inputs {'Θ(1)' if prediction == 'flat' else 'grows'} in width",
                                     f"{fit_text(fit, level)}: {why}", crit),
                         "variant": variant, "condition": condition, "prediction": prediction})
    status, reason = decide(subs)
    return {"exponents": exps, "subs": subs, "status": status, "reason": reason}


def decide(subs: list[dict]) -> tuple[str, str]:
    """not reproduced if a μP-Adam line fails; inconclusive if no predicted growth is seen (no
    power) or a line is undecided; reproduced if every line holds; partially if only lines of the
    other variants (Muon-spectral) fail."""
    if not subs:
        return "inconclusive", "no predicted line could be measured"
    failed = [s for s in subs if s["status"] == "not_reproduced"]
    growth = [s for s in subs if s["prediction"] == "grows"]
    if any(s["variant"] == "mup_adam" for s in failed):
        return "not_reproduced", "μP-Adam breaks a condition: " + "; ".join(s["name"] for s in failed if s["variant"] == "mup_adam")
    if not growth or any(s["status"] == "not_reproduced" for s in growth):
        return "inconclusive", "the predicted growth (SP-Adam) is not seen: the measurement shows no power"
    undecided = [s["name"] for s in subs if s["status"] == "inconclusive"]
    if undecided:
        return "inconclusive", "a line cannot be decided: " + "; ".join(undecided)
    if not failed:
        return "reproduced", "every condition is flat in width where the posts say so and grows where they say it grows"
    return "partially_reproduced", "μP-Adam holds and SP-Adam grows, but: " + "; ".join(s["name"] for s in failed)


# ------------------------------------------------------------------ figures


def plot_statistics(ctx, frame: pd.DataFrame, labels: dict, variants: list[str]) -> None:
    out = frame[(frame.layer == OUTPUT) & (frame.value > 0)]
    if out.empty:
        return
    fig, axes = plt.subplots(1, len(CONDITIONS), figsize=(3.6 * len(CONDITIONS), 3.2), constrained_layout=True)
    widths = sorted(out.width.unique())
    for ax, condition in zip(axes, CONDITIONS):
        for v in variants:
            look = style(v)
            for time, fill in (("trained", look.color), ("init", "none")):
                g = out[(out.variant == v) & (out.condition == condition) & (out.time == time)].sort_values("width")
                if g.empty:
                    continue
                ax.plot(g.width, g.value, color=look.color, marker=look.marker, mfc=fill, lw=1 if time == "trained" else 0.7,
                        ls="-" if time == "trained" else ":", label=f"{labels[v]}, {'after k steps' if time == 'trained' else 'init'}")
        ax.set(xscale="log", yscale="log", title=f"{condition} stability", xlabel=axis_label("width", DIMENSIONS),
               ylabel=axis_label("max over inputs of RMS", DIMENSIONLESS) if condition == CONDITIONS[0] else "")
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.minorticks_off()
    axes[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    ctx.save_figure(fig, "conditions", "The three conditions of Su (kexue.fm/archives/11340) on the logits against width: "
                    "max over the probe's inputs of ‖f(x)‖_RMS (forward), of ‖f(x1) − f(x2)‖_RMS over all pairs "
                    "(dependency) and of ‖f(x; ω + Δω) − f(x; ω)‖_RMS after one optimizer update (update); filled: after "
                    "the coordinate check's k steps at one LR for every width, hollow: at initialisation.")
    plt.close(fig)


def plot_exponents(ctx, exps: pd.DataFrame, labels: dict, variants: list[str], th: dict) -> None:
    e = exps[exps.time == "trained"]
    if e.empty:
        return
    layers = list(dict.fromkeys(e.layer))
    fig, axes = plt.subplots(1, len(CONDITIONS), figsize=(3.6 * len(CONDITIONS), 3.2), sharey=True, constrained_layout=True)
    band = th["flat_band"]
    for ax, condition in zip(axes, CONDITIONS):
        reference_band(ax, -band, band, "flat band" if condition == CONDITIONS[0] else None)
        reference_line(ax, th["grows_min"], "growth threshold" if condition == CONDITIONS[0] else None)
        for i, v in enumerate(variants):
            g = e[(e.variant == v) & (e.condition == condition)].set_index("layer").reindex(layers)
            x = np.arange(len(layers)) + (i - (len(variants) - 1) / 2) * 0.22
            look = style(v)
            err = np.vstack([g.exponent - g.low, g.high - g.exponent])
            ax.errorbar(x, g.exponent, yerr=np.where(np.isfinite(err), err, 0), fmt=look.marker, color=look.color,
                        ms=4, lw=1, capsize=2, label=labels[v] if condition == CONDITIONS[0] else None)
        ax.set_xticks(np.arange(len(layers)), layers, rotation=45, fontsize=7)
        ax.set(title=f"{condition} stability", ylabel=axis_label("width exponent α", DIMENSIONLESS) if condition == CONDITIONS[0] else "")
    fig.legend(fontsize=7, loc="outside right upper")
    ctx.save_figure(fig, "exponents", f"Width exponent α (statistic ∝ width^α) of each condition at each layer after the "
                    f"coordinate check's k steps, with its {th['confidence']:.0%} t interval; grey: the flat band "
                    f"±{band:g}, dashed: the growth threshold {th['grows_min']:g}. The verdict reads the logits (the "
                    f"model's output f); the blocks are shown for where a violation starts.")
    plt.close(fig)


# ------------------------------------------------------------------ analysis


def labels_of(block: dict) -> dict:
    src, _ = source_block(block)
    return {v: src["variants"][v]["label"] for v in block["variants"]}


def analyze(ctx):
    th, block = ctx.thresholds, ctx.scale_spec
    labels, variants = labels_of(block), list(block["variants"])
    frame = measurement_frame(ctx.runs, block, Path(ctx.out_dir).parents[1])
    j = judge(frame, block, th, labels)
    exps = j["exponents"]
    meas = {}
    at = exps[(exps.time == "trained") & (exps.layer == OUTPUT)]
    for r in at.itertuples():
        if r.variant in labels:
            meas[f"{r.condition}-stability exponent, {labels[r.variant]}"] = measured(
                r.exponent, r.low, r.high, "ln statistic / ln width",
                note=f"least squares over {r.widths} widths; {th['confidence']:.0%} t interval from the line's residuals")
    plot_statistics(ctx, frame, labels, variants)
    plot_exponents(ctx, exps, labels, variants, th)
    notes = [f"{frame.run_id.nunique()} runs measured (the coordinate check of {block['coord_sweep']['claim']}: "
             f"{', '.join(labels.values())}; widths {', '.join(map(str, sorted(frame.width.unique())))}); probe "
             f"{block['probe']['sequences']} × {block['probe']['tokens']} validation tokens, each position one input"]
    trained = exps[exps.time == "trained"]
    for v in variants:
        g = trained[trained.variant == v]
        if not g.empty and g.exponent.notna().any():
            worst = g.loc[g.exponent.abs().idxmax()]
            notes.append(f"{labels[v]}: largest |α| over the layers and conditions after k steps: {worst.exponent:+.2f} "
                         f"({worst.condition}, {worst.layer})")
    frame.assign(label=frame.variant.map(labels)).to_csv(ctx.out_dir / "statistics.csv", index=False)
    table = exps.assign(label=exps.variant.map(labels))
    return ctx.verdict(j["status"], meas, j["reason"] + ".", j["subs"], notes), table
