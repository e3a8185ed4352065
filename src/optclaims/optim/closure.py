"""The torch.optim closure convention, shared by the suite's own optimizers."""

from __future__ import annotations

import torch


def evaluate_closure(closure):
    """Re-evaluate the loss with gradients enabled when ``step`` is given a closure; else None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
