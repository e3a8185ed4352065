"""Training: run configs in, the run outputs of DESIGN.md out, one population at a time.

A population (``population.py``) is trained as one stacked model (``model.py``) with one
``OptimizerSet``: member k gets its own batches from (seed_k, step), its own hyper-parameters, its
own gradient norm and clipping and its own divergence check. A member whose loss is not finite or
exceeds ``divergence_ratio`` × its first loss is frozen and recorded ``diverged``; a member past its
own last step stops changing; the others go on. Each member's outputs are written as soon as it
finishes, so a killed population keeps every finished member, and a member whose summary.json
exists is never trained again. A solo run is a population of one (``train_run``).

The population's ``train_state.pt`` (model, optimizers, per-member logs) is written every
``ckpt_every`` steps; batches depend only on (seed, step), so a resumed population repeats the
uninterrupted one exactly. On CUDA the step loop never waits for the device except at log
intervals: per-step losses, norms, divergence and activations stay in device buffers until then.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import checkpoint
from .atomic import atomic_output, file_sha256, held_locks, read_json, write_json
from .data.shards import TokenShard
from .devices import resolve_device
from .model import GPT, activation_names, record_activations
from .optim import OptimizerSet, clip_member_grads_, member_hypers
from .optim.schedules import lr_lambda
from .optim.spectral_decay import spectrum
from .parametrization import member_init
from .population import check_population, compiles, population_id
from .provenance import bf16_peak_flops, device_name, git_commit, library_versions
from .runs import run_id
from .settings import DEFAULTS
from .shape import flops_per_token, model_config


@dataclass
class Member:
    """A run of a population and the directory its outputs go to."""

    cfg: dict
    out_dir: Path

    @property
    def run_id(self) -> str:
        return run_id(self.cfg)

    def finished(self) -> bool:
        return (Path(self.out_dir) / "summary.json").exists()


def train_run(cfg: dict, out_dir: Path, data_dir: Path) -> dict:
    """One run: a population of one, its training state kept in its own directory."""
    out_dir = Path(out_dir)
    return train_population([Member(cfg, out_dir)], data_dir, out_dir)[0]


def train_population(members: list[Member], data_dir: Path, state_dir: Path, pop_id: str | None = None) -> list[dict]:
    """Train every member whose summary.json does not exist yet; return every member's summary.
    Holds a lock on each member's run directory meanwhile, so two populations that share a run
    (two claims' second stages) train it once."""
    check_population([m.cfg for m in members])
    locks = [Path(m.out_dir).parent / ".locks" / f"{Path(m.out_dir).name}.lock" for m in members]
    with held_locks(locks):
        for m in members:
            _write_run_config(m.cfg, Path(m.out_dir))
        todo = [m for m in members if not m.finished()]
        if todo:
            _train(members, todo, Path(data_dir), Path(state_dir), pop_id)
        return [read_json(Path(m.out_dir) / "summary.json") for m in members]


def resolve_runtime(configs: list[dict]) -> tuple[torch.device, torch.dtype | None, bool]:
    """(device, autocast dtype or None, compile?) of a population from its "auto" choices."""
    cfg = configs[0]
    device = resolve_device(cfg["device"], key="run config device")
    dtype = {"float32": None, "bfloat16": torch.bfloat16}.get(cfg["dtype"], torch.bfloat16 if device.type == "cuda" else None)
    return device, dtype, compiles(configs, device.type)


@dataclass
class MemberLog:
    rows: list[dict] = field(default_factory=list)
    closed: bool = False  # outputs written


class Progress:
    """Which members still train, on the device: alive (not diverged), the step each diverged at
    (−1: never), and each member's first loss (the divergence reference)."""

    def __init__(self, end_steps: list[int], ratio: torch.Tensor):
        device = ratio.device
        self.end = torch.tensor(end_steps, device=device)
        self.ratio = ratio
        self.alive = torch.ones(len(end_steps), dtype=torch.bool, device=device)
        self.first_loss = torch.full((len(end_steps),), math.nan, device=device)
        self.diverged_at = torch.full((len(end_steps),), -1, dtype=torch.long, device=device)

    def update(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        """Take step ``step``'s losses; returns the mask of members that update at this step."""
        if step == 0:
            self.first_loss.copy_(loss)
        active = step < self.end
        ok = torch.isfinite(loss) & (loss < self.ratio * self.first_loss)
        newly = self.alive & active & ~ok
        self.diverged_at.masked_fill_(newly, step)
        self.alive &= ~newly
        return self.alive & active

    def state_dict(self) -> dict:
        return {"alive": self.alive, "first_loss": self.first_loss, "diverged_at": self.diverged_at}

    def load_state_dict(self, saved: dict) -> None:
        for key, value in saved.items():
            getattr(self, key).copy_(value)


class StepMetrics:
    """Per-step, per-member train loss, pre-clip gradient norm and coordinate-check activations in
    device buffers, read back to the host at log intervals."""

    def __init__(self, steps: int, n_members: int, act_steps: int, n_acts: int, device: torch.device):
        self.loss = torch.zeros(steps, n_members, device=device)
        self.grad_norm = torch.zeros(steps, n_members, device=device)
        self.acts = torch.zeros(act_steps, n_members, n_acts, device=device)

    def record(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.loss[step] = loss.detach()
        self.grad_norm[step] = grad_norm

    def host(self, start: int, stop: int) -> tuple[list, list, list]:
        """Rows start..stop−1 as nested lists [step][member] (activations: only for recorded steps)."""
        acts = self.acts[start:stop].tolist() if start < len(self.acts) else []
        return self.loss[start:stop].tolist(), self.grad_norm[start:stop].tolist(), acts


def _train(members: list[Member], todo: list[Member], data_dir: Path, state_dir: Path, pop_id: str | None) -> None:
    state_path = state_dir / checkpoint.STATE_FILE
    trained, saved = _members_to_train(checkpoint.load_train_state(state_path), members, todo)
    cfgs = [m.cfg for m in trained]
    first, K = cfgs[0], len(cfgs)
    pop_id = pop_id or population_id(m.run_id for m in trained)

    train_data, val_data = (TokenShard(data_dir / "tokens", split, verify=True) for split in ("train", "val"))
    vocab = read_json(data_dir / "tokens" / "shards.json")["vocab_size"]
    if vocab != first["vocab_size"]:
        raise ValueError(f"run config vocab_size = {first['vocab_size']} but the token shards in {data_dir} have {vocab}")

    device, amp_dtype, compile_ = resolve_runtime(cfgs)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    model, optimizers, progress = build_population(cfgs, device)
    end_steps = [c["steps"] for c in cfgs]
    logs = [MemberLog() for _ in trained]
    start, elapsed_before = 0, 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizers.load_state_dict(saved["optimizers"])
        progress.load_state_dict(saved["progress"])
        for log, rows in zip(logs, saved["rows"]):
            log.rows = rows
        start, elapsed_before = saved["step"], saved["elapsed"]
    for log, m in zip(logs, trained):
        log.closed = m.finished()  # finished after the checkpoint was written: kept, not rewritten

    run = _RunContext(trained, model, val_data, device, amp_dtype, compile_, pop_id, start)
    step_model = torch.compile(model) if compile_ else model
    val_batches = val_data.eval_batches(first["val_batches"], first["batch_size"], first["seq_len"])
    total = max(end_steps)
    batch, seq = first["batch_size"], first["seq_len"]
    # the coordinate check: the first steps of the members that ask for it run eager with hooks
    act_steps, act_names = min(max(c["activation_steps"] for c in cfgs), total), activation_names(first["n_layers"])
    metrics = StepMetrics(total, K, act_steps, len(act_names), device)
    timer = _Throughput(device, elapsed_before, start * K * first["batch_size"] * first["seq_len"])
    flushed = start
    noise: dict[int, torch.Tensor] = {}  # step → (2, K) gradient noise (tr Σ, |G|²), until flushed

    model.train()
    for s in range(start, total):
        x, y = _member_batches(train_data, cfgs, s, device)
        if any(_measures_noise(c, s) for c in cfgs):  # eager, before the step: its trajectory is untouched
            noise[s] = gradient_noise(model, optimizers.params, x, y, autocast)
        if s < act_steps:  # eager, so the compiled graph never sees the hooks
            recorded: list[torch.Tensor] = []
            with record_activations(model, recorded):
                loss, grad_norm = train_step(model, optimizers, progress, x, y, s, autocast)
            metrics.acts[s] = recorded[0]
        else:
            loss, grad_norm = train_step(step_model, optimizers, progress, x, y, s, autocast)
        metrics.record(s, loss, grad_norm)

        done = s + 1
        open_ends = {end for end, log in zip(end_steps, logs) if not log.closed}
        evaluate_now = done % first["eval_every"] == 0
        checkpoint_now = done % first["ckpt_every"] == 0
        if not (done % first["log_every"] == 0 or done in open_ends or evaluate_now or checkpoint_now or done == total):
            continue

        # host copy of everything since the last flush: rows are complete up to `done` before
        # anything is attached to them or saved with them
        alive, diverged_at = progress.alive.tolist(), progress.diverged_at.tolist()
        _append_rows(logs, cfgs, metrics, flushed, done, diverged_at, act_names, noise)
        noise = {}
        flushed = done
        timer.mark(done * K * batch * seq)
        # members whose own run logs this step (as it would alone: not at another member's end)
        logged = done % first["log_every"] == 0 or evaluate_now or checkpoint_now
        at_done = [k for k, log in enumerate(logs) if not log.closed and log.rows and log.rows[-1]["step"] == done
                   and (logged or done == end_steps[k])]
        if at_done:
            rms = {role: v.tolist() for role, v in optimizers.update_rms().items()}
            spectra = matrix_spectra(model) if first["log_spectra"] else None
            for k in at_done:
                logs[k].rows[-1].update({f"update_rms_{role}": v[k] for role, v in rms.items()})
                if spectra is not None:
                    logs[k].rows[-1].update(spectra[k])

        ending = [k for k in at_done if alive[k] and done == end_steps[k]]
        evaluated = [k for k in at_done if alive[k] and evaluate_now and done < end_steps[k]]
        if ending or evaluated:
            val = validation_losses(model, val_batches, device, autocast).tolist()
            for k in evaluated:
                logs[k].rows[-1]["val_loss"] = val[k]
            for k in ending:
                run.finish(k, logs[k], val[k], timer)
        for k, log in enumerate(logs):
            if not log.closed and not alive[k]:
                run.finish(k, log, None, timer)
        if all(log.closed for log in logs):
            break
        if checkpoint_now:
            checkpoint.save_train_state({"run_ids": [m.run_id for m in trained], "step": done,
                                         "rows": [log.rows for log in logs], "elapsed": timer.elapsed(),
                                         "model": model.state_dict(), "optimizers": optimizers.state_dict(),
                                         "progress": progress.state_dict()}, state_path)
    state_path.unlink(missing_ok=True)


def build_population(cfgs: list[dict], device: torch.device) -> tuple[GPT, OptimizerSet, Progress]:
    """The stacked model, its optimizer set and the members' progress, as a population starts."""
    first = cfgs[0]
    model = GPT(model_config(first), [member_init(c) for c in cfgs], [c["seed"] for c in cfgs]).to(device)
    hypers = member_hypers(cfgs, device)
    optimizers = OptimizerSet(model, hypers, first["optimizer"], first.get("muon_ns_steps", DEFAULTS["muon_ns_steps"]))
    return model, optimizers, Progress([c["steps"] for c in cfgs], hypers.divergence_ratio)


def train_step(step_model, optimizers: OptimizerSet, progress: Progress, x: torch.Tensor, y: torch.Tensor, step: int,
               autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of every member: forward, backward, per-member clipping, the divergence check and
    the optimizers' step. Returns the (K,) losses and pre-clip gradient norms, on the device."""
    with autocast():
        loss = step_model(x, y)[1]  # the logits are not kept through backward
    loss.sum().backward()  # member k's loss reaches member k's weights only
    grad_norm = clip_member_grads_(optimizers.params, optimizers.h.clip)
    update = progress.update(step, loss.detach())
    optimizers.step(step, update)
    optimizers.zero_grad()
    return loss.detach(), grad_norm


def _measures_noise(cfg: dict, step: int) -> bool:
    """Whether a run measures its gradient noise before 0-based ``step`` (its row ``step + 1``)."""
    every = cfg.get("noise_scale_every")
    return bool(every) and (step + 1) % every == 0 and step < cfg["steps"]


NOISE_MICRO_BATCHES = 8


@torch.no_grad()
def _sq_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.double().pow(2).sum(dim=tuple(range(1, t.ndim))) for t in tensors]).sum(dim=0)


def gradient_noise(model, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, autocast,
                   micro: int = NOISE_MICRO_BATCHES) -> torch.Tensor:
    """(2, K): per member, tr(Σ) (the per-sequence gradient covariance's trace) and |G|² (the true
    gradient's squared norm), unbiased estimates from the step's (K, B, T) batch split into m equal
    micro-batches of b sequences (McCandlish et al., arXiv 1812.06162, App. A): with S_b the mean
    squared norm of the micro-batch gradients and S_B that of their mean, E S_b = |G|² + tr(Σ)/b, so
    tr(Σ) = (S_b − S_B)/(1/b − 1/B) and |G|² = (B·S_B − b·S_b)/(B − b). B_simple = tr(Σ)/|G|², in
    sequences (Su, kexue.fm/archives/11280). Leaves no gradients behind; NaN where B = 1."""
    B = x.shape[1]
    m = min(micro, B)
    while B % m:
        m -= 1
    b = B // m
    total = [torch.zeros_like(p) for p in params]
    small = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for j in range(m):
        with autocast():
            loss = model(x[:, j * b:(j + 1) * b], y[:, j * b:(j + 1) * b])[1]
        loss.float().sum().backward()
        with torch.no_grad():
            small += _sq_norms([p.grad for p in params])
            for acc, p in zip(total, params):
                acc += p.grad
                p.grad = None
    if m < 2:
        return torch.full((2, x.shape[0]), math.nan, device=x.device)
    s_small, s_big = small / m, _sq_norms([t / m for t in total])
    trace = (s_small - s_big) / (1 / b - 1 / B)
    grad_sq = (B * s_big - b * s_small) / (B - b)
    return torch.stack([trace, grad_sq]).float()


def _append_rows(logs: list[MemberLog], cfgs: list[dict], metrics: StepMetrics, flushed: int, done: int,
                 diverged_at: list[int], act_names: list[str], noise: dict | None = None) -> None:
    """Each open member's metrics rows for steps flushed+1..done, up to its own last step or the
    step it diverged at (one host copy of the device buffers), with the gradient noise of the steps
    a member measures it at."""
    losses, norms, acts = metrics.host(flushed, done)
    noise = {s: v.tolist() for s, v in (noise or {}).items()}
    for k, (cfg, log) in enumerate(zip(cfgs, logs)):
        if log.closed:
            continue
        lr_at = lr_lambda(cfg)
        tokens_per_step = cfg["batch_size"] * cfg["seq_len"]
        last = min(done, cfg["steps"], diverged_at[k] + 1 if diverged_at[k] >= 0 else done)
        for i in range(len(log.rows) - flushed, last - flushed):
            step = flushed + i
            row = {"step": step + 1, "tokens": (step + 1) * tokens_per_step, "lr": cfg["lr"] * lr_at(step),
                   "train_loss": losses[i][k], "grad_norm": norms[i][k], "clipped": norms[i][k] > _clip(cfg)}
            if step < min(cfg["activation_steps"], len(metrics.acts)):
                row.update({f"act_{name}": v for name, v in zip(act_names, acts[i][k])})
            if step in noise and _measures_noise(cfg, step):
                row["noise_trace"], row["noise_grad_sq"] = noise[step][0][k], noise[step][1][k]
            log.rows.append(row)


def _members_to_train(saved: dict | None, members: list[Member], todo: list[Member]):
    """The checkpoint's members and state when it covers every unfinished member (members finished
    since it was written ride along, frozen), else the unfinished members from scratch."""
    if saved is not None:
        by_id = {m.run_id: m for m in members}
        ids = saved["run_ids"]
        past_end = any(m.cfg["steps"] <= saved["step"] for m in todo)  # its outputs were deleted since
        if set(ids) <= set(by_id) and {m.run_id for m in todo} <= set(ids) and not past_end:
            return [by_id[i] for i in ids], saved
    return todo, None


def _clip(cfg: dict) -> float:
    return math.inf if cfg["clip"] is None else cfg["clip"]


def _member_batches(data: TokenShard, cfgs: list[dict], step: int, device: torch.device):
    """(K, B, T) inputs and targets: member k's batch from (seed_k, step)."""
    pairs = [data.batch(step, c["batch_size"], c["seq_len"], c["seed"]) for c in cfgs]
    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x, y


@torch.no_grad()
def validation_losses(model: GPT, batches, device, autocast) -> torch.Tensor:
    """Each member's mean loss per token over the fixed validation windows (the last batch may be
    short), as a (K,) tensor."""
    model.eval()
    K = model.n_members
    total = torch.zeros(K, device=device)
    for x, y in batches:
        with autocast():
            x_k, y_k = (t.to(device).unsqueeze(0).expand(K, -1, -1) for t in (x, y))
            total += model(x_k, y_k)[1].float() * y.numel()
    model.train()
    return total / sum(y.numel() for _, y in batches)


def matrix_spectra(model: GPT) -> list[dict[str, float]]:
    """Per member, σ_max and SVD entropy of every hidden and readout matrix, as metrics columns (one host sync)."""
    groups = model.param_groups()
    named = groups["hidden"] + groups["readout"]
    stats = torch.stack([torch.stack([spectrum(w) for w in p.detach()]) for _, p in named]).tolist()  # (P, K, 2)
    out = [{} for _ in range(model.n_members)]
    for (name, _), per_member in zip(named, stats):
        for k, (sigma_max, entropy) in enumerate(per_member):
            out[k][f"sigma_max[{name}]"], out[k][f"svd_entropy[{name}]"] = sigma_max, entropy
    return out


@dataclass
class _RunContext:
    """What writing a finished member's outputs needs."""

    members: list[Member]
    model: GPT
    val_data: TokenShard
    device: torch.device
    amp_dtype: torch.dtype | None
    compiled: bool
    pop_id: str
    resumed_from: int

    def finish(self, k: int, log: MemberLog, val_loss: float | None, timer: "_Throughput") -> None:
        """Write member k's model, metrics and summary (last: its presence marks a finished run)."""
        member = self.members[k]
        status = "ok" if val_loss is not None and math.isfinite(val_loss) else "diverged"
        if status == "ok":
            log.rows[-1]["val_loss"] = val_loss
        out = Path(member.out_dir)
        summary = member_summary(member.cfg, log.rows, status, val_loss if status == "ok" else None, self, timer)
        summary["population"] = {"id": self.pop_id, "index": k, "size": len(self.members),
                                 "tokens_per_s": timer.tokens_per_second()}
        checkpoint.save_member(self.model, k, out / checkpoint.MODEL_FILE)
        summary["model_sha256"] = file_sha256(out / checkpoint.MODEL_FILE)
        with atomic_output(out / "metrics.parquet") as tmp:
            pd.DataFrame(log.rows).to_parquet(tmp, index=False)
        write_json(out / "summary.json", summary)
        log.closed = True


def member_summary(cfg: dict, rows: list[dict], status: str, val_loss: float | None, run: _RunContext,
                   timer: "_Throughput") -> dict:
    """summary.json of one member (DESIGN.md "Run outputs"). Throughput is the population's: tokens/s
    is the member's share of the aggregate, MFU the aggregate's (what the hardware did meanwhile)."""
    n_matmul = run.model.num_params()
    fpt = flops_per_token(run.model.cfg, n_matmul)
    tokens = rows[-1]["tokens"] if rows else 0
    aggregate = timer.tokens_per_second()
    peak = bf16_peak_flops(run.device)
    last = [r["train_loss"] for r in rows[-10:]]
    return {
        "run_id": run_id(cfg),
        "status": status,
        "steps": rows[-1]["step"] if rows else 0,
        "final_train_loss": sum(last) / len(last) if status == "ok" else None,
        "final_val_loss": val_loss,
        "val_bpb": val_loss / math.log(2) / run.val_data.bytes_per_token if val_loss is not None else None,
        "tokens": tokens,
        "n_params": run.model.num_params(include_embeddings=True),
        "n_params_matmul": n_matmul,
        "flops_per_token": fpt,
        "flops": fpt * tokens,
        "wall_seconds": timer.elapsed(),
        "tokens_per_s": aggregate / len(run.members) if aggregate else None,
        "mfu": fpt * aggregate / peak if peak and aggregate else None,
        "device": device_name(run.device),
        "autocast": str(run.amp_dtype).removeprefix("torch.") if run.amp_dtype else "float32",
        "compiled": run.compiled,
        "resumed_from_step": run.resumed_from or None,
        "versions": library_versions(),
        "git_commit": git_commit(),
    }


def _write_run_config(cfg: dict, out_dir: Path) -> None:
    """Write config.json, refusing a directory that already holds a different run."""
    path = out_dir / "config.json"
    if path.exists() and read_json(path) != cfg:
        raise ValueError(f"{out_dir} already holds a run with a different config; refusing to overwrite it")
    if not path.exists():
        write_json(path, cfg)


class _Throughput:
    """Aggregate tokens/s over the steps after the first logged interval (which holds compilation
    and warm-up); elapsed seconds include those of a run before it was resumed."""

    def __init__(self, device: torch.device, elapsed_before: float = 0.0, start_tokens: int = 0):
        self.device, self.t0, self.before, self.start_tokens = device, time.perf_counter(), elapsed_before, start_tokens
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None

    def mark(self, tokens: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        point = (time.perf_counter(), tokens)
        self.first = self.first or point
        self.last = point

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def tokens_per_second(self) -> float | None:
        if self.first and self.last and self.last[1] > self.first[1]:
            return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
        if self.last:  # a single interval: include the warm-up rather than report nothing
            return (self.last[1] - self.start_tokens) / (self.last[0] - self.t0)
        return None
