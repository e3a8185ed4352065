"""Every file the suite writes goes through here: written under a temporary name beside its target
and renamed into place, so a killed job never leaves a torn file that Snakemake (or a reader)
would take as complete."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: Path):
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def held_locks(paths):
    """Hold an exclusive flock on each of ``paths`` (created if missing) for the block. Taken in
    sorted order, so two holders of overlapping sets wait for each other instead of deadlocking;
    the kernel drops a killed holder's locks."""
    fds = []
    try:
        for path in sorted(set(map(Path, paths))):
            path.parent.mkdir(parents=True, exist_ok=True)
            fds.append(os.open(path, os.O_RDONLY | os.O_CREAT, 0o666))
            fcntl.flock(fds[-1], fcntl.LOCK_EX)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(o):
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
