"""The LaTeX report (issue 16, items 1 and 3): report.tex, references.bib, booktabs tables and vector
figures beside index.html; a verdict table of one headline figure per claim; report.pdf with one command."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import pytest
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from optclaims.analysis import ClaimContext, headline  # noqa: E402
from optclaims.claims import load_claim, load_sources, list_claims  # noqa: E402
from optclaims.cli import main  # noqa: E402
from optclaims.errors import ConfigError  # noqa: E402
from optclaims.report import build_report  # noqa: E402
from optclaims.report import latex  # noqa: E402
from optclaims.report.latex import escape  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "reproductions"
TEX = all(shutil.which(t) for t in ("pdflatex", "bibtex"))
needs_tex = pytest.mark.skipif(
    not TEX and not os.environ.get("OPTCLAIMS_REQUIRE_TEX"),
    reason="pdflatex and bibtex are not installed (apt-get install --no-install-recommends "
           + " ".join(latex.TEX_PACKAGES) + "); .ci/run installs them and sets OPTCLAIMS_REQUIRE_TEX")

SOURCES = [
    {"key": "su2025adam", "type": "misc", "title": "Why is Adam's update RMS 0.2?", "authors": ["Jianlin Su"],
     "year": 2025, "date": "2025-09-02", "url": "https://kexue.fm/archives/11267", "language": "Chinese"},
    {"key": "liu2025muon", "type": "article", "title": "Muon is Scalable for LLM Training",
     "authors": ["Jingyuan Liu", "Jianlin Su", "others"], "year": 2025, "eprint": "2502.16982"},
    {"key": "su2025clipping", "type": "misc", "title": "Why is the default norm for gradient clipping 1?",
     "authors": ["Jianlin Su"], "year": 2025, "url": "https://kexue.fm/archives/10657"},
]
TRICKY = "Grad norm ≤ 1 & 50% of #steps_{late} at $τ$ → ~β^2 (μ ± σ ≈ √x × 2, −λ·W v₁v₁ᵀ, ‖g‖₂ “q” …) {x} \\ <a|b>"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_verdict(claim: str, short_title: str, status: str, figures: list, **extra) -> dict:
    return {
        "claim": claim, "title": f"{short_title}, in full", "short_title": short_title,
        "source": "kexue.fm/archives/11267; Moonlight §2.2", "scale": "smoke", "evidential": False,
        "status": status, "expected": "update RMS ≈ 0.2 at β1 = 0.9",
        "measured": {"RMS at (β1, β2) = (0.9, 0.95)": {"value": 0.2291234, "low": 0.2201, "high": 0.2388,
                                                       "unit": None, "interval": "5–95% of steady steps"},
                     "exponent (sp)": {"value": -1.5e-5, "low": None, "high": None, "unit": "log2 steps"},
                     "ratio": 1.5, "per width": {"16": 0.3, "32": {"value": 0.25, "low": 0.2, "high": 0.3}}},
        "criteria": ["Reproduced if |RMS − 0.229| < 0.02 (β2 ≥ 0.9); 100% of runs_ok & #seeds ≥ 2"],
        "sub_claims": [{"name": "β2 independence", "status": "partially_reproduced", "expected": "flat in β2",
                        "measured": "0.01 [0, 0.02]", "criterion": "spread < 0.02"}],
        "summary": "Measured from the optimizer state: u = m̂/(√v̂+ε).", "notes": [TRICKY],
        "regime": {"non_embedding_params": {"min": 90272, "max": 229696}, "tokens_per_param": {"min": 0.0557, "max": 0.227},
                   "seeds": 2, "corpus": "pinned-v2048-5d5f36f8"},
        "figures": figures, "runs": ["a1b2c3d4e5f6"], **extra,
    }


@pytest.fixture
def scale_dir(tmp_path: Path) -> Path:
    """Two claims with headlines and sources: one with figures saved the analysis's way (PNG + PDF)."""
    root = tmp_path / "smoke"
    c1 = root / "claims" / "adam_update_rms"
    ctx = ClaimContext("adam_update_rms", {}, "smoke", False, [], c1)
    for name in ("rms", "steady_rms"):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1, 2], [0.3, 0.23, 0.229])
        ctx.save_figure(fig, name, f"Update RMS ({name}) vs step: β1 = 0.9, 5% of steps_late.")
        plt.close(fig)
    write_json(c1 / "verdict.json", make_verdict(
        "adam_update_rms", "Adam's update RMS ≈ 0.2", "reproduced", ctx.figures,
        sources=[{"key": "su2025adam"}, {"key": "liu2025muon", "where": "§2.2"}],
        headline={"measured": "RMS at (β1, β2) = (0.9, 0.95)",
                  "published": {"value": 0.229, "relation": "≈", "source": "su2025adam",
                                "note": "mean field √((1−β1)/(1+β1)) at β1 = 0.9"}}))
    write_json(root / "claims" / "clip_norm" / "verdict.json", make_verdict(
        "clip_norm", "Clip at τ = 1 & <every> scale_100%", "not_reproduced", [],
        sources=[{"key": "su2025clipping"}],
        headline={"measured": "exponent (sp)",
                  "published": {"value": 1.0, "relation": "≤", "unit": "log2 steps", "source": "su2025clipping"}}))
    write_json(root / "runs" / "a1b2c3d4e5f6" / "summary.json", {
        "run_id": "a1b2c3d4e5f6", "status": "ok", "final_val_loss": 3.2, "val_bpb": 1.23, "tokens": 65536,
        "wall_seconds": 12.3, "tokens_per_s": 5328.1, "mfu": 0.012, "device": "cpu", "n_params": 123456,
        "versions": {"torch": "2.13.0"}, "git_commit": "deadbeef" * 5})
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(SOURCES, allow_unicode=True))
    return root


