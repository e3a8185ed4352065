"""The optimizers of a population: every parameter has a leading member dimension K, and every
hyper-parameter is a (K,) tensor, so each member steps exactly as it would alone.

``OptimizerSet`` steps, zeroes and checkpoints a population's optimizers as one (torchtitan's
optimizers container): spectral decay first (it shrinks W_{t−1}, as decoupled decay does), then
Muon on the hidden matrices for Muon runs, then AdamW on the rest; SGD runs step every parameter
with SGD instead. A member outside ``mask``
(diverged, or past its own last step) does not change: its gradients are zeroed, its learning rate
is 0 and its moments and step count are kept.

AdamW follows torch.optim.AdamW's update (tested against it member by member):
    W ← W·(1 − ηλ);  m ← m + (1 − β1)(g − m);  v ← β2·v + (1 − β2)·g²
    W ← W − η/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)

SGD follows torch.optim.SGD with momentum μ, dampening 0 and no Nesterov (tested likewise), with
the suite's decoupled weight decay in place of torch's L2 term:
    W ← W·(1 − ηλ);  b ← μ·b + g;  W ← W − η·b
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from .hyper import MemberHypers, ROLES
from .muon import MUON_ROLES, muon_update
from ..settings import DEFAULTS, run_schema
from .spectral_decay import top_singular_triplet

def per_member(t: Tensor, like: Tensor) -> Tensor:
    """A (K,) tensor viewed to broadcast against ``like`` of shape (K, ...)."""
    return t.view(-1, *([1] * (like.ndim - 1)))


@torch.no_grad()
def member_grad_norms(params: list[Tensor]) -> Tensor:
    """Each member's global gradient norm over ``params`` (K,), as clip_grad_norm_ takes it. Summed
    in float64, so a member's float32 norm does not depend on how many members share the reduction
    (float32 sums over (K, n) and (1, n) tensors round differently, and clipping would pass that on)."""
    norms = [torch.linalg.vector_norm(p.grad, dim=tuple(range(1, p.ndim)), dtype=torch.float64) for p in params]
    return torch.linalg.vector_norm(torch.stack(norms), dim=0).float()


@torch.no_grad()
def clip_member_grads_(params: list[Tensor], max_norm: Tensor) -> Tensor:
    """torch.nn.utils.clip_grad_norm_ for every member at once: scales member k's gradients by
    min(1, max_norm[k] / (norm_k + 1e-6)) (max_norm inf: unchanged) and returns the pre-clip norms."""
    norms = member_grad_norms(params)
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for p in params:
        p.grad.mul_(per_member(coef, p.grad).to(p.grad.dtype))
    return norms


def role_rms(named: list[tuple[str, str, Tensor]], direction) -> dict[str, Tensor]:
    """Per role, (K,): the RMS of ``direction(name, p)`` (K, ...) per matrix, averaged over the role's
    matrices (kexue.fm/archives/11267 measures the update RMS so)."""
    by_role: dict[str, list[Tensor]] = defaultdict(list)
    for name, role, p in named:
        u = direction(name, p)
        by_role[role].append(u.square().mean(dim=tuple(range(1, u.ndim))).sqrt())
    return {role: torch.stack(rms).mean(0) for role, rms in by_role.items()}


def _shape_buckets(named: list[tuple[str, str, Tensor]]) -> dict[tuple, list[int]]:
    """Indices into ``named`` by parameter shape: matrices of one shape share one batched call."""
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, (_, _, p) in enumerate(named):
        buckets[tuple(p.shape)].append(i)
    return dict(buckets)


def _outside_to_zero(update: Tensor, mask: Tensor) -> Tensor:
    """The update with the members outside ``mask`` set to 0 (their learning rate is 0 already, but
    0 × NaN is NaN: a diverged member's weights must not change either)."""
    return update.masked_fill_(~per_member(mask, update), 0.0)


@torch.no_grad()
def zero_grads_outside_(params: list[Tensor], mask: Tensor) -> None:
    """Members outside ``mask`` get zero gradients (a diverged member's NaNs included)."""
    for p in params:
        p.grad.masked_fill_(~per_member(mask, p.grad), 0.0)


class StackedAdamW:
    def __init__(self, named: list[tuple[str, str, Tensor]], hypers: MemberHypers):
        """``named``: (name, role, parameter) triples."""
        self.named, self.h = named, hypers
        self.state = {name: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)} for name, _, p in named}
        self.steps = torch.zeros_like(hypers.beta1)  # steps taken, per member

    def _bias_corrections(self) -> tuple[Tensor, Tensor]:
        t, started = self.steps, self.steps > 0
        one = torch.ones_like(t)
        return (torch.where(started, 1 - self.h.beta1 ** t, one), torch.where(started, 1 - self.h.beta2 ** t, one))

    @torch.no_grad()
    def step(self, lr: dict[str, Tensor], mask: Tensor) -> None:
        """``lr``: role → (K,) learning rate at this step, 0 outside ``mask``."""
        h = self.h
        self.steps += mask.to(self.steps.dtype)
        bc1, bc2 = self._bias_corrections()
        keep1 = torch.where(mask, 1 - h.beta1, 0.0)      # lerp weight: 0 leaves m as it is
        keep2 = torch.where(mask, h.beta2, 1.0)          # β2 = 1 (and 1 − β2 = 0) leaves v as it is
        for name, role, p in self.named:
            g, s = p.grad, self.state[name]
            m, v = s["exp_avg"], s["exp_avg_sq"]
            p.mul_(per_member(1 - lr[role] * h.weight_decay[role], p))
            m.lerp_(g, per_member(keep1, p))
            v.mul_(per_member(keep2, p)).addcmul_(g * per_member(1 - keep2, p), g)
            denom = (v.sqrt() / per_member(bc2.sqrt(), p)).add_(per_member(h.eps, p))
            p.add_(_outside_to_zero(m / denom, mask) * per_member(-lr[role] / bc1, p))

    @torch.no_grad()
    def update_rms(self) -> dict[str, Tensor]:
        """Per role, (K,): the RMS of m̂ / (√v̂ + ε), the direction AdamW steps along without η,
        per matrix, averaged over the role's matrices (kexue.fm/archives/11267 measures it so)."""
        bc1, bc2 = self._bias_corrections()

        def direction(name, p):
            s = self.state[name]
            return (s["exp_avg"].float() / per_member(bc1, p)) / (
                (s["exp_avg_sq"].float() / per_member(bc2, p)).sqrt() + per_member(self.h.eps, p))

        return role_rms(self.named, direction)

    def state_dict(self) -> dict:
        return {"state": self.state, "steps": self.steps}

    def load_state_dict(self, saved: dict) -> None:
        for name, s in saved["state"].items():
            for key, t in s.items():
                self.state[name][key].copy_(t)
        self.steps.copy_(saved["steps"])


