"""One run: a run config in, the run outputs of DESIGN.md out.

``train_run`` resumes from ``train_state.pt`` when one is there: batches depend only on
(seed, step), so a resumed run repeats the uninterrupted one exactly. On CUDA the step loop never
waits for the device except at log intervals: per-step loss, gradient norm and clip flag are
written into device buffers and copied to the host every ``log_every`` steps.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch

from . import checkpoint
from .atomic import atomic_output, file_sha256
from .data.shards import TokenShard
from .model import GPT, activation_names, flops_per_token
from .optim import build_optimizers, build_schedulers, update_rms
from .optim.schedules import lr_lambda
from .optim.spectral_decay import spectrum
from .parametrization import model_config
from .provenance import bf16_peak_flops, device_name, git_commit, library_versions
from .errors import ConfigError
from .runs import read_json, run_id, write_json

class _Stop(Exception):
    """Raised by the ``stop_at`` test hook: ends the process's work as a kill would."""


def resolve_runtime(cfg: dict) -> tuple[torch.device, torch.dtype | None, bool]:
    """(device, autocast dtype or None, compile?) from the config's "auto" choices."""
    want = cfg["device"]
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run config asks for device = \"cuda\" but no CUDA device is available")
    device = torch.device("cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu")
    dtype = {"float32": None, "bfloat16": torch.bfloat16}.get(cfg["dtype"], torch.bfloat16 if device.type == "cuda" else None)
    compile_ = device.type == "cuda" if cfg["compile"] == "auto" else bool(cfg["compile"])
    return device, dtype, compile_


@torch.no_grad()
def validation_loss(model, batches, device, autocast) -> float:
    """Mean loss per token over the fixed validation windows (the last batch may be short)."""
    model.eval()
    total = torch.zeros((), device=device)
    for x, y in batches:
        with autocast():
            total += model(x.to(device), y.to(device))[1].float() * y.numel()
    model.train()
    return (total / sum(y.numel() for _, y in batches)).item()