def build(scale_dir: Path) -> Path:
    build_report(scale_dir, sources=scale_dir.parent / "sources.yaml")
    return scale_dir / "report"


def table_rows(tex: str) -> list[str]:
    """The body rows of a booktabs table: between \\midrule and \\bottomrule, split at \\\\."""
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    body = body.replace("\\addlinespace", "")
    return [" ".join(row.split()) for row in body.split("\\\\") if row.strip()]


def cite_keys(tex: str) -> set[str]:
    return {k.strip() for group in re.findall(r"\\cite[tp]?\*?(?:\[[^\]]*\])?\{([^}]*)\}", tex) for k in group.split(",")}


def bib_keys(bib: str) -> list[str]:
    return re.findall(r"^@\w+\{([^,]+),", bib, re.M)


# ---------------------------------------------------------------- escaping

@pytest.mark.parametrize("text, expected", [
    ("a_b 50% & #1 $x$ {y}", r"a\_b 50\% \& \#1 \$x\$ \{y\}"),
    ("~^\\", r"\textasciitilde{}\textasciicircum{}\textbackslash{}"),
    ("a<b>c|d", r"a\ensuremath{<}b\ensuremath{>}c\ensuremath{|}d"),
    ("μP σ β1 Δ", r"\ensuremath{\mu}P \ensuremath{\sigma} \ensuremath{\beta}1 \ensuremath{\Delta}"),
    ("→ ≈ × ≤ ≥ −1 ± √2 ∝ ∞", r"\ensuremath{\rightarrow} \ensuremath{\approx} \ensuremath{\times} \ensuremath{\leq} "
     r"\ensuremath{\geq} \ensuremath{-}1 \ensuremath{\pm} \ensuremath{\surd}2 \ensuremath{\propto} \ensuremath{\infty}"),
    ("d² Wᵀ v₁ ‖g‖", r"d\ensuremath{^{2}} W\ensuremath{^{\top}} v\ensuremath{_{1}} \ensuremath{\|}g\ensuremath{\|}"),
    ("m̂ v̄ é", r"\^{m} \={v} \'{e}"),
    ("0.2–0.3 — “q” … §2", r"0.2--0.3 --- ``q'' \ldots{} \S{}2"),
    ("a--b ''", r"a-{}-b '{}'"),
    ("two\n  lines", "two lines"),
])
def test_escape_writes_each_character_as_pdflatex_prints_it(text, expected):
    assert escape(text) == expected


