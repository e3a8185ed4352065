"""The adam_update_rms analysis: its math against the published numbers, its plan (the width sweep
shared with another claim, run_id for run_id), and its decision rules, with their power."""

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from optclaims.analysis import ClaimContext, Run
from optclaims.claims import claim_run_configs, load_claim, load_claim_module
from optclaims.errors import ConfigError
from optclaims.plan import build_plan
from optclaims.runs import make_run_config, run_id

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "reproductions"
claim = load_claim_module("adam_update_rms", REPRO)
SPEC = load_claim("adam_update_rms", REPRO)
TH = SPEC["thresholds"]
COMMON = {"data": "pycode-test", "vocab_size": 8192}


def test_mean_field_matches_the_published_values():
    assert claim.mean_field_rms(0.9) == pytest.approx(0.2294, abs=1e-4)
    assert claim.mean_field_rms(0.95) == pytest.approx(0.160, abs=1e-3)
    assert claim.mean_field_rms(0.8) == pytest.approx(0.333, abs=1e-3)
    assert claim.mean_field_rms(0.9, snr=1e9) == pytest.approx(1.0, abs=1e-6)  # pure signal: RMS → 1


def test_implied_snr_inverts_the_mean_field():
    for snr in (0.0, 0.1, 1.0):
        assert claim.implied_snr(claim.mean_field_rms(0.9, snr), 0.9) == pytest.approx(snr, abs=1e-9)


def test_simulation_agrees_with_theory_at_zero_signal_and_tracks_signal():
    sim = claim.simulate_rms([0.9, 0.95], [0.95, 0.999], [0.0, 1.0], n_coords=2000, steps=3000, tail=100)
    zero = sim[sim.snr == 0]
    assert zero.relative_error.abs().max() < 0.05
    # more signal → larger updates, in both the simulation and the theory
    for b1 in (0.9, 0.95):
        s = sim[(sim.beta1 == b1) & (sim.beta2 == 0.95)].set_index("snr").simulated_rms
        assert s[1.0] > s[0.0] + 0.2


def test_simulation_subclaim_reads_its_range_from_the_thresholds():
    sim = pd.DataFrame({"beta1": [0.0, 0.9], "beta2": [0.95, 0.95], "snr": [0.0, 0.0], "relative_error": [0.3, 0.01]})
    assert claim.simulation_subclaim(sim, TH)["status"] == "reproduced"  # β1 = 0 lies below simulation_min_beta1
    assert claim.simulation_subclaim(sim, {**TH, "simulation_min_beta1": 0.0})["status"] == "not_reproduced"


# ------------------------------------------------------------------ plan: the shared width sweep


def finished_ids(fields_list) -> list[str]:
    return [run_id(make_run_config({**f, **COMMON})) for f in fields_list]


def source_sweep_ids(scale: str) -> set[str]:
    """The source claim's own plan, kept to AdamW runs at base depth recording no activations."""
    sweep = SPEC["scales"][scale]["size_sweep"]
    source = load_claim(sweep["claim"], REPRO)
    configs = claim_run_configs(source, sweep["scale"], COMMON, load_claim_module(sweep["claim"], REPRO))
    depth = source["scales"][sweep["scale"]]["base"]["n_layers"]
    return {run_id(c) for c in configs if c["optimizer"] == "adamw" and not c["activation_steps"] and c["n_layers"] == depth}


@pytest.mark.parametrize("scale", ["smoke", "gpu", "full"])
def test_width_sweep_runs_are_the_source_claims_own_run_ids(scale):
    block = SPEC["scales"][scale]
    ours = set(finished_ids(claim.size_sweep_runs(block["size_sweep"])))
    theirs = source_sweep_ids(scale)
    assert ours and ours <= theirs
    if "only" not in block["size_sweep"]:
        assert ours == theirs  # the whole sweep, nothing left out, nothing added
    configs = [make_run_config({**f, **COMMON}) for f in claim.size_sweep_runs(block["size_sweep"])]
    assert {(c["beta1"], c["beta2"]) for c in configs} == {tuple(TH["reference"])}
    # the gpu and full sweeps span the widths the size line needs; smoke's is plumbing
    assert len({c["d_model"] for c in configs}) >= (2 if scale == "smoke" else TH["size_min_widths"])


