"""Weights on disk: each member's final model as safetensors (its GPTConfig and MemberInit in the
header metadata, tensors named as a plain GPT's without the member dimension), and a population's
resumable training state (stacked model, optimizers, per-member logs, step) as one torch file.
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
from .model import GPT, GPTConfig, MemberInit

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"


def save_member(model: GPT, k: int, path: Path) -> None:
    """Member k of a population as a model of its own."""
    model = _unwrap(model)
    tensors = {name: t.to("cpu").contiguous() for name, t in model.member_state_dict(k).items()}
    # one metadata key: safetensors writes several in a random order, and identical runs must give
    # identical files (and model_sha256)
    meta = {"optclaims": json.dumps({"gpt_config": model.cfg.to_dict(), "member_init": model.members[k].to_dict()},
                                    sort_keys=True)}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_model(path: Path, device: str | torch.device = "cpu", sha256: str | None = None) -> GPT:
    """The saved model as a population of one; with ``sha256`` (the run summary's ``model_sha256``),
    a file whose content no longer matches is refused with CorruptFileError before it is read."""
    if sha256 is not None and file_sha256(path) != sha256:
        raise CorruptFileError(f"{path} does not match the model_sha256 in its run's summary.json; delete the run "
                               "directory and its population's folder (populations/<the population id in summary.json>) "
                               "to retrain it")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["optclaims"])
    model = GPT(GPTConfig(**meta["gpt_config"]), [MemberInit(**meta["member_init"])])
    model.load_member_state_dict(0, load_file(str(path), device="cpu"))
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
