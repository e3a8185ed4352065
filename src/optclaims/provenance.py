"""Where a result came from: library versions, code version, device. Every run log carries these,
so a log is a recipe (as in modded-nanogpt)."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

LIBRARIES = ("optclaims", "torch", "numpy", "pandas", "tokenizers", "lm_eval", "datasets", "snakemake")

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for MFU.
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of this package's own checkout (not of the working directory a workflow runs in)."""
    git = ["git", "-C", str(Path(__file__).resolve().parent)]
    try:
        sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def bf16_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_FLOPS.items() if key in name), None)


def workflow_provenance(config: dict, scale: str) -> dict:
    """What the report's appendix states about the whole workflow."""
    import hashlib
    import json
    from datetime import datetime, timezone

    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "scale": scale,
        "config": config,
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest()[:12],
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": device_name(device),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
