"""`optclaims compare A B`: two results folders side by side. A planted verdict flip and a planted
shift of a headline figure are found and named, identical inputs agree everywhere, folders of two
scales are refused, a reference folder is one side, and the nightly's report is rendered by the same
machinery."""

import copy
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from optclaims.cli import main
from optclaims.comparison.agreement import AGREE, DIFFER, NO_INTERVAL, agreement, interval
from optclaims.comparison.report import compare, write_comparison
from optclaims.comparison.sides import REFERENCE, RESULTS, read_pair, read_side
from optclaims.comparison.tables import compare_tables
from optclaims.plotting import plt

RMS = "RMS at (0.9, 0.95)"


def verdicts(scale="smoke") -> dict:
    return {
        "adam_update_rms": {
            "claim": "adam_update_rms", "title": "AdamW's update RMS is about 0.2", "source": "kexue.fm/archives/11267",
            "scale": scale, "evidential": scale != "smoke", "status": "reproduced", "expected": "≈ 0.229",
            "measured": {RMS: {"value": 0.229, "low": 0.21, "high": 0.25, "unit": None, "interval": "5–95%"},
                         "final loss": {"value": 5.5, "low": None, "high": None, "unit": "nats/token"},
                         "wall-clock multiplier": {"value": 2.0, "low": 1.8, "high": 2.2, "unit": "×", "timing": True},
                         "exponent (sp)": {"value": None, "low": None, "high": None, "unit": None}},
            "criteria": ["|RMS − 0.229| < 0.05"], "runs": ["aaaaaaaaaaaa", "bbbbbbbbbbbb"],
            "sub_claims": [{"name": "independent of β2", "status": "reproduced", "expected": "flat",
                            "measured": "spread 0.01", "criterion": "spread < 0.02"}],
            "figures": [{"file": "figures/rms.png", "caption": "Update RMS against step."}],
        },
        "clip_norm": {
            "claim": "clip_norm", "title": "Clip norm 1 works at every size", "source": "kexue.fm/archives/10657",
            "scale": scale, "evidential": scale != "smoke", "status": "inconclusive", "expected": "norm ≤ 1",
            "measured": {"late median norm": {"value": 0.4, "low": 0.37, "high": 0.62, "unit": None}, "ratio": 1.5},
            "criteria": ["median in [0.1, 3]"], "runs": ["cccccccccccc"], "figures": [],
        },
    }


TABLE = ("run_id,width,lr,status,rms,final_val_loss\n"
         "aaaaaaaaaaaa,16,0.001,ok,0.231,5.51\n"
         "bbbbbbbbbbbb,32,0.001,ok,0.227,5.49\n")


def write_results(root: Path, scale="smoke", reference=False, change=None) -> Path:
    """A results folder (results/<scale>, or the reference layout <claim>/...); ``change(verdicts)``
    plants a difference."""
    vs = verdicts(scale)
    if change:
        change(vs)
    for claim, v in vs.items():
        d = root / claim if reference else root / "claims" / claim
        (d / "figures").mkdir(parents=True, exist_ok=True)
        (d / "verdict.json").write_text(json.dumps(v))
        if claim == "adam_update_rms":
            (d / "table.csv").write_text(TABLE)
            fig, ax = plt.subplots(figsize=(2, 1.5))
            ax.plot([0, 1, 2], [0.3, 0.23, 0.229])
            fig.savefig(d / "figures" / "rms.png", dpi=30)
            plt.close(fig)
    return root


def measured(vs, claim, name, **fields):
    vs[claim]["measured"][name].update(fields)


def rows_of(result, verdict=None, kind=None):
    return [(r["claim"], r["name"]) for r in result["rows"]
            if (verdict is None or r["verdict"] == verdict) and (kind is None or r["kind"] == kind)]


@pytest.fixture
def a(tmp_path) -> Path:
    return write_results(tmp_path / "a" / "smoke")


# --- agreement, defined once ------------------------------------------------------------------


def test_two_figures_agree_when_their_intervals_overlap():
    f = lambda v, lo=None, hi=None, unit=None: {"value": v, "low": lo, "high": hi, "unit": unit}  # noqa: E731
    assert agreement(f(1.0, 0.9, 1.1), f(1.15, 1.05, 1.25))[0] == AGREE          # overlapping
    verdict, note = agreement(f(1.0, 0.9, 1.1), f(1.3, 1.2, 1.4))
    assert verdict == DIFFER and "disjoint" in note
    assert agreement(f(1.0, 0.9, 1.1), f(1.05))[0] == AGREE                      # a point inside the interval
    verdict, note = agreement(f(1.0, 0.9, 1.1), f(1.2))
    assert verdict == DIFFER and "no interval in B" in note
    assert agreement(f(1.0), f(1.0)) == (AGREE, "identical; no interval")
    assert agreement(f(1.0), f(1.01)) == (NO_INTERVAL, "neither side has an interval")
    assert agreement(f(4.0, 4.0, None), f(9.0, 7.0, 11.0))[0] == AGREE            # one-sided: unbounded above
    assert interval(f(4.0, 4.0, None)) == (4.0, math.inf) and interval(f(0.5, 0.6, 0.9)) == (0.5, 0.9)
    assert agreement(f(None), f(None))[0] == AGREE
    assert agreement(f(None), f(2.0)) == (DIFFER, "not measurable in A")
    assert agreement(f(1.0, 0.9, 1.1, "×"), f(1.0, 0.9, 1.1, "nats/token"))[0] == DIFFER


