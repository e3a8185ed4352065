"""Bad input is refused before any work, with a message naming the key and the value."""

import copy
from pathlib import Path

import pytest
import yaml

from optclaims.data.corpus import parse_corpus_spec
from optclaims.claims import finish_run_configs
from optclaims.plan import build_plan
from optclaims.errors import ConfigError
from optclaims.runs import make_run_config, run_id

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "reproductions"


def base_run(**kw):
    return {"data": "d", "vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 8,
            "optimizer": "adamw", "lr": 1e-3, "steps": 20, "batch_size": 2, "seed": 0, **kw}


@pytest.fixture
def workflow_config():
    return yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())


@pytest.mark.parametrize("field, value, words", [
    ("lr", -0.1, "lr = -0.1"),
    ("lr", 0, "lr = 0"),
    ("steps", 0, "steps = 0"),
    ("optimizer", "sgd9", 'optimizer = "sgd9"'),
    ("beta2", 1.0, "beta2 = 1.0"),
    ("clip", -1, "clip = -1"),
    ("schedule", "linear", 'schedule = "linear"'),
])
def test_run_config_refusals_name_key_and_value(field, value, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        make_run_config(base_run(**{field: value}))


def test_unknown_run_field_is_refused():
    with pytest.raises(ConfigError, match="learning_rate"):
        make_run_config(base_run(learning_rate=1e-3))


def test_run_id_is_stable_and_defaults_are_filled_before_hashing():
    a = make_run_config(base_run())
    b = make_run_config(base_run(beta1=0.9))  # the default, spelled out
    assert run_id(a) == run_id(b) and len(run_id(a)) == 12
    assert run_id(make_run_config(base_run(lr=2e-3))) != run_id(a)


def test_plan_expands_the_claims_grid(workflow_config):
    plan = build_plan(workflow_config, REPRO)
    runs = [plan.runs[r] for r in plan.claims["adam_update_rms"]]
    assert {(r["beta1"], r["beta2"]) for r in runs} == {(b1, b2) for b1 in (0.8, 0.9, 0.95) for b2 in (0.95, 0.999)}
    assert all(r["data"] == plan.data.data_id for r in runs)


def test_plan_refuses_unknown_claim(workflow_config):
    workflow_config["claims"] = ["adam_update_rms", "free_lunch"]
    with pytest.raises(ConfigError, match="unknown claim 'free_lunch'"):
        build_plan(workflow_config, REPRO)


def test_the_claims_are_the_claim_folders(tmp_path, workflow_config):
    """No list of claims is written anywhere but the folder tree: the config names none, the plan
    takes every folder with a claim.yaml (sorted by name, filled into the config), and a new folder
    is planned with nothing else edited; a list given (`--config claims=[...]`) is planned in its order."""
    import shutil

    assert "claims" not in workflow_config
    folders = sorted(p.name for p in REPRO.iterdir() if (p / "claim.yaml").is_file())
    plan = build_plan(copy.deepcopy(workflow_config), REPRO)
    assert len(folders) >= 5 and list(plan.claims) == folders
    repro = tmp_path / "reproductions"
    shutil.copytree(REPRO, repro)
    shutil.copytree(repro / "spectral_weight_decay", repro / "a_spectral_twin")
    spec = repro / "a_spectral_twin" / "claim.yaml"
    spec.write_text(spec.read_text().replace("claim: spectral_weight_decay\n", "claim: a_spectral_twin\n", 1))
    config = copy.deepcopy(workflow_config)
    twin = build_plan(config, repro)
    assert list(twin.claims) == config["claims"] == ["a_spectral_twin", *folders]
    assert twin.claims["a_spectral_twin"] == twin.claims["spectral_weight_decay"]  # the same runs, trained once
    given = {**copy.deepcopy(workflow_config), "claims": ["spectral_weight_decay", "adam_update_rms"]}
    assert list(build_plan(given, repro).claims) == ["spectral_weight_decay", "adam_update_rms"]


def test_a_claim_folder_without_its_claim_yaml_stops_the_plan(tmp_path, workflow_config):
    import shutil

    repro = tmp_path / "reproductions"
    shutil.copytree(REPRO, repro)
    (repro / "half_done").mkdir()
    (repro / "half_done" / "claim.yml").write_text("claim: half_done\n")
    with pytest.raises(ConfigError, match=r"half_done/ has no claim.yaml \(it holds claim.yml\)"):
        build_plan(copy.deepcopy(workflow_config), repro)
    (repro / "half_done" / "claim.yml").unlink()
    (repro / "half_done" / "__pycache__").mkdir()  # what a deleted claim's folder may leave: not a claim
    (repro / "half_done" / "__pycache__" / "analyze.cpython-311.pyc").write_bytes(b"")
    assert "half_done" not in build_plan(copy.deepcopy(workflow_config), repro).claims
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no folder of .*empty/ holds a claim.yaml"):
        build_plan(copy.deepcopy(workflow_config), empty)


def test_plan_refuses_bad_corpus(workflow_config):
    workflow_config["corpus"] = "ftp:somewhere"
    with pytest.raises(ConfigError, match="corpus = 'ftp:somewhere'"):
        build_plan(workflow_config, REPRO)


def test_plan_refuses_bad_override_value_and_unknown_override(workflow_config):
    bad = copy.deepcopy(workflow_config)
    bad["run_overrides"] = {"lr": -1}
    with pytest.raises(ConfigError, match="lr = -1"):
        build_plan(bad, REPRO)
    workflow_config["run_overrides"] = {"lr_typo": 1}
    with pytest.raises(ConfigError, match="lr_typo"):
        build_plan(workflow_config, REPRO)


def test_run_overrides_given_as_text_on_the_command_line_are_read_as_yaml_scalars(workflow_config):
    """snakemake --config run_overrides={steps: 4, compile: false, clip: null} hands the values over as text."""
    workflow_config.update(scale="gpu", claims=["clip_norm"],
                           run_overrides={"steps": "400", "compile": "false", "lr": "1e-3", "device": "cpu"})
    common = build_plan(workflow_config, REPRO).common
    assert (common["steps"], common["compile"], common["lr"], common["device"]) == (400, False, 1e-3, "cpu")
    workflow_config["run_overrides"] = {"steps": "many"}
    with pytest.raises(ConfigError, match='steps = "many"'):
        build_plan(workflow_config, REPRO)


@pytest.mark.parametrize("overrides, changed", [
    ({}, []),
    ({"device": "cuda", "dtype": "float32", "compile": False, "ckpt_every": 50}, []),  # how, not what
    ({"device": "cpu", "steps": 4, "warmup_steps": 0, "batch_size": 2}, ["batch_size", "steps", "warmup_steps"]),
    ({"lr": 1e-3}, ["lr"]),
])
def test_run_overrides_that_change_the_protocol_make_an_evidential_scale_no_evidence(workflow_config, overrides, changed):
    workflow_config.update(scale="gpu", claims=["clip_norm"], run_overrides=overrides)
    plan = build_plan(workflow_config, REPRO)
    assert plan.protocol_overrides == changed
    assert plan.evidential is (not changed)
    workflow_config.update(scale="smoke", run_overrides={})
    assert build_plan(workflow_config, REPRO).evidential is False  # smoke is never evidence


@pytest.mark.parametrize("claim, old, new, words", [
    ("clip_norm", "  tau: 1.0\n", "  tua: 1.0\n  tau: 1.0\n", "'tua' was unexpected"),
    ("clip_norm", "  late_from: 0.75\n", "  late_from: 1.5\n", "late_from = 1.5"),
    ("muon_efficiency", "  bootstrap: 2000\n", "  bootstrap: many\n", 'bootstrap = "many"'),
    ("spectral_weight_decay", "  rising_from: 0.75\n", "", "'rising_from' is a required property"),
])
def test_a_bad_threshold_stops_the_plan_naming_it(tmp_path, workflow_config, claim, old, new, words):
    """A claim's thresholds are typed by its thresholds.schema.yaml: a typo stops the plan, before any training."""
    import shutil

    repro = tmp_path / "reproductions"
    shutil.copytree(REPRO, repro)
    spec = repro / claim / "claim.yaml"
    original = spec.read_text()
    assert old in original
    spec.write_text(original.replace(old, new, 1))
    with pytest.raises(ConfigError, match=f"thresholds of .*{claim}.*{words}".replace("(", r"\(")):
        build_plan(workflow_config, repro)
    (repro / claim / "thresholds.schema.yaml").unlink()
    spec.write_text(original)
    with pytest.raises(ConfigError, match="thresholds.schema.yaml"):
        build_plan(workflow_config, repro)


def test_default_corpora_offline_for_smoke_and_gpu_natural_text_for_full():
    """smoke and gpu must run with no download (the GPU slot has no network); the full scale's
    claims are about language models, so its default is web text from the hub (issue 12, item 8)."""
    scales = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())["scales"]
    assert scales["smoke"]["corpus"]["spec"] == "pinned" and scales["gpu"]["corpus"]["spec"] == "pycode"
    kind, arg = parse_corpus_spec(scales["full"]["corpus"]["spec"])
    assert kind == "hf" and "fineweb" in arg.lower() and scales["full"]["corpus"]["max_bytes"]


