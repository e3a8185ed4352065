"""Committed gpu references (issue 13): pack -> file -> report on a fake evidential gpu results
folder, the size limit, refusals, stale marking, the README's table and the gpu baseline."""

import io
import json
import tarfile
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from optclaims.cli import main  # noqa: E402
from optclaims.reference import filing  # noqa: E402
from optclaims.reference.baseline import reference_figures  # noqa: E402
from optclaims.reference.claim_code import claim_code, claim_folders  # noqa: E402
from optclaims.reference.filing import file_reference  # noqa: E402
from optclaims.reference.pack import pack_reference  # noqa: E402
from optclaims.reference.readme import NO_REFERENCE, out_of_sync, table_block, write_table  # noqa: E402
from optclaims.reference.report import build_reference_report, collect_reference  # noqa: E402
from optclaims.regression.baseline import bless  # noqa: E402
from optclaims.regression.compare import compare  # noqa: E402
from optclaims.regression.figures import tolerance_rule  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_ID = "pycode-v8192-0a1b2c3d"
HOST = {"driver": "570.124.06", "cuda": "12.8", "torch": "2.11.0"}
RUNS = {"alpha": ["aaaaaaaaaaa0", "aaaaaaaaaaa1", "cccccccccccc"], "beta": ["cccccccccccc", "bbbbbbbbbbb0"]}
CONFIGS = {"aaaaaaaaaaa0": {"lr": 0.01, "seed": 0}, "aaaaaaaaaaa1": {"lr": 0.01, "seed": 1},
           "cccccccccccc": {"lr": 0.02, "seed": 0}, "bbbbbbbbbbb0": {"lr": 0.04, "seed": 0}}
README = "# project\n\nintro\n\n{block}\n\nmore text\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_json(path: Path, obj) -> Path:
    return write(path, json.dumps(obj))


@pytest.fixture
def repo(tmp_path) -> Path:
    """A checkout: two claims (beta reads alpha's runs), a library, the workflow config, a README."""
    root = tmp_path / "repo"
    write(root / "reproductions/alpha/claim.yaml", "claim: alpha\ntitle: Alpha\nscales: {gpu: {grid: {lr: [1, 2]}}}\n")
    write(root / "reproductions/alpha/analyze.py", "def analyze(ctx):\n    return None\n")
    write(root / "reproductions/alpha/README.md", "# alpha\n")
    write(root / "reproductions/beta/claim.yaml", "claim: beta\ntitle: Beta\nscales: {gpu: {size_sweep: {claim: alpha}}}\n")
    write(root / "reproductions/beta/analyze.py", "def analyze(ctx):\n    return 1\n")
    write(root / "src/optclaims/train.py", "STEPS = 1\n")
    write(root / "src/optclaims/report/build.py", "LAYOUT = 1\n")
    write(root / "workflows/config/config.yaml",
          "scales:\n  smoke: {evidential: false}\n  gpu: {evidential: true, tokenizer: {vocab_size: 8192}}\n")
    write(root / "README.md", README.format(block="<!-- gpu-reference-table: written by `optclaims readme-table` from "
                                            "results/reference/gpu (make readme-table); do not edit by hand -->\n"
                                            "<!-- /gpu-reference-table -->"))
    return root


def verdict(claim: str, **extra) -> dict:
    return {"claim": claim, "title": f"{claim.title()} holds", "source": "kexue.fm", "scale": "gpu",
            "evidential": True, "status": "reproduced", "expected": "≈ 0.2",
            "measured": {"update RMS": {"value": 0.2213, "low": 0.2101, "high": 0.2302, "unit": None},
                         "spread": {"value": 0.01, "low": None, "high": None, "unit": None}},
            "criteria": ["|RMS − 0.229| < 0.02"], "runs": RUNS[claim], "figures": [],
            "regime": {"non_embedding_params": {"min": 1.2e6, "max": 9.6e6}, "tokens_per_param": {"min": 20, "max": 20},
                       "seeds": 2, "corpus": DATA_ID}, **extra}


