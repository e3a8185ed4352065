"""Optimisers built from a run config over the model's named parameter groups."""

from .build import build_optimizers, build_schedulers, update_rms
from .muon import Muon, muon_update_rms, zeropower_via_newtonschulz
from .update_rms import adam_update_rms

__all__ = ["Muon", "adam_update_rms", "build_optimizers", "build_schedulers", "muon_update_rms", "update_rms",
           "zeropower_via_newtonschulz"]