def test_lm_eval_scores_only_the_runs_a_claim_names(workflow_config):
    """adam_update_rms names its β grid (evaluated_runs): the width sweep it shares with mup_transfer
    is not scored; a claim with `evaluate: false` scores nothing; one without the hook, everything."""
    from optclaims.claims import grid_runs, load_claim

    plan = build_plan(workflow_config, REPRO)
    grid = {run_id(c) for c in finish_run_configs("adam_update_rms", "smoke",
                                                  grid_runs(load_claim("adam_update_rms", REPRO)["scales"]["smoke"]), plan.common)}
    scored = {r for r in plan.claims["adam_update_rms"] if plan.evaluates("adam_update_rms", r)}
    assert scored == grid and len(plan.claims["adam_update_rms"]) > len(grid)
    assert not any(plan.evaluates("mup_transfer", r) for r in plan.claims["mup_transfer"])


def test_evaluated_runs_outside_the_plan_stop_it(tmp_path, workflow_config):
    import shutil

    repro = tmp_path / "reproductions"
    shutil.copytree(REPRO, repro)  # the size sweep reads mup_transfer's plan
    path = repro / "adam_update_rms" / "analyze.py"
    path.write_text(path.read_text() + '\n\ndef evaluated_runs(block):\n    return [{**grid_runs(block)[0], "lr": 0.5}]\n')
    with pytest.raises(ConfigError, match="evaluated_runs names runs that are not in its plan"):
        build_plan({**workflow_config, "claims": ["adam_update_rms"]}, repro)


