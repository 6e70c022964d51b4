"""Muon + AdamW hybrid: equal to torch's own optimisers where they overlap, and usable by the trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semlat.training.optimizers import MuonAdamW, build_optimizer, orthogonalize
from semlat.training.settings import OptimizerConfig


def _run(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], steps: int = 4) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        optimizer.step()


def test_orthogonalize_gives_near_unit_singular_values():
    m = torch.randn(16, 40, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(orthogonalize(m, steps=5))
    assert s.min() > 0.5 and s.max() < 1.3  # the quintic iteration's band, not exact orthogonality
    assert orthogonalize(m.T).shape == (40, 16)


def test_muon_on_matrices_equals_torch_muon_at_its_rms_scaling():
    """Ours scales by sqrt(max dim); torch's match_rms_adamw by 0.2 sqrt(max dim): lr x5, wd /5.
    torch orthogonalises in bfloat16 (ours in float32, like the reference), hence the 2 % tolerance."""
    torch.manual_seed(0)
    start = torch.randn(24, 10)
    ours, theirs = start.clone(), start.clone()
    ours.requires_grad_(True)
    theirs.requires_grad_(True)
    _run(MuonAdamW([{"params": [ours], "muon": True}], lr=1e-2, weight_decay=0.1), [ours])
    _run(torch.optim.Muon([theirs], lr=5e-2, weight_decay=0.02, adjust_lr_fn="match_rms_adamw"), [theirs])
    moved_ours, moved_theirs = (ours - start).detach(), (theirs - start).detach()
    assert float((moved_ours - moved_theirs).norm() / moved_theirs.norm()) < 0.02


def test_adamw_groups_equal_torch_adamw():
    torch.manual_seed(0)
    ours, theirs = torch.randn(7), None
    theirs = ours.clone()
    ours.requires_grad_(True)
    theirs.requires_grad_(True)
    _run(MuonAdamW([{"params": [ours], "muon": False}], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1), [ours])
    _run(torch.optim.AdamW([theirs], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1), [theirs])
    torch.testing.assert_close(ours, theirs, atol=1e-7, rtol=1e-6)


def test_conv_weights_are_flattened_and_learn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Conv2d(4, 1, 3, padding=1))
    optimizer = build_optimizer(model, OptimizerConfig(name="muon", lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0))
    groups = {g["muon"]: g["params"] for g in optimizer.param_groups}
    assert all(p.ndim == 4 for p in groups[True]) and all(p.ndim == 1 for p in groups[False])
    x = torch.randn(8, 1, 6, 6)
    target = x.roll(1, dims=-1)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = (model(x) - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    state = optimizer.state_dict()
    clone = build_optimizer(model, OptimizerConfig(name="muon"))
    clone.load_state_dict(state)
    assert set(clone.state_dict()["state"]) == set(state["state"])


def test_schedulers_drive_both_groups():
    model = nn.Linear(3, 3)
    optimizer = build_optimizer(model, OptimizerConfig(name="muon", lr=1.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    model(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.5]


def test_muon_groups_reject_vectors():
    with pytest.raises(ValueError, match="2 or more"):
        MuonAdamW([{"params": [torch.zeros(3, requires_grad=True)], "muon": True}])
