"""The report stage: a fake results/<scale> folder in, self-contained HTML and Markdown out."""

import base64
import json
import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from optclaims.cli import main  # noqa: E402
from optclaims.report import build_report, collect  # noqa: E402

RUNS = ["a1b2c3d4e5f6", "1234e5678901"]  # the second would parse as a float: must stay text


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def verdict(claim: str, title: str, status: str, **extra) -> dict:
    return {
        "claim": claim, "title": title, "source": "kexue.fm/archives/11267; Moonlight §2.2",
        "scale": "smoke", "evidential": False, "status": status,
        "expected": "update RMS ≈ 0.2",
        "measured": {"update_rms": {"value": 0.2291234, "low": 0.2201, "high": 0.2388, "unit": None},
                     "ratio": 1.5},
        "criteria": ["|RMS − 0.229| < 0.02 after warm-up"],
        "runs": RUNS, "summary": "Measured from the optimizer state.", "figures": [], **extra,
    }


@pytest.fixture
def scale_dir(tmp_path: Path) -> Path:
    root = tmp_path / "smoke"
    # claim 1: a figure, sub-claims and a table
    c1 = root / "claims" / "adam_update_rms"
    (c1 / "figures").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0.3, 0.23, 0.229])
    fig.savefig(c1 / "figures" / "rms.png", dpi=40)
    plt.close(fig)
    write_json(c1 / "verdict.json", verdict(
        "adam_update_rms", "Update RMS of AdamW is about 0.2", "reproduced",
        figures=[{"file": "figures/rms.png", "caption": "Update RMS vs step."}],
        regime={"non_embedding_params": {"min": 90272, "max": 229696}, "tokens_per_param": {"min": 0.0557, "max": 0.227},
                "seeds": 2, "corpus": "pycode-v2048-5d5f36f8"},
        sub_claims=[{"name": "beta2 independence", "status": "partially_reproduced",
                     "expected": "flat in β2", "measured": {"value": 0.01, "low": 0.0, "high": 0.02},
                     "criterion": "spread < 0.02"}],
        notes=["smoke runs are short"]))
    rows = ["run_id,beta1,rms"] + [f"{RUNS[i % 2]},0.9,{0.1 + i / 3}" for i in range(70)]
    (c1 / "table.csv").write_text("\n".join(rows) + "\n")
    # claim 2: HTML-special characters in its title, no figures, no table
    write_json(root / "claims" / "clip_norm" / "verdict.json",
               verdict("clip_norm", "Grad norm <= 1 & <script>x</script>", "not_reproduced"))
    # two runs
    for i, run_id in enumerate(RUNS):
        write_json(root / "runs" / run_id / "summary.json", {
            "run_id": run_id, "status": ["ok", "diverged"][i], "final_train_loss": 3.1,
            "final_val_loss": [3.2, None][i], "val_bpb": 1.23456, "tokens": 65536, "flops": 1e12,
            "wall_seconds": 12.3, "tokens_per_s": 5328.1, "mfu": [None, 0.012][i], "device": "cpu",
            "versions": {"torch": "2.13.0", "python": "3.11.9"}, "git_commit": "deadbeef" * 5,
            "n_params": 123456})
        write_json(root / "runs" / run_id / "config.json", {"optimizer": "adamw", "lr": 1e-3})
    write_json(root / "data" / "tiny" / "corpus" / "manifest.json",
               {"spec": {"name": "tiny"}, "n_files": 3, "n_bytes": 123456, "hash": "cafef00d"})
    write_json(root / "data" / "tiny" / "tokens" / "shards.json",
               {"vocab_size": 512, "splits": {"train": {"n_tokens": 90000}, "val": {"n_tokens": 9000}}})
    bench = root / "benchmarks" / "train" / "a1b2c3d4e5f6.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t300.1\n")
    return root


def test_collect_reads_every_input(scale_dir):
    r = collect(scale_dir)
    assert [c["claim"] for c in r["claims"]] == ["adam_update_rms", "clip_norm"]  # sorted by id
    assert r["scale"] == "smoke" and not r["evidential"] and r["banner"]
    assert [run["run_id"] for run in r["runs"]] == sorted(RUNS)
    assert r["stages"] == [{"rule": "train", "jobs": 1, "seconds": 12.5, "seconds_text": "12.5"}]
    assert r["data"][0]["hash"] == "cafef00d" and r["data"][0]["train_tokens"] == "90,000"
    assert {"name": "torch", "version": "2.13.0"} in r["provenance"]["versions"]
    table = r["claims"][0]["table"]
    assert table["n_rows"] == 70 and table["truncated"] and len(table["rows"]) == 60
    assert table["rows"][1] == [RUNS[1], "0.9", "0.4333"]  # floats to 4 s.f., hex ids untouched
    assert r["claims"][0]["figures"][0]["number"] == 1


