"""``optclaims pack-reference``: a gpu results folder -> one archive of the reference layout, small
enough for one short GPU slot to bring back. Everything is checked before anything is written; a
refused pack writes nothing."""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..atomic import atomic_output, read_json
from ..report.build import benchmark_seconds, load_verdict
from . import layout
from .claim_code import claim_code, known_claims


def check_claims(claims: list[str], root: Path) -> list[str]:
    """The named claims, once each, in order; an empty list or an unknown name is refused."""
    claims = list(dict.fromkeys(c for c in claims if c))
    if not claims:
        raise ValueError("claims: none named (give one or more claims, e.g. --claims clip_norm,spectral_weight_decay)")
    known = known_claims(root)
    for c in claims:
        if c not in known:
            raise ValueError(f"claims: unknown claim {c!r} (known claims: {', '.join(known)})")
    return claims


def check_verdict(verdict: dict, claim: str, where: str) -> None:
    """What makes a verdict a reference: this claim's, gpu scale, evidential."""
    if verdict["claim"] != claim:
        raise ValueError(f"claim {claim}: {where} holds claim = {verdict['claim']!r}")
    if verdict["scale"] != layout.SCALE:
        raise ValueError(f"claim {claim}: scale = {verdict['scale']!r} in {where}; a reference is made at scale {layout.SCALE!r}")
    if verdict["evidential"] is not True:
        raise ValueError(f"claim {claim}: evidential = {verdict['evidential']!r} in {where}; a reference must be evidential")


def _claim_files(claim_dir: Path) -> dict[str, Path]:
    """The analysis outputs of a claim folder (verdict, tables, stage files, figures), by relative path."""
    return {p.relative_to(claim_dir).as_posix(): p for p in sorted(claim_dir.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(layout.CLAIM_FILES_EXCLUDED)}


def _check_run(scale_dir: Path, claim: str, rid: str) -> dict:
    run_dir = scale_dir / "runs" / rid
    for name in layout.REQUIRED_RUN_FILES:
        if not (run_dir / name).is_file():
            raise ValueError(f"claim {claim}: run {rid}: no {name} in {run_dir}")
    summary = read_json(run_dir / "summary.json")
    device = summary.get("device")
    if not isinstance(device, str) or device.startswith("cpu"):
        raise ValueError(f"claim {claim}: run {rid}: device = {device!r}; a gpu reference is trained on a GPU")
    return summary


def _metrics_bytes(path: Path) -> bytes:
    """metrics.parquet re-encoded with zstd (lossless, about half the size of the default snappy)."""
    buf = io.BytesIO()
    pd.read_parquet(path).to_parquet(buf, index=False, **layout.METRICS_COMPRESSION)
    return buf.getvalue()


def _stage_seconds(scale_dir: Path, keys: set[str] | None) -> dict:
    """{rule: {"jobs", "seconds"}} from benchmarks/<rule>/<key>.tsv, for the files whose key (run,
    population, data set or claim) is in ``keys``; every file when ``keys`` is None."""
    out = {}
    root = scale_dir / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        if len(rel.parts) < 2 or (keys is not None and path.stem not in keys):
            continue
        try:
            seconds = benchmark_seconds(path)
        except (KeyError, ValueError, TypeError):
            continue
        entry = out.setdefault(rel.parts[0], {"jobs": 0, "seconds": 0.0})
        entry["jobs"] += 1
        entry["seconds"] = round(entry["seconds"] + seconds, 3)
    return out


def _spread(values) -> dict | None:
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {"median": statistics.median(values), "max": max(values), "n": len(values)} if values else None


def throughput(summaries: list[dict]) -> dict:
    """tokens/s and MFU of a claim's finished runs: each member's share, its population's aggregate
    (once per population) and the MFU of that aggregate."""
    ok = [s for s in summaries if s.get("status") == "ok"]
    pops = {(s.get("population") or {}).get("id"): (s.get("population") or {}).get("tokens_per_s") for s in ok}
    return {"tokens_per_s": _spread(s.get("tokens_per_s") for s in ok),
            "population_tokens_per_s": _spread(v for k, v in pops.items() if k is not None),
            "mfu": _spread(s.get("mfu") for s in ok),
            "tokens": sum(s.get("tokens") or 0 for s in ok)}


def host_environment() -> dict:
    """The packing host's driver and CUDA: pack where the runs were trained (run-gpu.sh does)."""
    import torch

    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30, check=True).stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        driver = None
    return {"driver": driver, "cuda": torch.version.cuda, "torch": torch.__version__}


def _versions(summaries: list[dict]) -> dict[str, str]:
    found: dict[str, set] = {}
    for s in summaries:
        for name, version in (s.get("versions") or {}).items():
            found.setdefault(name, set()).add(str(version))
    return {name: ", ".join(sorted(vs)) for name, vs in sorted(found.items())}