def test_the_scales_own_corpus_carries_its_committed_hash_and_an_override_drops_it(workflow_config):
    """The committed manifest hash belongs to the scale's corpus settings: an override of the spec
    drops it, and it never enters the data id (it checks the corpus, it does not shape it)."""
    workflow_config["scale"] = "smoke"
    own = build_plan(workflow_config).data
    assert own.corpus == "pinned" and own.expected_hash == workflow_config["scales"]["smoke"]["corpus"]["manifest_hash"]
    workflow_config["corpus"] = "pycode"
    assert build_plan(workflow_config).data.expected_hash is None
    unchecked = type(own)(own.corpus, own.max_bytes, own.val_fraction, own.vocab_size)
    assert unchecked.data_id == own.data_id


def test_the_conda_environment_pins_what_pyproject_pins():
    """workflows/envs/optclaims.yaml (conda users, and every rule's `conda:` environment) repeats
    pyproject's requirements for pip; they must be the same list, torch's pin being the Makefile's."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = re.search(r"pip install -q (torch==\S+)", (ROOT / "Makefile").read_text()).group(1)
    rules_env = yaml.safe_load((ROOT / "workflows/envs/optclaims.yaml").read_text())
    rules_pip = next(d["pip"] for d in rules_env["dependencies"] if isinstance(d, dict))
    assert rules_pip == [torch_pin, *project["dependencies"][1:], "--editable=../.."] and project["dependencies"][0].startswith("torch")
