"""Weights on disk: the final model as safetensors (its GPTConfig in the header metadata), and the
resumable training state (model, optimiser, scheduler, step, logged rows) as one torch file.
Both are written to a temporary name and renamed, so a killed writer never leaves a torn file, and
both are checked on load: the model against the sha256 in the run's summary, the training state
against the digest stored inside it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from .atomic import atomic_output, file_sha256
from .errors import CorruptFileError
from .model import GPT, GPTConfig

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"


def save_model(model: GPT, path: Path) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}
    meta = {"gpt_config": json.dumps(_unwrap(model).cfg.to_dict())}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_model(path: Path, device: str | torch.device = "cpu", sha256: str | None = None) -> GPT:
    """The saved model; with ``sha256`` (the run summary's ``model_sha256``), a file whose content
    no longer matches is refused with CorruptFileError before it is read."""
    if sha256 is not None and file_sha256(path) != sha256:
        raise CorruptFileError(f"{path} does not match the model_sha256 in its run's summary.json; "
                               "delete the run directory to retrain it")
    with safe_open(str(path), framework="pt") as f:
        cfg = GPTConfig(**json.loads(f.metadata()["gpt_config"]))
    model = GPT(cfg)
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device)


def save_train_state(state: dict, path: Path) -> None:
    """The state with a sha256 of its own content inside, so a corrupted file is caught on load."""
    with atomic_output(path) as tmp:
        torch.save({**state, "sha256": state_digest(state)}, tmp)


def load_train_state(path: Path) -> dict | None:
    """The saved state, or None when there is none; CorruptFileError if it cannot be read or its
    content no longer matches the checksum saved with it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or overwritten zip archive fails in many ways
        raise CorruptFileError(f"{path} cannot be read ({type(e).__name__}: {e}); delete it to restart the run") from None
    recorded = state.pop("sha256", None) if isinstance(state, dict) else None
    if recorded is None or recorded != state_digest(state):
        raise CorruptFileError(f"{path} does not match the checksum saved with it; delete it to restart the run")
    return state


def state_digest(obj) -> str:
    """sha256 over every tensor's bytes and every other value's repr, keys in sorted order."""
    digest = hashlib.sha256()

    def walk(o):
        if isinstance(o, torch.Tensor):
            digest.update(str((o.dtype, tuple(o.shape))).encode())
            digest.update(o.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, dict):
            for k in sorted(o, key=repr):
                digest.update(repr(k).encode())
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            digest.update(f"[{len(o)}".encode())
            for v in o:
                walk(v)
        else:
            digest.update(repr(o).encode())

    walk(obj)
    return digest.hexdigest()


def _unwrap(model):
    return getattr(model, "_orig_mod", model)  # a torch.compile'd module keeps the original here
