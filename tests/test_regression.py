"""The nightly regression check: reference runs, blessing with tolerances, comparison, history and
the exit status. The whole nightly through Snakemake is in test_workflow.py."""

import copy
import json
import math
import statistics

import pytest

from optclaims.cli import main
from optclaims.regression.baseline import bless, bless_file
from optclaims.regression.compare import compare
from optclaims.regression.figures import reference_runs, seed_group, tolerance_rule
from optclaims.regression.history import load_history, write_report

DETERMINISTIC = tolerance_rule({"deterministic": True, "rtol": 1e-5, "atol": 1e-9})
SEEDED = tolerance_rule({"deterministic": False, "seed_sigmas": 3, "figure_rtol": 0.05, "figure_atol": 0.02})


def figures(rule=DETERMINISTIC, **changes):
    """Figures of a results directory; a change's key is a path of keys joined by "::"."""
    f = {
        "scale": "smoke", "measured_at": "2026-11-23T01:00:00+00:00", "git_commit": "abc1234def", "tolerance": rule,
        "versions": {"torch": "2.13.0"},
        "claims": {"adam_update_rms": {
            "status": "reproduced",
            "sub_claims": {"β2-independence": "reproduced"},
            "figures": {"RMS at (0.9, 0.95)": {"value": 0.2218, "low": 0.19, "high": 0.25, "unit": None},
                        "token multiplier": {"value": None, "low": None, "high": None, "unit": "×"}},
        }},
        "reference_runs": {
            "adam_update_rms/0": {"run_id": "aaaaaaaaaaaa", "claim": "adam_update_rms", "status": "ok",
                                  "config": {"lr": 0.003, "seed": 0}, "final_val_loss": 5.5,
                                  "seed_sigma": 0.01, "n_seeds": 3, "device": "cpu"},
            "adam_update_rms/5": {"run_id": "bbbbbbbbbbbb", "claim": "adam_update_rms", "status": "ok",
                                  "config": {"lr": 0.003, "beta1": 0.95, "seed": 0}, "final_val_loss": 5.6,
                                  "seed_sigma": None, "n_seeds": 1, "device": "cpu"},
        },
    }
    for path, value in changes.items():
        *keys, last = path.split("::")
        node = f
        for k in keys:
            node = node[k]
        node[last] = value
    return f


def failed(result):
    return [(r["claim"], r["name"]) for r in result["rows"] if r["verdict"] == "fail"]


def test_reference_runs_are_spread_over_each_claims_plan_and_seed_groups_found():
    plan = {"a": [f"a{i}" for i in range(7)], "b": ["b0"], "c": ["c0", "c1"]}
    assert reference_runs(plan, 3) == {"a/0": "a0", "a/3": "a3", "a/6": "a6", "b/0": "b0", "c/0": "c0", "c/1": "c1"}
    runs = {"r0": {"lr": 1, "seed": 0}, "r1": {"lr": 1, "seed": 1}, "r2": {"lr": 2, "seed": 0}}
    assert seed_group(runs, "r1") == ["r1", "r0"] and seed_group(runs, "r2") == ["r2"]


def test_identical_results_pass_and_bit_level_noise_is_tolerated():
    base = bless(figures(), "first baseline")
    assert compare(base, figures())["passed"]
    noisy = figures(**{"reference_runs::adam_update_rms/0::final_val_loss": 5.5 * (1 + 5e-6)})
    assert compare(base, noisy)["passed"]


@pytest.mark.parametrize("path, value, culprit", [
    ("claims::adam_update_rms::status", "partially_reproduced", ("adam_update_rms", "claim")),
    ("claims::adam_update_rms::sub_claims", {"β2-independence": "not_reproduced"}, ("adam_update_rms", "β2-independence")),
    ("claims::adam_update_rms::figures::RMS at (0.9, 0.95)::value", 0.2219, ("adam_update_rms", "RMS at (0.9, 0.95)")),
    ("claims::adam_update_rms::figures::token multiplier::value", 1.9, ("adam_update_rms", "token multiplier")),
    ("reference_runs::adam_update_rms/5::final_val_loss", 5.601, ("adam_update_rms", "adam_update_rms/5")),
    ("reference_runs::adam_update_rms/5::status", "diverged", ("adam_update_rms", "adam_update_rms/5")),
])
def test_a_flipped_status_or_a_figure_outside_its_tolerance_fails_and_is_named(path, value, culprit):
    result = compare(bless(figures(), "first baseline"), figures(**{path: value}))
    assert not result["passed"] and failed(result) == [culprit]


