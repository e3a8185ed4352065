"""Optimisers built from a run config over the model's named parameter groups."""

from .build import build_optimizer, build_scheduler
from .update_rms import adam_update_rms

__all__ = ["build_optimizer", "build_scheduler", "adam_update_rms"]
