"""Optimisers the trainer builds from an :class:`~semlat.training.settings.OptimizerConfig`.

- ``adamw``: ``torch.optim.AdamW`` over every trainable parameter.
- ``muon``: :class:`MuonAdamW` — Muon (momentum, then orthogonalisation by Newton–Schulz) for every
  parameter with two or more dimensions, AdamW for the rest. This is the DC-Speech-VAE reference's
  setup: convolution weights ``[out, in, *k]`` (and weight-norm magnitudes ``[out, 1, ...]``) are
  flattened to ``[out, in * prod(k)]`` matrices, and the orthogonalised update is scaled by
  ``lr * sqrt(max(rows, cols))``.

``torch.optim.Muon`` (torch >= 2.9) accepts only 2-D parameters and scales updates by
``sqrt(max(1, rows/cols))`` or ``0.2 * sqrt(max(rows, cols))``; for 2-D parameters our update equals
its ``match_rms_adamw`` update at 5x the learning rate and a fifth of the weight decay, which
``tests/test_optimizers.py`` checks, so the maths is the maintained one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from semlat.training.settings import OptimizerConfig

#: Newton–Schulz quintic coefficients (Keller Jordan's Muon; also torch.optim.Muon's defaults).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximate ``U V^T`` of ``matrix [rows, cols]`` by ``steps`` quintic Newton–Schulz iterations
    (in float32; the result has ``matrix``'s dtype)."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.float()
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.T
    return x.to(matrix.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """Muon for groups with ``muon=True`` (tensors of ndim >= 2), AdamW for the others.

    Muon group options: ``lr``, ``momentum`` (0.95), ``nesterov`` (True), ``ns_steps`` (5),
    ``weight_decay`` (decoupled, ``p *= 1 - lr * wd``). AdamW group options: ``lr``, ``betas``,
    ``eps``, ``weight_decay``. Use :func:`build_optimizer` to split a module's parameters.
    """

    def __init__(self, groups: Iterable[dict], lr: float = 1e-4, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1):
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps, "betas": betas,
                    "eps": eps, "weight_decay": weight_decay, "muon": False}
        super().__init__(list(groups), defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon groups may only hold tensors with 2 or more dimensions")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["muon"]:
                self._muon(group)
            else:
                self._adamw(group)
        return loss

    def _muon(self, group: dict) -> None:
        lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - momentum)
            update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
            matrix = update.reshape(update.shape[0], -1)
            ortho = orthogonalize(matrix, group["ns_steps"])
            if wd:
                p.mul_(1 - lr * wd)
            p.add_(ortho.view_as(p), alpha=-lr * math.sqrt(max(matrix.shape)))

    def _adamw(self, group: dict) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            step = float(state["step"])
            p.mul_(1 - lr * wd)
            state["exp_avg"].lerp_(p.grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**step))


def build_optimizer(module: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimiser ``config.name`` names, over ``module``'s trainable parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay,
                                 eps=config.eps)
    matrices = [p for p in params if p.ndim >= 2]
    others = [p for p in params if p.ndim < 2]
    groups = [{"params": matrices, "muon": True}, {"params": others, "muon": False}]
    return MuonAdamW([g for g in groups if g["params"]], lr=config.lr, momentum=config.momentum,
                     nesterov=config.nesterov, ns_steps=config.ns_steps, betas=tuple(config.betas), eps=config.eps,
                     weight_decay=config.weight_decay)