def test_escape_names_a_character_it_has_no_macro_for():
    unknown = set()
    assert escape("snow ☃ man", unknown) == "snow ? man" and unknown == {"☃"}
    assert all(ord(ch) < 128 for ch in escape(TRICKY))


def test_every_character_the_claims_write_has_a_macro():
    """Titles, criteria, notes and captions come from claim.yaml, sources.yaml and analyze.py."""
    files = [*REPRO.glob("*/claim.yaml"), *REPRO.glob("*/analyze.py"), REPRO / "sources.yaml",
             ROOT / "src/optclaims/analysis.py", ROOT / "src/optclaims/report/build.py"]
    unknown = set()
    for path in files:
        escape(path.read_text(encoding="utf-8"), unknown)
    assert not unknown, f"characters without a LaTeX macro: {sorted(unknown)}"


# ---------------------------------------------------------------- the outputs

def test_latex_outputs_sit_beside_the_html(scale_dir):
    out = build(scale_dir)
    for name in ("index.html", "report.md", "report.tex", "references.bib", "tables/verdicts.tex",
                 "tables/adam_update_rms.tex", "tables/clip_norm.tex"):
        assert (out / name).is_file(), name
    tex = (out / "report.tex").read_text()
    assert r"\input{tables/verdicts}" in tex and r"\input{tables/adam_update_rms}" in tex
    assert r"\bibliography{references}" in tex and all(ord(ch) < 128 for ch in tex)


def test_verdict_table_has_one_row_per_claim_with_headline_published_status_and_regime(scale_dir):
    rows = table_rows((build(scale_dir) / "tables" / "verdicts.tex").read_text())
    assert len(rows) == 2
    adam, clip = rows
    assert adam.startswith(r"Adam's update RMS \ensuremath{\approx} 0.2")
    assert r"\textbf{0.2291} [0.2201, 0.2388]" in adam  # the headline with its interval
    assert r"RMS at (\ensuremath{\beta}1, \ensuremath{\beta}2) = (0.9, 0.95); 5--95\% of steady steps" in adam
    assert r"\ensuremath{\approx} 0.229 \cite{su2025adam}" in adam  # the published value beside it
    assert "& reproduced &" in adam
    assert r"$N$ 0.0903M--0.23M\newline $D/N$ 0.0557--0.227\newline 2 seeds" in adam
    assert r"Clip at \ensuremath{\tau} = 1 \& \ensuremath{<}every\ensuremath{>} scale\_100\%" in clip
    assert r"\textbf{\ensuremath{-1.5\times10^{-5}}} log2 steps" in clip  # a minus, not a hyphen
    assert r"\ensuremath{\leq} 1 log2 steps \cite{su2025clipping}" in clip and "& not reproduced" in clip


def test_claim_table_lists_every_measured_figure_with_its_interval(scale_dir):
    out = build(scale_dir)
    tex = (out / "tables" / "adam_update_rms.tex").read_text()
    rows = table_rows(tex)
    assert len(rows) == 4  # one per measured key
    assert rows[0].startswith(r"RMS at (\ensuremath{\beta}1") and "& 0.2291 & [0.2201, 0.2388] &" in rows[0]
    assert "5--95" in rows[0] and r"\begin{tabular}" in tex and r"\toprule" in tex
    assert r"\cite{su2025adam,liu2025muon}" in tex and r"\label{tab:measured-adam_update_rms}" in tex


def test_every_cite_key_resolves_in_references_bib(scale_dir):
    out = build(scale_dir)
    bib = (out / "references.bib").read_text()
    keys = bib_keys(bib)
    assert keys == ["su2025adam", "liu2025muon", "su2025clipping"]  # each once, in order of citation
    cited = set()
    for path in [out / "report.tex", *(out / "tables").glob("*.tex")]:
        cited |= cite_keys(path.read_text())
    assert cited == set(keys)
    assert "eprint = {2502.16982}" in bib and "journal = {arXiv preprint arXiv:2502.16982}" in bib
    assert "url = {https://kexue.fm/archives/11267}" in bib and "2025-09-02" in bib
    assert "author = {Jingyuan Liu and Jianlin Su and others}" in bib


