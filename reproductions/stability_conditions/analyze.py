"""stability_conditions: are a model's three Θ(1) conditions flat in width where the posts say so?

Su, kexue.fm/archives/11340: a good model f(x; ω) keeps, as maxima over inputs (not averages),
  forward stability     max_x       ‖f(x; ω)‖_RMS             = Θ(1)
  dependency stability  max_{x1,x2} ‖f(x1; ω) − f(x2; ω)‖_RMS = Θ(1)
  update stability      max_x       ‖f(x; ω + Δω) − f(x; ω)‖_RMS = Θ(1), Δω one optimizer update.

The runs are another claim's (``coord_sweep``, e.g. mup_transfer's), the same run_ids, trained
once, in two regimes: ``coord``, its coordinate check (k steps at one large LR for every width),
and ``sweep``, its LR sweep's first seed at the LR the narrowest width finds best, the same LR at
every width, trained to the end of its schedule. The only runs of its own are copies with other
seeds, so each width has several runs: of the coordinate check with the other ``coord_seeds`` (the
plan), and of the trained runs at the chosen LR with the other ``sweep_seeds`` (``select_runs``,
once the sweep's first seed has chosen the LR).
After training, each run is measured from its saved weights (``model.safetensors``) and, for the
coordinate check, from its initialisation (ω_0, rebuilt from the config, as the trainer builds
it): the statistics on a fixed probe batch from the validation split, each input one token
position (its context), the maximum taken over the probe's positions (and over all pairs of them).
Δω is one step of the run's own optimizer (its per-group LRs at the schedule's peak) on the run's
next training batch: at the saved weights with its state (Adam's moments, Muon's momentum) first
warmed at LR 0 on the run's last ``warm_batches`` training batches; at ω_0 a fresh optimizer's,
exactly the run's first update. A diverged run is not measured: it gives its width a point of +∞
on the logits, at the end. ``judge`` fits each statistic's width exponent (least squares of ln
statistic on ln width over the finite points, a t interval from that line's own residuals, n − 2
degrees of freedom) and decides it against the band in claim.yaml.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from scipy import stats

from optclaims.analysis import measured, run_fields, sub_claim
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
TIMES = ("init", "end")  # the run's initialisation, and its saved weights at the end of its steps
REGIMES = {"coord": "after k steps", "sweep": "trained"}
FRAME_COLUMNS = ["run_id", "variant", "width", "seed", "regime", "time", "layer", "condition", "value"]

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


def regime_of(cfg: dict) -> str:
    return "coord" if cfg.get("activation_steps") else "sweep"


def seed_list(block: dict, key: str, src: dict) -> list[int]:
    """The scale's ``key`` (a list of seeds), checked: distinct integers ≥ 0 that include the source
    claim's seed (its runs, trained once for both claims)."""
    seeds = block.get(key)
    if (not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds) or src["seed"] not in seeds):
        raise ConfigError(f"invalid stability_conditions scale: {key} = {seeds!r} must be a list of distinct seeds "
                          f"(integers ≥ 0) that includes the source claim's seed {src['seed']}")
    return seeds


def coord_seeds(block: dict, src: dict) -> list[int]:
    """The coordinate check's seeds: the source claim's own and the extra ones whose copies this
    claim trains in its plan."""
    return seed_list(block, "coord_seeds", src)


def sweep_seeds(block: dict, src: dict) -> list[int]:
    """The trained regime's seeds: the source claim's first seed (its LR sweep) and the extra ones
    this claim's ``select_runs`` trains at the LR chosen from it (a run the source claim's own later
    stage also chose, such as mup_transfer's seed check at its optimum, is trained once: the
    trainer locks each run)."""
    return seed_list(block, "sweep_seeds", src)


