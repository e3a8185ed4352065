"""`optclaims bench-optim`: what an optimizer step costs, on this machine.

For each model size and each optimizer setup it times (median over --steps after --warmup):
  - the optimizer step alone, on random gradients (Muon's and AdamW's parts separately), and
  - a whole training step: forward, backward, optimizer step and zero_grad, on random tokens
    (bf16 autocast and torch.compile on CUDA, eager float32 on CPU),
and reports Muon's share of the training step. Setups: this suite's Muon on the hidden matrices
+ AdamW on the rest, torch.optim.Muon (Moonlight scaling) + AdamW, AdamW on everything
(fused on CUDA, foreach on CPU), and AdamW with spectral weight decay (10 power iterations per
matrix and step, timed as "decay ms"). NS costs about 5·(4m²n + 2m³) FLOPs for an m×n matrix (m ≤ n)
against 6·mn per token for training, so Muon's share falls as tokens per step grow.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from .model import GPT, GPTConfig
from .optim.build import DECAYED_ROLES
from .optim.muon import Muon, split_params
from .optim.spectral_decay import SpectralDecay

VOCAB = 8192
SIZES = {
    "gpt2": GPTConfig(VOCAB, 768, 12, 12, 1024),  # GPT-2-small-shaped, with the suite's vocabulary
    "small": GPTConfig(VOCAB, 256, 4, 4, 256),
}
SETUPS = ("muon", "torch-muon", "adamw", "adamw-spectral")
LR, WEIGHT_DECAY = 1e-3, 0.1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, device: torch.device, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _optimizers(model: GPT, setup: str, device: torch.device) -> dict[str, torch.optim.Optimizer]:
    impl = {"fused": True} if device.type == "cuda" else {"foreach": True}
    adamw_kw = {"lr": LR, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": WEIGHT_DECAY, **impl}
    if setup == "adamw":
        return {"adamw": torch.optim.AdamW(model.parameters(), **adamw_kw)}
    if setup == "adamw-spectral":  # spectral decay on the matrices that decoupled decay would shrink
        groups = model.param_groups()
        matrices = [p for role in DECAYED_ROLES for _, p in groups[role]]
        return {"spectral": SpectralDecay(matrices, lr=LR, weight_decay=WEIGHT_DECAY),
                "adamw": torch.optim.AdamW(model.parameters(), **{**adamw_kw, "weight_decay": 0.0})}
    muon_groups, adamw_groups = split_params(model)
    if setup == "muon":
        muon = Muon(muon_groups, lr=LR, weight_decay=WEIGHT_DECAY, scale="moonlight")
    elif setup == "torch-muon":
        params = [p for g in muon_groups for p in g["params"]]
        muon = torch.optim.Muon(params, lr=LR, weight_decay=WEIGHT_DECAY, adjust_lr_fn="match_rms_adamw")
    else:
        raise ValueError(f"unknown setup {setup!r}; expected one of {SETUPS}")
    return {"muon": muon, "adamw": torch.optim.AdamW(adamw_groups, **adamw_kw)}


def _train_step(forward, x: torch.Tensor, opts: list[torch.optim.Optimizer], bf16: bool) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = forward(x, x)[1]
    loss.backward()
    for opt in opts:
        opt.step()
    for opt in opts:
        opt.zero_grad(set_to_none=True)


def bench_size(name: str, cfg: GPTConfig, device: torch.device, batch_size: int, warmup: int, steps: int,
               compile_model: bool) -> list[dict]:
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    cuda = device.type == "cuda"
    forward = torch.compile(model) if cuda and compile_model else model
    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.seq_len), device=device)
    n_params = sum(p.numel() for p in model.parameters())
    rows = []
    for setup in SETUPS:
        opts = _optimizers(model, setup, device)

        # the optimizer step alone, on fixed random gradients
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        part_s = {part: _median_seconds(opt.step, device, warmup, steps) for part, opt in opts.items()}

        train_s = _median_seconds(partial(_train_step, forward, x, list(opts.values()), cuda), device, warmup, steps)
        muon_s, spectral_s = part_s.get("muon"), part_s.get("spectral")
        rows.append({
            "size": name, "d_model": cfg.d_model, "n_layers": cfg.n_layers, "seq_len": cfg.seq_len,
            "params": n_params, "batch_size": batch_size, "setup": setup,
            "opt_step_ms": 1e3 * sum(part_s.values()),
            "muon_ms": None if muon_s is None else 1e3 * muon_s,
            "spectral_decay_ms": None if spectral_s is None else 1e3 * spectral_s,
            "adamw_ms": 1e3 * part_s["adamw"],
            "train_step_ms": 1e3 * train_s,
            "tokens_per_s": batch_size * cfg.seq_len / train_s,
            "muon_share": None if muon_s is None else muon_s / train_s,
        })
        del opts
        model.zero_grad(set_to_none=True)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return rows


def _fmt(v, spec: str) -> str:
    width = spec.lstrip("<>^").split(".")[0]
    return format("-", f">{width}") if v is None else format(v, spec)


def format_table(rows: list[dict]) -> str:
    head = (f"{'size':<6} {'params':>7} {'batch':>5} {'setup':<14} {'opt step ms':>11} {'muon ms':>8} {'decay ms':>8} "
            f"{'adamw ms':>8} {'train step ms':>13} {'tokens/s':>9} {'muon share':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['size']:<6} {r['params'] / 1e6:>6.1f}M {r['batch_size']:>5} {r['setup']:<14} "
            f"{r['opt_step_ms']:>11.1f} {_fmt(r['muon_ms'], '>8.1f')} {_fmt(r['spectral_decay_ms'], '>8.1f')} {r['adamw_ms']:>8.1f} "
            f"{r['train_step_ms']:>13.1f} {r['tokens_per_s']:>9.0f} {_fmt(r['muon_share'], '>10.1%')}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", help=f"comma-separated, of {', '.join(SIZES)} (default: all on CUDA, "
                                        "small on CPU)")
    parser.add_argument("--steps", type=int, help="timed steps (default 20 on CUDA, 5 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 5 on CUDA, incl. compile; 1 on CPU)")
    parser.add_argument("--batch-size", type=int, help="sequences per step (default 8 on CUDA, 1 on CPU)")
    parser.add_argument("--no-compile", action="store_true", help="eager model on CUDA too")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")


def run(args: argparse.Namespace) -> list[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    sizes = [s for s in (args.sizes or ("gpt2,small" if cuda else "small")).split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise ValueError(f"unknown sizes {unknown}; expected some of {list(SIZES)}")
    steps = args.steps or (20 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    batch_size = args.batch_size or (8 if cuda else 1)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        where = torch.cuda.get_device_name(device)
        mode = "bf16 autocast, " + ("eager" if args.no_compile else "torch.compile")
    else:
        where = f"CPU, {torch.get_num_threads()} threads"
        mode = "float32, eager"
    print(f"bench-optim on {where}; torch {torch.__version__}; training step: {mode}; "
          f"median of {steps} steps after {warmup} warm-up", flush=True)
    rows = []
    for s in sizes:
        rows += bench_size(s, SIZES[s], device, batch_size, warmup, steps, compile_model=not args.no_compile)
    print(format_table(rows))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": where, "torch": torch.__version__, "training_step": mode, "steps": steps, "warmup": warmup}
        out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="optclaims bench-optim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