class StackedSGD:
    """Heavy-ball SGD on every parameter role (the SGD runs' only optimizer)."""

    def __init__(self, named: list[tuple[str, str, Tensor]], hypers: MemberHypers):
        """``named``: (name, role, parameter) triples. b starts at 0, so the first step's b is g, as
        torch.optim.SGD sets it."""
        self.named, self.h = named, hypers
        self.state = {name: {"momentum_buffer": torch.zeros_like(p)} for name, _, p in named}

    @torch.no_grad()
    def step(self, lr: dict[str, Tensor], mask: Tensor) -> None:
        """``lr``: role → (K,) learning rate at this step, 0 outside ``mask``."""
        mu = torch.where(mask, self.h.sgd_momentum, 1.0)  # μ = 1 with a zero gradient keeps b as it is
        for name, role, p in self.named:
            b = self.state[name]["momentum_buffer"]
            p.mul_(per_member(1 - lr[role] * self.h.weight_decay[role], p))
            b.mul_(per_member(mu, p)).add_(p.grad)
            p.add_(_outside_to_zero(b * per_member(-lr[role], p), mask))

    @torch.no_grad()
    def update_rms(self) -> dict[str, Tensor]:
        """Per role, (K,): the RMS of the momentum b, the direction SGD steps along without η, per
        matrix, averaged over the role's matrices."""
        return role_rms(self.named, lambda name, p: self.state[name]["momentum_buffer"].float())

    def state_dict(self) -> dict:
        return {"state": self.state}

    def load_state_dict(self, saved: dict) -> None:
        for name, s in saved["state"].items():
            self.state[name]["momentum_buffer"].copy_(s["momentum_buffer"])