def test_html_is_self_contained_and_complete(scale_dir):
    html_path, md_path = build_report(scale_dir)
    assert html_path == scale_dir / "report" / "index.html" and md_path.name == "report.md"
    html = html_path.read_text()
    assert "Update RMS of AdamW is about 0.2" in html
    assert "Grad norm &lt;= 1 &amp; &lt;script&gt;x&lt;/script&gt;" in html
    assert 'class="badge reproduced">reproduced<' in html
    assert 'class="badge not_reproduced">not reproduced<' in html
    assert "0.2291 [0.2201, 0.2388]" in html
    assert "Figure 1:" in html and "Update RMS vs step." in html
    png = (scale_dir / "claims/adam_update_rms/figures/rms.png").read_bytes()
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in html
    assert 'src="http' not in html and "<script" not in html and "<link" not in html
    assert "not evidence" in html.lower()
    assert "Showing the first 60 of 70 rows" in html
    for text in ["deadbeef", "cafef00d", "2.13.0", "123,456", "65,536", "1.2%", "train</td>"]:
        assert text in html, text


def test_markdown_has_verdict_rows_and_relative_figures(scale_dir):
    _, md_path = build_report(scale_dir)
    md = md_path.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| Update RMS of AdamW"))
    assert "| reproduced | 0.0903M–0.23M non-embedding params" in row and row.endswith("| no |") and "0.2291 [0.2201, 0.2388]" in row
    assert "](../claims/adam_update_rms/figures/rms.png)" in md
    assert "Grad norm <= 1 & \\<script>x\\</script>" in md
    assert not re.search(r"(?<!\\)<script", md)  # no tag a Markdown renderer would pass through


def test_escapes_special_characters_everywhere(scale_dir):
    v_path = scale_dir / "claims" / "clip_norm" / "verdict.json"
    v = json.loads(v_path.read_text())
    v.update(source='"><img src=x onerror=alert(1)>', criteria=["a < b"], notes=["<b>bold</b>"])
    write_json(v_path, v)
    html = build_report(scale_dir)[0].read_text()
    assert "<img src=x" not in html and "<b>bold</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "a &lt; b" in html


def test_missing_required_key_raises_naming_file_and_key(scale_dir):
    v_path = scale_dir / "claims" / "clip_norm" / "verdict.json"
    v = json.loads(v_path.read_text())
    del v["status"]
    write_json(v_path, v)
    with pytest.raises(ValueError, match=r"clip_norm/verdict\.json.*'status'"):
        build_report(scale_dir)


def test_unknown_status_raises(scale_dir):
    v_path = scale_dir / "claims" / "clip_norm" / "verdict.json"
    write_json(v_path, {**json.loads(v_path.read_text()), "status": "confirmed"})
    with pytest.raises(ValueError, match="status"):
        collect(scale_dir)


def test_minimal_scale_dir_and_custom_out_dir(tmp_path, capsys):
    # one claim, nothing optional: no runs, benchmarks, provenance, figures or table
    root = tmp_path / "gpu"
    v = verdict("mup_transfer", "muP transfers", "inconclusive", evidential=True, scale="gpu")
    del v["figures"], v["summary"]
    write_json(root / "claims" / "mup_transfer" / "verdict.json", v)
    out = tmp_path / "elsewhere"
    assert main(["report", "--scale-dir", str(root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    html = (out / "index.html").read_text()
    assert "muP transfers" in html and "Not evidence" not in html  # evidential: no banner
    assert "No run summaries found." in html
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temp files


def test_provenance_json_is_used(scale_dir):
    write_json(scale_dir / "provenance.json", {
        "scale": "smoke", "config": {"scale": "smoke", "cores": 2}, "config_hash": "feedface1234",
        "git_commit": "0123456789abcdef", "versions": {"snakemake": "9.27.1"}, "device": "cpu (2 cores)",
        "started": "2025-01-01T00:00:00"})
    html = build_report(scale_dir)[0].read_text()
    for text in ["feedface1234", "0123456789abcdef", "9.27.1", "cpu (2 cores)", "&#34;cores&#34;: 2"]:
        assert text in html, text


def test_figure_in_custom_out_dir_links_relatively(scale_dir, tmp_path):
    md = build_report(scale_dir, tmp_path / "a" / "b")[1].read_text()
    rel = Path("..", "..", "smoke", "claims", "adam_update_rms", "figures", "rms.png").as_posix()
    assert f"]({rel})" in md


def test_each_verdict_states_its_regime_beside_its_status(scale_dir, tmp_path):
    """Issue 12, item 8: parameters, tokens per parameter, seeds and corpus beside the status."""
    html_path, md_path = build_report(scale_dir, tmp_path / "out")
    regime = "0.0903M–0.23M non-embedding params · 0.0557–0.227 tokens/param · 2 seeds · corpus pycode-v2048-5d5f36f8"
    md = Path(md_path).read_text()
    assert md.count(regime) == 2  # the verdict table and the claim's section
    assert regime in Path(html_path).read_text()
    assert "| — |" in md  # a verdict without a regime says so