def test_the_shared_sweep_trains_once_in_a_plan_of_both_claims():
    config = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())
    plan = build_plan({**config, "scale": "gpu", "claims": ["adam_update_rms", "mup_transfer"], "results_dir": "/tmp/x"}, REPRO)
    ours, theirs = set(plan.claims["adam_update_rms"]), set(plan.claims["mup_transfer"])
    block = SPEC["scales"]["gpu"]
    sweep = set(run_id(make_run_config({**f, **plan.common})) for f in claim.size_sweep_runs(block["size_sweep"]))
    assert ours & theirs == sweep
    assert len(plan.runs) == len(ours | theirs)
    assert sum(len(m) for m in plan.populations.values()) == len(plan.runs)  # every run in one population


def test_bad_size_sweep_is_refused_naming_key_and_value():
    good = SPEC["scales"]["smoke"]["size_sweep"]
    cases = [({**good, "claim": "free_lunch"}, "free_lunch"),
             ({**good, "scale": "huge"}, "huge"),
             ({**good, "only": {"parametrization": ["spp"]}}, '["spp"]'),
             ({**good, "only": {"log2_lr": [-40]}}, "log2_lr"),
             ({**good, "widths": [64]}, "widths"),
             ({"claim": "mup_transfer"}, "scale")]
    for sweep, words in cases:
        with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
            claim.size_sweep_runs(sweep, REPRO)


def test_grid_and_sweep_runs_are_told_apart_even_with_pinned_fields():
    """run_overrides (as in the workflow test) pin d_model, steps, ... in every run: the fields
    that still differ tell the β grid from the width sweep."""
    block = SPEC["scales"]["smoke"]
    pinned = {"d_model": 32, "n_layers": 1, "n_heads": 2, "seq_len": 32, "batch_size": 4, "steps": 24, "warmup_steps": 4}
    fields = claim.grid_runs(block) + claim.size_sweep_runs(block["size_sweep"])
    runs = [Run(run_id(c), c, {"status": "ok"}, pd.DataFrame()) for c in (make_run_config({**f, **COMMON, **pinned}) for f in fields)]
    n_grid = len(claim.grid_runs(block))
    assert claim.in_beta_grid(runs, block) == [True] * n_grid + [False] * (len(runs) - n_grid)
    plain = [Run(run_id(c), c, {"status": "ok"}, pd.DataFrame()) for c in (make_run_config({**f, **COMMON}) for f in fields)]
    assert claim.in_beta_grid(plain, block) == [True] * n_grid + [False] * (len(runs) - n_grid)


def test_criteria_carry_the_thresholds():
    text = " ".join(claim_criteria())
    assert "{" + "size_exponent_max" not in text and f"±{TH['size_exponent_max']:g}" in text
    assert f"{TH['reproduced_band']}" in text and f"{TH['refuted_band']}" in text


def claim_criteria():
    from optclaims.analysis import criteria_text

    return criteria_text(SPEC)


# ------------------------------------------------------------------ the β grid at one size


def table(values: dict, steps: int = 10_000) -> pd.DataFrame:
    rows = [{"beta1": b1, "beta2": b2, "status": "ok", "rms_hidden": v, "rms_hidden_p05": v * 0.95,
             "rms_hidden_p95": v * 1.05, "steps": steps} for (b1, b2), v in values.items()]
    return pd.DataFrame(rows)


THEORY = {(0.8, 0.95): 0.333, (0.9, 0.95): 0.229, (0.95, 0.95): 0.160}


def test_decide_reproduced_partial_and_refuted():
    assert claim.decide(table(THEORY), TH)[0] == "reproduced"
    # reference in band, ordering right, but β1=0.8 off by more than 25%
    assert claim.decide(table({**THEORY, (0.8, 0.95): 0.45}), TH)[0] == "partially_reproduced"
    # reference outside [0.15, 0.35]
    assert claim.decide(table({**THEORY, (0.9, 0.95): 0.40, (0.8, 0.95): 0.5}), TH)[0] == "not_reproduced"
    # wrong ordering
    assert claim.decide(table({**THEORY, (0.95, 0.95): 0.25}), TH)[0] == "not_reproduced"


def test_decide_inconclusive_when_a_needed_run_diverged():
    t = table(THEORY)
    t.loc[t.beta1 == 0.9, "status"] = "diverged"
    t.loc[t.beta1 == 0.9, "rms_hidden"] = np.nan
    assert claim.decide(t, TH)[0] == "inconclusive"


HEADLINE_SIGMA = 0.03  # relative seed noise of one β grid reading (conservative: 3%)


