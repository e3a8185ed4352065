"""`optclaims bench-population`: what training a population costs, on this machine.

For each optimizer family and each population size K it builds K members of one shape (each with
its own learning rate and seed, as a sweep has them), and times the trainer's own step
(``train.train_step``: forward, backward, per-member clipping, the optimizer set's step, zero_grad)
on random tokens, median over --steps after --warmup (bf16 autocast and torch.compile on CUDA,
eager float32 on CPU). It prints per K: step ms, the optimizer step's share, aggregate tokens/s,
MFU (bf16 dense peak of the device; none on CPU), the speed-up over K = 1 per member, and the
first step's extra seconds (torch.compile and warm-up); a recorded row's start-up adds this
process's own (interpreter and imports). ``--json`` writes the figures;
``--record`` appends them, row by row as measured, to the cost table (``workflows/throughput.csv``) that
``optclaims plan --cost`` reads.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from .cost import record_measurements
from .provenance import bf16_peak_flops, device_name
from .runs import make_run_config
from .settings import run_schema
from .shape import flops_per_token

SHAPES = {  # d_model, n_layers, n_heads, seq_len, vocab_size
    "sweep": (256, 4, 4, 256, 8192),   # the reference shape (a small gpu-scale sweep model)
    "tiny": (64, 2, 2, 64, 2048),      # a smoke-scale model
    "small": (128, 4, 4, 128, 8192),   # lr_batch_scaling's gpu model: at a batch of 8, steps bound by kernel launches
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def population_configs(shape: str, optimizer: str, members: int, batch_size: int, steps: int, compile_: bool) -> list[dict]:
    d, L, H, T, V = SHAPES[shape]
    base = {"data": "bench", "vocab_size": V, "d_model": d, "n_layers": L, "n_heads": H, "seq_len": T,
            "batch_size": batch_size, "steps": steps, "optimizer": optimizer, "compile": compile_,
            "lr": 0.02 if optimizer == "muon" else 1e-3}
    return [make_run_config({**base, "lr": base["lr"] * 2 ** (k / 2 - 1), "seed": k}) for k in range(members)]


def bench_population(configs: list[dict], warmup: int, steps: int) -> dict:
    from .train import build_population, resolve_runtime, train_step

    first, K = configs[0], len(configs)
    device, amp_dtype, compile_ = resolve_runtime(configs)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    model, optimizers, progress = build_population(configs, device)
    if compile_:
        torch._dynamo.reset()  # a fresh compile per population, so first_step_extra_s is the compile it costs
    step_model = torch.compile(model) if compile_ else model
    B, T, V = first["batch_size"], first["seq_len"], first["vocab_size"]
    x = torch.randint(0, V, (K, B, T), device=device)
    y = torch.randint(0, V, (K, B, T), device=device)

    times, step = [], 0
    t0 = time.perf_counter()
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        train_step(step_model, optimizers, progress, x, y, step, autocast)
        _sync(device)
        times.append(time.perf_counter() - start)
        step += 1
    first_step_extra = times[0] - statistics.median(times[warmup:])
    step_s = statistics.median(times[warmup:])
    total_s = time.perf_counter() - t0

    for p in model.parameters():  # the optimizer step alone, on fixed gradients
        p.grad = torch.randn_like(p) * 1e-3
    mask = torch.ones(K, dtype=torch.bool, device=device)
    opt_times = []
    for _ in range(max(steps, 1)):
        _sync(device)
        start = time.perf_counter()
        optimizers.step(0, mask)
        _sync(device)
        opt_times.append(time.perf_counter() - start)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3

    tokens_per_s = K * B * T / step_s
    fpt = flops_per_token(model.cfg, model.num_params())
    peak = bf16_peak_flops(device)
    result = {
        "device": device_name(device), "optimizer": first["optimizer"], "members": K,
        "d_model": first["d_model"], "n_layers": first["n_layers"], "seq_len": T, "vocab_size": V, "batch_size": B,
        "params_per_member": model.num_params(include_embeddings=True), "flops_per_token": fpt,
        "step_ms": 1e3 * step_s, "optimizer_ms": 1e3 * statistics.median(opt_times),
        "tokens_per_s": tokens_per_s, "mfu": fpt * tokens_per_s / peak if peak else None,
        "first_step_extra_s": first_step_extra, "compiled": compile_,
        "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype else "float32", "wall_s": total_s,
    }
    del model, optimizers, step_model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def format_table(rows: list[dict]) -> str:
    head = (f"{'optimizer':<9} {'K':>3} {'step ms':>9} {'opt share':>9} {'tokens/s':>11} {'MFU':>6} "
            f"{'×K=1 per member':>15} {'first step +s':>13}")
    lines = [head, "-" * len(head)]
    solo = {r["optimizer"]: r["tokens_per_s"] for r in rows if r["members"] == 1}
    for r in rows:
        speedup = r["tokens_per_s"] / solo[r["optimizer"]] if r["optimizer"] in solo else None
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        lines.append(f"{r['optimizer']:<9} {r['members']:>3} {r['step_ms']:>9.1f} {r['optimizer_ms'] / r['step_ms']:>9.1%} "
                     f"{r['tokens_per_s']:>11.0f} {mfu:>6} {'-' if speedup is None else f'{speedup:.2f}':>15} "
                     f"{r['first_step_extra_s']:>13.1f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", choices=sorted(SHAPES), help="model shape (default: sweep on CUDA, tiny on CPU)")
    parser.add_argument("--members", help="population sizes, comma-separated (default 1,2,4,8,16 on CUDA, 1,2,4 on CPU)")
    parser.add_argument("--optimizers", default="adamw,muon")
    parser.add_argument("--batch-size", type=int, help="sequences per member and step (default 64 on CUDA, 4 on CPU)")
    parser.add_argument("--steps", type=int, help="timed steps (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, compilation included (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--no-compile", action="store_true", help="eager on CUDA too (to measure what compiling gains)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--record", metavar="CSV", nargs="?", const="workflows/throughput.csv",
                        help="append the measured rows to the cost table (default workflows/throughput.csv)")


def run(args: argparse.Namespace) -> None:
    startup_s = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # interpreter and imports, CPU seconds so far
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    shape = args.shape or ("sweep" if cuda else "tiny")
    sizes = [int(k) for k in (args.members or ("1,2,4,8,16" if cuda else "1,2,4")).split(",") if k]
    optimizers = [o for o in args.optimizers.split(",") if o]
    known = run_schema()["properties"]["optimizer"]["enum"]
    bad = [o for o in optimizers if o not in known]
    if bad or not sizes or min(sizes) < 1:
        raise ValueError(f"--optimizers {args.optimizers!r} / --members {args.members!r}: expected optimizers among "
                         f"{'/'.join(known)} and sizes ≥ 1")
    steps = args.steps if args.steps is not None else (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    batch = args.batch_size if args.batch_size is not None else (64 if cuda else 4)
    if steps < 1 or batch < 1 or warmup < (1 if args.record else 0):
        raise ValueError(f"--steps {steps}, --batch-size {batch}, --warmup {warmup}: steps and batch size must be "
                         "at least 1, warm-up at least 0 (at least 1 with --record, so compilation is not timed as a step)")
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    d, L, H, T, V = SHAPES[shape]
    print(f"bench-population on {where}; torch {torch.__version__}; shape d{d} L{L} T{T} V{V}, batch {batch} per member; "
          f"median of {steps} steps after {warmup} warm-up", flush=True)
    rows = []
    for opt in optimizers:
        for K in sizes:
            configs = population_configs(shape, opt, K, batch, warmup + steps, cuda and not args.no_compile)
            rows.append(bench_population(configs, warmup, steps))
            print(json.dumps({k: rows[-1][k] for k in ("optimizer", "members", "step_ms", "tokens_per_s", "mfu")}), flush=True)
            if args.record:  # row by row, so a bench stopped at its time limit keeps what it measured
                record_measurements(Path(args.record), rows[-1:], startup_s)
    print(format_table(rows))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"device": where, "torch": torch.__version__, "results": rows}, indent=2) + "\n")

