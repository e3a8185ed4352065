"""The helpers every claim's analysis shares (optclaims.analysis), against scipy and by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from optclaims.analysis import (ClaimContext, Run, criteria_text, paired_difference, pooled_seed_sigma, regime,
                                within_seed_sigma,
                                run_fields, sub_claim, t_interval)
from optclaims.claims import load_claim
from optclaims.errors import ConfigError


def test_pooled_seed_sigma_is_the_within_group_standard_deviation():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"setting": np.repeat(["a", "b", "c"], 4), "final_val_loss": rng.normal(3, 0.01, 12)})
    df.loc[df.setting == "b", "final_val_loss"] += 0.5  # group means do not count
    by_hand = math.sqrt(sum(((g - g.mean()) ** 2).sum() for _, g in df.groupby("setting").final_val_loss) / (12 - 3))
    assert pooled_seed_sigma(df, "setting") == pytest.approx(by_hand)
    df.loc[0, "final_val_loss"] = math.inf  # a diverged run is left out, not infinite noise
    assert np.isfinite(pooled_seed_sigma(df, ["setting"]))
    assert math.isnan(pooled_seed_sigma(df.iloc[[0, 4, 8]], "setting"))  # one run per group: no noise estimate


def test_within_seed_sigma_is_the_residual_of_an_additive_seed_and_setting_fit():
    rng = np.random.default_rng(2)
    rows = []
    for group in ("a", "b"):
        seed_offset = {s: rng.normal(0, 0.5) for s in range(3)}  # shared by a seed's settings: does not count
        for s in range(3):
            for lr in range(4):
                rows.append({"group": group, "seed": s, "lr": lr,
                             "final_val_loss": 3 + 0.1 * lr ** 2 + seed_offset[s] + rng.normal(0, 0.01)})
    df = pd.DataFrame(rows)
    ss, dof = 0.0, 0
    for _, g in df.groupby("group"):  # least squares on seed and setting indicators, by hand
        design = np.column_stack([np.ones(len(g))] + [(g.seed == s).to_numpy(float) for s in (1, 2)]
                                 + [(g.lr == k).to_numpy(float) for k in (1, 2, 3)])
        resid = g.final_val_loss.to_numpy() - design @ np.linalg.lstsq(design, g.final_val_loss.to_numpy(), rcond=None)[0]
        ss, dof = ss + (resid ** 2).sum(), dof + (3 - 1) * (4 - 1)
    assert within_seed_sigma(df, "group", "lr") == pytest.approx(math.sqrt(ss / dof))
    assert within_seed_sigma(df, "group", "lr") < 0.02 < pooled_seed_sigma(df, ["group", "lr"])  # the offsets inflate the other
    df.loc[0, "final_val_loss"] = math.inf  # a diverged run leaves its setting out of its group, not infinite noise
    assert np.isfinite(within_seed_sigma(df, ["group"], "lr"))
    assert math.isnan(within_seed_sigma(df[df.seed == 0], "group", "lr"))  # one seed: no noise estimate
    assert math.isnan(within_seed_sigma(df[df.lr == 0], "group", "lr"))  # one setting: seed and run noise confounded


def test_paired_difference_matches_scipys_paired_t_interval():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 0.05, 6)  # shared by both sides: pairing removes it
    a = 3.0 + seed_effect + rng.normal(0, 0.002, 6)
    b = 3.01 + seed_effect + rng.normal(0, 0.002, 6)
    df = pd.DataFrame({"setting": ["a"] * 6 + ["b"] * 6, "seed": [*range(6), *range(6)], "final_val_loss": [*a, *b]})
    d = paired_difference(df, "a", "b")
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert d["n"] == 6 and d["mean"] == pytest.approx(np.mean(a - b))
    assert (d["low"], d["high"]) == pytest.approx((ref.low, ref.high))
    assert d["high"] < 0  # resolved although the seed spread (0.05) is 5× the difference
    one = paired_difference(df[df.seed == 0], "a", "b")
    assert one["n"] == 1 and math.isnan(one["low"])


def test_t_interval_matches_scipy():
    v = [2.0, 2.2, 1.9, 2.4]
    m, lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, 3, loc=np.mean(v), scale=stats.sem(v))
    assert m == pytest.approx(np.mean(v)) and (lo, hi) == pytest.approx(ref)
    assert math.isnan(t_interval([1.0])[1])


def test_run_fields_drop_only_what_the_plan_adds():
    assert run_fields({"lr": 1e-3, "data": "x", "vocab_size": 64, "seed": 0}) == {"lr": 1e-3, "seed": 0}


def test_regime_spans_params_tokens_per_param_seeds_and_corpus():
    def run(i, d, seed):
        cfg = {"steps": 100, "batch_size": 8, "seq_len": 64, "seed": seed, "data": "pycode-v64-abc", "d_model": d}
        return Run(f"{i:012x}", cfg, {"status": "ok", "n_params_matmul": 1000 * d}, pd.DataFrame())

    check = run(3, 512, 0)
    check.config["activation_steps"] = 3  # a coordinate check: not part of the training regime
    r = regime([run(0, 32, 0), run(1, 64, 1), run(2, 64, 0), check])
    assert r["non_embedding_params"] == {"min": 32000, "max": 64000}
    assert r["tokens_per_param"] == {"min": pytest.approx(51200 / 64000), "max": pytest.approx(51200 / 32000)}
    assert r["seeds"] == 2 and r["corpus"] == "pycode-v64-abc"


def test_criteria_carry_the_thresholds_numbers():
    spec = {"criteria": ["reproduced in [{band[0]}, {band[1]}] above {low}"], "thresholds": {"band": [1.6, 2.6], "low": 1.2}}
    assert criteria_text(spec) == ["reproduced in [1.6, 2.6] above 1.2"]


def test_a_criterion_naming_a_missing_threshold_stops_the_plan(tmp_path):
    import shutil
    from pathlib import Path

    repro = tmp_path / "reproductions"
    shutil.copytree(Path(__file__).resolve().parents[1] / "reproductions" / "adam_update_rms", repro / "adam_update_rms")
    path = repro / "adam_update_rms" / "claim.yaml"
    path.write_text(path.read_text().replace("criteria:\n", "criteria:\n  - \"within {no_such_threshold} of theory\"\n", 1))
    with pytest.raises(ConfigError, match="no_such_threshold"):
        load_claim("adam_update_rms", repro)


def test_verdict_refuses_an_unknown_status_in_a_sub_claim(tmp_path):
    spec = {"title": "t", "source": "s", "expected": "e", "criteria": ["c"], "thresholds": {}}
    ctx = ClaimContext("x", spec, "smoke", False, [], tmp_path)
    ok = sub_claim("a", "reproduced", "e", "m", "c")
    assert ctx.verdict("reproduced", {}, "s", [ok])["sub_claims"] == [ok]
    with pytest.raises(ValueError, match="passed"):
        sub_claim("a", "passed", "e", "m", "c")
    with pytest.raises(ValueError, match="passed"):
        ctx.verdict("reproduced", {}, "s", [{**ok, "status": "passed"}])


def test_criteria_formats_and_leaves_other_braces_alone():
    spec = {"criteria": ["λ ∈ {0.1, 0.3} late from {late:.0%}, ratio {r}"], "thresholds": {"late": 0.75, "r": 1.5}}
    assert criteria_text(spec) == ["λ ∈ {0.1, 0.3} late from 75%, ratio 1.5"]
    with pytest.raises(KeyError, match="missing"):
        criteria_text({"criteria": ["{missing}"], "thresholds": {}})