@pytest.fixture
def gpu_results(tmp_path) -> Path:
    """results/gpu after an evidential run of both claims on an H200 (checkpoints and shards included,
    as the workflow leaves them)."""
    root = tmp_path / "results" / "gpu"
    alpha = root / "claims" / "alpha"
    (alpha / "figures").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0.3, 0.23, 0.22])
    fig.savefig(alpha / "figures" / "rms.png", dpi=40)
    fig.savefig(alpha / "figures" / "rms.pdf")
    plt.close(fig)
    write_json(alpha / "verdict.json", verdict("alpha", figures=[{"file": "figures/rms.png", "caption": "RMS vs step."}]))
    write(alpha / "table.csv", "run_id,rms\naaaaaaaaaaa0,0.22\n")
    write_json(alpha / "stage2.json", {})
    write_json(root / "claims" / "beta" / "verdict.json", verdict("beta", status="partially_reproduced"))
    write(root / "claims" / "beta" / "table.csv", "run_id,loss\ncccccccccccc,3.1\n")
    for i, (rid, cfg) in enumerate(CONFIGS.items()):
        run = root / "runs" / rid
        write_json(run / "config.json", {**cfg, "data": DATA_ID})
        write_json(run / "summary.json", {
            "run_id": rid, "status": "ok", "final_val_loss": 3.0 + 0.01 * i, "tokens": 1000, "tokens_per_s": 1e5 * (i + 1),
            "mfu": 0.1 * (i + 1), "device": "NVIDIA H200", "versions": {"torch": "2.11.0", "python": "3.12.3"},
            "git_commit": "feedc0de" * 5, "population": {"id": f"pop{i % 2:09d}", "index": 0, "size": 2,
                                                         "tokens_per_s": 2e5 * (i + 1)}})
        pd.DataFrame({"step": range(50), "train_loss": [5.0 - 0.01 * s for s in range(50)]}).to_parquet(run / "metrics.parquet")
        write(run / "model.safetensors", "weights")
    write_json(root / "data" / DATA_ID / "corpus" / "manifest.json", {"spec": "pycode", "hash": "c0ffee" * 8, "n_bytes": 4800})
    write(root / "data" / DATA_ID / "corpus" / "train.jsonl", "{}\n")
    write_json(root / "data" / DATA_ID / "tokens" / "shards.json", {"vocab_size": 8192, "splits": {"train": {"n_tokens": 9}}})
    write(root / "data" / DATA_ID / "tokens" / "train.bin", "tokens")
    for rule, key, s in [("train", "pop000000000", 120.5), ("train", "pop000000001", 60.0), ("analyze", "alpha", 3.5),
                         ("analyze", "beta", 2.0), ("corpus", DATA_ID, 10.0)]:
        write(root / "benchmarks" / rule / f"{key}.tsv", f"s\th:m:s\n{s}\t0:00:01\n")
    return root


@pytest.fixture
def archive(repo, gpu_results, tmp_path) -> Path:
    out = tmp_path / "reference-gpu.tgz"
    pack_reference(gpu_results, ["alpha", "beta"], out, repo, host=HOST)
    return out


@pytest.fixture
def reference(repo, archive) -> Path:
    ref = repo / "results" / "reference" / "gpu"
    file_reference(archive, ref, repo)
    return ref


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- pack -> file -> report

