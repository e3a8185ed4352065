"""Text corpora: a registry of sources, written as train/val JSON-lines plus a manifest.

Corpus specs (strings, so they fit in a run config):

    pinned                       Python source of the pure-Python distributions optclaims pins
                                 exactly, as their wheels ship it: the same on every machine with
                                 the same pins (data/pinned.py)
    pycode                       Python source of the running interpreter (stdlib + site-packages)
    hf:<dataset>[:<config>]      a Hugging Face dataset, split 'train' (needs the hub or its cache)
    files:<glob>                 local text files; ``**`` matches directories recursively

``build_corpus`` writes ``train.jsonl`` and ``val.jsonl`` (one ``{"path", "text"}`` object per
document) and ``manifest.json``. Documents are split by a hash of their path, so a document's
split never depends on what else is in the corpus. Given the hash a corpus should have (committed
beside its settings), the build compares before it writes anything and names what it read.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import re
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from ..atomic import atomic_output, write_json
from ..errors import CorpusMismatchError, HubUnavailableError
from .pinned import check_record, pinned_files, pinned_sources

SPEC_FORMS = "'pinned', 'pycode', 'hf:<dataset>[:<config>]' or 'files:<glob>'"
LOCAL_SPECS = ("pinned", "pycode")
TEST_DIR_NAMES = {"test", "tests", "testing"}
DEFAULT_MIN_VAL_DOCS = 4
HF_DATASET_NAME = re.compile(r"[\w.\-]+(/[\w.\-]+)?")  # name or owner/name
HF_CONFIG_NAME = re.compile(r"[\w.\-]+")


@dataclass(frozen=True)
class Document:
    path: str
    text: str
    sha256: str
    n_bytes: int


# --------------------------------------------------------------------------- spec parsing


def parse_corpus_spec(spec: str) -> tuple[str, str]:
    """Split a corpus spec into (kind, argument) without touching disk or network."""
    if not isinstance(spec, str):
        raise ValueError(f"corpus spec must be a string, got {spec!r}; expected {SPEC_FORMS}")
    spec = spec.strip()
    if spec in LOCAL_SPECS:
        return spec, ""
    kind, sep, arg = spec.partition(":")
    if sep and kind == "hf":
        dataset, has_config, config = arg.partition(":")
        if HF_DATASET_NAME.fullmatch(dataset) and (not has_config or HF_CONFIG_NAME.fullmatch(config)):
            return "hf", arg
    if sep and kind == "files" and arg.strip():
        return "files", arg
    raise ValueError(f"unknown corpus spec {spec!r}; expected {SPEC_FORMS}")


# --------------------------------------------------------------------------- building


def build_corpus(
    spec: str,
    out_dir: Path,
    *,
    max_bytes: int | None = None,
    val_fraction: float = 0.1,
    min_val_docs: int = DEFAULT_MIN_VAL_DOCS,
    expected_hash: str | None = None,
) -> dict:
    """Write out_dir/{train,val}.jsonl and out_dir/manifest.json; return the manifest.

    ``max_bytes`` caps the total UTF-8 size of the documents kept. Every file is written
    atomically and the manifest last, so a manifest on disk means a complete corpus. With
    ``expected_hash`` a corpus of another hash raises CorpusMismatchError and writes nothing.
    """
    kind, arg = parse_corpus_spec(spec)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")

    sources = None
    if kind == "pinned":
        sources = pinned_sources()
        docs = _pinned_documents(sources, max_bytes)
    elif kind == "pycode":
        docs = _select_files(_pycode_files(), max_bytes)
    elif kind == "files":
        docs = _select_files(_glob_files(arg), max_bytes)
    else:
        docs = _hf_documents(arg, max_bytes)
    docs = sorted(_unique_by_content(docs), key=lambda d: d.path)
    if len(docs) < 2:
        raise ValueError(f"corpus {spec!r} has {len(docs)} usable document(s); need at least 2")

    val_paths = _validation_paths([d.path for d in docs], val_fraction, min_val_docs)
    splits = {"train": [d for d in docs if d.path not in val_paths],
              "val": [d for d in docs if d.path in val_paths]}

    manifest = _manifest(spec, kind, splits, max_bytes=max_bytes, val_fraction=val_fraction)
    if sources is not None:
        manifest["sources"] = [{"name": s["name"], "version": s["version"]} for s in sources]
    if expected_hash is not None and manifest["hash"] != expected_hash:
        raise CorpusMismatchError(_mismatch(manifest, expected_hash))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, split_docs in splits.items():
        with atomic_output(out_dir / f"{split}.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
            for d in split_docs:
                f.write(json.dumps({"path": d.path, "text": d.text}, ensure_ascii=False) + "\n")
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def read_documents(corpus_dir: Path, split: str) -> Iterator[dict]:
    """Stream the {"path", "text"} objects of one split of a built corpus."""
    with open(Path(corpus_dir) / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def read_text_batches(corpus_dir: Path, split: str, batch_size: int = 256) -> Iterator[list[str]]:
    """Stream the texts of one split in lists of up to batch_size."""
    texts = (doc["text"] for doc in read_documents(corpus_dir, split))
    while batch := list(islice(texts, batch_size)):
        yield batch


def _manifest(spec: str, kind: str, splits: dict[str, list[Document]], **options) -> dict:
    files = sorted(
        ({"path": d.path, "sha256": d.sha256, "bytes": d.n_bytes, "split": split}
         for split, docs in splits.items() for d in docs),
        key=lambda f: f["path"],
    )
    identity = [[f["path"], f["sha256"], f["split"]] for f in files]
    train_bytes = sum(d.n_bytes for d in splits["train"])
    val_bytes = sum(d.n_bytes for d in splits["val"])
    return {
        "spec": spec,
        "kind": kind,
        **options,
        "n_files": len(files),
        "n_bytes": train_bytes + val_bytes,
        "n_train_files": len(splits["train"]),
        "n_val_files": len(splits["val"]),
        "train_bytes": train_bytes,
        "val_bytes": val_bytes,
        "python": platform.python_version() if kind == "pycode" else None,
        "files": files,
        "hash": hashlib.sha256(json.dumps(identity).encode()).hexdigest(),
    }


def _mismatch(manifest: dict, expected: str) -> str:
    read = ", ".join(f"{s['name']} {s['version']}" for s in manifest.get("sources", [])) or manifest["spec"]
    return (f"corpus {manifest['spec']!r} (max_bytes={manifest['max_bytes']}, val_fraction={manifest['val_fraction']}) "
            f"has manifest hash {manifest['hash']}, not the committed {expected}: it read {manifest['n_files']} files "
            f"({manifest['n_bytes']} bytes) of {read}. Its figures would not be comparable with the baseline's. "
            f"If the pins, the corpus settings or the corpus code changed on purpose, commit the new hash (manifest_hash "
            f"beside the corpus settings; null checks nothing) and bless the baseline again")


def _validation_paths(paths: list[str], val_fraction: float, min_val_docs: int) -> set[str]:
    """Paths whose hash falls below val_fraction; topped up to min_val_docs, never all of them."""
    by_hash = sorted(paths, key=lambda p: _unit_hash("split", p))
    n_val = sum(_unit_hash("split", p) < val_fraction for p in paths)
    n_val = min(max(n_val, min_val_docs, 1), len(paths) - 1)
    return set(by_hash[:n_val])


def _unit_hash(salt: str, key: str) -> float:
    """A deterministic number in [0, 1) for key; different salts give independent orders."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _unique_by_content(docs: Iterable[Document]) -> Iterator[Document]:
    seen: set[str] = set()
    for d in docs:
        if d.sha256 not in seen:
            seen.add(d.sha256)
            yield d


