"""Claim specs: reproductions/<claim>/claim.yaml, validated, its analysis module, and the run
configs a claim needs at a scale.

A claim's runs come from its base fields × grid × seeds (plus explicit runs), or from
``plan_runs(scale_spec)`` when its analyze.py defines one. A claim whose later runs depend on
earlier results (e.g. budgets at the best learning rate of a sweep) also defines
``select_runs(ctx)``; the workflow runs it as a Snakemake checkpoint once the first runs exist.
A claim with several rounds of selection (e.g. coordinate descent, then budgets at the tuned
config) sets ``SELECTION_STAGES = n``: select_runs is then called for stages 2 … n + 1
(``ctx.stage``), each time with every run of the earlier stages. With ``evaluate: true`` lm-eval
scores every run of the claim, or only ``evaluated_runs(scale_spec)`` (fields, like plan_runs)
where analyze.py defines it."""

from __future__ import annotations

import importlib.util
import itertools
import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError
from .runs import make_run_config, schema_error_message

DEFAULT_REPRO_DIR = Path("reproductions")
CLAIM_FILE = "claim.yaml"
THRESHOLDS_SCHEMA = "thresholds.schema.yaml"
SOURCES = "sources.yaml"  # the bibliography: every source a claim cites, defined once


def list_claims(repro_dir: Path = DEFAULT_REPRO_DIR) -> list[str]:
    """Every claim: the folders of ``repro_dir`` holding a claim.yaml, sorted by name. The folder
    tree is the one list of claims (the workflow config's ``claims: null`` plans them all)."""
    return sorted(p.parent.name for p in Path(repro_dir).glob(f"*/{CLAIM_FILE}"))


def all_claims(repro_dir: Path = DEFAULT_REPRO_DIR) -> list[str]:
    """``list_claims``, refusing a folder that holds files but no claim.yaml (a claim.yml, a claim
    not finished), which would otherwise be left out without a word."""
    repro_dir = Path(repro_dir)
    claims = list_claims(repro_dir)
    for folder in sorted(p for p in repro_dir.glob("*") if p.is_dir() and not p.name.startswith((".", "_"))):
        files = sorted(f.name for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
        if folder.name not in claims and files:
            raise ConfigError(f"claim folder {folder}/ has no {CLAIM_FILE} (it holds {', '.join(files)}): every "
                              f"folder of {repro_dir}/ is a claim, planned when it has one")
    if not claims:
        raise ConfigError(f"claims: no folder of {repro_dir}/ holds a {CLAIM_FILE}, so there is no claim to plan")
    return claims


def load_claim(claim: str, repro_dir: Path = DEFAULT_REPRO_DIR) -> dict:
    path = Path(repro_dir) / claim / CLAIM_FILE
    if not path.exists():
        known = ", ".join(list_claims(repro_dir)) or "none"
        raise ConfigError(f"unknown claim {claim!r} (known claims: {known})")
    spec = yaml.safe_load(path.read_text())
    schema = json.loads(resources.files("optclaims").joinpath("schemas/claim.schema.json").read_text())
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(spec))
    if err is not None:
        raise ConfigError(schema_error_message(err, str(path)))
    if spec["claim"] != claim:
        raise ConfigError(f"{path}: claim = {spec['claim']!r} does not match its folder name {claim!r}")
    _check_thresholds(spec, path.parent / THRESHOLDS_SCHEMA)
    _check_criteria(spec, path)
    _check_sources(spec, path, load_sources(Path(repro_dir) / SOURCES))
    _check_headline(spec, path)
    return spec


