"""AdamW's update RMS read from the optimiser state, not from ΔW (which mixes in the learning
rate, its schedule and weight decay): u = m̂ / (√v̂ + ε) with m̂ = m/(1−β1^t), v̂ = v/(1−β2^t),
exactly the direction torch.optim.AdamW steps along. The RMS of u is taken per matrix and then
averaged over the matrices of a group (kexue.fm/archives/11267 measures it the same way)."""

from __future__ import annotations

import torch


@torch.no_grad()
def adam_update_rms(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Mean per-tensor RMS of Adam's normalised update, per named parameter group."""
    names, means = [], []
    for group in optimizer.param_groups:
        beta1, beta2 = group["betas"]
        rms = []
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state or "exp_avg" not in state:
                continue
            t = state["step"]  # a tensor (on the device for fused AdamW): no host sync here
            m_hat = state["exp_avg"].float() / (1 - torch.pow(beta1, t))
            v_hat = state["exp_avg_sq"].float() / (1 - torch.pow(beta2, t))
            u = m_hat / (v_hat.sqrt() + group["eps"])
            rms.append(u.square().mean().sqrt())
        if rms:
            names.append(group["name"])
            means.append(torch.stack(rms).mean())
    return dict(zip(names, torch.stack(means).tolist())) if means else {}  # one host sync