class StackedMuon:
    """Muon (``muon.py``) on the hidden matrices (K, A, B): matrices of one shape are orthogonalised
    in one batched Newton–Schulz call; each member has its own μ, scale s(A, B) and learning rate."""

    def __init__(self, named: list[tuple[str, str, Tensor]], hypers: MemberHypers, ns_steps: int):
        self.named, self.h, self.ns_steps = named, hypers, ns_steps
        # momentum kept stacked per shape, as Newton–Schulz takes it; each matrix's buffer is a view
        self.buckets = {}
        self.state: dict[str, dict[str, Tensor]] = {}
        for shape, index in _shape_buckets(named).items():
            first = named[index[0]][2]
            stacked = torch.zeros((len(index), *shape), dtype=first.dtype, device=first.device)
            for i, buf in zip(index, stacked.unbind(0)):
                self.state[named[i][0]] = {"momentum_buffer": buf}
            self.buckets[shape] = (index, hypers.muon_scales(shape), stacked)
        self.last_rms: Tensor | None = None

    @torch.no_grad()
    def step(self, lr: Tensor, weight_decay: Tensor, mask: Tensor) -> None:
        mu = torch.where(mask, self.h.muon_momentum, 1.0)  # μ = 1 with a zero gradient keeps M as it is
        rms = []
        for shape, (index, scale, momentum) in self.buckets.items():
            params = [self.named[i][2] for i in index]
            grads = torch.stack([p.grad for p in params])
            O = muon_update(grads, momentum, mu.view(1, -1, 1, 1), nesterov=True, ns_steps=self.ns_steps)
            norms = torch.linalg.vector_norm(O, dim=(-2, -1), dtype=torch.float32)  # (n, K)
            rms.append(norms * scale / (shape[-1] * shape[-2]) ** 0.5)
            for p, o in zip(params, O.unbind(0)):
                p.mul_(per_member(1 - lr * weight_decay, p))
                p.add_(_outside_to_zero(o, mask) * per_member(-lr * scale, p))
        self.last_rms = torch.cat(rms).mean(0)

    def update_rms(self) -> dict[str, Tensor]:
        """{"hidden": (K,)}: the mean per-matrix RMS of s(A, B)·O_t at the last step."""
        return {} if self.last_rms is None else {MUON_ROLES[0]: self.last_rms}

    def state_dict(self) -> dict:
        return {"state": self.state, "last_rms": self.last_rms}

    def load_state_dict(self, saved: dict) -> None:
        for name, s in saved["state"].items():
            self.state[name]["momentum_buffer"].copy_(s["momentum_buffer"])
        rms = saved["last_rms"]
        self.last_rms = None if rms is None else rms.to(self.h.beta1.device)