def load_sources(path: Path = DEFAULT_REPRO_DIR / SOURCES) -> dict[str, dict]:
    """reproductions/sources.yaml, validated: {key: bibliography entry}, in file order."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no {path}: the bibliography every claim's sources name")
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    schema = json.loads(resources.files("optclaims").joinpath("schemas/sources.schema.json").read_text())
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(entries))
    if err is not None:
        raise ConfigError(schema_error_message(err, str(path)))
    keys = [e["key"] for e in entries]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"{path}: the keys {', '.join(twice)} are defined more than once")
    return {e["key"]: e for e in entries}


def _check_sources(spec: dict, path: Path, bibliography: dict[str, dict]) -> None:
    """Every source the claim names is in the bibliography, and the published value cites one of them."""
    keys = [s["key"] for s in spec["sources"]]
    unknown = [k for k in keys if k not in bibliography]
    if unknown:
        raise ConfigError(f"{path}: sources name {', '.join(unknown)}, not in {SOURCES} "
                          f"(known: {', '.join(bibliography)})")
    cited = spec["headline"]["published"]["source"]
    if cited not in keys:
        raise ConfigError(f"{path}: headline.published.source = {cited!r} is not one of the claim's sources ({', '.join(keys)})")


def _check_headline(spec: dict, path: Path) -> None:
    """The published value's threshold path leads to a number (the number the criteria use)."""
    from .analysis import published_value

    try:
        published_value(spec)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: headline.published.threshold: {e}") from None


def _check_criteria(spec: dict, path: Path) -> None:
    """Every {threshold} named in the criteria and the ``implemented`` line exists, so the words
    always carry the numbers used."""
    from .analysis import fill_thresholds

    for key, texts in (("criteria", spec["criteria"]), ("implemented", [spec["implemented"]])):
        try:
            for text in texts:
                fill_thresholds(text, spec.get("thresholds", {}))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"{path}: a threshold named in its {key} does not exist: {e}") from None


def _check_thresholds(spec: dict, schema_path: Path) -> None:
    """The claim's thresholds against the types and ranges its folder declares for them, so a typo
    stops the plan before any training rather than the analysis after it."""
    if not schema_path.exists():
        raise ConfigError(f"claim {spec['claim']!r} has no {schema_path} (the types and ranges of its thresholds)")
    schema = yaml.safe_load(schema_path.read_text())
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(spec.get("thresholds", {})))
    if err is not None:
        raise ConfigError(schema_error_message(err, f"thresholds of {schema_path.parent / 'claim.yaml'}"))


def load_claim_module(claim: str, repro_dir: Path = DEFAULT_REPRO_DIR):
    """reproductions/<claim>/analyze.py as a module (it defines ``analyze(ctx) -> (verdict, table)``)."""
    path = Path(repro_dir) / claim / "analyze.py"
    module_spec = importlib.util.spec_from_file_location(f"optclaims_repro_{claim}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def selection_stages(module) -> int:
    """How many rounds of ``select_runs`` a claim's analysis module asks for (0 without one)."""
    if not hasattr(module, "select_runs"):
        return 0
    n = getattr(module, "SELECTION_STAGES", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{module.__file__}: SELECTION_STAGES = {n!r} must be a positive integer")
    return n


def grid_runs(block: dict) -> list[dict]:
    """The default plan: base fields × the product of the grid × seeds, plus explicit runs."""
    grid = block.get("grid", {})
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    return [{**block.get("base", {}), **fields, "seed": seed}
            for seed in block.get("seeds", [0]) for fields in [*combos, *block.get("runs", [])]]


def finish_run_configs(claim: str, scale: str, fields_list: list[dict], common: dict) -> list[dict]:
    """Validated run configs; ``common`` (data id, vocab, user overrides) wins over the claim's fields."""
    configs = []
    for fields in fields_list:
        try:
            configs.append(make_run_config({**fields, **common}))
        except ConfigError as e:
            raise ConfigError(f"claim {claim!r} at scale {scale!r}: {e}") from None
    return configs


def claim_run_configs(spec: dict, scale: str, common: dict, module=None) -> list[dict]:
    """Every run the claim needs at this scale before any result exists."""
    block = spec["scales"][scale]
    fields_list = module.plan_runs(block) if hasattr(module, "plan_runs") else grid_runs(block)
    return finish_run_configs(spec["claim"], scale, fields_list, common)
