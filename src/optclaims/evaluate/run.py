"""Evaluate one trained run with lm-eval and write its ``eval.json``.

Local tasks (built by ``tasks.build_tasks``) are evaluated with the Hugging Face hub switched off,
so nothing reaches the network. Hub tasks (``lambada_openai``, ``hellaswag``, …) are checked
before any work: if the hub is unreachable and the task's dataset is not in the local cache, a
``HubUnavailableError`` says so in one line. A diverged run is recorded, not evaluated.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..atomic import write_json
from ..errors import HubUnavailableError

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}


def evaluate_run(
    run_dir: Path,
    tokenizer_path: Path,
    tasks_dir: Path,
    tasks: list[str],
    out_path: Path,
    *,
    limit: int | None = None,
    device: str = "auto",
    batch_size: int = 16,
    hub_tasks: list[str] | tuple[str, ...] = (),
) -> dict:
    """Evaluate ``run_dir`` on the local ``tasks`` in ``tasks_dir`` (and any ``hub_tasks``), write
    the record to ``out_path`` atomically and return it."""
    from lm_eval.tasks import TaskManager

    run_dir, tasks, hub_tasks = Path(run_dir), list(tasks), list(hub_tasks)
    if not tasks and not hub_tasks:
        raise ValueError("no tasks to evaluate")
    tm = TaskManager(include_path=str(tasks_dir), include_defaults=bool(hub_tasks))
    local = sorted(TaskManager(include_path=str(tasks_dir), include_defaults=False).all_tasks)
    unknown = [t for t in tasks if t not in local]
    if unknown:
        raise ValueError(
            f"unknown task(s) {unknown}; local tasks in {tasks_dir}: {local} (lm-eval's own tasks go in hub_tasks)"
        )
    unknown = [t for t in hub_tasks if t not in tm.all_tasks]
    if unknown:
        raise ValueError(f"unknown lm-eval hub task(s) {unknown}")

    summary = json.loads((run_dir / "summary.json").read_text())
    record = {"run_id": summary.get("run_id", run_dir.name), "tasks": tasks + hub_tasks, "limit": limit}
    if summary.get("status") == "diverged":
        record |= {"status": "diverged", "results": None, "versions": None, "configs": None}
        write_json(Path(out_path), record)
        return record

    online = bool(hub_tasks) and _hub_reachable()
    if hub_tasks and not online:
        _check_cached(hub_tasks, tm)

    import lm_eval

    from .lm import OptclaimsLM

    start = time.time()
    with nullcontext() if online else hub_offline():
        lm = OptclaimsLM(run_dir=run_dir, tokenizer=tokenizer_path, device=device, batch_size=batch_size)
        out = lm_eval.simple_evaluate(
            model=lm, tasks=tasks + hub_tasks, task_manager=tm, limit=limit, log_samples=False
        )
    record |= {
        "status": "ok",
        "results": _jsonable(out["results"]),
        "versions": _jsonable(out.get("versions")),
        "n_samples": _jsonable(out.get("n-samples")),
        "higher_is_better": _jsonable(out.get("higher_is_better")),
        "configs": _jsonable(out.get("configs")),
        "lm_eval_version": lm_eval.__version__,
        "eval_seconds": round(time.time() - start, 3),
    }
    write_json(Path(out_path), record)
    return record


@contextmanager
def hub_offline():
    """Switch the Hugging Face hub off in this process: the environment variables, and the flags
    ``huggingface_hub`` and ``datasets`` already read from them at import."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    saved_flags = (hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    os.environ.update({k: "1" for k in _OFFLINE_ENV})
    hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved_flags


def _hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline mode is set or the hub endpoint does not answer within ``timeout``."""
    import huggingface_hub.constants as hub_constants

    if hub_constants.HF_HUB_OFFLINE or any(os.environ.get(k, "").upper() in _TRUE for k in _OFFLINE_ENV):
        return False
    try:
        urllib.request.urlopen(urllib.request.Request(hub_constants.ENDPOINT, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def _check_cached(hub_tasks: list[str], tm) -> None:
    """With the hub unreachable, a hub task can still run from the local datasets cache."""
    for name in hub_tasks:
        try:
            with hub_offline():
                tm.load([name])
        except Exception as exc:
            raise HubUnavailableError(
                f"hub task '{name}' cannot be evaluated: the Hugging Face hub is unreachable (offline) "
                f"and its dataset is not in the local cache ({type(exc).__name__})"
            ) from None


_DROP = object()


def _jsonable(obj):
    """A JSON-safe copy: non-finite floats become null, values JSON cannot hold (functions, …)
    are dropped."""
    if isinstance(obj, dict):
        items = ((str(k), _jsonable(v)) for k, v in obj.items())
        return {k: v for k, v in items if v is not _DROP}
    if isinstance(obj, (list, tuple)):
        return [v for v in map(_jsonable, obj) if v is not _DROP]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / torch scalars
        return _jsonable(obj.item())
    return _DROP