def plan_runs(block: dict) -> list[dict]:
    """The named claim's own runs (its plan_runs, unchanged: the same run_ids) of this claim's
    variants and regimes: its coordinate check, and its LR sweep's first seed; then, for each
    coordinate-check run, its copies with the other ``coord_seeds`` (the only runs of this claim's
    own: four steps each, so each width has several independent runs)."""
    src, module = source_block(block)
    seeds = coord_seeds(block, src)
    sweep_seeds(block, src)  # checked before any run: select_runs reads it once the sweep is trained
    regimes = block["regimes"]
    if not regimes or set(regimes) - set(REGIMES):
        raise ConfigError(f"invalid stability_conditions scale: regimes = {regimes!r} must be some of {', '.join(REGIMES)}")
    keep = [f for f in module.plan_runs(src) if module.variant_of(f, src) in block["variants"]
            and regime_of(f) in regimes and f.get("seed") == src["seed"]]
    for regime in regimes:
        if not any(regime_of(f) == regime for f in keep):
            raise ConfigError(f"coord_sweep: claim {block['coord_sweep']['claim']!r} plans no run of regime {regime!r}")
    short = [f for f in keep if f["seq_len"] < block["probe"]["tokens"]]
    if short:
        raise ConfigError(f"invalid stability_conditions scale: probe.tokens = {block['probe']['tokens']} exceeds the "
                          f"seq_len = {short[0]['seq_len']} of {block['coord_sweep']['claim']}'s runs (a probe sequence must "
                          "fit the model's context)")
    copies = [{**f, "seed": s} for f in keep if regime_of(f) == "coord" for s in seeds if s != f["seed"]]
    return keep + copies


def select_runs(ctx) -> list[dict]:
    """Stage 2: the trained regime's other seeds. At every width of the sweep, each variant's run at
    the LR its narrowest width's first seed finds best (``sweep_choice``), again with each other seed
    of ``sweep_seeds`` (the same config but the seed), so each width has one trained run per seed."""
    block = ctx.scale_spec
    src, module = source_block(block)
    extra = [s for s in sweep_seeds(block, src) if s != src["seed"]]
    chosen = sweep_choice(ctx.runs, block)
    return [{**run_fields(r.config), "seed": s} for r in ctx.runs
            if regime_of(r.config) == "sweep" and r.config["seed"] == src["seed"]
            and math.isclose(r.config["lr"], chosen.get(module.variant_of(r.config, src), math.nan)) for s in extra]


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


def warm_state(model, optimizers, batches) -> None:
    """Fill the optimizer's state (Adam's moments, Muon's momentum) from ``batches`` at learning
    rate 0, so the weights do not move: the probe's update is then the step of an optimizer that
    has seen recent gradients, as the run's had, rather than a fresh optimizer's first (sign-like)
    step, whose single-batch noise is less aligned with the inputs."""
    peak = {role: lr.clone() for role, lr in optimizers.h.peak_lr.items()}
    for lr in optimizers.h.peak_lr.values():
        lr.zero_()
    try:
        for batch in batches:
            probe_update(model, optimizers, batch, 0)
    finally:
        for role, lr in optimizers.h.peak_lr.items():
            lr.copy_(peak[role])


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


def probe_tokens(probe_spec: dict, cfg: dict) -> int:
    """Tokens per probe sequence: the scale's, or the run's context where run_overrides made it shorter
    (the plan refuses a scale whose own runs are shorter than its probe; the verdict notes the cut)."""
    return min(probe_spec["tokens"], cfg["seq_len"])


def measure_run(cfg: dict, model_path: Path, data_dir: Path, probe_spec: dict, times=TIMES) -> list[dict]:
    """A run's statistics at initialisation (its first update: the batch and LR of step 0, a fresh
    optimizer) and at the end (its saved weights; the optimizer's state warmed on the run's last
    ``warm_batches`` training batches at LR 0, then one update on the batch of its next step at
    peak LR). On a GPU where there is one (float32 throughout), else on the CPU."""
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    val, train = (TokenShard(Path(data_dir) / "tokens", split) for split in ("val", "train"))
    probe = val.eval_batches(1, probe_spec["sequences"], probe_tokens(probe_spec, cfg))[0][0].to(device)
    rows = []
    for time in times:
        model, optimizers, _ = build_population([cfg], device)
        if time == "end":
            model.load_member_state_dict(0, load_file(str(model_path)))
            step, batch_step = peak_step(cfg), cfg["steps"]
            warm = range(max(0, cfg["steps"] - probe_spec["warm_batches"]), cfg["steps"])
            warm_state(model, optimizers, [tuple(t.to(device) for t in train.batch(s, cfg["batch_size"], cfg["seq_len"],
                                                                                   cfg["seed"])) for s in warm])
        else:
            step = batch_step = 0
        batch = tuple(t.to(device) for t in train.batch(batch_step, cfg["batch_size"], cfg["seq_len"], cfg["seed"]))
        rows += [{**r, "time": time} for r in stability_statistics(model, optimizers, probe, batch, step)]
    return rows


