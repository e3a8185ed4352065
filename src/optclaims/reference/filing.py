"""``optclaims file-reference``: check an archive made by ``pack-reference``, then put each of its
claims' folders in place under ``results/reference/gpu/``. Every claim is unpacked into a hidden
staging folder and checked there first; only when all are whole are they swapped in (one rename
each), so a refused or interrupted filing leaves the committed references as they were."""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import uuid
from pathlib import Path, PurePosixPath

from ..atomic import file_sha256, read_json
from ..report.build import load_verdict
from . import layout
from .claim_code import known_claims
from .pack import check_verdict

PROVENANCE_KEYS = ("claim", "scale", "made", "claim_code", "devices", "files")


def read_archive(path: Path) -> dict[str, dict[str, bytes]]:
    """{claim: {relative path: bytes}}; refuses anything but plain files (and links to them) under
    a claim folder."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"archive: {str(path)!r} is not a file")
    size = path.stat().st_size
    if size > layout.MAX_ARCHIVE_BYTES:
        raise ValueError(f"archive: {path} is {size / 2**20:.1f} MiB, over the "
                         f"{layout.MAX_ARCHIVE_BYTES / 2**20:.0f} MiB a reference may take")
    folders: dict[str, dict[str, bytes]] = {}
    contents: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                name = PurePosixPath(m.name)
                if m.isdir():
                    continue
                if name.is_absolute() or ".." in name.parts or len(name.parts) < 2 or name.parts[0].startswith("."):
                    raise ValueError(f"archive: member {m.name!r} is not a path inside a claim folder")
                if m.islnk():
                    if m.linkname not in contents:
                        raise ValueError(f"archive: member {m.name!r} links to {m.linkname!r}, which is not before it")
                    data = contents[m.linkname]
                elif m.isfile():
                    total += m.size
                    if total > layout.MAX_UNPACKED_BYTES:
                        raise ValueError(f"archive: unpacks to more than {layout.MAX_UNPACKED_BYTES / 2**20:.0f} MiB")
                    data = tar.extractfile(m).read()
                else:
                    raise ValueError(f"archive: member {m.name!r} is not a plain file")
                contents[m.name] = data
                folders.setdefault(name.parts[0], {})[PurePosixPath(*name.parts[1:]).as_posix()] = data
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"archive: {path} is not a readable .tgz ({e})") from None
    if not folders:
        raise ValueError(f"archive: {path} holds no claim folder")
    return folders


def check_reference_folder(folder: Path, claim: str) -> dict:
    """A whole reference: an evidential gpu verdict of this claim, provenance with every key, every
    file listed there with its sha256 (and no other), every run of the verdict and every figure.
    Returns the provenance."""
    folder = Path(folder)
    verdict_path = folder / layout.VERDICT
    if not verdict_path.is_file():
        raise ValueError(f"claim {claim}: the reference holds no {layout.VERDICT}")
    verdict = load_verdict(verdict_path)
    check_verdict(verdict, claim, f"{claim}/{layout.VERDICT}")
    prov_path = folder / layout.PROVENANCE
    if not prov_path.is_file():
        raise ValueError(f"claim {claim}: the reference holds no {layout.PROVENANCE}")
    prov = read_json(prov_path)
    for key in PROVENANCE_KEYS:
        if key not in prov:
            raise ValueError(f"claim {claim}: {layout.PROVENANCE} has no key {key!r}")
    if prov["claim"] != claim or prov["scale"] != layout.SCALE:
        raise ValueError(f"claim {claim}: {layout.PROVENANCE} is for claim = {prov['claim']!r}, scale = {prov['scale']!r}")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {layout.PROVENANCE}
    listed = set(prov["files"])
    if present - listed:
        raise ValueError(f"claim {claim}: file(s) not in its provenance: {', '.join(sorted(present - listed))}")
    if listed - present:
        raise ValueError(f"claim {claim}: file(s) listed in its provenance are missing: {', '.join(sorted(listed - present))}")
    for rel in sorted(listed):
        if file_sha256(folder / rel) != prov["files"][rel]:
            raise ValueError(f"claim {claim}: {rel} does not match the sha256 its provenance records")
    for rid in verdict["runs"]:
        for name in layout.REQUIRED_RUN_FILES:
            if f"{layout.RUNS}/{rid}/{name}" not in listed:
                raise ValueError(f"claim {claim}: run {rid} of its verdict has no {name}")
    for fig in verdict.get("figures") or []:
        if fig["file"] not in listed:
            raise ValueError(f"claim {claim}: figure {fig['file']} of its verdict is missing")
    return prov


def _remove_leftovers(ref_dir: Path) -> None:
    """Staging and old folders of an earlier filing that was killed."""
    for p in ref_dir.glob(".*.incoming-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in ref_dir.glob(".*.old-*"):
        shutil.rmtree(p, ignore_errors=True)


def file_reference(archive: Path, ref_dir: Path = layout.REFERENCE_DIR, root: Path = Path(".")) -> list[str]:
    """File every claim of ``archive`` into ``ref_dir/<claim>/``, replacing what was there."""
    folders = read_archive(archive)
    known = known_claims(root)
    for claim in folders:
        if claim not in known:
            raise ValueError(f"archive: claim {claim!r} is not a claim of this checkout (known claims: {', '.join(known)})")
    ref_dir = Path(ref_dir)
    ref_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(ref_dir)
    token = uuid.uuid4().hex[:12]
    staged = {c: ref_dir / f".{c}.incoming-{token}" for c in folders}
    try:
        for claim, files in folders.items():
            for rel, data in files.items():
                path = staged[claim] / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            check_reference_folder(staged[claim], claim)
    except BaseException:
        for p in staged.values():
            shutil.rmtree(p, ignore_errors=True)
        raise
    for claim, stage in staged.items():
        target, old = ref_dir / claim, ref_dir / f".{claim}.old-{token}"
        if target.exists():
            target.rename(old)
        stage.rename(target)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(old)
    return sorted(folders)