def test_every_figure_in_the_html_is_also_a_pdf(scale_dir):
    out = build(scale_dir)
    html = (out / "index.html").read_text()
    verdict = json.loads((scale_dir / "claims/adam_update_rms/verdict.json").read_text())
    shown = html.count('<img src="data:image/png;base64,')
    assert shown == len(verdict["figures"]) == 2
    tex = (out / "report.tex").read_text()
    included = re.findall(r"\\includegraphics\[[^\]]*\]\{([^}]*)\}", tex)
    assert included == ["figures/adam_update_rms/rms.pdf", "figures/adam_update_rms/steady_rms.pdf"]
    for rel in included:
        assert (out / rel).read_bytes().startswith(b"%PDF"), rel
    assert r"Update RMS (rms) vs step: \ensuremath{\beta}1 = 0.9, 5\% of steps\_late." in tex


def test_a_figure_without_its_pdf_is_shown_as_png_and_named(scale_dir):
    (scale_dir / "claims/adam_update_rms/figures/rms.pdf").unlink()
    out = build(scale_dir)
    assert "figures/adam_update_rms/rms.png" in (out / "report.tex").read_text()
    assert "figures/rms.png has no PDF beside it" in (out / "index.html").read_text()


def test_a_verdict_without_headline_or_sources_still_renders(scale_dir):
    v_path = scale_dir / "claims" / "clip_norm" / "verdict.json"
    v = json.loads(v_path.read_text())
    for key in ("headline", "sources", "short_title"):
        del v[key]
    write_json(v_path, v)
    out = build(scale_dir)
    clip = table_rows((out / "tables" / "verdicts.tex").read_text())[1]
    assert clip.startswith(r"Clip at \ensuremath{\tau} = 1 \& \ensuremath{<}every\ensuremath{>} scale\_100\%, in full")
    assert "ratio: 1.5" in clip  # every measured figure, as before the headline
    assert bib_keys((out / "references.bib").read_text()) == ["su2025adam", "liu2025muon"]


def test_html_and_markdown_verdict_tables_read_at_a_glance(scale_dir):
    out = build(scale_dir)
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| Adam's update RMS ≈ 0.2 (`adam_update_rms`)"))
    assert "**0.2291 [0.2201, 0.2388]** (RMS at (β1, β2) = (0.9, 0.95)) | ≈ 0.229 (Su 2025) | reproduced |" in row
    assert "ratio" not in row  # the details stay in the claim's section
    html = (out / "index.html").read_text()
    assert '<a href="https://arxiv.org/abs/2502.16982">Liu et al. 2025</a>, §2.2' in html
    assert '<h2 id="references">References</h2>' in html and "## References" in md


def test_verdict_carries_claim_yaml_headline_and_sources():
    spec = load_claim("muon_efficiency", REPRO)
    ctx = ClaimContext("muon_efficiency", spec, "gpu", True, [], Path("/nonexistent"))
    v = ctx.verdict("inconclusive", {}, "s")
    assert v["short_title"] == spec["short_title"] and v["sources"][0]["key"] == "liu2025muon"
    # the published figure is the threshold the analysis already plots beside its own
    assert v["headline"] == {"measured": "token multiplier, d256",
                             "published": {"relation": "≈", "unit": "×", "source": "liu2025muon",
                                           "note": "0.519× the FLOPs at equal loss",
                                           "value": spec["thresholds"]["published"]["Moonlight (FLOPs, 0.519×)"]}}


def test_muon_headline_names_the_largest_size_of_each_scale():
    spec = load_claim("muon_efficiency", REPRO)
    for scale, block in spec["scales"].items():
        assert headline(spec, scale)["measured"] == f"token multiplier, {list(block['sizes'])[-1]}"


# ---------------------------------------------------------------- the bibliography