def sweep_choice(runs, block: dict) -> dict[str, float]:
    """Per variant, the LR of the sweep its narrowest width's first seed finds best (lowest final
    validation loss, diverged = ∞): the LR tuned small and used at every width, as μP is used."""
    src, module = source_block(block)
    best = {}
    for v in block["variants"]:
        mine = [r for r in runs if regime_of(r.config) == "sweep" and module.variant_of(r.config, src) == v
                and r.config["seed"] == src["seed"]]
        if not mine:
            continue
        narrow = min(r.config["d_model"] for r in mine)
        at = [r for r in mine if r.config["d_model"] == narrow and math.isfinite(r.final_val_loss)]
        if at:
            best[v] = min(at, key=lambda r: (r.final_val_loss, r.config["lr"])).config["lr"]
    return best


def measurement_frame(runs, block: dict, scale_dir: Path) -> pd.DataFrame:
    """Long frame (FRAME_COLUMNS): every coordinate-check run (each of ``coord_seeds``) at both
    times, and the sweep's runs at each variant's ``sweep_choice`` (each of ``sweep_seeds``) at the
    end. A diverged run is a result, not measured: a point of value +∞ for every condition on the
    logits at the end. A run that finished ok without its weights on disk is an error
    (FileNotFoundError), not skipped."""
    src, module = source_block(block)
    seeds = {"coord": coord_seeds(block, src), "sweep": sweep_seeds(block, src)}
    chosen = sweep_choice(runs, block)
    rows = []
    for r in runs:
        path = Path(scale_dir) / "runs" / r.run_id / "model.safetensors"
        variant, regime = module.variant_of(r.config, src), regime_of(r.config)
        if regime not in block["regimes"] or variant not in block["variants"]:
            continue
        if r.config["seed"] not in seeds[regime]:
            continue
        if regime == "sweep" and not math.isclose(r.config["lr"], chosen.get(variant, math.nan)):
            continue
        meta = {"run_id": r.run_id, "variant": variant, "width": r.config["d_model"], "seed": r.config["seed"],
                "regime": regime}
        if r.diverged:
            rows += [{**meta, "time": "end", "layer": OUTPUT, "condition": c, "value": math.inf} for c in CONDITIONS]
            continue
        if not path.exists():
            raise FileNotFoundError(f"run {r.run_id} finished ok but its weights {path} are missing")
        data_dir = Path(scale_dir) / "data" / r.config["data"]
        times = TIMES if regime == "coord" else ("end",)
        rows += [{**meta, **m} for m in measure_run(r.config, path, data_dir, block["probe"], times)]
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


# ------------------------------------------------------------------ width exponents


def width_exponent(widths, values, level: float) -> dict:
    """α of statistic ∝ width^α: the least-squares slope of ln value on ln width over the finite
    positive points (several runs at one width are several points), with the ``level`` t interval
    from the line's own residual scatter (n − 2 degrees of freedom); NaN bounds without a residual
    degree of freedom. Beside it: ``diverged``, the widths with a point of +∞ (a diverged run),
    and ``span``, the ratio of the widest to the narrowest width with a finite point."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    ok = np.isfinite(v) & (v > 0)
    x, y = np.log(w[ok]), np.log(v[ok])
    out = {"exponent": math.nan, "low": math.nan, "high": math.nan, "n": int(ok.sum()), "widths": int(np.unique(x).size),
           "dof": 0, "scatter": math.nan, "span": float(w[ok].max() / w[ok].min()) if ok.any() else math.nan,
           "diverged": tuple(int(d) for d in np.unique(w[np.isposinf(v)]))}
    if np.unique(x).size < 2:
        return out
    slope, intercept = np.polyfit(x, y, 1)
    out.update(exponent=float(slope), dof=len(x) - 2)
    if out["dof"] > 0:
        s = math.sqrt(float(((y - slope * x - intercept) ** 2).sum()) / out["dof"])
        half = float(stats.t.ppf(0.5 + level / 2, out["dof"])) * s / math.sqrt(float(((x - x.mean()) ** 2).sum()))
        out.update(scatter=s, low=out["exponent"] - half, high=out["exponent"] + half)
    return out


EXPONENT_COLUMNS = ["variant", "regime", "time", "layer", "condition", "exponent", "low", "high", "n", "widths", "dof",
                    "scatter", "span", "diverged"]


def exponent_table(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per variant, regime, time, layer and condition: the width exponent with its interval (the
    rows the verdict's lines are read from: the logits at the end)."""
    rows = []
    keys = ["variant", "regime", "time", "layer", "condition"]
    for key, g in frame.groupby(keys, sort=False):
        rows.append({**dict(zip(keys, key)), **width_exponent(g.width, g.value, level)})
    return pd.DataFrame(rows, columns=EXPONENT_COLUMNS)