def _document(path: str, raw: bytes) -> Document | None:
    """A document from raw bytes, or None if they are empty or not valid UTF-8."""
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Document(path, text, hashlib.sha256(raw).hexdigest(), len(raw))


# --------------------------------------------------------------------------- local files


def _select_files(files: list[tuple[str, Path]], max_bytes: int | None) -> Iterator[Document]:
    """Read (record path, file) pairs into documents, within the byte budget if there is one.

    Without a budget, files are read in path order. With one, they are visited in an order
    fixed by a hash of the path, so the sample is spread over all packages and identical on
    every call; a file that no longer fits is skipped (its size comes from stat, and a valid
    UTF-8 file's text has exactly that many bytes).
    """
    if max_bytes is None:
        for rel, path in sorted(files):
            doc = _document(rel, path.read_bytes())
            if doc:
                yield doc
        return
    budget = max_bytes
    seen: set[str] = set()
    for rel, path in sorted(files, key=lambda f: (_unit_hash("select", f[0]), f[0])):
        if path.stat().st_size > budget:
            continue
        doc = _document(rel, path.read_bytes())
        if doc and doc.sha256 not in seen and doc.n_bytes <= budget:
            seen.add(doc.sha256)
            budget -= doc.n_bytes
            yield doc


def _pinned_documents(sources: list[dict], max_bytes: int | None) -> Iterator[Document]:
    """The pinned corpus's documents, each checked against its wheel's RECORD hash."""
    files = {f.path: f for f in pinned_files(sources, keep=lambda rel: not _in_tests(rel))}
    for doc in _select_files([(rel, f.location) for rel, f in files.items()], max_bytes):
        check_record(files[doc.path], doc.text.encode("utf-8"))
        yield doc


