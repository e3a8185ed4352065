"""lm-eval's CLI with the ``optclaims`` model registered (lm-eval 0.4.13 loads no plugin entry
points, so ``lm-eval run --model optclaims`` alone cannot find it):

    python -m optclaims.evaluate run --model optclaims \
        --model_args run_dir=RUN,tokenizer=DATA/tokenizer.json,batch_size=16 \
        --tasks optclaims_ppl,optclaims_cloze --include_path TASKS_DIR
"""

from lm_eval.__main__ import cli_evaluate

from . import lm  # noqa: F401  registers "optclaims"

if __name__ == "__main__":
    cli_evaluate()
