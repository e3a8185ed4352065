"""lm-eval's own command line with the ``optclaims`` model registered. lm-eval 0.4.13 loads no
plugin entry points, so its ``lm-eval`` command cannot find a model from another package; this
is the same CLI with ours imported first (installed as ``optclaims-lm-eval``):

    optclaims-lm-eval run --model optclaims \
        --model_args run_dir=RUN,tokenizer=DATA/tokenizer.json \
        --batch_size 16 --device cpu --tasks optclaims_ppl,optclaims_cloze --include_path TASKS_DIR
"""

from lm_eval.__main__ import cli_evaluate

from . import lm  # noqa: F401  registers "optclaims"


def main() -> None:
    cli_evaluate()


if __name__ == "__main__":
    main()
