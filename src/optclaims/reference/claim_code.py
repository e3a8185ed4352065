"""The code a claim's reference depends on, and its hash: a reference is *stale* when the hash of
this checkout's claim code differs from the one recorded in its provenance.json.

A claim's code is
- every file of ``reproductions/<claim>/`` except its prose (``*.md``) and its tests (``test_*.py``,
  ``conftest.py``: they check the analysis, they do not change it), and the same of every
  other claim its claim.yaml names (``claim: <other>`` anywhere below the top level, e.g.
  adam_update_rms's ``size_sweep``, whose runs it reads), transitively;
- the library ``src/optclaims/`` (``*.py``, schemas, task templates), except the modules that only
  present, record, schedule or move results (``NOT_CLAIM_CODE``): a new module counts until it is
  listed there, so a change is never missed;
- the gpu scale's settings in ``workflows/config/config.yaml`` (corpus, vocabulary, populations,
  evaluation), hashed as canonical JSON, so edits to other scales do not count.

Each file is hashed with its line endings normalised to ``\\n``; the claim-code hash is the sha256
of the sorted ``path sha256`` lines (paths relative to the repository root, POSIX). It depends on
contents alone: not on mtimes, checkout location or line-ending conversion.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from ..claims import list_claims

LIBRARY = "src/optclaims"
REPRODUCTIONS = "reproductions"
WORKFLOW_CONFIG = "workflows/config/config.yaml"
REFERENCE_SCALE = "gpu"
# Library paths (relative to src/optclaims) that cannot change what a run or an analysis computes.
NOT_CLAIM_CODE = ("report/", "regression/", "reference/", "comparison/", "cli.py", "cost.py", "bench.py", "devices.py",
                  "provenance.py", "atomic.py", "errors.py", "run_fields.py", "markdown_block.py", "claims_table.py")
SKIPPED_PARTS = ("__pycache__",)


def _claim_code(path: Path) -> bool:
    """A file of a claim folder that can change what its analysis computes: not prose, not a test."""
    return path.suffix != ".md" and not (path.suffix == ".py" and (path.name.startswith("test_") or path.name == "conftest.py"))


def content_sha256(data: bytes) -> str:
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and not p.suffix == ".pyc" and not set(SKIPPED_PARTS) & set(p.parts))


def known_claims(root: Path) -> list[str]:
    return list_claims(Path(root) / REPRODUCTIONS)


def _named_claims(node, known: set[str], top: bool = True) -> set[str]:
    """Values of ``claim:`` keys below the top level of a claim.yaml that name a known claim."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "claim" and not top and isinstance(value, str) and value in known:
                found.add(value)
            found |= _named_claims(value, known, top=False)
    elif isinstance(node, list):
        for value in node:
            found |= _named_claims(value, known, top=False)
    return found


def claim_folders(claim: str, root: Path) -> list[str]:
    """The claim and every claim it reads runs of (transitively), sorted."""
    root = Path(root)
    known = set(known_claims(root))
    if claim not in known:
        raise ValueError(f"unknown claim {claim!r} (known claims: {', '.join(sorted(known)) or 'none'})")
    todo, seen = [claim], set()
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        spec = yaml.safe_load((root / REPRODUCTIONS / c / "claim.yaml").read_text(encoding="utf-8"))
        todo += sorted(_named_claims(spec, known) - seen)
    return sorted(seen)


def claim_code_files(claim: str, root: Path) -> dict[str, str]:
    """{path relative to the repository root: sha256 of its normalised content} of a claim's code."""
    root = Path(root)
    library = root / LIBRARY
    if not library.is_dir():
        raise ValueError(f"no library at {library}: the claim-code hash is computed from a checkout")
    hashes = {}
    for c in claim_folders(claim, root):
        for path in _files(root / REPRODUCTIONS / c):
            if _claim_code(path):
                hashes[path.relative_to(root).as_posix()] = content_sha256(path.read_bytes())
    for path in _files(library):
        rel = path.relative_to(library).as_posix()
        if not rel.startswith(NOT_CLAIM_CODE):
            hashes[path.relative_to(root).as_posix()] = content_sha256(path.read_bytes())
    config = yaml.safe_load((root / WORKFLOW_CONFIG).read_text(encoding="utf-8"))
    settings = json.dumps(config["scales"][REFERENCE_SCALE], sort_keys=True, separators=(",", ":"))
    hashes[f"{WORKFLOW_CONFIG}#scales.{REFERENCE_SCALE}"] = content_sha256(settings.encode())
    return dict(sorted(hashes.items()))


def code_hash(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{p} {h}\n" for p, h in sorted(files.items())).encode()).hexdigest()


def claim_code(claim: str, root: Path) -> dict:
    """``{"hash", "files"}``: what a reference's provenance records."""
    files = claim_code_files(claim, root)
    return {"hash": code_hash(files), "files": files}


def changed_files(recorded: dict, current: dict) -> list[str]:
    """Paths whose hash differs, or that are in only one of the two (sorted): why a claim is stale."""
    a, b = recorded.get("files") or {}, current.get("files") or {}
    return sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p))


def staleness(recorded: dict, root: Path, claim: str) -> dict:
    """``{"stale", "recorded", "current", "changed"}`` for a reference's recorded claim code; a claim
    no longer in this checkout is stale, its folder named as changed."""
    if claim not in known_claims(root):
        return {"stale": True, "recorded": recorded.get("hash"), "current": None,
                "changed": [f"{REPRODUCTIONS}/{claim}/ (no longer in this checkout)"]}
    current = claim_code(claim, root)
    stale = recorded.get("hash") != current["hash"]
    return {"stale": stale, "recorded": recorded.get("hash"), "current": current["hash"],
            "changed": changed_files(recorded, current) if stale else []}
