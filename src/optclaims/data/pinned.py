"""The files of the ``pinned`` corpus: the Python source of the distributions optclaims pins exactly
(``name==version`` in its requirements, extras left out) whose wheel is pure Python
(``py3-none-any``), as those wheels ship it. A pin fixes such a wheel's bytes, so every machine with
the same pins reads the same files, whatever its platform or Python; each file is checked against
its distribution's RECORD hash, so an edited install stops the build instead of changing the corpus.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

PROJECT = "optclaims"
PURE_TAGS = {"py3-none-any", "py2.py3-none-any"}


@dataclass(frozen=True)
class PinnedFile:
    path: str        # as the wheel's RECORD names it, e.g. "seaborn/axisgrid.py"
    location: Path   # where it is installed
    sha256: str      # hex, from RECORD


def exact_pins(requirements: list[str] | None = None) -> dict[str, str]:
    """{distribution: version} for the requirements pinned with a single ``==`` and no marker."""
    if requirements is None:
        requirements = metadata.requires(PROJECT) or []
    pins = {}
    for text in requirements:
        req = Requirement(text)
        specs = list(req.specifier)
        if req.marker is None and len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
            pins[req.name] = specs[0].version
    return pins


def _is_pure(dist: metadata.Distribution) -> bool:
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    return bool(tags) and all(t in PURE_TAGS for t in tags)


def _record_hex(value: str) -> str:
    """RECORD's urlsafe-base64 sha256 digest (no padding) as hex."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def pinned_sources(pins: dict[str, str] | None = None, path: list[str] | None = None) -> list[dict]:
    """[{"name", "version"}] of the pure-Python pinned distributions, sorted by name. Raises
    ValueError naming the distribution when a pinned one is missing, or installed pure-Python at
    another version. A platform-specific one (pandas, tokenizers) gives no files, so its version does
    not change the corpus (the fingerprint names it where it changes the runs): a GPU image with its
    own compiled packages builds the same corpus."""
    pins = exact_pins() if pins is None else pins
    sources = []
    for name, version in sorted(pins.items()):
        where = {} if path is None else {"path": path}  # default: sys.path
        dist = next(iter(metadata.distributions(name=name, **where)), None)
        if dist is None:
            raise ValueError(f"corpus 'pinned': {name}=={version} (pinned in {PROJECT}'s requirements) is not installed")
        if not _is_pure(dist):
            continue
        if dist.version != version:
            raise ValueError(f"corpus 'pinned': {name} is installed at {dist.version}, but {PROJECT} pins "
                             f"{name}=={version}; install the pinned version (pip install '{name}=={version}')")
        sources.append({"name": name, "version": version, "dist": dist})
    if not sources:
        raise ValueError(f"corpus 'pinned': none of the exact pins {sorted(pins)} is a pure-Python wheel")
    return sources


def pinned_files(sources: list[dict], keep) -> list[PinnedFile]:
    """The .py files that ``keep(record_path)`` accepts, of the given sources, with their RECORD hashes."""
    files = []
    for source in sources:
        for f in source["dist"].files or []:
            rel = f.as_posix()
            if not rel.endswith(".py") or rel.startswith("..") or not keep(rel):
                continue
            if f.hash is None or f.hash.mode != "sha256":
                raise ValueError(f"corpus 'pinned': {source['name']} {source['version']}: RECORD has no sha256 for {rel}")
            files.append(PinnedFile(rel, Path(f.locate()), _record_hex(f.hash.value)))
    return files


def check_record(file: PinnedFile, raw: bytes) -> None:
    """Raise ValueError naming the file if its installed bytes are not the wheel's."""
    if hashlib.sha256(raw).hexdigest() != file.sha256:
        raise ValueError(f"corpus 'pinned': {file.location} differs from its wheel's RECORD hash "
                         f"(edited after install?); reinstall the distribution that ships {file.path}")
