"""Optimisers built from a run config over the model's named parameter groups."""

from .build import build_optimizers, build_schedulers, update_rms
from .update_rms import adam_update_rms

__all__ = ["build_optimizers", "build_schedulers", "update_rms", "adam_update_rms"]
