"""Spectral weight decay (Su, kexue.fm/archives/10648): decay only the top singular direction.

Decoupled weight decay steps along −∇(½‖W‖_F²) = −W. Spectral decay steps along
−∇(½‖W‖₂²) = −σ1 u1 v1ᵀ = −W v1 v1ᵀ (the best rank-1 approximation of W), with the same λ:

    W ← W − η λ · W v1 v1ᵀ

v1, the top right singular vector, comes from power iteration on WᵀW. Su's rule (``warm=False``):
10 iterations started at the all-ones vector at every step. ``warm=True`` starts from the previous
step's v1 instead: cheaper to converge, but a different method, so it is a separate, named variant
(its v1 lives in the optimizer state and is checkpointed).

``SpectralDecay`` is a ``torch.optim.Optimizer`` over the decayed matrices, with its own ``lr`` per
group, so the run's LR schedule drives it like the optimizer whose decoupled decay it replaces
(that optimizer's groups get ``weight_decay = 0``). Step it before that optimizer: decoupled decay
too shrinks W_{t−1} before the update is added.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import Tensor

from .closure import evaluate_closure

POWER_ITERATIONS = 10


def top_singular_triplet(W: Tensor, iters: int = POWER_ITERATIONS, v0: Tensor | None = None):
    """(σ1, u1, v1) of every matrix in W (shape (..., A, B)) by ``iters`` power iterations on WᵀW,
    started at ``v0`` (shape (..., B)) or the all-ones vector. Computed in float32."""
    Wf = W.float()
    v = torch.ones(W.shape[:-2] + W.shape[-1:], device=W.device) if v0 is None else v0.float()
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-30)
    for _ in range(iters):
        v = _matvec(Wf.mT, _matvec(Wf, v))
        v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-30)
    Wv = _matvec(Wf, v)
    sigma = torch.linalg.vector_norm(Wv, dim=-1)
    u = Wv / sigma.unsqueeze(-1).clamp_min(1e-30)
    return sigma, u, v


def _matvec(W: Tensor, v: Tensor) -> Tensor:
    """W v for (..., A, B) and (..., B). One batched product on GPUs; on CPU a loop of 2-D ``mv``,
    which measured 30× faster there than a batched product with a trailing dimension of 1."""
    if W.ndim == 2:
        return torch.mv(W, v)
    if W.device.type != "cpu":
        return (W @ v.unsqueeze(-1)).squeeze(-1)
    return torch.stack([torch.mv(w, x) for w, x in zip(W.reshape(-1, *W.shape[-2:]), v.reshape(-1, v.shape[-1]))]
                       ).reshape(W.shape[:-1])


class SpectralDecay(torch.optim.Optimizer):
    """W ← W − lr·weight_decay·σ1 u1 v1ᵀ for every 2-D parameter; matrices of one shape share one
    batched power iteration. Groups may carry extra keys ("name", "lr_mult", ...)."""

    def __init__(self, params, lr: float, weight_decay: float, iters: int = POWER_ITERATIONS, warm: bool = False):
        if not lr >= 0.0 or not weight_decay >= 0.0:
            raise ValueError(f"invalid learning rate {lr} or weight decay {weight_decay}")
        if iters < 1:
            raise ValueError(f"power iterations must be >= 1, got {iters}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "iters": iters, "warm": warm})
        for group in self.param_groups:
            bad = [tuple(p.shape) for p in group["params"] if p.ndim != 2]
            if bad:
                raise ValueError(f"spectral decay takes matrices only; got shapes {bad}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            rate = group["lr"] * group["weight_decay"]
            if rate == 0.0:
                continue
            buckets: dict[tuple, list[Tensor]] = defaultdict(list)
            for p in group["params"]:
                buckets[(p.shape, p.dtype, p.device)].append(p)
            for params in buckets.values():
                W = torch.stack(params)
                v0 = torch.stack([self.state[p]["v1"] for p in params]) if group["warm"] and "v1" in self.state[params[0]] else None
                sigma, u, v = top_singular_triplet(W, group["iters"], v0)
                rank1 = (sigma[:, None, None] * u.unsqueeze(-1) * v.unsqueeze(-2)).to(W.dtype)  # σ1 u1 v1ᵀ
                torch._foreach_add_(params, rank1.unbind(0), alpha=-rate)
                if group["warm"]:
                    for p, vi in zip(params, v.unbind(0)):
                        self.state[p]["v1"] = vi.clone()
        return loss


@torch.no_grad()
def spectrum(W: Tensor) -> Tensor:
    """[σ_max, SVD entropy] of a matrix, on its device: H = −(1/log n) Σ p_i log p_i with
    p_i = σ_i² / Σ σ_j² over its n = min(A, B) singular values (Moonlight, arXiv 2502.16982, Eq. 13);
    1 = flat spectrum."""
    s = torch.linalg.svdvals(W.float())
    p = s.square() / s.square().sum().clamp_min(1e-30)
    h = -(p * torch.log(p.clamp_min(1e-30))).sum() / math.log(max(len(s), 2))
    return torch.stack([s[0], h])


def spectrum_stats(W: Tensor) -> tuple[float, float]:
    """(σ_max, SVD entropy) of a matrix as floats (see ``spectrum``)."""
    sigma_max, entropy = spectrum(W).tolist()
    return sigma_max, entropy