def diverged_text(fit: dict) -> str:
    return f"diverged at width {', '.join(map(str, fit['diverged']))}"


def line_status(fit: dict, prediction: str, th: dict) -> tuple[str, str]:
    """(status, why) of one predicted line: a flat line with a diverged width fails; too few widths,
    an unbounded interval or finite widths spanning less than ``min_span`` leave it undecided;
    else its exponent's interval decides."""
    low, high = fit["low"], fit["high"]
    if prediction == "flat" and fit["diverged"]:
        return "not_reproduced", f"{diverged_text(fit)}: not Θ(1)"
    beside = f"; {diverged_text(fit)} (no finite point)" if fit["diverged"] else ""
    if fit["widths"] < th["min_widths"] or not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive", (f"{fit['widths']} widths with a positive statistic (at least {th['min_widths']} "
                                f"needed){beside}")
    if not fit["span"] >= th["min_span"]:
        return "inconclusive", f"the finite widths span {fit['span']:g}× (at least {th['min_span']:g}× needed){beside}"
    band = th["flat_band"]
    if prediction == "flat":
        if -band <= low and high <= band:
            return "reproduced", f"interval within ±{band:g}"
        if high < -band or low > band:
            return "not_reproduced", f"interval wholly outside ±{band:g}"
        return "inconclusive", f"interval straddles ±{band:g}"
    grow = th["grows_min"]
    if low > grow:
        return "reproduced", f"interval wholly above {grow:g}{beside}"
    if high < grow:
        return "not_reproduced", f"interval wholly below {grow:g}{beside}"
    return "inconclusive", f"interval straddles {grow:g}{beside}"


def fit_text(fit: dict, level: float) -> str:
    return (f"α = {fit['exponent']:+.3f} [{fit['low']:+.3f}, {fit['high']:+.3f}] ({level:.0%}; {fit['n']} runs at "
            f"{fit['widths']} widths spanning {fit['span']:g}×; own residual scatter {fit['scatter']:.3f} in ln, "
            f"{fit['dof']} dof)")


def output_fits(exps: pd.DataFrame) -> dict:
    """(regime, variant, condition) → the exponent table's row of the logits at the end: the lines
    the verdict reads and reports, so the verdict and table.csv show the same intervals."""
    at = exps[(exps.time == "end") & (exps.layer == OUTPUT)]
    return {(r.regime, r.variant, r.condition): {k: getattr(r, k) for k in EXPONENT_COLUMNS} for r in at.itertuples()}


