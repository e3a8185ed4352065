"""The nightly regression check: reference runs, blessing with tolerances, comparison, history and
the exit status. The whole nightly through Snakemake is in test_workflow.py."""

import copy
import json

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
