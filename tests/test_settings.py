"""Every run setting is defined once, in the run schema: defaults, families, the model shape's rule
and the README's table of run fields all come from there."""

import ast
import json
import shutil
from pathlib import Path

import pytest

from optclaims.errors import ConfigError
from optclaims.model import GPT, MemberInit
from optclaims.optim.muon import SCALES
from optclaims.optim.schedules import SCHEDULES
from optclaims.parametrization import PARAMETRIZATIONS
from optclaims.run_fields import TABLE, allowed, out_of_sync, table_block, write_table
from optclaims.runs import make_run_config
from optclaims.settings import DEFAULTS, FAMILIES, RUN_DEFAULTS, SETTINGS, choices, run_schema
from optclaims.shape import GPTConfig, model_config

ROOT = Path(__file__).resolve().parents[1]
# what a family's fields without a default need, to switch the family on in a valid run
FAMILY_NEEDS = {"mup": {"mup_base_width": 16}}


def base_run(**kw):
    return {"data": "d", "vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 8,
            "optimizer": "adamw", "lr": 1e-3, "steps": 20, "batch_size": 2, "seed": 0, **kw}


def family_run(family, **kw):
    return base_run(**{family.switch: family.value, **FAMILY_NEEDS.get(family.name, {}), **kw})


def test_every_field_is_required_defaulted_or_of_a_family_and_says_what_it_means():
    required = set(run_schema()["required"])
    for key, p in SETTINGS.items():
        # x-optional: no default and not required, absent unless a run sets it (a measurement)
        assert (key in required) + ("default" in p) + bool(p.get("x-optional")) == 1 or "x-family" in p, key
        assert p["description"].strip() and "\n" not in p["description"], key
        assert p.get("x-family") in (None, *FAMILIES), key
    assert {k for f in FAMILIES.values() for k in f.fields if k not in f.defaults} == {
        k for needs in FAMILY_NEEDS.values() for k in needs}


def test_the_filled_in_defaults_are_the_schemas():
    cfg = make_run_config(base_run())
    assert {k: cfg[k] for k in RUN_DEFAULTS} == {k: SETTINGS[k]["default"] for k in RUN_DEFAULTS}
    assert set(cfg) == set(run_schema()["required"]) | set(RUN_DEFAULTS)
    for family in FAMILIES.values():
        on = make_run_config(family_run(family))
        assert set(on) - set(cfg) == set(family.fields)
        assert {k: on[k] for k in family.defaults} == {k: DEFAULTS[k] for k in family.defaults}
    family_fields = [k for f in FAMILIES.values() for k in f.fields]
    assert len(family_fields) == len(set(family_fields)) and not set(family_fields) & set(RUN_DEFAULTS)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_family_setting_is_refused_outside_its_family_naming_key_and_value(name):
    family = FAMILIES[name]
    off = next(v for v in choices(family.switch) if v != family.value)
    for key in family.fields:
        value = DEFAULTS.get(key, FAMILY_NEEDS.get(name, {}).get(key))
        words = f"{key} = {json.dumps(value)} is {family.setting}, but {family.switch} = \"{off}\""
        with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
            make_run_config(base_run(**{family.switch: off, key: value}))


def test_the_model_shape_rule_is_the_run_configs():
    words = "invalid run config: d_model = 30 is not divisible by n_heads = 4"
    with pytest.raises(ConfigError, match=words):
        make_run_config(base_run(d_model=30, n_heads=4))
    with pytest.raises(ConfigError, match=words):
        model_config(base_run(d_model=30, n_heads=4))
    with pytest.raises(ConfigError, match=words):
        GPT(GPTConfig(vocab_size=50, d_model=30, n_layers=1, n_heads=4, seq_len=8), [MemberInit()])
    assert model_config(make_run_config(base_run())).mlp_ratio == GPTConfig(50, 32, 2, 2, 8).mlp_ratio == DEFAULTS["mlp_ratio"]
    assert MemberInit().init_std == DEFAULTS["init_std"]


