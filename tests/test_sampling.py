"""The one flow sampler (semlat.sampling): grids, guidance convention, Euler/midpoint, and the CLI's aliases."""

import math

import click
import pytest
import torch

from semlat.errors import ConfigError
from semlat.sampling import (
    EPSS_GRIDS,
    from_f5_strength,
    guide,
    sample,
    shift,
    sway,
    time_grid,
    to_f5_strength,
)


def test_time_grids_of_every_schedule():
    assert torch.equal(time_grid(4), torch.linspace(0, 1, 5))
    sine = time_grid(4, "sine")
    assert torch.allclose(sine, torch.sin(math.pi / 2 * torch.linspace(0, 1, 5)), atol=1e-7) and sine[-1] == 1.0
    for steps, grid in EPSS_GRIDS.items():
        assert torch.equal(time_grid(steps, "epss") * 32, torch.tensor(grid, dtype=torch.float32))
    assert torch.equal(time_grid(9, "epss"), time_grid(9))  # no pruned grid for 9 steps: uniform
    swayed = time_grid(8, sway_coef=-1.0)
    assert torch.equal(swayed, sway(torch.linspace(0, 1, 9), -1.0)) and float(swayed[1]) < 1 / 8
    shifted = time_grid(8, shift_alpha=3.0)
    assert shifted[0] == 0 and abs(float(shifted[-1]) - 1) < 1e-7 and float(shifted[4]) == pytest.approx(0.25)
    assert torch.equal(shift(shifted, 1.0), shifted)
    with pytest.raises(ConfigError, match="schedule"):
        time_grid(4, "cosine")
    with pytest.raises(ConfigError, match="at least one step"):
        time_grid(0)


def test_one_guidance_convention_and_f5s_strength_maps_onto_it_exactly():
    c, u = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.equal(guide(c, u, 1.0), c)
    assert torch.allclose(guide(c, u, 0.0), u, atol=1e-6)
    assert torch.allclose(guide(c, u, 3.5), u + 3.5 * (c - u), atol=1e-6)
    for strength in (0.0, 2.0, 0.7):  # F5-TTS's c + s (c - u), bit for bit
        assert torch.equal(guide(c, u, from_f5_strength(strength)), c + (c - u) * strength)
        assert to_f5_strength(from_f5_strength(strength)) == strength


def test_euler_and_midpoint_integrate_and_keep_gradients():
    x0 = torch.zeros(2, 3)
    # dx/dt = 2t: x(1) = 1; midpoint is exact for it, Euler on a uniform grid gives 1 - 1/N
    def velocity(x, t):
        return torch.full_like(x, 2 * float(t))

    assert torch.allclose(sample(velocity, x0, time_grid(4), method="midpoint"), torch.ones(2, 3), atol=1e-6)
    assert torch.allclose(sample(velocity, x0, time_grid(4)), torch.full((2, 3), 0.75), atol=1e-6)
    seen = []
    sample(velocity, x0, time_grid(3), on_step=lambda k, x: seen.append((k, float(x[0, 0]))))
    assert [k for k, _ in seen] == [0, 1, 2]
    w = torch.tensor(0.5, requires_grad=True)
    out = sample(lambda x, t: w * x + 1, x0, time_grid(2))
    out.sum().backward()
    assert w.grad is not None and float(w.grad) != 0.0
    with pytest.raises(ConfigError, match="method"):
        sample(velocity, x0, time_grid(2), method="heun")


def test_the_clis_old_step_and_guidance_flags_map_onto_the_new_ones(capsys):
    from semlat.cli import _resolve_flow

    assert _resolve_flow(8, None, None, None, cfg_is_f5=True, guidance_default=3.0) == (8, 3.0)
    assert _resolve_flow(32, None, 4, 2.0, cfg_is_f5=True, guidance_default=3.0) == (4, 3.0)  # F5's cfg 2
    assert _resolve_flow(None, None, None, 3.5, cfg_is_f5=False, guidance_default=None) == (None, 3.5)
    err = capsys.readouterr().err
    assert "--nfe is deprecated" in err and "--cfg is deprecated; use --guidance 3" in err
    with pytest.raises(click.UsageError, match="not both"):
        _resolve_flow(8, 2.0, None, 2.0, cfg_is_f5=True, guidance_default=3.0)