# --- the comparison ---------------------------------------------------------------------------


def test_identical_inputs_agree_everywhere_with_no_flips(a, tmp_path, capsys):
    result = compare(*read_pair(a, a))
    assert result["flips"] == [] and result["shifts"] == []
    assert {r["verdict"] for r in result["rows"] if r["kind"] == "figure"} == {AGREE}
    assert {r["verdict"] for r in result["rows"] if r["kind"] != "figure"} == {"same"}
    assert result["figure_counts"][AGREE] == result["n_figures"] == 6

    out = tmp_path / "out"
    assert main(["compare", str(a), str(a), "--out", str(out)]) == 0
    assert "0 verdict flip(s), 0 of 6 headline figures differ" in capsys.readouterr().out
    md = (out / "compare.md").read_text()
    assert "- Verdict flips: none" in md and "6 of 6 agree, **0 differ**" in md
    assert "None: every claim and sub-claim has the same status on both sides." in md
    assert "2 rows matched by run_id" in md and "identical on every matched row" in md
    for name in ("adam_update_rms-headline", "clip_norm-headline"):
        assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.pdf").is_file()
    assert not (out / "figures" / "adam_update_rms-table.png").exists()  # nothing differs: no parity plot
    page = (out / "compare.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 4  # 2 headline plots, the claim's figure from A and B
    assert not re.search(r'src="(?!data:)', page)                # self-contained
    assert json.loads((out / "compare.json").read_text())["flips"] == []


def test_a_planted_flip_is_found_and_named(a, tmp_path):
    def flip(vs):
        vs["adam_update_rms"]["status"] = "not_reproduced"
        vs["adam_update_rms"]["sub_claims"][0].update(status="inconclusive", measured="spread 0.05")
    b = write_results(tmp_path / "b" / "smoke", change=flip)
    md_path, html_path, result = write_comparison(a, b, tmp_path / "out")
    assert [(r["claim"], r["kind"], r["name"]) for r in result["flips"]] == [
        ("adam_update_rms", "status", "claim"), ("adam_update_rms", "sub-claim", "independent of β2")]
    sub = result["flips"][1]
    assert sub["a_text"] == "reproduced" and sub["b_text"] == "inconclusive"
    assert "measured in A: spread 0.01; in B: spread 0.05" in sub["note"]
    assert result["shifts"] == []  # the figures did not move
    md = md_path.read_text()
    assert "- Verdict flips: **2** (1 claim status, 1 sub-claim)" in md
    assert "| adam_update_rms | reproduced | not reproduced | 1 of 1 | 4 agree, 0 differ, 0 no interval |" in md
    flips = md.split("## Verdict flips")[1].split("## Figures that differ")[0]
    assert "| adam_update_rms | status | claim | reproduced | not reproduced |" in flips
    assert "independent of β2" in flips
    assert html_path.read_text().count('<tr class="flipped">') == 5  # overview, flips table, the claim's own table


def test_a_planted_shift_is_found_a_move_inside_the_intervals_is_not_and_no_interval_is_shown_not_judged(a, tmp_path):
    def shift(vs):
        measured(vs, "adam_update_rms", RMS, value=0.30, low=0.28, high=0.32)      # disjoint from [0.21, 0.25]
        measured(vs, "clip_norm", "late median norm", value=0.45, low=0.41, high=0.60)  # moved, still overlapping
        measured(vs, "adam_update_rms", "final loss", value=5.6)                  # no interval on either side
    b = write_results(tmp_path / "b" / "smoke", change=shift)
    result = compare(*read_pair(a, b))
    assert [(r["claim"], r["name"]) for r in result["shifts"]] == [("adam_update_rms", RMS)]
    shifted = result["shifts"][0]
    assert shifted["delta"] == pytest.approx(0.071) and shifted["a_text"] == "0.229 [0.21, 0.25]"
    assert shifted["b_text"] == "0.3 [0.28, 0.32]" and "intervals disjoint" in shifted["note"]
    assert ("clip_norm", "late median norm") in rows_of(result, AGREE)
    assert rows_of(result, NO_INTERVAL) == [("adam_update_rms", "final loss")]
    assert result["flips"] == []
    timing = next(r for r in result["rows"] if r["name"] == "wall-clock multiplier")
    assert "rests on wall time" in timing["note"]

    md, _, _ = write_comparison(a, b, tmp_path / "out")
    text = md.read_text()
    differ = text.split("## Figures that differ")[1].split("## adam_update_rms")[0]
    assert RMS in differ and "late median norm" not in differ
    assert "**1 differ**, 1 without an interval on either side" in text


def test_a_shift_in_table_csv_is_tabulated_and_overlaid(a, tmp_path):
    b = write_results(tmp_path / "b" / "smoke")
    table = b / "claims" / "adam_update_rms" / "table.csv"
    table.write_text(TABLE.replace("0.227,5.49", "0.240,5.49").replace("ok,0.231", "diverged,0.231"))
    md, _, _ = write_comparison(a, b, tmp_path / "out")
    text = md.read_text()
    assert "2 of 5 columns differ on some row" in text
    assert "| rms | number | 2 | 1 | 0.013 | 5.42% |" in text and "| status | text | 2 | 1 |" in text
    assert (tmp_path / "out" / "figures" / "adam_update_rms-table.png").is_file()
    assert (tmp_path / "out" / "figures" / "adam_update_rms-table.pdf").is_file()


def test_table_rows_are_matched_by_run_id_else_by_leading_keys():
    import pandas as pd

    a = pd.DataFrame({"arm": ["adam", "adam", "sgd"], "width": [16, 32, 16], "loss": [5.0, 4.9, 5.2]})
    b = a.iloc[::-1].assign(loss=[5.2, 4.8, 5.0])  # another row order; one loss moved
    cmp = compare_tables(a, b)
    assert cmp.key == ["arm", "width"] and cmp.n_matched == 3
    assert [(c.name, c.n_differ) for c in cmp.differing] == [("loss", 1)]
    assert cmp.differing[0].max_abs == pytest.approx(0.1)
    extra = pd.concat([b, pd.DataFrame({"arm": ["muon"], "width": [16], "loss": [5.1]})])
    assert compare_tables(a, extra).n_matched == 3 and "B 4 rows" in compare_tables(a, extra).summary()


def test_folders_of_different_scales_are_refused_naming_both(a, tmp_path, capsys):
    b = write_results(tmp_path / "b" / "gpu", scale="gpu")
    with pytest.raises(ValueError, match=r"different scales: A .*a/smoke is results folder of smoke scale.*"
                                         r"B .*b/gpu is results folder of gpu scale"):
        read_pair(a, b)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "optclaims compare: error: cannot compare folders of different scales" in err and str(b) in err
    assert not (tmp_path / "out" / "compare.md").exists()


def test_a_reference_folder_is_one_side_and_a_folder_of_neither_layout_is_refused(tmp_path):
    ref = write_results(tmp_path / "results" / "reference" / "gpu", scale="gpu", reference=True)
    mine = write_results(tmp_path / "results" / "gpu", scale="gpu",
                         change=lambda vs: vs["clip_norm"].update(status="reproduced"))
    assert read_side(ref).kind == REFERENCE and read_side(mine).kind == RESULTS
    md, page, result = write_comparison(mine, ref, tmp_path / "out")
    assert result["scale"] == "gpu" and rows_of(result, "flipped") == [("clip_norm", "claim")]
    assert "reference folder of gpu scale, 2 claims" in md.read_text()
    with pytest.raises(ValueError, match=r"is not a results folder.*did you mean .*gpu"):
        read_side(tmp_path / "results" / "reference")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_side(tmp_path / "nowhere")


def test_a_claim_on_one_side_only_is_reported_not_fatal(a, tmp_path):
    b = tmp_path / "b" / "smoke"
    shutil.copytree(a, b)
    shutil.rmtree(b / "claims" / "clip_norm")
    result = compare(*read_pair(a, b))
    assert result["only"] == {"A": ["clip_norm"], "B": []}
    assert rows_of(result, "only in A") == [("clip_norm", "claim")]
    write_comparison(a, b, tmp_path / "out")
    assert "Claims only in A: clip_norm" in (tmp_path / "out" / "compare.md").read_text()


# --- the nightly's report, rendered by the same machinery ---------------------------------------


def test_the_regression_report_is_the_same_side_by_side_document_in_markdown_and_html(tmp_path):
    from optclaims.regression.baseline import bless
    from optclaims.regression.compare import compare as regress
    from optclaims.regression.history import write_report
    from test_regression import figures

    base = bless(figures(), "first baseline")
    bad = copy.deepcopy(figures())
    bad["reference_runs"]["adam_update_rms/5"]["final_val_loss"] = 5.7
    md = write_report(regress(base, bad), tmp_path).read_text()
    page = (tmp_path / "report.html").read_text()
    assert md.startswith("# Regression check, smoke scale: FAILED (1 of")
    assert "<h1>Regression check, smoke scale: FAILED (1 of" in page and "<h2>Failures</h2>" in page
    assert '<tr class="fail"><td>reference run</td><td>adam_update_rms</td><td>adam_update_rms/5</td>' in page
    assert "<strong>blessed</strong> tolerances" in page and not re.search(r'src="(?!data:)', page)