def test_a_changed_config_is_named_and_missing_things_fail_while_new_ones_do_not():
    base = bless(figures(), "first baseline")
    changed = figures(**{"reference_runs::adam_update_rms/0::config": {"lr": 0.006, "seed": 0},
                         "reference_runs::adam_update_rms/0::final_val_loss": 5.4})
    row = next(r for r in compare(base, changed)["rows"] if r["name"] == "adam_update_rms/0")
    assert row["verdict"] == "fail" and "lr 0.003 → 0.006" in row["note"] and row["delta"] == pytest.approx(-0.1)

    fewer = figures()
    del fewer["reference_runs"]["adam_update_rms/5"]
    fewer["claims"]["adam_update_rms"]["figures"]["new figure"] = {"value": 1.0, "low": None, "high": None, "unit": None}
    result = compare(base, fewer)
    assert failed(result) == [("adam_update_rms", "adam_update_rms/5")]
    assert any(r["verdict"] == "new" and r["name"] == "new figure" for r in result["rows"])
    assert failed(compare(base, figures(claims={}))) == [("adam_update_rms", "claim")]


def test_tolerances_come_from_float_noise_when_bit_reproducible_and_from_the_seed_spread_otherwise():
    tight = bless(figures(), "cpu")["reference_runs"]["adam_update_rms/0"]
    assert tight["tolerance"] == pytest.approx(1e-9 + 1e-5 * 5.5) and "bit-reproducible" in tight["basis"]

    base = bless(figures(rule=SEEDED), "gpu")
    own, pooled = base["reference_runs"]["adam_update_rms/0"], base["reference_runs"]["adam_update_rms/5"]
    assert own["tolerance"] == pytest.approx(0.03) and "seed group" in own["basis"]
    assert pooled["tolerance"] == pytest.approx(0.03) and "pooled" in pooled["basis"]
    rms = base["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"]
    assert rms["tolerance"] == pytest.approx(0.03) and "interval" in rms["basis"]  # half of [0.19, 0.25]
    assert base["claims"]["adam_update_rms"]["figures"]["token multiplier"]["tolerance"] == 0


def test_the_seed_spread_is_pooled_over_a_claims_seed_groups_by_degrees_of_freedom_else_over_every_claims():
    """A two-seed group's own σ has one degree of freedom: every run of a claim gets the claim's pooled
    σ, s² = Σ (n − 1)·s² / Σ (n − 1), where it has MIN_CLAIM_SEED_DOF; a claim with fewer gets every
    claim's, a run two claims share counted once."""
    f = figures(rule=SEEDED)
    runs = f["reference_runs"]
    runs["adam_update_rms/9"] = {**runs["adam_update_rms/0"], "run_id": "cccccccccccc", "seed_sigma": 0.04, "n_seeds": 2}
    runs["mup_transfer/0"] = {**runs["adam_update_rms/0"], "run_id": "dddddddddddd", "claim": "mup_transfer",
                              "seed_sigma": 0.02, "n_seeds": 5}
    runs["stability_conditions/0"] = {**runs["mup_transfer/0"], "claim": "stability_conditions"}  # the same run
    runs["clip_norm/0"] = {**runs["adam_update_rms/5"], "run_id": "eeeeeeeeeeee", "claim": "clip_norm"}
    runs["clip_norm/1"] = {**runs["adam_update_rms/0"], "run_id": "ffffffffffff", "claim": "clip_norm",
                           "seed_sigma": 0.001, "n_seeds": 3}  # 2 degrees of freedom: not its own
    base = bless(f, "gpu")["reference_runs"]
    adam = math.sqrt((2 * 0.01 ** 2 + 1 * 0.04 ** 2) / 3)
    for key in ("adam_update_rms/0", "adam_update_rms/5", "adam_update_rms/9"):  # its own σ left aside
        assert base[key]["tolerance"] == pytest.approx(3 * adam)
        assert base[key]["basis"] == "3·σ_seed pooled over the seed groups of adam_update_rms (3 degrees of freedom)"
    assert base["mup_transfer/0"]["tolerance"] == pytest.approx(3 * 0.02)
    everywhere = math.sqrt((2 * 0.01 ** 2 + 0.04 ** 2 + 4 * 0.02 ** 2 + 2 * 0.001 ** 2) / 9)  # dddd once, not twice
    for key in ("clip_norm/0", "clip_norm/1"):
        assert base[key]["tolerance"] == pytest.approx(3 * everywhere)
        assert base[key]["basis"] == "3·σ_seed pooled over every claim's seed groups (9 degrees of freedom)"
    alone = figures(rule=SEEDED, **{"reference_runs::adam_update_rms/0::seed_sigma": None,
                                    "reference_runs::adam_update_rms/0::n_seeds": 1})
    assert bless(alone, "gpu")["reference_runs"]["adam_update_rms/0"]["basis"] == "max(0.05·|value|, 0.02)"


