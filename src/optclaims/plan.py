"""The plan of a workflow: from the validated workflow config to the data set, the runs (by run_id),
the runs each claim needs and the populations that train them. The Snakefile builds it once at
parse time, so a bad claim, corpus or run field stops the workflow before any job starts."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .claims import (DEFAULT_REPRO_DIR, all_claims, claim_run_configs, finish_run_configs, load_claim,
                     load_claim_module, selection_stages)
from .data.corpus import parse_corpus_spec
from .errors import ConfigError
from .population import group_populations
from .runs import run_id
from .settings import run_schema
from .workflow_config import validated


def _typed(value):
    """A run override as its YAML scalar: snakemake's ``--config run_overrides={steps: 4}`` hands nested
    values over as text ("4", "false", "null"); a value given in a config file is already typed."""
    if not isinstance(value, str):
        return value
    try:
        typed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if typed is None or isinstance(typed, (bool, int, float)):
        return typed
    try:
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as text
    except ValueError:
        return value


@dataclass(frozen=True)
class DataSpec:
    corpus: str
    max_bytes: int | None
    val_fraction: float
    vocab_size: int
    expected_hash: str | None = None  # the committed manifest hash of the scale's own corpus; a check, not a shape

    @property
    def data_id(self) -> str:
        """Readable and unique: corpus slug, vocabulary, and a hash of everything that shapes the tokens."""
        shape = {k: v for k, v in self.__dict__.items() if k != "expected_hash"}
        digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:8]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.corpus).strip("-")[:32]
        return f"{slug}-v{self.vocab_size}-{digest}"


# Run fields that say how a run is executed, not what it measures: overriding them (run_overrides) keeps
# a scale's verdicts evidential. Any other override changes the protocol written before the runs.
EXECUTION_FIELDS = frozenset({"device", "dtype", "compile", "ckpt_every"})


@dataclass
class Plan:
    scale: str
    scale_dir: Path
    settings: dict
    data: DataSpec
    runs: dict[str, dict] = field(default_factory=dict)
    claims: dict[str, list[str]] = field(default_factory=dict)
    claim_specs: dict[str, dict] = field(default_factory=dict)
    common: dict = field(default_factory=dict)   # fields every run config gets (data, vocab, overrides)
    stages: dict[str, int] = field(default_factory=dict)  # staged claim → its number of selection stages
    populations: dict[str, list[str]] = field(default_factory=dict)  # first stage: population_id → run_ids
    evaluated: dict[str, set[str]] = field(default_factory=dict)  # claim → the run_ids lm-eval scores, where not all

    def evaluates(self, claim: str, rid: str) -> bool:
        """Does lm-eval score this run for this claim? Never with ``evaluate: false``; else every run
        of the claim, or only those its analysis names (``evaluated_runs`` in analyze.py)."""
        if not self.claim_specs[claim].get("evaluate", True):
            return False
        return claim not in self.evaluated or rid in self.evaluated[claim]

    @property
    def protocol_overrides(self) -> list[str]:
        """The run_overrides that change what the runs measure (steps, batch size, LR, ...), sorted."""
        return sorted(set(self.common) - {"data", "vocab_size"} - EXECUTION_FIELDS)

    @property
    def evidential(self) -> bool:
        """The scale's verdicts are evidence unless run_overrides changed its protocol."""
        return bool(self.settings["evidential"]) and not self.protocol_overrides

    @property
    def staged(self) -> set[str]:
        """Claims whose later runs are chosen from earlier results (analyze.py defines select_runs)."""
        return set(self.stages)

    def selections(self, claim: str) -> range:
        """The stage numbers of a claim's selections: 2, 3, ... (stage 1 is its plan)."""
        return range(2, 2 + self.stages.get(claim, 0))

    def group(self, runs: dict[str, dict]) -> dict[str, list[str]]:
        """Runs packed into populations by the scale's ``population`` settings."""
        p = self.settings["population"]
        return group_populations(runs, p["max_members"], p["memory_gb"] * 2**30)

    @property
    def data_dir(self) -> Path:
        return self.scale_dir / "data" / self.data.data_id


def build_plan(config: dict, repro_dir: Path = DEFAULT_REPRO_DIR) -> Plan:
    """The plan of a workflow config, validated first (its schema's defaults filled in, in place;
    ``claims: null`` becomes every claim folder of ``repro_dir``, sorted by name)."""
    validated(config)
    scale = config["scale"]
    if scale not in config["scales"]:
        raise ConfigError(f"unknown scale {scale!r} (known: {', '.join(config['scales'])})")
    settings = config["scales"][scale]
    spec = config.get("corpus") or settings["corpus"]["spec"]
    try:
        parse_corpus_spec(spec)
    except ValueError as e:
        raise ConfigError(f"invalid corpus = {spec!r}: {e}") from None
    own = spec == settings["corpus"]["spec"]  # an override of the spec drops the scale's committed hash
    corpus = settings["corpus"]
    data = DataSpec(spec, corpus["max_bytes"], corpus["val_fraction"], settings["tokenizer"]["vocab_size"],
                    corpus["manifest_hash"] if own else None)

    overrides = {k: _typed(v) for k, v in (config.get("run_overrides") or {}).items()}
    known = run_schema()["properties"]
    for key in overrides:
        if key not in known or key in ("data", "vocab_size"):
            raise ConfigError(f"invalid run_overrides: unknown run field {key!r}")
    common = {**overrides, "data": data.data_id, "vocab_size": data.vocab_size}

    plan = Plan(scale, Path(config["results_dir"]) / scale, settings, data, common=common)
    if config["claims"] is None:  # every claim folder; filled in, so the config records what was planned
        config["claims"] = all_claims(repro_dir)
    for claim in config["claims"]:
        spec_ = load_claim(claim, repro_dir)
        module = load_claim_module(claim, repro_dir)
        if selection_stages(module):
            plan.stages[claim] = selection_stages(module)
        ids = []
        for cfg in claim_run_configs(spec_, scale, common, module):
            rid = run_id(cfg)
            plan.runs[rid] = cfg
            ids.append(rid)
        plan.claims[claim] = list(dict.fromkeys(ids))  # one spelling of a run, however often asked for
        if hasattr(module, "evaluated_runs"):
            fields = module.evaluated_runs(spec_["scales"][scale])
            plan.evaluated[claim] = {run_id(c) for c in finish_run_configs(claim, scale, fields, common)}
            stray = plan.evaluated[claim] - set(ids)
            if stray:
                raise ConfigError(f"claim {claim!r}: evaluated_runs names runs that are not in its plan: {sorted(stray)}")
        plan.claim_specs[claim] = spec_
    plan.populations = plan.group(plan.runs)
    return plan