def train_run(cfg: dict, out_dir: Path, data_dir: Path, *, stop_at: int | None = None) -> dict:
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim_run_dir(cfg, out_dir)
    if (out_dir / "summary.json").exists():  # finished before: never retrain over results
        return read_json(out_dir / "summary.json")

    train_data, val_data = (TokenShard(data_dir / "tokens", split, verify=True) for split in ("train", "val"))
    vocab = read_json(data_dir / "tokens" / "shards.json")["vocab_size"]
    if vocab != cfg["vocab_size"]:
        raise ValueError(f"run config vocab_size = {cfg['vocab_size']} but the token shards in {data_dir} have {vocab}")

    device, amp_dtype, compile_ = resolve_runtime(cfg)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(cfg["seed"])
    model = GPT(model_config(cfg)).to(device)
    optimizers = build_optimizers(model, cfg, device.type)
    schedulers = build_schedulers(optimizers, cfg)
    rows: list[dict] = []
    start, elapsed_before = 0, 0.0
    state = checkpoint.load_train_state(out_dir / checkpoint.STATE_FILE)
    if state is not None:
        model.load_state_dict(state["model"])
        for obj, saved in zip([*optimizers, *schedulers], [*state["optimizers"], *state["schedulers"]]):
            obj.load_state_dict(saved)
        start, rows, elapsed_before = state["step"], state["rows"], state["elapsed"]
    step_model = torch.compile(model) if compile_ else model
    params = list(model.parameters())
    val_batches = val_data.eval_batches(cfg["val_batches"], cfg["batch_size"], cfg["seq_len"])

    steps, tokens_per_step = cfg["steps"], cfg["batch_size"] * cfg["seq_len"]
    clip = cfg["clip"] if cfg["clip"] is not None else math.inf
    clip_grads = cfg["clip"] is not None
    losses = torch.zeros(steps, device=device)
    norms = torch.zeros(steps, device=device)
    # the coordinate check: mean |activation| per layer in the forward pass of each of the first steps
    act_steps, act_names = min(cfg["activation_steps"], steps), activation_names(cfg["n_layers"])
    acts = torch.zeros(act_steps, len(act_names), device=device)
    lr_at = lr_lambda(cfg)
    first_loss = rows[0]["train_loss"] if rows else None
    status, flushed = "ok", start
    timer = _Throughput(device)

    def flush(upto: int) -> bool:
        """Copy buffered step metrics to host rows; False when the run has diverged."""
        nonlocal flushed, first_loss
        loss_host, norm_host = losses[flushed:upto].tolist(), norms[flushed:upto].tolist()
        act_host = acts[flushed:upto].tolist() if flushed < act_steps else []
        for i, (loss, norm) in enumerate(zip(loss_host, norm_host)):
            s = flushed + i
            rows.append({"step": s + 1, "tokens": (s + 1) * tokens_per_step, "lr": cfg["lr"] * lr_at(s),
                         "train_loss": loss, "grad_norm": norm, "clipped": norm > clip})
            if i < len(act_host):
                rows[-1].update({f"act_{name}": v for name, v in zip(act_names, act_host[i])})
        flushed = upto
        if first_loss is None and rows:
            first_loss = rows[0]["train_loss"]
        rows[-1].update({f"update_rms_{k}": v for k, v in update_rms(optimizers).items()})
        if cfg["log_spectra"]:
            rows[-1].update(matrix_spectra(model))
        return all(math.isfinite(v) and v < cfg["divergence_ratio"] * first_loss for v in loss_host)

    model.train()
    for s in range(start, steps):
        x, y = train_data.batch(s, cfg["batch_size"], cfg["seq_len"], cfg["seed"])
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            if s < act_steps:  # eager, so the compiled graph never sees the recording
                recorded: list[torch.Tensor] = []
                _, loss = model(x, y, activations=recorded)
                acts[s] = torch.stack(recorded)
            else:
                _, loss = step_model(x, y)
        loss.backward()
        # the pre-clip global norm, computed as clip_grad_norm_ computes it (fp32 gradients, mean loss)
        if clip_grads:
            norms[s] = torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        else:
            norms[s] = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        losses[s] = loss.detach()
        for opt in optimizers:
            opt.step()
        for sched in schedulers:
            sched.step()
        model.zero_grad(set_to_none=True)

        done = s + 1
        evaluate_now = done % cfg["eval_every"] == 0 and done < steps
        checkpoint_now = done % cfg["ckpt_every"] == 0 and done < steps
        # rows are complete up to `done` before anything is attached to them or saved with them
        if done % cfg["log_every"] == 0 or done == steps or evaluate_now or checkpoint_now:
            if not flush(done):
                status = "diverged"
                break
            timer.mark(done * tokens_per_step)
        if evaluate_now:
            rows[-1]["val_loss"] = validation_loss(model, val_batches, device, autocast)
        if checkpoint_now:
            checkpoint.save_train_state({"step": done, "rows": rows, "elapsed": elapsed_before + timer.elapsed(),
                                         "model": model.state_dict(),
                                         "optimizers": [o.state_dict() for o in optimizers],
                                         "schedulers": [s.state_dict() for s in schedulers]},
                                        out_dir / checkpoint.STATE_FILE)
        if stop_at is not None and done >= stop_at:
            raise _Stop(f"stopped at step {done} (test hook)")

    val_loss = validation_loss(model, val_batches, device, autocast) if status == "ok" else None
    if status == "ok" and not math.isfinite(val_loss):
        status, val_loss = "diverged", None
    if val_loss is not None:
        rows[-1]["val_loss"] = val_loss

    n_matmul = model.num_params()
    fpt = flops_per_token(model.cfg, n_matmul)
    tokens = rows[-1]["tokens"] if rows else 0
    tps = timer.tokens_per_second()
    peak = bf16_peak_flops(device)
    last = [r["train_loss"] for r in rows[-10:]]
    summary = {
        "run_id": run_id(cfg),
        "status": status,
        "steps": rows[-1]["step"] if rows else 0,
        "final_train_loss": sum(last) / len(last) if status == "ok" else None,
        "final_val_loss": val_loss,
        "val_bpb": val_loss / math.log(2) / val_data.bytes_per_token if val_loss is not None else None,
        "tokens": tokens,
        "n_params": model.num_params(include_embeddings=True),
        "n_params_matmul": n_matmul,
        "flops_per_token": fpt,
        "flops": fpt * tokens,
        "wall_seconds": elapsed_before + timer.elapsed(),
        "tokens_per_s": tps,
        "mfu": fpt * tps / peak if peak and tps else None,
        "device": device_name(device),
        "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype else "float32",
        "compiled": compile_,
        "resumed_from_step": start or None,
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    checkpoint.save_model(model, out_dir / checkpoint.MODEL_FILE)
    summary["model_sha256"] = file_sha256(out_dir / checkpoint.MODEL_FILE)
    with atomic_output(out_dir / "metrics.parquet") as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
    write_json(out_dir / "summary.json", summary)  # written last: its presence marks a finished run
    (out_dir / checkpoint.STATE_FILE).unlink(missing_ok=True)
    return summary


def matrix_spectra(model: GPT) -> dict[str, float]:
    """σ_max and SVD entropy of every hidden and readout matrix, as metrics columns (one host sync)."""
    groups = model.param_groups()
    named = groups["hidden"] + groups["readout"]
    stats = torch.stack([spectrum(p.detach()) for _, p in named]).tolist()
    out = {}
    for (name, _), (sigma_max, entropy) in zip(named, stats):
        out[f"sigma_max[{name}]"], out[f"svd_entropy[{name}]"] = sigma_max, entropy
    return out


def _claim_run_dir(cfg: dict, out_dir: Path) -> None:
    """Write config.json, refusing a directory that already holds a different run."""
    path = out_dir / "config.json"
    if path.exists() and read_json(path) != cfg:
        raise ValueError(f"{out_dir} already holds a run with a different config; refusing to overwrite it")
    write_json(path, cfg)


class _Throughput:
    """Tokens/s over the steps after the first logged interval (which holds compilation and warm-up)."""

    def __init__(self, device: torch.device):
        self.device, self.t0 = device, time.perf_counter()
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None

    def mark(self, tokens: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        point = (time.perf_counter(), tokens)
        self.first = self.first or point
        self.last = point

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def tokens_per_second(self) -> float | None:
        if self.first and self.last and self.last[1] > self.first[1]:
            return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
        if self.last:  # a single interval: include the warm-up rather than report nothing
            return self.last[1] / (self.last[0] - self.t0)
        return None
