"""lm-eval's own command line with the ``optclaims`` model registered. lm-eval 0.4.13 loads no
plugin entry points, so its ``lm-eval`` command cannot find a model from another package; this
is the same CLI with ours imported first (installed as ``optclaims-lm-eval``):

    optclaims-lm-eval run --model optclaims --model_args run_dir=RUN,tokenizer=DATA/tokenizer.json \
        --tasks optclaims_ppl,optclaims_cloze --include_path DATA/tasks --batch_size 16

For the optclaims model, a run given no ``--device`` (on the command line or in its ``--config``
file) gets ``auto``, CUDA where there is one, else the CPU, instead of lm-eval's ``cuda:0``; and
the model's arguments are checked before lm-eval loads any task, so a wrong path, batch size or
device stops it at once with one line naming the key and value.
"""

from __future__ import annotations

import sys

from lm_eval._cli import HarnessCLI
from lm_eval.config.evaluate_config import EvaluatorConfig
from lm_eval.utils import setup_logging, simple_parse_args_string

from ..errors import ConfigError, CorruptFileError
from .lm import checked_args  # registers "optclaims"

PASSED_BY_LM_EVAL = ("batch_size", "device")  # lm-eval's run hands these to every model itself


def main() -> None:
    setup_logging()
    cli = HarnessCLI()
    args = cli.parse_args()
    try:
        if args.command == "run":
            prepare_optclaims_run(args)
        cli.execute(args)
    except (ConfigError, FileNotFoundError, CorruptFileError) as e:
        print(f"optclaims-lm-eval: error: {e}", file=sys.stderr)  # the input is wrong: its message alone
        sys.exit(2)


def prepare_optclaims_run(args) -> None:
    """For a run of the optclaims model: the device ``auto`` unless one is given, and the model's
    arguments checked now, as lm-eval will pass them."""
    given = _given(args)
    if given.get("model") != "optclaims":
        return
    if "device" not in given:
        args.device = given["device"] = "auto"
    model_args = given.get("model_args") or {}
    if isinstance(model_args, str):
        model_args = simple_parse_args_string(model_args)
    missing = [key for key in ("run_dir", "tokenizer") if key not in model_args]
    if missing:
        raise ConfigError(f"--model_args lacks {' and '.join(missing)}: give run_dir=RUN,tokenizer=DATA/tokenizer.json")
    for key in PASSED_BY_LM_EVAL:
        if key in model_args:
            raise ConfigError(f"--model_args {key}={model_args[key]}: give it as --{key} (lm-eval passes its own "
                              f"--{key} to the model too)")
    passed = {k: given[k] for k in (*PASSED_BY_LM_EVAL, "max_batch_size") if k in given}
    checked_args(**model_args, **passed)


def _given(args) -> dict:
    """The settings the user gave, with lm-eval's precedence: the command line (its set values)
    over the ``--config`` YAML file."""
    config = getattr(args, "config", None)
    from_file = EvaluatorConfig.load_yaml_config(config) if config else {}
    return {**from_file, **{k: v for k, v in vars(args).items() if v or v == 0}}


if __name__ == "__main__":
    main()
