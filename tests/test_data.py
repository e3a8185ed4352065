"""Data stage: corpus specs and builds, tokenizer, token shards and their sampler."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from optclaims.atomic import atomic_output
from optclaims.data.corpus import build_corpus, parse_corpus_spec, read_documents
from optclaims.data.shards import TokenShard, tokenize_corpus
from optclaims.data.tokenizer import EOT, eot_id, load_tokenizer, train_tokenizer
from optclaims.errors import HubUnavailableError

PYCODE_BUDGET = 300_000
ROUND_TRIP_TEXTS = [
    "def f(x):\n\treturn x ** 2  # square\n",
    "s = 'héllo wörld — 你好, мир, 🙂🚀, e\u0301, \u200b'\r\nprint(s)\r\n",
    "x = '<|endoftext|>'  # a literal, not the special token\n",
    "  leading spaces\n\n\n   trailing   \n\x00\x7f\uffff",
    "",
]


# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("pycode", ("pycode", "")),
        ("pinned", ("pinned", "")),
        ("hf:roneneldan/TinyStories", ("hf", "roneneldan/TinyStories")),
        ("hf:wikitext:wikitext-2-raw-v1", ("hf", "wikitext:wikitext-2-raw-v1")),
        ("files:data/**/*.txt", ("files", "data/**/*.txt")),
        ("files:/no/such/dir/*.py", ("files", "/no/such/dir/*.py")),  # parsing does no I/O
    ],
)
def test_parse_corpus_spec_accepts_the_three_forms(spec, expected):
    assert parse_corpus_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "pycodes", "py", "hf:", "hf:a b", "hf:ds:", "files:", "wiki:en", "tinystories"])
def test_parse_corpus_spec_rejects_unknown_specs_naming_them(spec):
    with pytest.raises(ValueError) as err:
        parse_corpus_spec(spec)
    message = str(err.value)
    assert repr(spec) in message and "pycode" in message and "hf:<dataset>" in message and "files:<glob>" in message


# ----------------------------------------------------------------------------- pycode


@pytest.fixture(scope="module")
def pycode_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pycode")
    build_corpus("pycode", out, max_bytes=PYCODE_BUDGET)
    return out


def _manifest(corpus_dir: Path) -> dict:
    return json.loads((corpus_dir / "manifest.json").read_text())


def test_pycode_build_is_deterministic(pycode_corpus, tmp_path):
    again = build_corpus("pycode", tmp_path, max_bytes=PYCODE_BUDGET)
    first = _manifest(pycode_corpus)
    assert again["hash"] == first["hash"]
    assert again["files"] == first["files"]
    assert (tmp_path / "train.jsonl").read_bytes() == (pycode_corpus / "train.jsonl").read_bytes()


def test_pycode_sample_fills_budget_across_packages(pycode_corpus):
    m = _manifest(pycode_corpus)
    assert 0.9 * PYCODE_BUDGET <= m["n_bytes"] <= PYCODE_BUDGET
    assert m["python"] == platform.python_version()
    paths = [f["path"] for f in m["files"]]
    assert paths == sorted(paths)
    assert all(p.endswith(".py") and p.split("/")[0] in ("stdlib", "site-packages") for p in paths)
    top_level = {tuple(p.split("/")[:2]) for p in paths}
    assert len(top_level) >= 5, f"sample concentrated in {top_level}"


def test_pycode_has_no_test_files(pycode_corpus):
    for f in _manifest(pycode_corpus)["files"]:
        parts = f["path"].split("/")
        name = parts[-1]
        assert not set(parts[:-1]) & {"test", "tests", "testing"}, f["path"]
        assert not (name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"), f["path"]


def test_pycode_split_is_disjoint_and_matches_manifest(pycode_corpus):
    m = _manifest(pycode_corpus)
    docs = {split: list(read_documents(pycode_corpus, split)) for split in ("train", "val")}
    train_paths = {d["path"] for d in docs["train"]}
    val_paths = {d["path"] for d in docs["val"]}
    assert train_paths and val_paths and not train_paths & val_paths
    assert 4 <= len(val_paths) < len(train_paths)
    assert (m["n_train_files"], m["n_val_files"]) == (len(train_paths), len(val_paths))
    by_path = {f["path"]: f for f in m["files"]}
    for split, split_docs in docs.items():
        for d in split_docs:
            raw = d["text"].encode("utf-8")
            assert by_path[d["path"]] == {"path": d["path"], "sha256": hashlib.sha256(raw).hexdigest(),
                                          "bytes": len(raw), "split": split}
    assert m["train_bytes"] == sum(len(d["text"].encode()) for d in docs["train"])
    assert m["val_bytes"] + m["train_bytes"] == m["n_bytes"]
    assert len({f["sha256"] for f in m["files"]}) == m["n_files"]  # de-duplicated


def test_pycode_file_rules_on_a_fake_interpreter(tmp_path, monkeypatch):
    stdlib, site = tmp_path / "lib", tmp_path / "venv-site"
    files = {
        stdlib / "json" / "decoder.py": b"def decode(s):\n    return s\n",
        stdlib / "json" / "copy_of_decoder.py": b"def decode(s):\n    return s\n",  # duplicate content
        stdlib / "json" / "tests" / "helper.py": b"x = 1\n",
        stdlib / "unittest" / "test" / "support.py": b"x = 2\n",
        stdlib / "site-packages" / "nested.py": b"x = 3\n",  # the base interpreter's site-packages
        stdlib / "latin1.py": "s = 'caf\u00e9'\n".encode("latin-1"),  # not UTF-8
        stdlib / "empty.py": b"",
        stdlib / "README.txt": b"not python\n",
        site / "pkg" / "core.py": b"import os\n",
        site / "pkg" / "test_core.py": b"x = 4\n",
        site / "pkg" / "core_test.py": b"x = 5\n",
        site / "pkg" / "conftest.py": b"x = 6\n",
        site / "pkg" / "testing" / "utils.py": b"x = 7\n",
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    fake_paths = {"stdlib": str(stdlib), "purelib": str(site), "platlib": str(site)}
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: fake_paths)

    m = build_corpus("pycode", tmp_path / "out", min_val_docs=1)
    # copy_of_decoder.py sorts first, so it is the path kept for the shared content
    assert sorted(f["path"] for f in m["files"]) == ["site-packages/pkg/core.py", "stdlib/json/copy_of_decoder.py"]


# ----------------------------------------------------------------------------- pinned

ROOT = Path(__file__).resolve().parents[1]


def test_the_pinned_smoke_corpus_is_the_committed_one_and_only_pinned_pure_python():
    """Built here from the installed pins, the smoke corpus has exactly the hash committed beside its
    settings (a pin or corpus-code change fails this test before it moves every smoke figure)."""
    import yaml

    from optclaims.data.pinned import exact_pins

    smoke = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())["scales"]["smoke"]["corpus"]
    assert smoke["spec"] == "pinned"
    pins = exact_pins()
    assert pins["snakemake"] == "9.27.1" and "torch" not in pins and "pytest" not in pins  # extras left out
    m = build_corpus("pinned", Path(tempfile_dir()), max_bytes=smoke["max_bytes"], val_fraction=smoke["val_fraction"],
                     expected_hash=smoke["manifest_hash"])
    names = {s["name"] for s in m["sources"]}
    assert names <= set(pins) and {"snakemake", "lm-eval", "datasets"} <= names
    assert not names & {"pandas", "pyarrow", "matplotlib", "tokenizers", "safetensors", "pyyaml"}  # platform wheels
    assert m["n_bytes"] <= smoke["max_bytes"] and m["n_bytes"] > 0.99 * smoke["max_bytes"]
    assert not any("/tests/" in f["path"] or f["path"].split("/")[-1].startswith("test_") for f in m["files"])


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="pinned-")


def test_exact_pins_are_single_equals_without_markers():
    from optclaims.data.pinned import exact_pins

    reqs = ["a==1.0", "b>=2", "c==1.*", 'd==2; extra == "test"', "e[x]==3.1", "f==1,<2", "torch>=2.11"]
    assert exact_pins(reqs) == {"a": "1.0", "e": "3.1"}


def _fake_wheel(site: Path, name="fakepkg", version="1.0", tag="py3-none-any") -> dict[str, bytes]:
    """An installed wheel under site: two modules and a test file, with its RECORD."""
    import base64

    files = {f"{name}/core.py": b"def core():\n    return 1\n" * 50, f"{name}/util.py": b"X = 2\n" * 40,
             f"{name}/tests/test_core.py": b"assert True\n"}
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
    lines = []
    for rel, raw in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(raw)
        digest = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()
        lines.append(f"{rel},sha256={digest},{len(raw)}")
    (info / "RECORD").write_text("\n".join([*lines, f"{info.name}/RECORD,,"]) + "\n")
    return files


def test_a_pinned_distribution_missing_at_another_version_or_platform_specific_is_named(tmp_path):
    from optclaims.data.pinned import pinned_sources

    _fake_wheel(tmp_path / "site")
    _fake_wheel(tmp_path / "site", name="binpkg", tag="cp311-cp311-manylinux_2_17_x86_64")
    site = [str(tmp_path / "site")]
    assert [s["name"] for s in pinned_sources({"fakepkg": "1.0", "binpkg": "1.0"}, site)] == ["fakepkg"]
    with pytest.raises(ValueError, match=r"fakepkg is installed at 1.0, but optclaims pins fakepkg==2.0"):
        pinned_sources({"fakepkg": "2.0"}, site)
    with pytest.raises(ValueError, match=r"nosuchpkg==1.0 .* is not installed"):
        pinned_sources({"nosuchpkg": "1.0"}, site)
    with pytest.raises(ValueError, match="none of the exact pins"):
        pinned_sources({"binpkg": "1.0"}, site)
    # a compiled distribution gives no files: at another version (a GPU image's own) it changes nothing
    assert [s["name"] for s in pinned_sources({"fakepkg": "1.0", "binpkg": "0.9"}, site)] == ["fakepkg"]


def test_a_pinned_file_edited_after_install_stops_the_build_naming_it(tmp_path, monkeypatch):
    from optclaims.data import corpus, pinned

    files = _fake_wheel(tmp_path / "site")
    site = [str(tmp_path / "site")]
    monkeypatch.setattr(corpus, "pinned_sources", lambda: pinned.pinned_sources({"fakepkg": "1.0"}, site))
    m = build_corpus("pinned", tmp_path / "ok", min_val_docs=1)
    assert sorted(f["path"] for f in m["files"]) == ["fakepkg/core.py", "fakepkg/util.py"]  # tests left out
    assert m["sources"] == [{"name": "fakepkg", "version": "1.0"}]
    assert {f["sha256"] for f in m["files"]} == {hashlib.sha256(files[f"fakepkg/{n}.py"]).hexdigest() for n in ("core", "util")}
    (tmp_path / "site" / "fakepkg" / "util.py").write_bytes(b"X = 3\n" * 40)
    with pytest.raises(ValueError, match=r"fakepkg/util.py differs from its wheel's RECORD hash"):
        build_corpus("pinned", tmp_path / "edited", min_val_docs=1)
    assert not (tmp_path / "edited").exists()


def test_a_corpus_with_another_hash_than_the_committed_one_writes_nothing_and_names_what_it_read(tmp_path):
    from optclaims.errors import CorpusMismatchError

    _write_text_tree(tmp_path / "src")
    spec = f"files:{tmp_path}/src/a/**/*.txt"
    good = build_corpus(spec, tmp_path / "out", val_fraction=0.25, min_val_docs=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert build_corpus(spec, tmp_path / "out", val_fraction=0.25, min_val_docs=2, expected_hash=good["hash"])["hash"] == good["hash"]
    with pytest.raises(CorpusMismatchError, match=f"has manifest hash {good['hash']}, not the committed {'0' * 64}: "
                                                  r"it read 12 files \(\d+ bytes\)"):
        build_corpus(spec, tmp_path / "out", val_fraction=0.25, min_val_docs=2, expected_hash="0" * 64)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


# ----------------------------------------------------------------------------- files:<glob>


def _write_text_tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    for i in range(12):
        (root / "a" / ("b" if i % 2 else "") / f"doc{i:02d}.txt").write_text(f"document {i}: ünïcode ✓\n" * (i + 1))
    (root / "a" / "zcopy.txt").write_text("document 0: ünïcode ✓\n")  # same as doc00, sorts after
    (root / "a" / "b" / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    (root / "a" / "notes.md").write_text("not matched\n")


def test_files_corpus_recursive_glob(tmp_path):
    _write_text_tree(tmp_path / "src")
    m = build_corpus(f"files:{tmp_path}/src/a/**/*.txt", tmp_path / "out", val_fraction=0.25, min_val_docs=2)
    paths = [f["path"] for f in m["files"]]
    assert paths == sorted([f"doc{i:02d}.txt" if i % 2 == 0 else f"b/doc{i:02d}.txt" for i in range(12)])
    assert m["kind"] == "files" and m["python"] is None
    assert m["n_val_files"] >= 2 and m["n_train_files"] >= 1
    assert m["n_train_files"] + m["n_val_files"] == 12


def test_files_corpus_hash_does_not_depend_on_location(tmp_path):
    _write_text_tree(tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    h1 = build_corpus(f"files:{tmp_path}/one/**/*.txt", tmp_path / "out1")["hash"]
    h2 = build_corpus(f"files:{tmp_path}/two/**/*.txt", tmp_path / "out2")["hash"]
    assert h1 == h2
    (tmp_path / "two" / "a" / "doc02.txt").write_text("changed\n")
    assert build_corpus(f"files:{tmp_path}/two/**/*.txt", tmp_path / "out3")["hash"] != h1


def test_files_corpus_without_matches_names_the_glob(tmp_path):
    pattern = f"{tmp_path}/nothing/**/*.txt"
    with pytest.raises(ValueError, match="matches no files") as err:
        build_corpus(f"files:{pattern}", tmp_path / "out")
    assert pattern in str(err.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_atomic_output_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "train.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp:
            tmp.write_text("half a file")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- hf:<dataset>


def test_hf_offline_fails_fast_with_a_plain_message(tmp_path, monkeypatch):
    import datasets  # noqa: F401  imported first: the flag must work when set after the import

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(HubUnavailableError) as err:
        build_corpus("hf:optclaims-nonexistent/tiny-corpus", tmp_path / "out")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message
    assert "optclaims-nonexistent/tiny-corpus" in message and "not reachable" in message
    assert "pycode" in message and "files:<glob>" in message


def test_hf_corpus_uses_text_column_and_budget(tmp_path, monkeypatch):
    import datasets

    rows = {"id": list(range(40)), "title": [f"t{i}" for i in range(40)], "text": [f"story {i} " * 20 for i in range(40)]}
    calls = []

    def fake_load_dataset(path, name=None, split=None, streaming=False, **kwargs):
        calls.append((path, name, split, streaming))
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    m = build_corpus("hf:someone/stories:small", tmp_path / "out")
    assert calls == [("someone/stories", "small", "train", False)]
    texts = {d["text"] for split in ("train", "val") for d in read_documents(tmp_path / "out", split)}
    assert texts == set(rows["text"])
    assert m["n_val_files"] >= 4

    budget = sum(len(t.encode()) for t in rows["text"][:10])
    m = build_corpus("hf:someone/stories", tmp_path / "budget", max_bytes=budget)
    assert calls[-1][3] is True  # streamed when only a prefix is needed
    assert m["n_files"] == 10 and m["n_bytes"] == budget


# ----------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer_path(pycode_corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(pycode_corpus, path, vocab_size=512)
    return path


def test_tokenizer_vocab_and_eot(tokenizer_path):
    tok = load_tokenizer(tokenizer_path)
    assert tok.get_vocab_size() == 512
    assert eot_id(tok) == 0 and tok.id_to_token(0) == EOT


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_tokenizer_round_trip(tokenizer_path, text):
    tok = load_tokenizer(tokenizer_path)
    ids = tok.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert eot_id(tok) not in ids  # a literal "<|endoftext|>" is text, not the separator


def test_tokenizer_round_trips_corpus_files(pycode_corpus, tokenizer_path):
    tok = load_tokenizer(tokenizer_path)
    texts = [d["text"] for d in read_documents(pycode_corpus, "val")]
    for text, enc in zip(texts, tok.encode_batch(texts)):
        assert tok.decode(enc.ids) == text


def test_tokenizer_training_is_deterministic(pycode_corpus, tokenizer_path, tmp_path):
    train_tokenizer(pycode_corpus, tmp_path / "again.json", vocab_size=512)
    assert (tmp_path / "again.json").read_bytes() == tokenizer_path.read_bytes()


# ----------------------------------------------------------------------------- shards


@pytest.fixture(scope="module")
def shard_dir(pycode_corpus, tokenizer_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    tokenize_corpus(pycode_corpus, tokenizer_path, out)
    return out


def test_shards_hold_every_document_followed_by_eot(pycode_corpus, tokenizer_path, shard_dir):
    info = json.loads((shard_dir / "shards.json").read_text())
    tok = load_tokenizer(tokenizer_path)
    assert info["dtype"] == "uint16" and info["vocab_size"] == 512
    assert info["corpus_hash"] == _manifest(pycode_corpus)["hash"]
    assert info["tokenizer_sha256"] == hashlib.sha256(tokenizer_path.read_bytes()).hexdigest()
    for split in ("train", "val"):
        texts = [d["text"] for d in read_documents(pycode_corpus, split)]
        expected = np.concatenate([np.array(tok.encode(t).ids + [0], dtype=np.uint16) for t in texts])
        stored = np.fromfile(shard_dir / f"{split}.bin", dtype=np.uint16)
        np.testing.assert_array_equal(stored, expected)
        shard = TokenShard(shard_dir, split)
        assert len(shard) == info["splits"][split]["n_tokens"] == len(expected)
        assert shard.n_bytes == sum(len(t.encode("utf-8")) for t in texts)
        assert shard.bytes_per_token == pytest.approx(shard.n_bytes / len(expected))
        assert info["splits"][split]["sha256"] == hashlib.sha256(stored.tobytes()).hexdigest()


def test_batches_from_real_shards(shard_dir):
    shard = TokenShard(shard_dir, "train")
    x, y = shard.batch(step=3, batch_size=4, seq_len=32, seed=7)
    assert x.shape == y.shape == (4, 32) and x.dtype == y.dtype == torch.int64
    assert int(x.max()) < 512 and int(x.min()) >= 0
    assert torch.equal(x[:, 1:], y[:, :-1])


def _arange_shard(directory: Path, n_tokens: int) -> TokenShard:
    """A shard whose token at position i is i, so windows reveal where they start."""
    directory.mkdir(parents=True, exist_ok=True)
    np.arange(n_tokens, dtype=np.uint16).tofile(directory / "train.bin")
    split = {"n_tokens": n_tokens, "n_bytes": 3 * n_tokens, "sha256": ""}
    info = {"dtype": "uint16", "vocab_size": 65536, "splits": {"train": split}, "tokenizer_sha256": "", "corpus_hash": ""}
    (directory / "shards.json").write_text(json.dumps(info))
    return TokenShard(directory, "train")


def test_batch_depends_only_on_seed_and_step(tmp_path):
    shard = _arange_shard(tmp_path, 10_000)
    x, y = shard.batch(step=5, batch_size=8, seq_len=16, seed=1)
    fresh = _arange_shard(tmp_path, 10_000)
    shard.batch(step=6, batch_size=8, seq_len=16, seed=1)  # other draws in between change nothing
    x2, y2 = fresh.batch(step=5, batch_size=8, seq_len=16, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, shard.batch(step=6, batch_size=8, seq_len=16, seed=1)[0])
    assert not torch.equal(x, shard.batch(step=5, batch_size=8, seq_len=16, seed=2)[0])
    starts = x[:, :1]
    assert torch.equal(x, starts + torch.arange(16)) and torch.equal(y, starts + 1 + torch.arange(16))
    assert int(y.max()) < 10_000


def test_batch_on_a_too_short_split_raises(tmp_path):
    shard = _arange_shard(tmp_path, 16)
    shard.batch(step=0, batch_size=2, seq_len=15, seed=0)  # exactly seq_len + 1 tokens is enough
    with pytest.raises(ValueError, match="fewer than seq_len"):
        shard.batch(step=0, batch_size=2, seq_len=16, seed=0)


def test_eval_batches_are_fixed_non_overlapping_and_spread(tmp_path):
    shard = _arange_shard(tmp_path, 10_000)
    batches = shard.eval_batches(n_batches=5, batch_size=4, seq_len=63)
    assert len(batches) == 5 and all(x.shape == (4, 63) for x, _ in batches)
    again = shard.eval_batches(n_batches=5, batch_size=4, seq_len=63)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    starts = np.array([int(x[i, 0]) for x, _ in batches for i in range(len(x))])
    for x, y in batches:
        assert torch.equal(x, x[:, :1] + torch.arange(63)) and torch.equal(y, x + 1)
    assert starts[0] == 0 and starts[-1] == 10_000 - 64  # first and last window of the split
    assert np.all(np.diff(starts) >= 64)  # windows (x plus the last target) never overlap


def test_eval_batches_on_a_short_split_gives_fewer(tmp_path):
    shard = _arange_shard(tmp_path, 200)
    batches = shard.eval_batches(n_batches=10, batch_size=2, seq_len=31)  # room for 6 windows of 32
    assert [len(x) for x, _ in batches] == [2, 2, 2]
    starts = sorted(int(x[i, 0]) for x, _ in batches for i in range(len(x)))
    assert np.all(np.diff(starts) >= 32) and starts[-1] + 32 <= 200
