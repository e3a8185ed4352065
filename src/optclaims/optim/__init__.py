"""Optimisers of a population of runs: per-member hyper-parameters (``hyper``), the stacked
AdamW, Muon and spectral decay stepped as one ``OptimizerSet`` (``population``), and the update
math they share (``muon``, ``spectral_decay``, ``schedules``)."""

from .hyper import DECAYED_ROLES, member_hypers
from .population import OptimizerSet, clip_member_grads_

__all__ = ["DECAYED_ROLES", "OptimizerSet", "clip_member_grads_", "member_hypers"]