class StackedSpectralDecay:
    """W ← W − η·λ·σ1 u1 v1ᵀ (``spectral_decay.py``) for each member with a spectral decay; matrices
    of one shape share one batched power iteration. v1 of each member and matrix is kept, so a
    ``spectral_warm`` member starts from its previous v1; the others start from all-ones."""

    def __init__(self, named: list[tuple[str, str, Tensor]], hypers: MemberHypers):
        self.named, self.h = named, hypers
        self.state = {name: {"v1": torch.ones(p.shape[:-2] + p.shape[-1:], device=p.device)} for name, _, p in named}
        self.buckets = list(_shape_buckets(named).values())

    @torch.no_grad()
    def step(self, rate: dict[str, Tensor], mask: Tensor) -> None:
        """``rate``: role → (K,) η·λ at this step, 0 outside ``mask``."""
        warm = (self.h.spectral_warm & mask).view(1, -1, 1)
        for index in self.buckets:
            names = [self.named[i][0] for i in index]
            params = [self.named[i][2] for i in index]
            previous = torch.stack([self.state[n]["v1"] for n in names])
            # a warm start needs a previous v1; a zero matrix leaves v1 = 0, so start again from all-ones
            usable = self.h.spectral_warm.view(1, -1, 1) & (torch.linalg.vector_norm(previous, dim=-1, keepdim=True) > 0)
            v0 = torch.where(usable, previous, torch.ones_like(previous))
            sigma, u, v = top_singular_triplet(torch.stack(params), v0=v0)
            rank1 = sigma[..., None, None] * u.unsqueeze(-1) * v.unsqueeze(-2)  # σ1 u1 v1ᵀ, (n, K, A, B)
            for i, p, r in zip(index, params, rank1.unbind(0)):
                p.add_(_outside_to_zero(r.to(p.dtype), mask) * per_member(-rate[self.named[i][1]], p))
            for n, new in zip(names, torch.where(warm, v, previous).unbind(0)):
                self.state[n]["v1"].copy_(new)

    def state_dict(self) -> dict:
        return {"state": self.state}

    def load_state_dict(self, saved: dict) -> None:
        for name, s in saved["state"].items():
            self.state[name]["v1"].copy_(s["v1"])


class OptimizerSet:
    """A population's optimizers over the model's parameter roles, stepped as one."""

    def __init__(self, model, hypers: MemberHypers, optimizer: str, ns_steps: int = DEFAULTS["muon_ns_steps"]):
        self.h = hypers
        self.params = list(model.parameters())
        named = [(name, role, p) for role, group in model.param_groups().items() for name, p in group]
        known = run_schema()["properties"]["optimizer"]["enum"]
        if optimizer not in known:
            raise ValueError(f"optimizer = {optimizer!r}: expected one of {known}")
        muon = optimizer == "muon"
        self.muon = StackedMuon([t for t in named if t[1] in MUON_ROLES], hypers, ns_steps) if muon else None
        self.sgd = StackedSGD(named, hypers) if optimizer == "sgd" else None
        rest = [t for t in named if not (muon and t[1] in MUON_ROLES)]
        self.adamw = StackedAdamW(rest, hypers) if self.sgd is None else None
        decayed = [t for t in named if bool((hypers.spectral_decay[t[1]] > 0).any())]
        self.spectral = StackedSpectralDecay(decayed, hypers) if decayed else None

    @property
    def elementwise(self) -> "StackedAdamW | StackedSGD":
        """The optimizer of every parameter that Muon does not take: AdamW, or SGD for SGD runs."""
        return self.sgd if self.sgd is not None else self.adamw

    def learning_rates(self, step: int, mask: Tensor) -> dict[str, Tensor]:
        """Role → (K,) learning rate at ``step`` (0-based): peak × schedule, 0 outside ``mask``."""
        factor = self.h.schedule[step] * mask.to(self.h.schedule.dtype)
        return {role: self.h.peak_lr[role] * factor for role in ROLES}

    @torch.no_grad()
    def step(self, step: int, mask: Tensor) -> None:
        zero_grads_outside_(self.params, mask)
        lr = self.learning_rates(step, mask)
        if self.spectral is not None:
            self.spectral.step({role: lr[role] * self.h.spectral_decay[role] for role in ROLES}, mask)
        if self.muon is not None:
            self.muon.step(lr[MUON_ROLES[0]], self.h.weight_decay[MUON_ROLES[0]], mask)
        self.elementwise.step(lr, mask)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def update_rms(self) -> dict[str, Tensor]:
        """Role → (K,) update RMS without the learning rate: Muon's for the hidden matrices of Muon
        runs, AdamW's from its moments for the rest; SGD's momentum for SGD runs."""
        return {**self.elementwise.update_rms(), **(self.muon.update_rms() if self.muon else {})}

    def parts(self) -> dict:
        return {"adamw": self.adamw, "sgd": self.sgd, "muon": self.muon, "spectral": self.spectral}

    def state_dict(self) -> dict:
        return {key: part.state_dict() for key, part in self.parts().items() if part is not None}

    def load_state_dict(self, saved: dict) -> None:
        for key, part in self.parts().items():
            if part is not None:
                part.load_state_dict(saved[key])
