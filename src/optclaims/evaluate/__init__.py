"""Evaluation with lm-evaluation-harness: the ``optclaims`` model adapter (``lm.OptclaimsLM``),
local held-out-code tasks (``build_tasks``) and one run's ``eval.json`` (``evaluate_run``).
``python -m optclaims.evaluate`` is lm-eval's own CLI with the ``optclaims`` model registered."""

from .run import evaluate_run
from .tasks import build_tasks

__all__ = ["build_tasks", "evaluate_run"]