def noisy_grid(rng, rms_of, seeds=(0, 1), beta2s=(0.95, 0.999), steps=10_000) -> pd.DataFrame:
    rows = []
    for b1 in (0.8, 0.9, 0.95):
        for b2 in beta2s:
            for seed in seeds:
                v = rms_of(b1, b2) * (1 + rng.normal(0, HEADLINE_SIGMA))
                rows.append({"beta1": b1, "beta2": b2, "seed": seed, "status": "ok", "rms_hidden": v,
                             "rms_hidden_p05": v * 0.95, "rms_hidden_p95": v * 1.05, "steps": steps})
    return pd.DataFrame(rows)


def headline_statuses(rms_of, draws: int = 20) -> list[str]:
    return [claim.decide(noisy_grid(np.random.default_rng(seed), rms_of), TH)[0] for seed in range(draws)]


def test_headline_power_true_world_reproduced_false_worlds_not():
    near_mean_field = lambda b1, b2: 0.97 * float(claim.mean_field_rms(b1))  # noqa: E731
    assert headline_statuses(near_mean_field).count("reproduced") >= 18
    for name, world in [("no β1 dependence at 0.22", lambda b1, b2: 0.22),
                        ("everything 1.6× the mean field", lambda b1, b2: 1.6 * float(claim.mean_field_rms(b1))),
                        ("reference at 0.35", lambda b1, b2: 0.35 / 0.229 * float(claim.mean_field_rms(b1)))]:
        assert "reproduced" not in headline_statuses(world), name


def test_beta2_power_in_runs_long_enough():
    draws = lambda world: [claim.beta2_subclaim(noisy_grid(np.random.default_rng(s), world), TH)["status"] for s in range(20)]  # noqa: E731
    same = lambda b1, b2: float(claim.mean_field_rms(b1))  # noqa: E731
    assert draws(same).count("reproduced") >= 18
    lower = lambda b1, b2: float(claim.mean_field_rms(b1)) * (0.6 if b2 == 0.999 else 1.0)  # noqa: E731
    assert "reproduced" not in draws(lower)


def test_a_failed_size_line_caps_a_reproduced_headline():
    assert claim.with_size_line("reproduced", "not_reproduced") == "partially_reproduced"
    assert claim.with_size_line("reproduced", "inconclusive") == "reproduced"
    assert claim.with_size_line("not_reproduced", "reproduced") == "not_reproduced"


def test_beta2_subclaim():
    same = table({**THEORY, **{(b1, 0.999): v for (b1, _), v in THEORY.items()}})
    assert claim.beta2_subclaim(same, TH)["status"] == "reproduced"
    lower = table({**THEORY, **{(b1, 0.999): v * 0.6 for (b1, _), v in THEORY.items()}})
    assert claim.beta2_subclaim(lower, TH)["status"] == "not_reproduced"


def test_beta2_subclaim_is_out_of_scope_for_runs_shorter_than_its_horizon():
    """β2 = 0.999 needs ≥ 5/(1−β2) = 5,000 steps: shorter runs cannot judge it, whatever they show."""
    for factor in (1.0, 0.6):
        values = {**THEORY, **{(b1, 0.999): v * factor for (b1, _), v in THEORY.items()}}
        short = claim.beta2_subclaim(table(values, steps=1000), TH)
        assert short["status"] == "inconclusive" and "needs ≥ 5,000 steps" in short["measured"]
    long_enough = table({**THEORY, **{(b1, 0.999): v for (b1, _), v in THEORY.items()}}, steps=5000)
    assert claim.beta2_subclaim(long_enough, TH)["status"] == "reproduced"


# ------------------------------------------------------------------ the size line and its power

WIDTHS = (64, 128, 256, 512)
LOG2_LRS = tuple(range(-12, -4))
# The noise of the gpu width sweep (README, "Power"): final losses scatter by 0.01 nats over seeds
# and rise 0.03 nats per squared log2 step away from the optimum; the steady RMS falls 0.15 in ln
# per doubling of LR and one reading scatters 1% over seeds.
LOSS_SIGMA, LOSS_CURVATURE = 0.01, 0.03
RMS_PER_LR_DOUBLING, RMS_SIGMA = -0.15, 0.01