def test_sources_yaml_is_keyed_consistently_and_cites_what_claims_name():
    bibliography = load_sources(REPRO / "sources.yaml")
    for key, e in bibliography.items():
        family = e["authors"][0].split()[-1].lower()
        m = re.fullmatch(rf"{family}{e['year']}([a-z]+)", key)
        assert m and m.group(1) in e["title"].lower(), f"{key}: family name + year + a word of the title"
        assert ("eprint" in e) == (e["type"] == "article") and ("url" in e) == (e["type"] == "misc")
    cited = {s["key"] for c in list_claims(REPRO) for s in load_claim(c, REPRO)["sources"]}
    assert cited == set(bibliography)  # nothing defined that no claim cites
    moonlight = bibliography["liu2025muon"]
    assert moonlight["eprint"] == "2502.16982" and moonlight["year"] == 2025


def clip_norm_edited(tmp_path, old: str, new: str) -> Path:
    """A copy of the reproductions with one edit to clip_norm's claim.yaml; returns its folder."""
    repro = tmp_path / "reproductions"
    shutil.copytree(REPRO, repro)
    spec = repro / "clip_norm" / "claim.yaml"
    spec.write_text(spec.read_text().replace(old, new))
    return repro


def test_a_claim_citing_an_unknown_source_stops_the_plan(tmp_path):
    repro = clip_norm_edited(tmp_path, "  - {key: su2025clipping}\n", "  - {key: su2025clipping}\n  - {key: nobody2099x}\n")
    with pytest.raises(ConfigError, match="nobody2099x, not in sources.yaml"):
        load_claim("clip_norm", repro)


def test_a_headline_threshold_path_that_leads_nowhere_stops_the_plan(tmp_path):
    repro = clip_norm_edited(tmp_path, "threshold: [tau]", "threshold: [tua]")
    with pytest.raises(ConfigError, match="headline.published.threshold: 'tua'"):
        load_claim("clip_norm", repro)


# ---------------------------------------------------------------- the PDF

@needs_tex
def test_report_tex_builds_to_a_pdf_with_every_citation_resolved(scale_dir, capsys):
    out = build(scale_dir)
    assert main(["report-pdf", "--scale-dir", str(scale_dir)]) == 0
    pdf = Path(capsys.readouterr().out.strip())
    assert pdf == out / "report.pdf" and pdf.read_bytes().startswith(b"%PDF")
    log = (out / "report.log").read_text(errors="replace")
    assert "undefined" not in log.lower(), [line for line in log.splitlines() if "ndefined" in line]
    assert "Rerun to get" not in log  # latexmk ran it to a fixed point
    assert (out / "report.bbl").read_text().count(r"\bibitem") == 3


@needs_tex
def test_tables_input_cleanly_into_another_document(scale_dir):
    out = build(scale_dir)
    (out / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,array,amssymb}\n\\begin{document}\n"
        "\\input{tables/verdicts}\n\\input{tables/adam_update_rms}\n\\input{tables/clip_norm}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=out,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


def test_report_pdf_without_tex_names_what_to_install(scale_dir, monkeypatch, capsys):
    build(scale_dir)
    monkeypatch.setattr(latex.shutil, "which", lambda tool: None)
    assert main(["report-pdf", "--report-dir", str(scale_dir / "report")]) == 2
    err = capsys.readouterr().err
    assert "pdflatex and bibtex not found" in err and "apt-get install --no-install-recommends texlive-latex-base" in err


def test_report_pdf_without_a_report_says_to_build_one(tmp_path, capsys):
    assert main(["report-pdf", "--report-dir", str(tmp_path)]) == 2
    assert "build the report first" in capsys.readouterr().err


def test_ci_installs_the_tex_the_pdf_test_needs_and_fails_without_it():
    ci = (ROOT / ".ci" / "run").read_text()
    # the list is latex.py's, read by .ci/run itself: run its assignment and compare
    start = ci.index("TEX_PACKAGES=$(")
    assignment = ci[start:ci.index("')\n", start) + 2]
    import subprocess

    got = subprocess.run(["bash", "-c", f"{assignment}\necho \"$TEX_PACKAGES\""], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert got == list(latex.TEX_PACKAGES)
    assert "export OPTCLAIMS_REQUIRE_TEX=1" in ci and "exit 1" in ci
