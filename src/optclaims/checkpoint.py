"""Weights on disk: the final model as safetensors (its GPTConfig in the header metadata), and the
resumable training state (model, optimiser, scheduler, step, logged rows) as one torch file.
Both are written to a temporary name and renamed, so a killed writer never leaves a torn file."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from .atomic import atomic_output
from .model import GPT, GPTConfig

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"


def save_model(model: GPT, path: Path) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}
    meta = {"gpt_config": json.dumps(_unwrap(model).cfg.to_dict())}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_model(path: Path, device: str | torch.device = "cpu") -> GPT:
    with safe_open(str(path), framework="pt") as f:
        cfg = GPTConfig(**json.loads(f.metadata()["gpt_config"]))
    model = GPT(cfg)
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device)


def save_train_state(state: dict, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_train_state(path: Path) -> dict | None:
    path = Path(path)
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def _unwrap(model):
    return getattr(model, "_orig_mod", model)  # a torch.compile'd module keeps the original here