def synthetic_sweep(rng, rms_at_width, widths=WIDTHS, beta=(0.9, 0.95), rms_per_lr=RMS_PER_LR_DOUBLING,
                    curvature=LOSS_CURVATURE) -> pd.DataFrame:
    """A width sweep like the gpu scale's: SP and μP, each width a power-of-2 LR grid with a
    parabolic loss in log2 LR (its optimum anywhere between grid points, SP's moving with width),
    seed noise on the loss, and an RMS that is ``rms_at_width(init, width)`` at the optimum,
    moves with the LR and scatters over seeds."""
    rows = []
    for init in ("sp", "mup"):
        for w in widths:
            opt = -8.0 - (0.5 * math.log2(w / widths[0]) if init == "sp" else 0.0) + rng.uniform(-0.5, 0.5)
            reading = math.log(rms_at_width(init, w)) + rng.normal(0, RMS_SIGMA)
            for e in LOG2_LRS:
                rows.append({"parametrization": init, "width": w, "log2_lr": float(e), "status": "ok",
                             "final_val_loss": 3.0 - 0.1 * math.log2(w) + curvature * (e - opt) ** 2 + rng.normal(0, LOSS_SIGMA),
                             "rms_hidden": math.exp(reading + rms_per_lr * (e - opt)),
                             "beta1": beta[0], "beta2": beta[1], "run_id": f"{init}{w}{e}"})
    return pd.DataFrame(rows)


def size_status(sweep: pd.DataFrame, th=TH) -> str:
    best = claim.best_per_width(sweep)
    fits = claim.size_exponents(best, th["size_interval"])
    return claim.decide_size(best, fits, claim.sweep_betas(sweep), th)[0]


def statuses(world, draws: int = 20, **noise) -> list[str]:
    return [size_status(synthetic_sweep(np.random.default_rng(seed), world, **noise)) for seed in range(draws)]


def test_size_line_reproduces_a_true_world_in_most_noise_draws():
    out = statuses(lambda init, w: 0.22)
    assert out.count("reproduced") >= 18, out


@pytest.mark.parametrize("name, world", [
    ("drifts up with width, inside the band", lambda init, w: 0.19 * (w / 64) ** 0.17),
    ("drifts up with width, out of the band", lambda init, w: 0.20 * (w / 64) ** 0.3),
    ("μP drifts down, SP flat", lambda init, w: 0.25 * (w / 64) ** -0.2 if init == "mup" else 0.22),
    ("sits at 0.35", lambda init, w: 0.35),
    ("sits at 0.12", lambda init, w: 0.12),
])
def test_size_line_never_reproduces_a_false_world(name, world):
    out = statuses(world)
    assert "reproduced" not in out, (name, out)


def test_a_resolved_trend_is_not_reproduced_and_an_unresolved_one_inconclusive():
    steep = statuses(lambda init, w: 0.19 * (w / 64) ** 0.25)
    assert steep.count("not_reproduced") >= 18, steep
    # one width's reading scattered far more than the protocol's: the interval cannot decide
    rng = np.random.default_rng(0)
    sweep = synthetic_sweep(rng, lambda init, w: 0.22 * (1.25 if w == 128 else 1.0) * (0.8 if w == 256 else 1.0))
    assert size_status(sweep) == "inconclusive"


def test_where_the_rms_moves_fast_with_the_lr_a_true_world_is_mostly_inconclusive_not_refuted():
    """As at smoke scale (ln RMS −0.3 to −0.5 per LR doubling, flat losses), the LR optimum's error
    makes each reading uncertain: the line says it cannot tell rather than refute."""
    out = statuses(lambda init, w: 0.22, rms_per_lr=-0.4, curvature=0.015)
    assert out.count("inconclusive") >= 12 and out.count("not_reproduced") <= 2, out


def test_size_line_is_inconclusive_when_untuned_or_short_or_off_reference():
    rng = np.random.default_rng(1)
    flat = lambda init, w: 0.22  # noqa: E731
    edge = synthetic_sweep(rng, flat)
    edge = edge[~((edge.width == 128) & (edge.log2_lr < -8))]  # width 128's grid now ends below its optimum
    assert size_status(edge) == "inconclusive"
    diverged = synthetic_sweep(rng, flat)
    diverged.loc[diverged.width == 256, "final_val_loss"] = math.inf
    assert size_status(diverged) == "inconclusive"
    assert size_status(synthetic_sweep(rng, flat, widths=(64, 128))) == "inconclusive"
    assert size_status(synthetic_sweep(rng, flat, beta=(0.8, 0.95))) == "inconclusive"
    assert claim.decide_size(claim.best_per_width(edge.iloc[:0]), claim.size_exponents(claim.best_per_width(edge.iloc[:0]), 0.95), [], TH)[0] == "inconclusive"


