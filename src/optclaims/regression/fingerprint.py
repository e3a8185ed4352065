"""The environment fingerprint: what, besides the code, made a results directory's numbers — the
corpus and tokenizer, the processor and its instruction set, the training thread count, the torch
build and the device. Two checks with the same fingerprint should repeat bit for bit."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import torch

from ..atomic import read_json

# Field → what the report calls it.
FIELDS = {
    "corpus_hash": "corpus manifest hash",
    "tokenizer_hash": "tokenizer hash (sha256 of tokenizer.json)",
    "processor": "processor model",
    "isa_flags": "instruction-set flags (sha256 of the sorted flags)",
    "cpu_kernels": "CPU kernels torch dispatches to (and the variables that choose them)",
    "threads": "training threads",
    "torch": "torch version",
    "torch_build": "torch build",
    "device": "device",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def processor(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, str]:
    """(model name, sha256 of the sorted instruction-set flags), from /proc/cpuinfo where present,
    else from ``platform`` (the flags' hash then of the platform's processor and machine)."""
    model, flags = None, None
    if Path(cpuinfo).exists():
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if model is None and key in ("model name", "cpu model", "processor") and not value.strip().isdigit():
                model = value.strip()
            elif flags is None and key in ("flags", "features"):
                flags = " ".join(sorted(set(value.split())))
    model = model or platform.processor() or platform.machine() or "unknown"
    flags = flags if flags is not None else f"{platform.machine()} {platform.processor()}"
    return model, hashlib.sha256(flags.encode()).hexdigest()[:16]


# Variables that make torch's CPU libraries pick other kernels than the processor would.
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA")


def cpu_kernels(environ=os.environ) -> str:
    """ATen's CPU capability in use (e.g. "AVX512"), with any kernel-choosing variables that are set."""
    chosen = [f"{k}={environ[k]}" for k in KERNEL_VARIABLES if environ.get(k)]
    return " ".join([torch.backends.cpu.get_cpu_capability(), *chosen])


def device_of(run_devices: list) -> str:
    """The device the runs trained on: "cpu", or the CUDA device's name (as the runs recorded it)."""
    names = sorted({"cpu" if str(d).startswith("cpu") else str(d) for d in run_devices if d})
    if names:
        return ", ".join(names)
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def fingerprint(data_dir: Path, threads: int, run_devices: list) -> dict:
    """The fingerprint of the environment that trained on ``data_dir`` (results/<scale>/data/<data_id>)."""
    data_dir = Path(data_dir)
    manifest, tokenizer = data_dir / "corpus" / "manifest.json", data_dir / "tokenizer.json"
    for path in (manifest, tokenizer):
        if not path.exists():
            raise FileNotFoundError(f"environment fingerprint: {path} not found (data_dir={str(data_dir)!r})")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"environment fingerprint: train.threads must be a positive integer, got {threads!r}")
    model, flags = processor()
    return {
        "corpus_hash": read_json(manifest)["hash"],
        "tokenizer_hash": _sha256(tokenizer),
        "processor": model,
        "isa_flags": flags,
        "cpu_kernels": cpu_kernels(),
        "threads": threads,
        "torch": torch.__version__,
        "torch_build": f"git {torch.version.git_version[:12]}, cuda {torch.version.cuda or 'none'}",
        "device": device_of(run_devices),
    }


def differences(baseline: dict | None, current: dict | None) -> list[str]:
    """The fields in which two fingerprints differ (every field, where either is missing)."""
    if not baseline or not current:
        return list(FIELDS)
    fields = [*FIELDS, *sorted((set(baseline) | set(current)) - set(FIELDS))]
    return [f for f in fields if baseline.get(f) != current.get(f)]