def judge(frame: pd.DataFrame, block: dict, th: dict, labels: dict) -> dict:
    """Everything the verdict rests on, without figures: exponents, predicted lines, status."""
    level = th["confidence"]
    exps = exponent_table(frame, level)
    fits = output_fits(exps)
    for regime in block["regimes"]:
        for variant in block["variants"]:
            for condition in th["predictions"].get(variant, {}):
                fits.setdefault((regime, variant, condition), width_exponent([], [], level))  # nothing measured
    subs = []
    for regime in block["regimes"]:
        for variant in block["variants"]:
            for condition, prediction in th["predictions"].get(variant, {}).items():
                fit = fits[regime, variant, condition]
                status, why = line_status(fit, prediction, th)
                word = "flat in width" if prediction == "flat" else "grows with width"
                crit = (f"the {level:.0%} interval of the exponent lies within ±{th['flat_band']:g}" if prediction == "flat"
                        else f"the {level:.0%} interval of the exponent lies wholly above {th['grows_min']:g}")
                subs.append({**sub_claim(f"{labels[variant]}: {condition} stability {word}, {REGIMES[regime]}", status,
                                         f"Su 11340: max over inputs {'Θ(1)' if prediction == 'flat' else 'grows'} in width",
                                         f"{fit_text(fit, level)}: {why}", crit),
                             "variant": variant, "regime": regime, "condition": condition, "prediction": prediction})
    status, reason = decide(subs)
    return {"exponents": exps, "fits": fits, "subs": subs, "status": status, "reason": reason}


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
    out = frame[(frame.layer == OUTPUT) & np.isfinite(frame.value) & (frame.value > 0)]  # a diverged run's +∞: no point
    if out.empty:
        return
    regimes = [r for r in REGIMES if r in set(out.regime)]
    fig, axes = plt.subplots(len(regimes), len(CONDITIONS), figsize=(3.6 * len(CONDITIONS), 2.9 * len(regimes)),
                             squeeze=False, constrained_layout=True)
    for row, regime in zip(axes, regimes):
        widths = sorted(out[out.regime == regime].width.unique())
        for ax, condition in zip(row, CONDITIONS):
            for v in variants:
                look = style(v)
                for time, fill in (("end", look.color), ("init", "none")):
                    g = out[(out.variant == v) & (out.condition == condition) & (out.time == time)
                            & (out.regime == regime)]
                    if g.empty:
                        continue
                    mean = np.exp(np.log(g.value).groupby(g.width).mean())  # each width's runs (seeds): their geometric mean
                    ax.plot(mean.index, mean.values, color=look.color, marker=look.marker, mfc=fill,
                            lw=1 if time == "end" else 0.7, ls="-" if time == "end" else ":",
                            label=f"{labels[v]}, {REGIMES[regime] if time == 'end' else 'init'}")
                    if g.seed.nunique() > 1:
                        ax.scatter(g.width, g.value, s=6, color=look.color, alpha=0.35, lw=0)
            ax.set(xscale="log", yscale="log", title=f"{condition} stability, {REGIMES[regime]}",
                   xlabel=axis_label("width", DIMENSIONS),
                   ylabel=axis_label("max over inputs of RMS", DIMENSIONLESS) if condition == CONDITIONS[0] else "")
            ax.set_xticks(widths, [str(w) for w in widths])
            ax.minorticks_off()
        row[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    ctx.save_figure(fig, "conditions", "The three conditions of Su (kexue.fm/archives/11340) on the logits against width: "
                    "max over the probe's inputs of ‖f(x)‖_RMS (forward), of ‖f(x1) − f(x2)‖_RMS over all pairs "
                    "(dependency) and of ‖f(x; ω + Δω) − f(x; ω)‖_RMS after one optimizer update (update). Top: the "
                    "coordinate check, k steps at one LR for every width (filled) and at initialisation (hollow), "
                    "the line through each width's geometric mean over its seeds (dots: each run); "
                    "bottom: the LR sweep trained to the end at the LR its narrowest width finds best, the same at "
                    "every width.")
    plt.close(fig)


def plot_exponents(ctx, exps: pd.DataFrame, labels: dict, variants: list[str], th: dict) -> None:
    e = exps[exps.time == "end"]
    if e.empty:
        return
    regimes = [r for r in REGIMES if r in set(e.regime)]
    fig, axes = plt.subplots(len(regimes), len(CONDITIONS), figsize=(3.6 * len(CONDITIONS), 2.9 * len(regimes)),
                             squeeze=False, sharey=True, constrained_layout=True)
    band = th["flat_band"]
    for row, regime in zip(axes, regimes):
        layers = list(dict.fromkeys(e[e.regime == regime].layer))
        for ax, condition in zip(row, CONDITIONS):
            first = ax is axes[0][0]
            reference_band(ax, -band, band, "flat band" if first else None)
            reference_line(ax, th["grows_min"], "growth threshold" if first else None)
            for i, v in enumerate(variants):
                g = e[(e.variant == v) & (e.condition == condition) & (e.regime == regime)].set_index("layer").reindex(layers)
                x = np.arange(len(layers)) + (i - (len(variants) - 1) / 2) * 0.22
                look = style(v)
                err = np.vstack([g.exponent - g.low, g.high - g.exponent])
                ax.errorbar(x, g.exponent, yerr=np.where(np.isfinite(err), err, 0), fmt=look.marker, color=look.color,
                            ms=4, lw=1, capsize=2, label=labels[v] if first else None)
            ax.set_xticks(np.arange(len(layers)), layers, rotation=45, fontsize=7)
            ax.set(title=f"{condition} stability, {REGIMES[regime]}",
                   ylabel=axis_label("width exponent α", DIMENSIONLESS) if condition == CONDITIONS[0] else "")
    fig.legend(fontsize=7, loc="outside right upper")
    ctx.save_figure(fig, "exponents", f"Width exponent α (statistic ∝ width^α) of each condition at each layer, after the "
                    f"coordinate check's k steps (top) and trained (bottom), with its {th['confidence']:.0%} t interval; "
                    f"grey: the flat band ±{band:g}, dashed: the growth threshold {th['grows_min']:g}. The verdict reads "
                    f"the logits (the model's output f); the blocks are shown for where a violation starts.")
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
    for (regime, variant, condition), fit in output_fits(exps).items():  # predicted or reported only: the table's rows
        if variant in labels:
            note = (f"least squares over {fit['n']} runs at {fit['widths']} widths spanning {fit['span']:g}×; "
                    f"{th['confidence']:.0%} t interval from the line's own residual scatter "
                    f"({fit['scatter']:.3f} in ln, {fit['dof']} dof)" + (f"; {diverged_text(fit)}" if fit["diverged"] else ""))
            meas[f"{condition}-stability exponent, {labels[variant]}, {REGIMES[regime]}"] = measured(
                fit["exponent"], fit["low"], fit["high"], "ln statistic / ln width", note=note)
    plot_statistics(ctx, frame, labels, variants)
    plot_exponents(ctx, exps, labels, variants, th)
    chosen = sweep_choice(ctx.runs, block)
    measured_ids = set(frame.run_id)
    cut = min((probe_tokens(block["probe"], r.config) for r in ctx.runs if r.run_id in measured_ids),
              default=block["probe"]["tokens"])
    notes = [f"{frame.run_id.nunique()} runs measured ({', '.join(labels.values())}; {block['coord_sweep']['claim']}'s, and "
             f"copies with the other seeds: of its coordinate check (coord_seeds) and of its trained runs at the sweep LR "
             f"(sweep_seeds)); "
             + "; ".join(f"{REGIMES[g]}: widths {', '.join(map(str, sorted(f.width.unique())))}, "
                         f"seeds {', '.join(map(str, sorted(f.seed.unique())))}"
                         for g, f in frame.groupby("regime", sort=False))
             + f"; probe {block['probe']['sequences']} × {block['probe']['tokens']} validation tokens, each position one input"
             + (f" (cut to the runs' context of {cut} tokens)" if cut < block["probe"]["tokens"] else ""),
             "sweep LR (the narrowest width's best, used at every width): "
             + (", ".join(f"{labels[v]} 2^{math.log2(lr):g}" for v, lr in chosen.items()) or "none")]
    diverged = frame[np.isposinf(frame.value)].drop_duplicates("run_id")
    if not diverged.empty:
        notes.append("diverged (not measured; a point of +∞ at its width): " + ", ".join(
            f"{labels[d.variant]} width {d.width} seed {d.seed}, {REGIMES[d.regime]}" for d in diverged.itertuples()))
    ends = exps[exps.time == "end"]
    for (regime, v), g in ends.groupby(["regime", "variant"], sort=False):
        if v in labels and g.exponent.notna().any():
            worst = g.loc[g.exponent.abs().idxmax()]
            notes.append(f"{labels[v]}, {REGIMES[regime]}: largest |α| over the layers and conditions: {worst.exponent:+.2f} "
                         f"({worst.condition}, {worst.layer})")
    frame.assign(label=frame.variant.map(labels)).to_csv(ctx.out_dir / "statistics.csv", index=False)
    table = exps.assign(label=exps.variant.map(labels), diverged=exps.diverged.map(lambda d: " ".join(map(str, d))))
    return ctx.verdict(j["status"], meas, j["reason"] + ".", j["subs"], notes), table