def test_seeds_of_one_lr_are_averaged_before_the_optimum_is_read():
    one = synthetic_sweep(np.random.default_rng(5), lambda init, w: 0.22)
    two = pd.concat([one, one.assign(final_val_loss=one.final_val_loss + 0.002, rms_hidden=one.rms_hidden * 1.01,
                                     run_id=one.run_id + "s1")])
    a, b = claim.best_per_width(one), claim.best_per_width(two)
    assert (a.log2_lr == b.log2_lr).all() and np.allclose(b.rms_hidden, a.rms_hidden * math.sqrt(1.01))
    assert size_status(two) == "reproduced"


def test_size_exponent_recovers_a_known_power_law():
    sweep = synthetic_sweep(np.random.default_rng(3), lambda init, w: 0.2 * (w / 64) ** (0.3 if init == "sp" else -0.1))
    fits = claim.size_exponents(claim.best_per_width(sweep), 0.95).set_index("parametrization")
    for init, alpha in (("sp", 0.3), ("mup", -0.1)):
        assert fits.loc[init, "low"] < alpha < fits.loc[init, "high"]
        assert fits.loc[init, "high"] - fits.loc[init, "low"] < 0.25


# ------------------------------------------------------------------ the whole analysis on synthetic runs


def synthetic_run(fields: dict, rms: float, loss: float, rng) -> Run:
    cfg = make_run_config({**fields, **COMMON})
    steps = np.arange(cfg["log_every"], cfg["steps"] + 1, cfg["log_every"])
    wobble = 1 + 0.01 * rng.standard_normal(len(steps))
    metrics = pd.DataFrame({"step": steps, "loss": loss, "update_rms_hidden": rms * wobble,
                            "update_rms_embed": 0.05 * wobble, "update_rms_readout": rms * 1.2 * wobble,
                            "update_rms_gains": 0.3 * wobble})
    summary = {"status": "ok", "final_val_loss": loss, "n_params_matmul": 48 * cfg["d_model"] ** 2 * cfg["n_layers"]}
    return Run(run_id(cfg), cfg, summary, metrics)


def world_runs(size_rms, seed: int = 0) -> list[Run]:
    """Every run of the gpu plan: the β grid at the mean field, the width sweep per ``size_rms``."""
    rng = np.random.default_rng(seed)
    block = SPEC["scales"]["gpu"]
    runs = [synthetic_run(f, float(claim.mean_field_rms(f["beta1"])) * 0.97, 3.0, rng) for f in claim.grid_runs(block)]
    for f in claim.size_sweep_runs(block["size_sweep"]):
        w, e = f["d_model"], math.log2(f["lr"])
        opt = -9.0 if f["parametrization"] == "sp" else -8.0
        runs.append(synthetic_run(f, size_rms(w) * math.exp(RMS_PER_LR_DOUBLING * (e - opt)),
                                  3.2 - 0.1 * math.log2(w) + 0.02 * (e - opt) ** 2, rng))
    return runs


def analyze_world(tmp_path, size_rms) -> tuple[dict, pd.DataFrame]:
    spec = copy.deepcopy(SPEC)
    spec["scales"]["gpu"]["simulation"] = {"n_coords": 200, "steps": 400, "seed": 0}  # the plumbing, not the check
    tmp_path.mkdir(parents=True)
    ctx = ClaimContext("adam_update_rms", spec, "gpu", True, world_runs(size_rms), tmp_path)
    return claim.analyze(ctx)


def test_analysis_splits_the_two_families_and_reads_the_size_line(tmp_path):
    verdict, out = analyze_world(tmp_path / "flat", lambda w: 0.22)
    size = next(s for s in verdict["sub_claims"] if s["name"].startswith("update RMS the same"))
    assert verdict["status"] == "reproduced" and size["status"] == "reproduced", size
    assert (out.family == "beta_grid").sum() == 12 and (out.family == "width_sweep").sum() == 64
    assert out[out.best_lr].groupby("parametrization").width.nunique().to_dict() == {"mup": 4, "sp": 4}
    assert {f["file"] for f in verdict["figures"]} >= {"figures/size_rms.png", "figures/steady_rms.png"}
    assert verdict["regime"]["non_embedding_params"]["min"] < verdict["regime"]["non_embedding_params"]["max"]
    assert "RMS exponent against width (sp)" in verdict["measured"]

    verdict, _ = analyze_world(tmp_path / "drift", lambda w: 0.19 * (w / 64) ** 0.3)
    size = next(s for s in verdict["sub_claims"] if s["name"].startswith("update RMS the same"))
    assert size["status"] == "not_reproduced" and verdict["status"] == "partially_reproduced"