def _in_tests(rel: str) -> bool:
    *dirs, name = rel.split("/")
    return any(_is_test_name(d) for d in dirs) or _is_test_file(name)


def _pycode_files() -> list[tuple[str, Path]]:
    """(record path, file) for the interpreter's stdlib and site-packages .py files, tests excluded."""
    paths = sysconfig.get_paths()
    site_roots = {Path(paths["purelib"]).resolve(), Path(paths["platlib"]).resolve()}
    roots = [("stdlib", Path(paths["stdlib"]).resolve())] + [("site-packages", r) for r in sorted(site_roots)]
    skip_dirs = {r for _, r in roots}
    files: dict[str, Path] = {}
    for prefix, root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            # the stdlib folder may hold site-packages; walk each root only under its own prefix
            dirnames[:] = sorted(
                d for d in dirnames
                if d != "__pycache__" and not _is_test_name(d)
                and (here / d) not in skip_dirs
                and not (prefix == "stdlib" and here == root and d in ("site-packages", "dist-packages"))
            )
            for name in filenames:
                if name.endswith(".py") and not _is_test_file(name) and not name.startswith("__editable__"):
                    rel = f"{prefix}/{(here / name).relative_to(root).as_posix()}"
                    files.setdefault(rel, here / name)
    return list(files.items())


def _is_test_name(name: str) -> bool:
    return name in TEST_DIR_NAMES or name.startswith("test_") or name.endswith(("_test", "_tests"))


def _is_test_file(name: str) -> bool:
    return name == "conftest.py" or _is_test_name(name.removesuffix(".py"))


def _glob_files(pattern: str) -> list[tuple[str, Path]]:
    """Files matching pattern, recorded relative to the pattern's literal leading directory."""
    matches = [Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    if not matches:
        raise ValueError(f"corpus glob {pattern!r} matches no files")
    literal_parts = []
    for part in Path(pattern).parts[:-1]:
        if glob.has_magic(part):
            break
        literal_parts.append(part)
    base = Path(*literal_parts) if literal_parts else Path(".")
    return [(os.path.relpath(p, base).replace(os.sep, "/"), p) for p in matches]


# --------------------------------------------------------------------------- Hugging Face


def _hf_documents(arg: str, max_bytes: int | None) -> list[Document]:
    """Documents of a hub dataset's 'train' split ('text' column, else the first string column).

    With a byte budget the dataset is streamed and read in its own order until the budget is
    spent; without one (or offline, where only the local cache can serve it) it is loaded whole.
    """
    dataset, _, config = arg.partition(":")
    offline = _env_flag("HF_HUB_OFFLINE") or _env_flag("HF_DATASETS_OFFLINE")
    unreachable = (
        f"could not load Hugging Face dataset {dataset!r}: the Hugging Face hub is not reachable "
        f"and the dataset is not in the local cache; use the 'pycode' or 'files:<glob>' corpus instead"
    )
    import datasets  # imported here: slow to import and only this source needs it

    docs: list[Document] = []
    budget = max_bytes
    try:
        with _hub_offline_mode(offline):
            ds = datasets.load_dataset(dataset, config or None, split="train",
                                       streaming=max_bytes is not None and not offline)
            for i, text in enumerate(_text_column(ds)):
                doc = _document(f"{dataset}/{i:08d}", text.encode("utf-8")) if text else None
                if doc is None:
                    continue
                if budget is not None:
                    if doc.n_bytes > budget:
                        break
                    budget -= doc.n_bytes
                docs.append(doc)
    except Exception as e:
        if _is_connection_error(e):
            raise HubUnavailableError(unreachable) from e
        raise
    return docs


def _text_column(ds) -> Iterator[str]:
    column = None
    for batch in ds.iter(batch_size=1000):
        if column is None:
            string_columns = [k for k, v in batch.items() if v and isinstance(v[0], str)]
            if not string_columns:
                raise ValueError(f"dataset has no string column (columns: {list(batch)})")
            column = "text" if "text" in string_columns else string_columns[0]
        yield from batch[column]


def _is_connection_error(error: BaseException) -> bool:
    """True if error (or any error it was raised from) comes from an unreachable network."""
    names = {"ConnectError", "ConnectTimeout", "TimeoutException", "OfflineModeIsEnabled",
             "LocalEntryNotFoundError"}
    while error is not None:
        if isinstance(error, (ConnectionError, TimeoutError)) or type(error).__name__ in names:
            return True
        error = error.__cause__ or error.__context__
    return False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextlib.contextmanager
def _hub_offline_mode(offline: bool):
    """Apply an offline flag set after `datasets` was imported (both libraries read it at import)."""
    if not offline:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved

