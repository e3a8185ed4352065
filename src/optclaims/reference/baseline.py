"""The nightly's gpu baseline from the committed references: ``figures.json`` computed from
``results/reference/gpu`` as ``regression-figures`` computes it from ``results/gpu`` (each claim's
status, sub-claim statuses and measured figures; the final losses of the same reference runs, by
the gpu plan, with their seed spread), so ``optclaims bless`` turns it into
``results/baselines/gpu.json`` and ``make nightly SCALE=gpu`` on a user's GPU compares against what
the references found. A stale reference is refused: its runs may no longer be the plan's."""

from __future__ import annotations

from pathlib import Path

from ..atomic import read_json
from ..regression.figures import claim_figures, figures_of, reference_run_figures, reference_runs, seed_group
from . import layout
from .report import claim_staleness


def reference_figures(ref_dir: Path, claim_runs: dict[str, list[str]], runs: dict[str, dict], rule: dict,
                      root: Path = Path(".")) -> dict:
    """figures.json of every claim with a reference. ``claim_runs`` and ``runs`` are the gpu plan's
    (``Plan.claims``, ``Plan.runs``); ``rule`` the gpu scale's ``regression`` settings."""
    ref_dir = Path(ref_dir)
    folders = layout.claim_dirs(ref_dir)
    if not folders:
        raise ValueError(f"reference: no claim reference in {ref_dir} yet; nothing to bless")
    claims, refs, made = {}, {}, []
    per_claim = rule.get("reference_runs_per_claim", 3)
    for folder in folders:
        claim = folder.name
        prov = read_json(folder / layout.PROVENANCE)
        stale = claim_staleness(claim, prov, root)
        if stale:
            raise ValueError(f"claim {claim}: its reference is stale ({', '.join(stale['changed'][:6])} changed); "
                             "file a fresh one before blessing a baseline from it")
        if claim not in claim_runs:
            raise ValueError(f"claim {claim}: not in the gpu plan")
        claims[claim] = claim_figures(read_json(folder / layout.VERDICT))
        made.append(prov["made"])
        for key, rid in reference_runs({claim: claim_runs[claim]}, per_claim).items():
            group = seed_group(runs, rid)
            missing = [r for r in group if not (folder / layout.RUNS / r / "summary.json").is_file()]
            if missing:
                raise ValueError(f"claim {claim}: reference run {key} needs run(s) {', '.join(missing)}, "
                                 f"which its reference does not hold")
            summaries = [read_json(folder / layout.RUNS / r / "summary.json") for r in group]
            refs[key] = reference_run_figures(key, group, summaries, read_json(folder / layout.RUNS / rid / "config.json"))
    return figures_of(layout.SCALE, max(made), rule, claims, refs)