def test_pack_then_file_gives_the_reference_layout_with_its_provenance(gpu_results, archive, reference):
    alpha = reference / "alpha"
    assert {"verdict.json", "table.csv", "stage2.json", "figures/rms.png", "figures/rms.pdf", "provenance.json",
            f"data/{DATA_ID}/corpus/manifest.json", f"data/{DATA_ID}/tokens/shards.json",
            "runs/aaaaaaaaaaa0/metrics.parquet", "runs/cccccccccccc/summary.json"} <= set(tree(alpha))
    everything = set(tree(reference))
    assert not [p for p in everything if p.endswith((".safetensors", ".bin", ".jsonl"))]  # no checkpoints, shards, corpus
    # metrics are re-encoded (zstd), not changed
    pd.testing.assert_frame_equal(pd.read_parquet(alpha / "runs/aaaaaaaaaaa0/metrics.parquet"),
                                  pd.read_parquet(gpu_results / "runs/aaaaaaaaaaa0/metrics.parquet"))
    # a run two claims share is in both folders, and once in the archive (a hard link)
    assert (reference / "beta/runs/cccccccccccc/summary.json").read_bytes() == (alpha / "runs/cccccccccccc/summary.json").read_bytes()
    with tarfile.open(archive) as tar:
        assert any(m.islnk() for m in tar)

    prov = json.loads((alpha / "provenance.json").read_text())
    assert prov["devices"] == ["NVIDIA H200"] and prov["driver"] == "570.124.06" and prov["cuda"] == "12.8"
    assert prov["torch"] == "2.11.0" and prov["git_commits"] == ["feedc0de" * 5]
    assert prov["corpus"] == [{"data_id": DATA_ID, "spec": "pycode", "hash": "c0ffee" * 8, "n_bytes": 4800}]
    # alpha's jobs: its analysis, both populations (its runs are in each), the data preparation; not beta's analysis
    assert prov["wall_seconds_per_stage"] == {"analyze": {"jobs": 1, "seconds": 3.5}, "corpus": {"jobs": 1, "seconds": 10.0},
                                              "train": {"jobs": 2, "seconds": 180.5}}
    assert prov["workflow"]["claims"] == ["alpha", "beta"] and prov["workflow"]["wall_seconds_per_stage"]["analyze"]["jobs"] == 2
    assert prov["throughput"]["tokens_per_s"] == {"median": 2e5, "max": 3e5, "n": 3}  # the first three of CONFIGS
    assert prov["throughput"]["mfu"]["median"] == pytest.approx(0.2)
    assert prov["claim_code"]["hash"] and "reproductions/alpha/analyze.py" in prov["claim_code"]["files"]
    assert not list(reference.glob(".*"))  # no staging folder left


def test_the_report_rebuilds_from_the_references_alone(reference, repo, capsys):
    assert main(["reference-report", "--reference", str(reference), "--root", str(repo)]) == 0
    html = (reference / "report" / "index.html").read_text()
    md = (reference / "report" / "report.md").read_text()
    for text in ["Alpha holds", "Beta holds", "NVIDIA H200", "570.124.06", "12.8", "c0ffee", "0.2213 [0.2101, 0.2302]",
                 "reference results", 'id="run-beta-cccccccccccc"', 'href="#run-alpha-cccccccccccc"']:
        assert text in html, text
    assert "data:image/png;base64," in html and "stale" not in html.lower().replace(".badge.stale", "")
    assert '<a id="claim-alpha"></a>' in md and "](../alpha/figures/rms.png)" in md
    assert "| `beta` | `cccccccccccc` | ok |" in md and "| `alpha` | `cccccccccccc` | ok |" in md  # runs listed per claim
    assert "Not evidence" not in html


