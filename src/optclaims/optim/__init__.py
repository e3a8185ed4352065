"""Optimisers of a population of runs: per-member hyper-parameters (``hyper``), the stacked
AdamW, Muon and spectral decay stepped as one ``OptimizerSet`` (``population``), and the update
math they share (``muon``, ``spectral_decay``, ``schedules``)."""

from .hyper import DECAYED_ROLES, MemberHypers, member_hypers
from .muon import Muon, muon_update, zeropower_via_newtonschulz
from .population import OptimizerSet, clip_member_grads_

__all__ = ["DECAYED_ROLES", "MemberHypers", "Muon", "OptimizerSet", "clip_member_grads_", "member_hypers",
           "muon_update", "zeropower_via_newtonschulz"]