def claim_reference(scale_dir: Path, claim: str, claims: list[str], root: Path, host: dict, packed_at: str) -> dict[str, bytes]:
    """One claim's reference folder as {relative path: bytes}, provenance.json included."""
    claim_dir = scale_dir / "claims" / claim
    verdict_path = claim_dir / layout.VERDICT
    if not verdict_path.is_file():
        raise ValueError(f"claim {claim}: no verdict at {verdict_path} (its analysis has not run, or failed)")
    verdict = load_verdict(verdict_path)
    check_verdict(verdict, claim, str(verdict_path))
    for fig in verdict.get("figures") or []:
        if not (claim_dir / fig["file"]).is_file():
            raise ValueError(f"claim {claim}: figure {fig['file']} of its verdict is missing in {claim_dir}")
    summaries = {rid: _check_run(scale_dir, claim, rid) for rid in dict.fromkeys(verdict["runs"])}
    data_ids = sorted({read_json(scale_dir / "runs" / rid / "config.json").get("data") for rid in summaries} - {None})

    files = {rel: p.read_bytes() for rel, p in _claim_files(claim_dir).items()}
    for rid in summaries:
        run_dir = scale_dir / "runs" / rid
        for name in layout.RUN_FILES:
            if (run_dir / name).is_file():
                data = _metrics_bytes(run_dir / name) if name == "metrics.parquet" else (run_dir / name).read_bytes()
                files[f"{layout.RUNS}/{rid}/{name}"] = data
    corpus = []
    for data_id in data_ids:
        for name in layout.DATA_FILES:
            path = scale_dir / "data" / data_id / name
            if not path.is_file():
                raise ValueError(f"claim {claim}: data set {data_id}: no {name} in {scale_dir / 'data' / data_id}")
            files[f"{layout.DATA}/{data_id}/{name}"] = path.read_bytes()
        manifest = read_json(scale_dir / "data" / data_id / "corpus" / "manifest.json")
        corpus.append({"data_id": data_id, "spec": manifest.get("spec"), "hash": manifest.get("hash"),
                       "n_bytes": manifest.get("n_bytes")})

    keys = {claim, *summaries, *data_ids, *((s.get("population") or {}).get("id") for s in summaries.values())}
    provenance = {
        "claim": claim,
        "scale": layout.SCALE,
        "made": packed_at,
        "git_commits": sorted({s.get("git_commit") for s in summaries.values()} - {None}),
        "claim_code": claim_code(claim, root),
        "devices": sorted({s["device"] for s in summaries.values()}),
        "driver": host.get("driver"),
        "cuda": host.get("cuda"),
        "torch": _versions(summaries.values()).get("torch") or host.get("torch"),
        "versions": _versions(summaries.values()),
        "corpus": corpus,
        "wall_seconds_per_stage": _stage_seconds(scale_dir, keys),
        "workflow": {"claims": claims, "wall_seconds_per_stage": _stage_seconds(scale_dir, None)},
        "throughput": throughput(list(summaries.values())),
        "runs": len(summaries),
        "files": {rel: _sha256(data) for rel, data in sorted(files.items())},
    }
    files[layout.PROVENANCE] = (json.dumps(provenance, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
    return files


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes, first: dict[str, str], mtime: int) -> None:
    """A member; a content already in the archive (a run two claims share) as a hard link to it."""
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = mtime, 0o644
    digest = _sha256(data)
    if digest in first:
        info.type, info.linkname = tarfile.LNKTYPE, first[digest]
        tar.addfile(info)
        return
    first[digest] = name
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _too_big(size: int, limit: int, folders: dict[str, dict[str, bytes]]) -> str:
    per_claim = ", ".join(f"{c} {sum(map(len, f.values())) / 2**20:.1f} MiB" for c, f in folders.items())
    largest = sorted(((len(d), f"{c}/{rel}") for c, f in folders.items() for rel, d in f.items()), reverse=True)[:5]
    return (f"archive: {size / 2**20:.2f} MiB compressed, over the {limit / 2**20:.3g} MiB "
            f"a reference may take; unpacked per claim: {per_claim}; largest files: "
            + ", ".join(f"{name} ({n / 2**20:.2f} MiB)" for n, name in largest)
            + ". Pack fewer claims at once, or make that output smaller")


def pack_reference(scale_dir: Path, claims: list[str], out: Path, root: Path = Path("."),
                   host: dict | None = None, max_bytes: int = layout.MAX_ARCHIVE_BYTES) -> dict:
    """Write ``out`` (a .tgz of ``<claim>/...`` folders); returns {claim: unpacked bytes} and the size."""
    scale_dir, root = Path(scale_dir), Path(root)
    claims = check_claims(claims, root)
    if not scale_dir.is_dir():
        raise ValueError(f"scale-dir: {str(scale_dir)!r} is not a directory")
    host = host_environment() if host is None else host
    packed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    folders = {c: claim_reference(scale_dir, c, claims, root, host, packed_at) for c in claims}
    mtime = int(datetime.fromisoformat(packed_at).timestamp())
    with atomic_output(Path(out)) as tmp:
        first: dict[str, str] = {}
        with tarfile.open(tmp, "w:gz") as tar:
            for c, files in folders.items():
                for rel, data in sorted(files.items()):
                    _add(tar, f"{c}/{rel}", data, first, mtime)
        size = tmp.stat().st_size
        if size > max_bytes:
            raise ValueError(_too_big(size, max_bytes, folders))
    return {"claims": {c: sum(map(len, f.values())) for c, f in folders.items()}, "bytes": size}
