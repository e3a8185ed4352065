"""Which GPU a job uses. Snakemake counts GPUs (``--resources gpu=N``) but hands out no device ids,
so every training or evaluation job reserves a slot itself before it touches CUDA.

A slot is (device, share): ``jobs_per_device`` jobs may share one GPU (tiny models). A job holds
its slot as an exclusive ``flock`` on one file per slot. flock is atomic, so two jobs never take
the same slot, and the kernel drops it when the process exits or is killed (SIGKILL included), so a
dead job's device is free again at once. Locks live per host and per scheduler allocation: jobs in
different SLURM allocations have different GPUs and never contend."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

SIMULATE_ENV = "OPTCLAIMS_SIMULATED_DEVICES"   # a device count: tests on CPU, no CUDA touched
LOCK_DIR_ENV = "OPTCLAIMS_DEVICE_LOCKS"


@dataclass(frozen=True)
class Slot:
    device: str   # the id as CUDA_VISIBLE_DEVICES names it
    share: int    # which of the device's jobs_per_device places
    fd: int


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees


def visible_devices() -> list[str]:
    """Device ids this job may use: a simulated count, else CUDA_VISIBLE_DEVICES, else every GPU.

    Counted without CUDA: torch.cuda.device_count() initialises the CUDA runtime, which reads
    CUDA_VISIBLE_DEVICES once, so the choice made afterwards would be ignored."""
    if os.environ.get(SIMULATE_ENV):
        return [str(i) for i in range(int(os.environ[SIMULATE_ENV]))]
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if NVIDIA_GPUS.is_dir():
        return [str(i) for i in range(len(list(NVIDIA_GPUS.iterdir())))]
    return []


def lock_dir() -> Path:
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    allocation = os.environ.get("SLURM_JOB_ID", "local")
    return Path(tempfile.gettempdir()) / "optclaims-devices" / f"{socket.gethostname()}-{allocation}"


def try_reserve(devices: list[str], jobs_per_device: int, locks: Path) -> Slot | None:
    """The first free slot, spreading jobs over devices before stacking them; None if all are held."""
    for share in range(jobs_per_device):
        for device in devices:
            fd = os.open(locks / f"device{device}.slot{share}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return Slot(device, share, fd)
    return None


def reserve(devices: list[str], jobs_per_device: int = 1, locks: Path | None = None, poll: float = 0.5) -> Slot:
    """Wait for a free slot (with ``--resources gpu`` no larger than the slot count, there always is one)."""
    if jobs_per_device < 1:
        raise ValueError(f"jobs_per_device = {jobs_per_device}: must be at least 1")
    locks = locks or lock_dir()
    locks.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(locks, 0o1777)  # another user's jobs on this host share the GPUs, so the locks too
    said = False
    while (slot := try_reserve(devices, jobs_per_device, locks)) is None:
        if not said:
            print(f"all {len(devices) * jobs_per_device} device slots in {locks} are held; waiting", file=sys.stderr)
            said = True
        time.sleep(poll)
    return slot


def release(slot: Slot) -> None:
    os.close(slot.fd)  # closing the only descriptor drops the flock


@contextlib.contextmanager
def assigned_device(jobs_per_device: int = 1, wanted: str = "auto"):
    """Within the block, CUDA_VISIBLE_DEVICES names this job's one device (None: the job asked
    for ``wanted = "cpu"``, or there is no GPU here)."""
    devices = visible_devices() if wanted != "cpu" else []
    if not devices:
        yield None
        return
    slot = reserve(devices, jobs_per_device)
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.device
    print(f"device {slot.device} (share {slot.share + 1} of {jobs_per_device}) on {socket.gethostname()}", file=sys.stderr)
    try:
        yield slot.device
    finally:
        release(slot)


def resolve_device(wanted: str, key: str = "device"):
    """The torch device a job asked for as ``wanted``: "auto" is CUDA where it is available, else
    the CPU; otherwise a torch device string ("cpu", "cuda", "cuda:1"). CUDA asked for where there
    is none, or a string that names no device, is a ConfigError naming ``key`` and the value."""
    import torch

    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f'{key} = "{wanted}" is not a device: use "auto", "cpu", "cuda" or "cuda:N"') from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f'{key} = "{wanted}", but no CUDA device is available here (use "auto" or "cpu")')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f'{key} = "{wanted}", but only {torch.cuda.device_count()} CUDA device(s) are visible')
    return device
