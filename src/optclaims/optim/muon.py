"""Muon: momentum, then an approximate orthogonalisation of each hidden matrix's update.

For a weight W of torch shape (A, B) = (fan_out, fan_in), gradient G_t, momentum μ:

    M_t = μ M_{t-1} + G_t                      sum form, as Moonlight (arXiv 2502.16982, Eq. 4)
    N_t = G_t + μ M_t   (Nesterov)   or  M_t
    O_t = NS_5(N_t) ≈ msign(N_t) = U Vᵀ        where N_t = U Σ Vᵀ
    W_t = W_{t-1}·(1 − η λ) − η · s(A, B) · O_t   decoupled decay with the unscaled η

Keller Jordan's Muon (github.com/KellerJordan/Muon) and ``torch.optim.Muon`` keep the EMA form
B_t = μ B_{t-1} + (1 − μ) G_t = (1 − μ) M_t, and their Nesterov direction (1 − μ) G_t + μ B_t is
(1 − μ)·N_t; NS starts by dividing by the Frobenius norm, so both forms step along the same O_t.

NS is the quintic Newton–Schulz iteration X ← aX + (bA + cA²)X with A = XXᵀ, started from
X_0 = N/‖N‖_F (so every singular value is ≤ 1) and run on the shorter side. Each singular value
follows the scalar map x ↦ ax + bx³ + cx⁵; Keller Jordan's (a, b, c) = (3.4445, −4.7750, 2.0315)
make the slope at 0 large and leave the values oscillating in about [0.7, 1.2] after 5 steps
instead of converging to 1 (Su, kexue.fm/archives/10592, fits coefficients per shape).

The scale s(A, B) sets the update's size (see ``update_scale``):
  moonlight  0.2·√max(A, B)   a full-rank UVᵀ has RMS 1/√max(A, B), so the update RMS is 0.2,
                              AdamW's, and AdamW's η and λ carry over (Moonlight Lemma 1, Eq. 7);
                              with NS's singular values below 1 on average, 0.17–0.19 is measured
  keller     √max(1, A/B)     Keller Jordan's; η ≈ 0.02 "in units of spectral norm"
  spectral   √(A/B)           √(fan_out/fan_in), the spectral condition for μP-like transfer

Muon is for hidden matrices only: embeddings, the readout and gains go to AdamW (``MUON_ROLES``).
``muon_update`` is the update math as a pure function; ``Muon`` is a thin torch.optim optimizer
around it for 2-D parameters, and ``optim.population.StackedMuon`` applies it to a population.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import Tensor

from ..settings import DEFAULTS, choices
from .closure import evaluate_closure

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
SCALES = choices("muon_scale")
MUON_ROLES = ("hidden",)


def zeropower_via_newtonschulz(G: Tensor, steps: int = 5, coefficients=NS_COEFFICIENTS, eps: float = 1e-7) -> Tensor:
    """≈ U Vᵀ of every matrix in ``G`` (shape (..., A, B), batched over the leading dims).

    Each matrix is cast to bfloat16 and divided by its Frobenius norm (+ ``eps``, norm accumulated
    in float32); the iteration runs in bfloat16 on the shorter side (on Xᵀ when A > B), and the
    result is returned in G's dtype (it carries bfloat16 precision). A zero matrix maps to zero.
    """
    if G.ndim < 2:
        raise ValueError(f"Newton–Schulz needs matrices, got a tensor of shape {tuple(G.shape)}")
    a, b, c = coefficients
    A, B = G.shape[-2:]
    X = G.reshape(-1, A, B) if math.prod(G.shape[:-2]) != 1 else G.reshape(A, B)  # one matrix: mm is faster
    if A > B:
        X = X.mT
    # a copy: bf16, and contiguous since a transposed layout slows bmm
    X = X.to(torch.bfloat16, memory_format=torch.contiguous_format, copy=True)
    X.div_(torch.linalg.matrix_norm(X, keepdim=True, dtype=torch.float32) + eps)
    add_matmul = torch.addmm if X.ndim == 2 else torch.baddbmm  # beta·input + alpha·m1@m2
    for _ in range(steps):
        gram = X @ X.mT
        poly = add_matmul(gram, gram, gram, beta=b, alpha=c)  # b·A + c·A²
        X = add_matmul(X, poly, X, beta=a)  # a·X + (b·A + c·A²)·X
    if A > B:
        X = X.mT
    return X.reshape(G.shape).to(G.dtype, memory_format=torch.contiguous_format)


def update_scale(shape, scale: str) -> float:
    """Multiplier of the orthogonalised update of a weight of torch shape (fan_out, fan_in) = (A, B)."""
    A, B = (int(n) for n in shape[-2:])
    if scale == "moonlight":
        return 0.2 * math.sqrt(max(A, B))
    if scale == "keller":
        return math.sqrt(max(1.0, A / B))
    if scale == "spectral":
        return math.sqrt(A / B)
    raise ValueError(f"unknown Muon update scale {scale!r}; expected one of {SCALES}")


def muon_update(grad: Tensor, momentum_buffer: Tensor, momentum, nesterov: bool = True,
                ns_steps: int = DEFAULTS["muon_ns_steps"],
                coefficients=NS_COEFFICIENTS, eps: float = 1e-7) -> Tensor:
    """One Muon direction O_t ≈ msign(N_t) of every matrix in ``grad`` (shape (..., A, B)), before
    the scale s(A, B) and the learning rate. Updates ``momentum_buffer`` in place to
    M_t = μ M_{t−1} + G_t (sum form); N_t = G_t + μ M_t with Nesterov, else M_t. ``momentum`` is a
    float or a tensor that broadcasts against ``grad`` (one μ per population member)."""
    momentum_buffer.mul_(momentum).add_(grad)
    direction = grad + momentum * momentum_buffer if nesterov else momentum_buffer
    return zeropower_via_newtonschulz(direction, ns_steps, coefficients, eps)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters (see the module docstring for the update).

    Matrices of one shape within a group are orthogonalised together in one batched NS call, and
    momentum, decay and the step use ``torch._foreach_*`` ops; ``step`` never syncs with the host.
    Momentum buffers are ``state[p]["momentum_buffer"]`` (sum form, so they are 1/(1 − μ) times
    torch.optim.Muon's). After each step ``self.update_rms[name]`` (the group's "name", else its
    index as a string) holds, as a 0-d tensor,
    the RMS of s(A, B)·O_t per matrix (the update without η) averaged over the group's matrices.
    Groups may carry extra keys ("name", "lr_mult", ...).
    """

    def __init__(self, params, lr: float, momentum: float = DEFAULTS["muon_momentum"], nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = DEFAULTS["muon_ns_steps"], ns_coefficients=NS_COEFFICIENTS,
                 eps: float = 1e-7, scale: str = DEFAULTS["muon_scale"]):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight decay {weight_decay}")
        if ns_steps < 1 or len(ns_coefficients) != 3:
            raise ValueError("ns_steps must be >= 1 and ns_coefficients three numbers")
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
                    "ns_steps": ns_steps, "ns_coefficients": tuple(ns_coefficients), "eps": eps, "scale": scale}
        self.update_rms: dict[str, Tensor] = {}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            update_scale((1, 1), group["scale"])
            for i, p in enumerate(group["params"]):
                if p.ndim != 2:
                    names = group.get("param_names")
                    which = f"{names[i]!r} " if names else ""
                    raise ValueError(f"Muon takes 2-D matrices only; parameter {which}has shape {tuple(p.shape)} "
                                     "(give embeddings, gains and biases to AdamW)")
        except ValueError:
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        self.update_rms = {}
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("Muon does not support sparse gradients")
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])

            mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
            # one batched update per shape: stack, orthogonalise, unbind
            buckets: dict[tuple, list[int]] = defaultdict(list)
            for i, p in enumerate(params):
                buckets[(p.shape, p.dtype, p.device)].append(i)
            updates, rms = [], []  # (params, NS outputs, scale) per shape; per-matrix RMS of scale·O
            for (shape, _, _), which in buckets.items():
                stacked_bufs = torch.stack([bufs[i] for i in which])
                O = muon_update(torch.stack([grads[i] for i in which]), stacked_bufs, mu, group["nesterov"],
                                group["ns_steps"], group["ns_coefficients"], group["eps"])
                torch._foreach_copy_([bufs[i] for i in which], stacked_bufs.unbind(0))
                scale = update_scale(shape, group["scale"])
                norms = torch.linalg.vector_norm(O, dim=(-2, -1), dtype=torch.float32)
                rms.append(norms * (scale / math.sqrt(shape.numel())))
                updates.append(([params[i] for i in which], O.unbind(0), scale))

            if wd != 0.0:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            for bucket, O, scale in updates:
                torch._foreach_add_(bucket, O, alpha=-lr * scale)
            self.update_rms[group.get("name", str(index))] = torch.cat(rms).mean()
        return loss
