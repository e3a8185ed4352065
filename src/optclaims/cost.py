"""`optclaims plan --scale S --cost`: what each claim of a scale costs, before anything runs.

Per claim: its runs (each later stage of a staged claim chosen from stand-in results of the
earlier ones whose best learning rate is the middle of each grid), the populations that train them when the claim runs
alone (as `make gpu-reference CLAIMS=...` runs it), tokens, FLOPs, and estimated minutes on each
device of the cost table, data preparation included (a fresh GPU slot builds its corpus, tokenizer
and shards again). A population's time is its start-up (process, device, data) plus its longest
member's steps times the population's tokens per step, divided by the aggregate tokens/s the table
gives for that device, optimizer and population size, plus its compilation where it runs compiled
steps (a quarter of it for a later population of a shape already compiled: inductor's on-disk
cache). A row is converted to another shape at equal FLOP/s (tokens/s × FLOPs per token).
Validation passes are counted at a third of a training token's cost, a gradient-noise measurement
(`noise_scale_every`) as one training step.

The table, ``workflows/throughput.csv``, holds one row per measurement (``optclaims bench-population
--record``) with its device and date, or per estimate with its source; ``measured`` says which.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .claims import DEFAULT_REPRO_DIR
from .population import COMPILE_SPEEDUP, compiles, population_key, run_flops_per_token

if TYPE_CHECKING:
    from .analysis import Run

TABLE = Path("workflows/throughput.csv")
COLUMNS = ["device", "optimizer", "d_model", "n_layers", "seq_len", "vocab_size", "batch_size", "members",
           "tokens_per_s", "startup_s", "compile_s", "compiled", "measured", "date", "source"]
DEVICES = {"smoke": ["CPU"], "gpu": ["H100", "H200"], "full": ["H100", "H200"]}


def device_kind(name: str) -> str:
    for kind in ("H200", "H100", "A100", "L40S", "L4"):
        if kind in name:
            return kind
    return "CPU"


def load_table(path: Path = TABLE) -> pd.DataFrame:
    table = pd.read_csv(path, comment="#")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return table


def record_measurements(path: Path, rows: list[dict], startup_s: float = 0.0,
                        source: str = "optclaims bench-population") -> None:
    """Append bench-population results to the cost table (its comments kept), dated and marked
    measured; ``startup_s``: the process's own start-up (interpreter, imports, device)."""
    today = dt.date.today().isoformat()
    path = Path(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if path.stat().st_size == 0:
            writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([device_kind(r["device"]), r["optimizer"], r["d_model"], r["n_layers"], r["seq_len"],
                             r["vocab_size"], r["batch_size"], r["members"], round(r["tokens_per_s"]),
                             round(startup_s, 1), round(max(r["first_step_extra_s"], 0.0), 1),
                             str(r["compiled"]).lower(), "true", today, source])


def throughput(table: pd.DataFrame, device: str, cfg: dict, members: int, compiled: bool) -> dict:
    """{tokens_per_s (aggregate), startup_s, compile_s, measured} for a population of ``members``
    runs like ``cfg`` on ``device``, compiled or not: the row of that device and optimizer nearest
    in population size, FLOPs per token and batch size (measured rows, then rows of the same compile
    choice first; of equally near rows the latest), converted to this shape at equal FLOP/s, and by ``COMPILE_SPEEDUP`` where the row's
    compile choice differs."""
    rows = table[(table.device == device) & (table.optimizer == cfg["optimizer"])]
    if rows.empty:
        rows = table[(table.device == device) & (table.optimizer != "data")]
    if rows.empty:
        raise ValueError(f"the cost table has no row for device {device!r}")
    fpt = run_flops_per_token(cfg)
    row_fpt = rows.apply(lambda r: run_flops_per_token(r.to_dict() | {"n_heads": 1}), axis=1)
    measured = rows.measured.astype(str).str.lower() == "true"
    row_compiled = rows.compiled.astype(str).str.lower() == "true"
    distance = (np.abs(np.log2(rows.members / members)) + np.abs(np.log2(row_fpt / fpt))
                + 0.5 * np.abs(np.log2(rows.batch_size / cfg["batch_size"]))
                + np.where(measured, 0.0, 0.5) + np.where(row_compiled == compiled, 0.0, 0.25))
    best = distance[::-1].idxmin()  # of equally near rows the latest (rows are appended as measured)
    row = rows.loc[best]
    tps = float(row.tokens_per_s * row_fpt[best] / fpt)
    if row_compiled[best] != compiled:
        tps = tps * COMPILE_SPEEDUP if compiled else tps / COMPILE_SPEEDUP
    return {"tokens_per_s": tps, "startup_s": float(row.startup_s), "compile_s": float(row.compile_s),
            "measured": bool(measured[best])}


def data_seconds(table: pd.DataFrame, device: str, corpus_bytes: int) -> tuple[float, bool]:
    """(seconds, measured?) of the data stage for a corpus of ``corpus_bytes``."""
    rows = table[(table.device == device) & (table.optimizer == "data")]
    if rows.empty:
        raise ValueError(f"the cost table has no data row for device {device!r}")
    row = rows.iloc[-1]
    return float(row.startup_s + corpus_bytes / row.tokens_per_s), str(row.measured).lower() == "true"


def stand_in_run(rid: str, cfg: dict, centre: float) -> Run:
    """A run as the cost estimate imagines it: finished, its loss a parabola in log2 LR around
    ``centre`` (the runs a selection picks are of the same number and shape whatever the optimum)."""
    from .analysis import Run

    metrics = pd.DataFrame({"step": np.arange(1, cfg["steps"] + 1), "grad_norm": 1.0, "train_loss": 3.0})
    return Run(rid, cfg, {"status": "ok", "final_val_loss": 3.0 + (math.log2(cfg["lr"]) - centre) ** 2,
                          "n_params": 0, "tokens_per_s": 1.0, "wall_seconds": 1.0}, metrics)


def later_stages_stand_in(claim: str, spec: dict, scale: str, module, runs: dict[str, dict], common: dict,
                          stages: range) -> list[dict[str, dict]]:
    """A staged claim's later stages as ``select_runs`` would choose them, one after the other, from
    stand-in results of every earlier run (``stand_in_run``, centred on the middle of each LR grid
    — the runs that differ only in lr and seed — as the grid is when first chosen)."""
    from .analysis import ClaimContext
    from .claims import finish_run_configs
    from .runs import run_id

    def grid_key(cfg):
        return tuple(sorted((k, str(v)) for k, v in cfg.items() if k not in ("lr", "seed")))

    centres: dict[tuple, float] = {}  # fixed when a grid is first seen: a run's stand-in result never changes

    def stand_ins_of(new: dict[str, dict]) -> list:
        grids: dict[tuple, list[float]] = {}
        for cfg in new.values():
            grids.setdefault(grid_key(cfg), []).append(math.log2(cfg["lr"]))
        for key, lrs in grids.items():
            centres.setdefault(key, float(np.median(lrs)))
        return [stand_in_run(rid, cfg, centres[grid_key(cfg)]) for rid, cfg in new.items()]

    known, chosen = stand_ins_of(runs), []
    for stage in stages:
        ctx = ClaimContext(claim, spec, scale, False, known, Path("."), stage=stage)
        selected = {run_id(c): c for c in finish_run_configs(claim, scale, module.select_runs(ctx), common)}
        chosen.append(selected)
        seen = {r.run_id for r in known}
        known = known + stand_ins_of({r: c for r, c in selected.items() if r not in seen})
    return chosen


def claim_cost(plan, claim: str, table: pd.DataFrame, repro_dir: Path = DEFAULT_REPRO_DIR) -> dict:
    """Runs, populations, tokens, FLOPs and estimated minutes per device of one claim run alone."""
    from .claims import load_claim_module

    runs = {r: plan.runs[r] for r in plan.claims[claim]}
    populations = plan.group(runs)
    if claim in plan.staged:
        module = load_claim_module(claim, repro_dir)
        for selected in later_stages_stand_in(claim, plan.claim_specs[claim], plan.scale, module, runs, plan.common,
                                              plan.selections(claim)):
            populations.update(plan.group({r: c for r, c in selected.items() if r not in runs}))
            runs = {**runs, **selected}
    tokens = sum(c["steps"] * c["batch_size"] * c["seq_len"] for c in runs.values())
    out = {"claim": claim, "runs": len(runs), "populations": len(populations), "tokens": tokens,
           "flops": sum(run_flops_per_token(c) * c["steps"] * c["batch_size"] * c["seq_len"] for c in runs.values())}
    corpus_bytes = plan.data.max_bytes or 10**9  # no cap: a gigabyte stands in
    for device in DEVICES[plan.scale]:
        seconds, measured = data_seconds(table, device, corpus_bytes)
        compiled_shapes: set[tuple] = set()
        for members in populations.values():
            cfgs = [runs[r] for r in members]
            c, K = cfgs[0], len(cfgs)
            compiled = compiles(cfgs, "cpu" if device == "CPU" else "cuda")
            t = throughput(table, device, c, K, compiled)
            steps = max(x["steps"] for x in cfgs)
            evals = (steps // c["eval_every"] + 1) * c["val_batches"] / 3  # forward-only passes
            # gradient-noise measurements (noise_scale_every): a forward and backward of the step's batch each
            noise = max((x["steps"] // x["noise_scale_every"] if x.get("noise_scale_every") else 0) for x in cfgs)
            seconds += t["startup_s"] + (steps + evals + noise) * K * c["batch_size"] * c["seq_len"] / t["tokens_per_s"]
            if compiled:
                # a later population of a compiled shape finds most of it in inductor's on-disk cache
                shape = (population_key(c), K)  # the graph depends on the member count too
                seconds += t["compile_s"] if shape not in compiled_shapes else t["compile_s"] / 4
                compiled_shapes.add(shape)
            measured &= t["measured"]
        out[f"minutes_{device}"] = seconds / 60
        out[f"measured_{device}"] = measured
    return out


def plan_cost(plan, table: pd.DataFrame, repro_dir: Path = DEFAULT_REPRO_DIR) -> pd.DataFrame:
    rows = [claim_cost(plan, claim, table, repro_dir) for claim in plan.claims]
    frame = pd.DataFrame(rows)
    total = {"claim": "all", **{c: frame[c].sum() for c in frame.columns if c != "claim" and not c.startswith("measured")},
             **{c: frame[c].all() for c in frame.columns if c.startswith("measured")}}
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True)


def format_cost(frame: pd.DataFrame, scale: str) -> str:
    devices = DEVICES[scale]
    head = f"{'claim':<24} {'runs':>5} {'pops':>5} {'tokens':>9} {'PFLOP':>8} " + " ".join(f"{'min ' + d:>10}" for d in devices)
    lines = [head, "-" * len(head)]
    for r in frame.to_dict("records"):
        mins = " ".join(f"{r['minutes_' + d]:>9.1f}{'' if r['measured_' + d] else '*'}" for d in devices)
        lines.append(f"{r['claim']:<24} {r['runs']:>5} {r['populations']:>5} {r['tokens'] / 1e6:>8.1f}M "
                     f"{r['flops'] / 1e15:>8.2f} {mins}")
    lines.append("- each claim as it runs alone (its own data preparation and populations); 'all' sums them")
    lines.append("* from an estimated row of workflows/throughput.csv (see its source column), not a measurement")
    return "\n".join(lines)