def test_what_dispatches_on_an_enum_covers_exactly_the_schemas():
    assert PARAMETRIZATIONS == choices("parametrization") and SCALES == choices("muon_scale")
    assert tuple(SCHEDULES) == choices("schedule")


def _literal_defaults(source: str) -> list[str]:
    """Spelled-out defaults of run fields: cfg.get("clip", 1.0), {"beta1": 0.9}, a dataclass field
    `mlp_ratio: float = 4.0`, a keyword init_std=0.02."""
    def same(node, key):
        return isinstance(node, ast.Constant) and type(node.value) is type(DEFAULTS[key]) and node.value == DEFAULTS[key]

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "setdefault", "pop"):
            if len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and node.args[0].value in DEFAULTS \
                    and isinstance(node.args[1], ast.Constant):
                found.append(f"line {node.lineno}: .{node.func.attr}({node.args[0].value!r}, {node.args[1].value!r})")
        elif isinstance(node, ast.Dict):
            found += [f"line {node.lineno}: {{{k.value!r}: {v.value!r}}}" for k, v in zip(node.keys, node.values)
                      if isinstance(k, ast.Constant) and k.value in DEFAULTS and same(v, k.value)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in DEFAULTS \
                and same(node.value, node.target.id):
            found.append(f"line {node.lineno}: {node.target.id} = {node.value.value!r}")
        elif isinstance(node, ast.keyword) and node.arg in DEFAULTS and same(node.value, node.arg):
            found.append(f"line {node.lineno}: {node.arg}={node.value.value!r}")
    return found


def test_no_run_default_is_spelled_out_outside_the_schema():
    assert len(_literal_defaults('c.get("clip", 1.0)\nd = {"beta1": 0.9, "lr": 1}\nclass A:\n    mlp_ratio: float = 4.0\n'
                                 'f(init_std=0.02, beta2=0.999)\n')) == 4
    files = [*(ROOT / "src" / "optclaims").rglob("*.py"), *(ROOT / "reproductions").rglob("*.py")]
    found = {str(f.relative_to(ROOT)): hits for f in files if (hits := _literal_defaults(f.read_text(encoding="utf-8")))}
    assert found == {}, "defaults belong in src/optclaims/schemas/run.schema.json (settings.DEFAULTS)"


def test_the_readme_table_of_run_fields_is_the_schemas(tmp_path):
    assert out_of_sync(ROOT / "README.md") == []
    block = table_block()
    for key, p in SETTINGS.items():
        row = next(line for line in block.splitlines() if line.startswith(f"| `{key}` |"))
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[1] == allowed(p)
        assert cells[2] == (f"`{json.dumps(p['default']).strip(chr(34))}`" if "default" in p
                            else "absent (off)" if p.get("x-optional") else "required")
        assert cells[3] == (f"{FAMILIES[p['x-family']].switch} = `{FAMILIES[p['x-family']].value}`" if "x-family" in p else "")
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    readme.write_text(readme.read_text().replace("| `beta1` |", "| `beta_1` |"))
    assert out_of_sync(readme) and write_table(readme) and not write_table(readme) and out_of_sync(readme) == []
    readme.write_text(readme.read_text().replace(TABLE.end, ""))
    with pytest.raises(ValueError, match="needs exactly one run-fields block"):
        write_table(readme)


@pytest.mark.parametrize("prop, words", [
    ({"type": "integer", "minimum": 1, "maximum": 20}, "integer ≥ 1, ≤ 20"),
    ({"type": "number", "minimum": 0, "exclusiveMaximum": 1}, "number ≥ 0, < 1"),
    ({"type": ["number", "null"], "exclusiveMinimum": 0}, "number > 0 or null"),
    ({"enum": ["auto", True, False]}, "`auto`, `true`, `false`"),
    ({"type": "string", "minLength": 1}, "non-empty string"),
])
def test_allowed_values_in_words(prop, words):
    assert allowed(prop) == words