def test_the_commands_pack_and_file_through_the_cli(repo, gpu_results, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("optclaims.reference.pack.host_environment", lambda: HOST)
    out = tmp_path / "cli.tgz"
    assert main(["pack-reference", "--scale-dir", str(gpu_results), "--claims", "alpha,beta", "--out", str(out),
                 "--root", str(repo)]) == 0
    assert "packed 2 claim reference(s)" in capsys.readouterr().out
    ref = tmp_path / "ref"
    assert main(["file-reference", str(out), "--reference", str(ref), "--root", str(repo)]) == 0
    assert sorted(p.name for p in ref.iterdir()) == ["alpha", "beta"]


# ---------------------------------------------------------------- refusals

def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("claims, change, message", [
    ([], None, "claims: none named"),
    (["alpha", "gamma"], None, "unknown claim 'gamma'"),
    (["alpha"], lambda r: (r / "claims/alpha/verdict.json").unlink(), "claim alpha: no verdict"),
    (["alpha"], lambda r: edit_json(r / "claims/alpha/verdict.json", scale="smoke"), "scale = 'smoke'"),
    (["beta"], lambda r: edit_json(r / "claims/beta/verdict.json", evidential=False), "evidential = False"),
    (["beta"], lambda r: edit_json(r / "runs/bbbbbbbbbbb0/summary.json", device="cpu (x86_64, 4 threads)"),
     "run bbbbbbbbbbb0: device = 'cpu"),
    (["alpha"], lambda r: (r / "runs/aaaaaaaaaaa1/metrics.parquet").unlink(), "run aaaaaaaaaaa1: no metrics.parquet"),
    (["alpha"], lambda r: (r / "claims/alpha/figures/rms.png").unlink(), "figure figures/rms.png"),
])
def test_pack_refuses_what_is_no_reference_and_writes_nothing(repo, gpu_results, tmp_path, claims, change, message):
    if change:
        change(gpu_results)
    out = tmp_path / "refused.tgz"
    with pytest.raises(ValueError, match=message):
        pack_reference(gpu_results, claims, out, repo, host=HOST)
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_pack_refuses_an_archive_over_the_limit_naming_what_is_big(repo, gpu_results, tmp_path, capsys, monkeypatch):
    (gpu_results / "claims/alpha/figures/huge.png").write_bytes(__import__("os").urandom(100_000))
    out = tmp_path / "big.tgz"
    with pytest.raises(ValueError, match=r"over the 0.0191 MiB.*largest files: alpha/figures/huge\.png"):
        pack_reference(gpu_results, ["alpha"], out, repo, host=HOST, max_bytes=20_000)
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    # the CLI: exit 2 and the message, at the real limit a 17 MiB incompressible file is refused
    (gpu_results / "claims/alpha/figures/huge.png").write_bytes(__import__("os").urandom(17 * 2**20))
    monkeypatch.setattr("optclaims.reference.pack.host_environment", lambda: HOST)
    assert main(["pack-reference", "--scale-dir", str(gpu_results), "--claims", "alpha", "--out", str(out),
                 "--root", str(repo)]) == 2
    assert "over the 16 MiB" in capsys.readouterr().err and not out.exists()


def rewrite_archive(src: Path, dst: Path, edit) -> Path:
    """Copy an archive through ``edit(files: {name: bytes})`` (links resolved)."""
    files = {f"{c}/{rel}": data for c, fs in filing.read_archive(src).items() for rel, data in fs.items()}
    edit(files)
    with tarfile.open(dst, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


def replace(files, claim: str, rel: str, data: bytes) -> None:
    """Change a file of an archive as a pack would have written it (its sha256 in the provenance)."""
    files[f"{claim}/{rel}"] = data
    prov = json.loads(files[f"{claim}/provenance.json"])
    prov["files"][rel] = __import__("hashlib").sha256(data).hexdigest()
    files[f"{claim}/provenance.json"] = json.dumps(prov).encode()


def not_evidential(files):
    v = json.loads(files["beta/verdict.json"])
    replace(files, "beta", "verdict.json", json.dumps({**v, "evidential": False}).encode())


@pytest.mark.parametrize("edit, message", [
    (not_evidential, "claim beta: evidential = False"),
    (lambda f: f.pop("beta/verdict.json"), "claim beta: the reference holds no verdict.json"),
    (lambda f: f.update({"beta/table.csv": b"tampered\n"}), "table.csv does not match the sha256"),
    (lambda f: f.update({"beta/extra.csv": b"x\n"}), "not in its provenance: extra.csv"),
    (lambda f: f.update({"../evil.txt": b"x"}), "is not a path inside a claim folder"),
    (lambda f: f.update({"gamma/verdict.json": b"{}"}), "claim 'gamma' is not a claim of this checkout"),
])
def test_file_refuses_a_bad_archive_and_leaves_every_reference_as_it_was(repo, archive, reference, tmp_path, edit, message):
    before = tree(reference)
    bad = rewrite_archive(archive, tmp_path / "bad.tgz", edit)
    with pytest.raises(ValueError, match=message):
        file_reference(bad, reference, repo)
    assert tree(reference) == before and not list(reference.glob(".*"))


def test_a_failure_while_filing_replaces_no_claim(repo, archive, reference, tmp_path, monkeypatch):
    edited = rewrite_archive(archive, tmp_path / "edited.tgz",
                             lambda f: replace(f, "alpha", "table.csv", b"new\n") or replace(f, "beta", "table.csv", b"new\n"))
    before = tree(reference)
    real = filing.check_reference_folder

    def fail_on_beta(folder, claim):
        if claim == "beta":
            raise OSError("disk full")
        return real(folder, claim)

    monkeypatch.setattr(filing, "check_reference_folder", fail_on_beta)
    with pytest.raises(OSError, match="disk full"):
        file_reference(edited, reference, repo)
    assert tree(reference) == before and not list(reference.glob(".*"))
    monkeypatch.undo()  # the same archive files whole once nothing fails
    assert file_reference(edited, reference, repo) == ["alpha", "beta"]
    assert (reference / "alpha/table.csv").read_bytes() == (reference / "beta/table.csv").read_bytes() == b"new\n"


def test_file_refuses_a_missing_or_unreadable_archive(repo, tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        file_reference(tmp_path / "none.tgz", tmp_path / "ref", repo)
    with pytest.raises(ValueError, match="not a readable .tgz"):
        file_reference(write(tmp_path / "junk.tgz", "junk"), tmp_path / "ref", repo)
    assert not (tmp_path / "ref").exists() or not any((tmp_path / "ref").iterdir())


# ---------------------------------------------------------------- staleness

def stale_claims(reference, repo) -> list[str]:
    return [c["claim"] for c in collect_reference(reference, repo)["claims"] if c["stale"]]


def test_the_claim_code_hash_ignores_prose_line_endings_and_location(repo, tmp_path):
    before = claim_code("alpha", repo)["hash"]
    write(repo / "reproductions/alpha/README.md", "# alpha, reworded\n")
    path = repo / "reproductions/alpha/analyze.py"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert claim_code("alpha", repo)["hash"] == before
    import shutil
    shutil.copytree(repo, tmp_path / "elsewhere")
    assert claim_code("alpha", tmp_path / "elsewhere")["hash"] == before
    assert claim_folders("beta", repo) == ["alpha", "beta"]  # beta reads alpha's runs


@pytest.mark.parametrize("path, text, stale", [
    ("reproductions/alpha/analyze.py", "def analyze(ctx):\n    return 2\n", ["alpha", "beta"]),  # beta reads alpha's runs
    ("reproductions/beta/claim.yaml", "claim: beta\ntitle: Beta\nscales: {gpu: {size_sweep: {claim: alpha}, x: 1}}\n", ["beta"]),
    ("src/optclaims/train.py", "STEPS = 2\n", ["alpha", "beta"]),
    ("src/optclaims/new_module.py", "X = 1\n", ["alpha", "beta"]),  # a new library module counts
    ("src/optclaims/report/build.py", "LAYOUT = 2\n", []),  # presentation only
    ("reproductions/alpha/README.md", "# prose\n", []),
    ("reproductions/alpha/test_alpha.py", "def test_alpha():\n    assert True\n", []),  # its tests check it, they do not change it
    ("reproductions/alpha/helpers.py", "X = 1\n", ["alpha", "beta"]),  # any other file of its folder counts
    ("workflows/config/config.yaml", "scales:\n  smoke: {evidential: true}\n  gpu: {evidential: true, tokenizer: {vocab_size: 8192}}\n", []),
    ("workflows/config/config.yaml", "scales:\n  smoke: {evidential: false}\n  gpu: {evidential: true, tokenizer: {vocab_size: 4096}}\n",
     ["alpha", "beta"]),
])
def test_a_claim_whose_code_changed_is_marked_stale_in_the_report_and_the_readme(repo, reference, path, text, stale):
    assert stale_claims(reference, repo) == []
    write(repo / path, text)
    assert stale_claims(reference, repo) == stale
    report = collect_reference(reference, repo)
    for c in report["claims"]:
        if c["stale"]:
            assert path.split("#")[0] in " ".join(c["stale"]["changed"]) and "make gpu-reference CLAIMS=" in c["stale"]["text"]
    html, md = build_reference_report(reference, root=repo)
    rows = {line.split("|")[1].strip(): line for line in table_block(reference, repo).splitlines() if line.startswith("| `")}
    for claim in ["alpha", "beta"]:
        assert ("**stale**" in rows[f"`{claim}`"]) == (claim in stale)
    assert ('<span class="badge stale">stale</span>' in html.read_text()) == bool(stale)
    assert ("(stale)" in md.read_text()) == bool(stale)


# ---------------------------------------------------------------- README table

def test_the_readme_table_follows_the_references(repo, reference):
    readme = repo / "README.md"
    assert out_of_sync(readme, reference, repo)  # block empty, no report.md yet
    assert write_table(readme, reference, repo) and not write_table(readme, reference, repo)
    build_reference_report(reference, root=repo)
    assert out_of_sync(readme, reference, repo) == []
    text = readme.read_text()
    assert text.startswith("# project\n\nintro\n\n<!-- gpu-reference-table") and text.endswith("-->\n\nmore text\n")
    row = next(line for line in text.splitlines() if line.startswith("| `alpha`"))
    assert "[reproduced](results/reference/gpu/report/report.md#claim-alpha)" in row
    assert "update RMS: 0.2213 [0.2101, 0.2302]" in row and "1.2M–9.6M non-embedding params" in row and "on NVIDIA H200" in row
    # a claim of the checkout without a reference says so; removing a reference puts the README out of sync
    write(repo / "reproductions/gamma/claim.yaml", "claim: gamma\n")
    assert f"| `gamma` | {NO_REFERENCE} | — | — | — |" in table_block(reference, repo)
    assert any("README.md" in p for p in out_of_sync(readme, reference, repo))


def test_the_repository_readme_is_in_sync_with_its_references():
    """README.md's gpu reference table (and results/reference/gpu/report/report.md) say what
    results/reference/gpu holds; fix with `make readme-table reference-report`."""
    ref = REPO / "results" / "reference" / "gpu"
    assert out_of_sync(REPO / "README.md", ref, REPO) == []
    rows = [line for line in table_block(ref, REPO).splitlines() if line.startswith("| `")]
    claims = sorted(p.parent.name for p in (REPO / "reproductions").glob("*/claim.yaml"))
    assert [r.split("`")[1] for r in rows] == claims
    for claim, row in zip(claims, rows):
        assert (NO_REFERENCE in row) == (not (ref / claim / "verdict.json").is_file())


# ---------------------------------------------------------------- nightly baseline at gpu scale

def test_the_gpu_baseline_is_blessed_from_the_references(repo, reference):
    rule = tolerance_rule({"deterministic": False, "seed_sigmas": 3, "reference_runs_per_claim": 2})
    figures = reference_figures(reference, RUNS, CONFIGS, rule, repo)
    assert figures["scale"] == "gpu" and sorted(figures["claims"]) == ["alpha", "beta"]
    assert figures["claims"]["beta"]["status"] == "partially_reproduced"
    first = figures["reference_runs"]["alpha/0"]
    assert first["run_id"] == "aaaaaaaaaaa0" and first["n_seeds"] == 2 and first["seed_sigma"] == pytest.approx(0.00707, rel=1e-2)
    assert sorted(figures["reference_runs"]) == ["alpha/0", "alpha/2", "beta/0", "beta/1"]
    baseline = bless(figures, "gpu references of alpha and beta")
    assert compare(baseline, figures)["passed"]
    moved = json.loads(json.dumps(figures))
    moved["reference_runs"]["alpha/0"]["final_val_loss"] += 0.1
    assert not compare(baseline, moved)["passed"]
    # a stale reference is never blessed
    write(repo / "src/optclaims/train.py", "STEPS = 3\n")
    with pytest.raises(ValueError, match="claim alpha: its reference is stale"):
        reference_figures(reference, RUNS, CONFIGS, rule, repo)