def test_blessing_needs_a_reason_keeps_the_record_of_earlier_blessings_and_refuses_another_scale(tmp_path):
    with pytest.raises(ValueError, match="needs a reason"):
        bless(figures(), "  ")
    f = tmp_path / "figures.json"
    f.write_text(json.dumps(figures()))
    path = tmp_path / "baselines" / "smoke.json"
    bless_file(f, path, "first baseline")
    second = bless_file(f, path, "torch 2.13 moves nothing")
    assert [b["reason"] for b in second["blessings"]] == ["first baseline", "torch 2.13 moves nothing"]
    assert second["blessed"]["git_commit"] == "abc1234def"
    with pytest.raises(ValueError, match="scale 'smoke'"):
        bless(figures(scale="gpu"), "wrong file", second)


def test_report_names_the_failed_figure_keeps_a_history_and_the_gate_exits_non_zero(tmp_path, capsys):
    base = bless(figures(), "first baseline")
    out = tmp_path / "regression"
    write_report(compare(base, figures()), out)
    bad = figures(measured_at="2026-11-24T01:00:00+00:00",
                  **{"reference_runs::adam_update_rms/5::final_val_loss": 5.7})
    md = write_report(compare(base, bad), out).read_text()
    assert "FAILED (1 of" in md and "## Failures" in md and "adam_update_rms/5" in md.split("## Every check")[0]
    assert len(load_history(out / "history")) == 2
    history = md.split("## History")[1]
    assert "last 2 of 2 checks" in history and "5.7" in history and "2026-11-23T01:00" in history

    assert main(["regression-gate", str(out / "report.json")]) == 1
    assert "REGRESSION adam_update_rms · adam_update_rms/5" in capsys.readouterr().err
    write_report(compare(base, figures(measured_at="2026-11-25T01:00:00+00:00")), out)
    assert main(["regression-gate", str(out / "report.json")]) == 0
    assert len(list((out / "history").glob("*.json"))) == 3


def test_compare_refuses_a_baseline_of_another_scale():
    with pytest.raises(ValueError, match="scale 'smoke'"):
        compare(bless(figures(), "x"), figures(scale="gpu"))


def test_figures_resting_on_wall_time_are_left_out_of_the_check():
    """A wall-clock figure differs between any two runs; the nightly compares outcomes, not speed."""
    from optclaims.analysis import measured
    from optclaims.regression.figures import claim_figures

    verdict = {"status": "reproduced", "measured": {"loss": measured(3.0, unit="nats"),
                                                    "wall-clock multiplier": measured(1.8, timing=True)}}
    assert set(claim_figures(verdict)["figures"]) == {"loss"}


# --- Environment fingerprint and the two tolerance regimes -------------------------------------

from optclaims.regression.compare import BLESSED, NO_FINGERPRINT, detectable, regime  # noqa: E402
from optclaims.regression.fingerprint import differences, fingerprint, processor  # noqa: E402
from optclaims.regression.history import render_markdown  # noqa: E402

ENV = {"corpus_hash": "c0ffee", "tokenizer_hash": "7ok", "processor": "AMD EPYC 7B13", "isa_flags": "f1a65",
       "threads": 1, "torch": "2.13.0+cpu", "torch_build": "git abc, cuda none", "device": "cpu"}


def fingerprinted(env=ENV, **changes):
    return {**figures(**changes), "fingerprint": dict(env)}


def moved(env=ENV, **changes):
    """Figures from another machine: the same numbers unless ``changes`` plant some."""
    return fingerprinted({**env, "processor": "Intel Xeon 8375C", "isa_flags": "0ther"}, **changes)


