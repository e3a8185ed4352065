"""Device assignment on a machine with several GPUs, simulated on CPU: every concurrent job gets a
slot of its own, chosen without races, and a killed job's slot is free again at once."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from optclaims.devices import SIMULATE_ENV, release, reserve, resolve_device, try_reserve, visible_devices
from optclaims.errors import ConfigError

HOLDER = """
import json, sys, time
from pathlib import Path
from optclaims.devices import release, reserve
slot = reserve(["0", "1"], int(sys.argv[2]), Path(sys.argv[1]), poll=0.02)
start = time.time()
print(json.dumps({"device": slot.device, "share": slot.share, "start": start}), flush=True)
time.sleep(float(sys.argv[3]))
print(json.dumps({"end": time.time()}), flush=True)
release(slot)
"""


def hold(locks, jobs_per_device, seconds):
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(locks), str(jobs_per_device), str(seconds)],
                            stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_never_share_a_slot_and_spread_over_the_devices(tmp_path):
    procs = [hold(tmp_path, 1, 0.3) for _ in range(6)]  # 6 jobs, 2 devices, one job per device
    records = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        first, second = (json.loads(line) for line in out.splitlines())
        records.append({**first, **second})
    by_device = {}
    for r in records:
        by_device.setdefault(r["device"], []).append((r["start"], r["end"]))
    assert set(by_device) == {"0", "1"}
    for spans in by_device.values():
        spans.sort()
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans


def test_an_agreed_share_puts_that_many_jobs_on_each_device_one_device_at_a_time(tmp_path):
    slots = [try_reserve(["0", "1"], 2, tmp_path) for _ in range(4)]
    assert [(s.device, s.share) for s in slots] == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    assert try_reserve(["0", "1"], 2, tmp_path) is None
    release(slots[2])
    again = try_reserve(["0", "1"], 2, tmp_path)
    assert (again.device, again.share) == ("0", 1)


def test_a_killed_job_releases_its_device(tmp_path):
    holder = hold(tmp_path, 1, 600)
    holder.stdout.readline()  # it holds a slot now
    other = hold(tmp_path, 1, 600)
    other.stdout.readline()   # and this one the other device
    assert try_reserve(["0", "1"], 1, tmp_path) is None
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    t0 = time.time()
    slot = reserve(["0", "1"], 1, tmp_path, poll=0.02)
    assert time.time() - t0 < 5
    other.kill()
    other.wait(timeout=30)
    release(slot)


def test_gpus_are_counted_without_initialising_cuda(monkeypatch, tmp_path):
    import torch

    import optclaims.devices as devices

    for bus in ("0000:01:00.0", "0000:41:00.0", "0000:81:00.0"):
        (tmp_path / bus).mkdir()
    monkeypatch.setattr(devices, "NVIDIA_GPUS", tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(SIMULATE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: pytest.fail("CUDA initialised before the choice"))
    assert visible_devices() == ["0", "1", "2"]
    monkeypatch.setattr(devices, "NVIDIA_GPUS", tmp_path / "absent")
    assert visible_devices() == []


def test_simulated_devices_and_cuda_visible_devices_name_the_choices(monkeypatch):
    monkeypatch.setenv(SIMULATE_ENV, "3")
    assert visible_devices() == ["0", "1", "2"]
    monkeypatch.delenv(SIMULATE_ENV)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_devices() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_devices() == []
    with pytest.raises(ValueError, match="at least 1"):
        reserve(["0"], 0)


def test_train_reserves_a_device_and_names_it_in_its_log(tmp_path, tiny_data, tiny_run, monkeypatch):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_run(steps=4, eval_every=4, ckpt_every=4, log_every=2)))
    env = {**os.environ, SIMULATE_ENV: "2", "OPTCLAIMS_DEVICE_LOCKS": str(tmp_path / "locks")}
    proc = subprocess.run([sys.executable, "-m", "optclaims.cli", "train", "--config", str(cfg), "--data", str(tiny_data),
                           "--out", str(tmp_path / "run"), "--jobs-per-gpu", "2"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "device 0 (share 1 of 2)" in proc.stderr


def test_resolve_device_auto_and_clear_errors(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match='eval device = "cuda", but no CUDA device is available'):
        resolve_device("cuda", key="eval device")
    with pytest.raises(ConfigError, match='device = "gpu" is not a device'):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match='device = "cuda:2", but only 2 CUDA device'):
        resolve_device("cuda:2")
