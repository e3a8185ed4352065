"""The workflow config (workflows/config/config.yaml) against its schema, the one place each
workflow setting's type, range and default is written: validation fills every default the schema
declares, as Snakemake's ``validate`` does, so code reads settings without defaults of its own."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError
from .runs import schema_error_message

CONFIG_SCHEMA = Path(str(resources.files("optclaims").joinpath("schemas/config.schema.yaml")))


@lru_cache(maxsize=1)
def config_schema() -> dict:
    return yaml.safe_load(CONFIG_SCHEMA.read_text())


def _filling_defaults(validator_class):
    """A validator class that, visiting an object's properties, first sets each absent one that has
    a default (a copy of it), then validates the object, nested objects included."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = yaml.safe_load(yaml.safe_dump(sub["default"]))  # a copy, never shared
        yield from validate_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _filling_defaults(jsonschema.Draft202012Validator)


def validated(config: dict) -> dict:
    """``config`` checked against the schema, its defaults filled in (in place); a ConfigError
    names the first bad key and value."""
    errors = sorted(_Validator(config_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(schema_error_message(errors[0], "workflow config"))
    return config