def test_the_fingerprint_is_read_from_the_data_dir_and_the_machine(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.json").write_text(json.dumps({"hash": "abc123"}))
    (tmp_path / "tokenizer.json").write_text('{"model": {}}')
    fp = fingerprint(tmp_path, 1, ["cpu (x86_64, 1 threads)"])
    import hashlib
    assert fp["corpus_hash"] == "abc123" and fp["threads"] == 1 and fp["device"] == "cpu"
    assert fp["tokenizer_hash"] == hashlib.sha256(b'{"model": {}}').hexdigest()
    assert fingerprint(tmp_path, 1, ["NVIDIA H200"])["device"] == "NVIDIA H200"
    with pytest.raises(ValueError, match="train.threads.*'two'"):
        fingerprint(tmp_path, "two", [])
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        fingerprint(tmp_path, 1, [])


def test_the_cpu_kernels_name_atens_capability_and_the_variables_that_choose_other_kernels():
    """The same processor running other kernels (ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS)
    sums floats differently, so it is another environment."""
    import torch

    from optclaims.regression.fingerprint import cpu_kernels

    assert cpu_kernels({}) == torch.backends.cpu.get_cpu_capability()
    chosen = cpu_kernels({"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "HOME": "/root"})
    assert chosen.endswith(" ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2")
    assert differences({**ENV, "cpu_kernels": cpu_kernels({})}, {**ENV, "cpu_kernels": chosen}) == ["cpu_kernels"]


def test_processor_summary_is_the_model_and_a_hash_of_the_sorted_flags(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: sse avx2 fma\n\nprocessor\t: 1\n")
    b.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fma avx2 sse\n")
    assert processor(a) == processor(b) and processor(a)[0] == "AMD EPYC 7B13"
    b.write_text("model name\t: AMD EPYC 7B13\nflags\t\t: sse avx2 fma avx512f\n")
    assert processor(a)[1] != processor(b)[1]
    assert processor(tmp_path / "absent")[0]  # platform fallback names something


def test_figures_and_baseline_carry_the_fingerprint_and_both_tolerance_sets():
    base = bless(fingerprinted(), "first baseline")
    assert base["fingerprint"] == ENV
    run = base["reference_runs"]["adam_update_rms/0"]
    assert run["tolerance"] == pytest.approx(1e-9 + 1e-5 * 5.5)
    assert run["statistical"]["tolerance"] == pytest.approx(3 * 0.01) and "seed group" in run["statistical"]["basis"]
    assert base["reference_runs"]["adam_update_rms/5"]["statistical"]["tolerance"] == pytest.approx(0.03)  # pooled
    rms = base["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"]
    assert rms["statistical"]["tolerance"] == pytest.approx(0.03) and "interval" in rms["statistical"]["basis"]
    # the statistical set is the gpu scale's rule, computed by the same code
    gpu = bless(figures(rule=SEEDED), "gpu")
    assert gpu["reference_runs"]["adam_update_rms/0"]["tolerance"] == pytest.approx(run["statistical"]["tolerance"])


def test_the_fingerprint_chooses_the_regime_and_the_report_names_the_differing_fields():
    base = bless(fingerprinted(), "first baseline")
    same = regime(base, fingerprinted())
    assert same["name"] == "blessed" and same["differs"] == []
    other = regime(base, moved())
    assert other["name"] == "statistical" and other["differs"] == ["processor", "isa_flags"]
    assert differences(ENV, {**ENV, "threads": 2}) == ["threads"]

    md = render_markdown(compare(base, moved()), [])
    top = md.split("## Every check")[0]
    assert "**statistical** tolerances" in top and "processor model, instruction-set flags" in top
    assert "## Environment fingerprints" in top and "Intel Xeon 8375C" in top and "AMD EPYC 7B13" in top
    fp_table = top.split("## Environment fingerprints")[1]
    assert [line.split("|")[1].strip() for line in fp_table.splitlines() if "differs" in line] == \
        ["processor model", "instruction-set flags (sha256 of the sorted flags)"]
    assert "**blessed** tolerances" in render_markdown(compare(base, fingerprinted()), [])


def test_a_baseline_blessed_before_fingerprints_keeps_its_tight_regime_and_says_to_bless_again():
    old = bless(figures(), "before fingerprints")
    for key in ("fingerprint",):
        old.pop(key)
    for r in old["reference_runs"].values():
        r.pop("statistical"), r.pop("seed_sigma")
    result = compare(old, moved())
    assert result["regime"]["name"] == "blessed" and result["passed"]
    assert not compare(old, moved(**{"reference_runs::adam_update_rms/0::final_val_loss": 5.5 * (1 + 1e-4)}))["passed"]
    assert NO_FINGERPRINT in render_markdown(result, [])


def test_the_committed_smoke_baseline_and_one_blessed_before_fingerprints_are_read_in_their_regimes():
    """The committed baseline records its fingerprint: the same environment is compared in the blessed
    regime. The same baseline without it (as blessed before fingerprints) keeps its blessed regime and
    says to bless again; a 0.1% loss change fails in both."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "results" / "baselines" / "smoke.json"
    committed = json.loads(path.read_text())
    assert committed["fingerprint"]["device"] and committed["fingerprint"]["corpus_hash"]
    before_fingerprints = {k: v for k, v in committed.items() if k != "fingerprint"}
    for baseline, now_fingerprint, why in ((committed, committed["fingerprint"], None), (before_fingerprints, ENV, NO_FINGERPRINT)):
        now = {"scale": "smoke", "measured_at": "x", "git_commit": "y", "versions": {}, "fingerprint": now_fingerprint,
               "tolerance": committed["tolerance"],
               "claims": {c: {"status": b["status"], "sub_claims": b["sub_claims"],
                              "figures": {n: {"value": f["value"], "low": None, "high": None, "unit": f["unit"]}
                                          for n, f in b["figures"].items()}} for c, b in committed["claims"].items()},
               "reference_runs": {k: {**r, "seed_sigma": None} for k, r in committed["reference_runs"].items()}}
        result = compare(baseline, now)
        assert result["passed"] and result["regime"]["name"] == BLESSED
        if why:
            assert result["regime"]["why"] == why
        key, run = next((k, r) for k, r in now["reference_runs"].items() if r["final_val_loss"])
        run["final_val_loss"] *= 1.001
        assert failed(compare(baseline, now)) == [(run["claim"], key)]


PERTURBED_LOSS = "reference_runs::adam_update_rms/0::final_val_loss"
RMS = "claims::adam_update_rms::figures::RMS at (0.9, 0.95)::value"


@pytest.mark.parametrize("current", [fingerprinted, moved], ids=["blessed regime", "statistical regime"])
def test_power_an_unchanged_rerun_passes_and_a_one_percent_loss_change_fails_in_both_regimes(current):
    base = bless(fingerprinted(), "first baseline")
    assert compare(base, current())["passed"]
    for key in ("adam_update_rms/0", "adam_update_rms/5"):
        path = f"reference_runs::{key}::final_val_loss"
        loss = figures()["reference_runs"][key]["final_val_loss"]
        assert failed(compare(base, current(**{path: loss * 1.01}))) == [("adam_update_rms", key)]


def test_power_a_verdict_figure_fails_just_beyond_half_its_interval_and_passes_just_inside():
    base = bless(fingerprinted(), "first baseline")
    rms = base["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"]
    half = (0.25 - 0.19) / 2
    assert rms["statistical"]["tolerance"] == pytest.approx(half)
    beyond, inside = 0.2218 + half * 1.01, 0.2218 + half * 0.99
    assert failed(compare(base, moved(**{RMS: beyond}))) == [("adam_update_rms", "RMS at (0.9, 0.95)")]
    assert compare(base, moved(**{RMS: inside}))["passed"]
    # the blessed (bit-reproducible) regime flags any move beyond float noise, so both fail there
    assert not compare(base, fingerprinted(**{RMS: inside}))["passed"]
    assert not compare(base, fingerprinted(**{RMS: beyond}))["passed"]


def test_power_is_computed_a_seed_spread_wider_than_one_percent_cannot_catch_a_one_percent_change():
    """With 3σ_seed above 1% of the loss the statistical regime lets a 1% change through; the report
    says on which runs (computed from the stored spread, not assumed)."""
    wide = fingerprinted(**{"reference_runs::adam_update_rms/0::seed_sigma": 0.03})  # 3σ = 0.09 = 1.6% of 5.5
    base = bless(wide, "wide seed spread")
    current = moved(**{"reference_runs::adam_update_rms/0::seed_sigma": 0.03,
                       PERTURBED_LOSS: 5.5 * 1.01})
    result = compare(base, current)
    assert result["passed"]  # cannot be caught: inside 3σ_seed
    rel = dict(detectable(result))
    assert rel["adam_update_rms/0"] == pytest.approx(0.09 / 5.5)
    md = render_markdown(result, [])
    assert "a 1% change is caught on 0 of 2 reference runs" in md and "adam_update_rms/0" in md.split("Power:")[1]
    # a change beyond the spread is still caught
    assert not compare(base, moved(**{"reference_runs::adam_update_rms/0::seed_sigma": 0.03,
                                      PERTURBED_LOSS: 5.5 + 0.0901}))["passed"]


def test_a_flipped_status_fails_in_the_blessed_regime():
    base = bless(fingerprinted(), "first baseline")
    result = compare(base, fingerprinted(**{"claims::adam_update_rms::status": "inconclusive"}))
    assert failed(result) == [("adam_update_rms", "claim")]


def test_in_the_statistical_regime_a_status_may_flip_only_where_a_figure_of_its_claim_moved_beyond_its_spread():
    """Another machine's noise can carry a figure across a threshold without leaving its spread: that
    flip passes, noted; the same flip with a figure beyond its spread fails, naming the figure."""
    base = bless(fingerprinted(), "first baseline")
    flip = {"claims::adam_update_rms::status": "inconclusive"}
    within = compare(base, moved(**flip))
    still = next(r for r in within["rows"] if r["name"] == "claim")
    assert within["passed"] and still["verdict"] == "pass" and "flipped within the spread" in still["note"]
    assert "## Flips within the spread" in render_markdown(within, [])
    beyond = compare(base, moved(**flip, **{RMS: 0.30}))
    both = next(r for r in beyond["rows"] if r["name"] == "claim")
    assert both["verdict"] == "fail" and "moved beyond their spread: RMS at (0.9, 0.95)" in both["note"]
    assert set(failed(beyond)) == {("adam_update_rms", "claim"), ("adam_update_rms", "RMS at (0.9, 0.95)")}
    bare = copy.deepcopy(base)
    bare["claims"]["adam_update_rms"]["figures"] = {}
    lone = next(r for r in compare(bare, moved(**flip))["rows"] if r["name"] == "claim")
    assert lone["verdict"] == "fail" and "no figures" in lone["note"]


def test_a_baseline_with_a_fingerprint_but_no_statistical_tolerance_is_refused_by_name():
    base = bless(fingerprinted(), "first baseline")
    del base["reference_runs"]["adam_update_rms/5"]["statistical"]
    with pytest.raises(ValueError, match="run adam_update_rms/5.*statistical=None"):
        compare(base, moved())


def test_collect_records_the_fingerprint_of_the_reference_runs_data_and_refuses_two_data_ids(tmp_path):
    from optclaims.regression.figures import collect

    data = tmp_path / "data" / "pycode-v2048-x"
    (data / "corpus").mkdir(parents=True)
    (data / "corpus" / "manifest.json").write_text(json.dumps({"hash": "m4n1f35t"}))
    (data / "tokenizer.json").write_text("{}")
    (tmp_path / "claims" / "a").mkdir(parents=True)
    (tmp_path / "claims" / "a" / "verdict.json").write_text(json.dumps({"status": "reproduced", "measured": {}}))
    for rid, data_id in (("r0", "pycode-v2048-x"), ("r1", "pycode-v2048-x")):
        (tmp_path / "runs" / rid).mkdir(parents=True)
        (tmp_path / "runs" / rid / "summary.json").write_text(json.dumps(
            {"status": "ok", "final_val_loss": 5.0, "device": "cpu (x86_64, 1 threads)"}))
        (tmp_path / "runs" / rid / "config.json").write_text(json.dumps({"data": data_id, "seed": 0}))
    f = collect(tmp_path, "smoke", ["a"], {"a/0": ["r0"], "a/1": ["r1"]}, {"deterministic": True}, 1)
    assert f["fingerprint"]["corpus_hash"] == "m4n1f35t" and f["fingerprint"]["threads"] == 1
    assert bless(f, "x")["fingerprint"] == f["fingerprint"]
    (tmp_path / "runs" / "r1" / "config.json").write_text(json.dumps({"data": "pycode-v4096-y", "seed": 0}))
    with pytest.raises(ValueError, match="one data id.*pycode-v2048-x.*pycode-v4096-y"):
        collect(tmp_path, "smoke", ["a"], {"a/0": ["r0"], "a/1": ["r1"]}, {"deterministic": True}, 1)


# --- Replicas: the spread an environment change causes, measured at bless time -------------------

KERNELS = {**ENV, "cpu_kernels": "DEFAULT ATEN_CPU_CAPABILITY=default"}


def test_a_replicas_spread_widens_the_statistical_tolerances_only_where_it_is_wider():
    """A figure with no interval and a reference run whose replica moved by more than the seed rule
    allows get k·σ over the environments; the blessed tolerances, and figures the replica left as
    they were, keep theirs."""
    primary = fingerprinted()
    plain = bless(primary, "no replica")
    replica = fingerprinted(KERNELS, **{RMS: 0.2218 + 0.05, PERTURBED_LOSS: 5.5 * 1.05})
    base = bless(primary, "with a replica", replicas=[replica])
    rms, run = base["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"], base["reference_runs"]["adam_update_rms/0"]
    # two environments: |x0 − mean| + t(0.975, 1)·s·√(1 + 1/2), t = 12.706
    expected = 0.025 + 12.7062 * statistics.stdev([0.2218, 0.2718]) * math.sqrt(1.5)
    assert rms["statistical"]["tolerance"] == pytest.approx(expected, rel=1e-4) and expected > 0.03  # > half the interval
    assert "95% prediction interval over 2 environments" in rms["statistical"]["basis"]
    d = 5.5 * 0.05
    assert run["statistical"]["tolerance"] == pytest.approx(d / 2 + 12.7062 * d / math.sqrt(2) * math.sqrt(1.5), rel=1e-4)
    assert rms["tolerance"] == plain["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"]["tolerance"]
    same = base["reference_runs"]["adam_update_rms/5"]
    assert same["statistical"] == plain["reference_runs"]["adam_update_rms/5"]["statistical"]
    assert base["blessed"]["replicas"] == [{"fingerprint": KERNELS, "measured_at": replica["measured_at"]}]
    # another machine whose figure moved as far as the replica's did passes; one beyond the prediction band fails
    assert compare(base, moved(**{RMS: 0.2218 + 0.05}))["passed"]
    assert failed(compare(base, moved(**{RMS: 0.2218 + expected * 1.01}))) == [("adam_update_rms", "RMS at (0.9, 0.95)")]
    assert not compare(plain, moved(**{RMS: 0.2218 + 0.05}))["passed"]
    # three environments narrow the band: t(0.975, 2) = 4.303
    third = fingerprinted({**KERNELS, "cpu_kernels": "AVX2"}, **{RMS: 0.2218 + 0.025})
    narrower = bless(primary, "two replicas", replicas=[replica, third])["claims"]["adam_update_rms"]["figures"]
    assert narrower["RMS at (0.9, 0.95)"]["statistical"]["tolerance"] < expected / 2


def test_a_replica_of_another_scale_is_refused_and_one_missing_a_figure_adds_no_spread():
    primary = fingerprinted()
    other = {**fingerprinted(KERNELS), "scale": "gpu"}
    with pytest.raises(ValueError, match="replica 1 is for scale 'gpu'"):
        bless(primary, "wrong replica", replicas=[other])
    partial = fingerprinted(KERNELS)
    del partial["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"]
    base = bless(primary, "partial replica", replicas=[partial])
    assert base["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"]["statistical"] == \
        bless(primary, "none")["claims"]["adam_update_rms"]["figures"]["RMS at (0.9, 0.95)"]["statistical"]


def test_the_cli_blesses_with_replicas(tmp_path, capsys):
    (tmp_path / "f.json").write_text(json.dumps(fingerprinted()))
    (tmp_path / "r.json").write_text(json.dumps(fingerprinted(KERNELS, **{PERTURBED_LOSS: 5.5 * 1.05})))
    assert main(["bless", "--figures", str(tmp_path / "f.json"), "--replica", str(tmp_path / "r.json"),
                 "--baseline", str(tmp_path / "b.json"), "--reason", "with a replica"]) in (0, None)
    base = json.loads((tmp_path / "b.json").read_text())
    assert "prediction interval over 2 environments" in base["reference_runs"]["adam_update_rms/0"]["statistical"]["basis"]
