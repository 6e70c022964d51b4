"""Conditional flow matching with F5-TTS's infilling objective, and its samplers.

The sampler and the objective are separate from the backbone: any module with the DiT's call
``backbone(x, cond, text, time, mask=None, drop_audio_cond=False, drop_text=False, cfg_infer=False)`` on
``[B, N, C]`` sequences works, and ``C`` is whatever latent the sequences live in (a mel, a VAE's latents).

**Path.** Optimal transport, sigma 0: ``x_t = (1 - t) x0 + t x1`` with ``x0 ~ N(0, I)``; the backbone
predicts the velocity ``x1 - x0``.

**Objective** (:func:`infilling_loss`). For each item a contiguous span of 70-100 % of its valid frames
(``floor(frac · len)`` frames from ``floor((len - span) · u)``) is masked; the rest is the audio condition.
The loss is the mean squared error over the masked span's elements (pooled over the batch). Classifier-free
guidance training drops, for the whole batch, the audio condition with probability 0.3, and the audio
condition and the text together with probability 0.2 (both draws always made).

**Sampling** (:func:`sample`): durations raised to at least ``max(text tokens, prompt frames) + 1``; the
prompt frames are the condition and are copied into the output; :mod:`semlat.sampling`'s Euler or midpoint
steps over its ``epss`` grid (F5's empirically pruned grids for 5, 6, 7, 10, 12 and 16 steps, uniform
otherwise) bent by sway sampling ``t + s (cos(πt/2) - 1 + t)`` (``s = -1`` by default); guidance in semlat's
convention ``v = u + w (c - u)`` (F5's ``cfg_strength`` 2 is ``w = 3``) from one batched call with the
conditional and the unconditional (audio and text dropped) rows. The initial noise can be given
(``y0``) or drawn per item from ``seed`` (each item restarts the generator: item ``i`` gets the first
``duration_i`` rows of one stream, as the reference draws it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from semlat.sampling import guide, time_grid
from semlat.sampling import sample as flow_sample

MAX_FRAMES = 65536


def lengths_to_mask(lengths: Tensor, length: int | None = None) -> Tensor:
    """``[B]`` lengths -> ``[B, N]`` bool (``N = max`` unless given)."""
    length = int(lengths.max()) if length is None else length
    return torch.arange(length, device=lengths.device)[None] < lengths[:, None]


def initial_noise(durations: Tensor, channels: int, seed: int | Sequence[int | None] | None, *, device: Any = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """``[B, max(durations), channels]``: item ``i`` is ``randn(duration_i, channels)`` drawn after seeding a
    fresh generator with ``seed`` (so every item starts the same stream), or with ``seed[i]`` when ``seed`` is a
    sequence (one per item: a batch of rows draws what each row would draw alone), zero past its duration.
    Without a seed the items come from the global generator one after another."""
    seeds = list(seed) if isinstance(seed, Sequence) else [seed] * len(durations)
    if len(seeds) != len(durations):
        raise ValueError(f"{len(seeds)} seeds for {len(durations)} items")
    rows = []
    for duration, item_seed in zip(durations.tolist(), seeds):
        generator = torch.Generator(device="cpu").manual_seed(item_seed) if item_seed is not None else None
        rows.append(torch.randn(int(duration), channels, generator=generator, dtype=torch.float32))
    longest = int(durations.max())
    out = torch.zeros(len(rows), longest, channels)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out.to(device=device, dtype=dtype)


@dataclass
class FlowConfig:
    """The objective's settings: CFG dropping of the audio condition (``audio_drop``) and of audio and text
    together (``cond_drop``), and the share of each item's frames that is infilled (``frac_lengths``)."""

    audio_drop: float = 0.3
    cond_drop: float = 0.2
    frac_lengths: tuple[float, float] = (0.7, 1.0)


@dataclass
class Sampled:
    """What :func:`sample` returns: the output ``[B, N, C]`` (prompt frames copied in; frames past an item's
    duration are not meaningful), the durations ``[B]``, and with ``keep_trajectory`` the states ``[steps + 1,
    B, N, C]`` and every step's raw backbone output."""

    out: Tensor
    durations: Tensor
    trajectory: Tensor | None = None
    step_outputs: Tensor | None = None
    times: Tensor | None = None


@torch.no_grad()
def sample(backbone: nn.Module, cond: Tensor, text: Tensor, durations: Tensor, lens: Tensor | None = None, *,
           steps: int = 32, guidance: float = 3.0, sway_coef: float | None = -1.0, method: str = "euler",
           epss: bool = True, seed: int | Sequence[int | None] | None = None, y0: Tensor | None = None,
           keep_trajectory: bool = False
           ) -> Sampled:
    """Generate ``[B, N, C]`` sequences that continue the prompts ``cond [B, Nc, C]`` (``lens [B]`` valid
    frames; default all) to ``durations [B]`` total frames, given ``text [B, Nt]`` token ids (``-1``
    padded), with :mod:`semlat.sampling`'s sampler; ``guidance`` is semlat's scale (F5-TTS's
    ``cfg_strength`` + 1; 1 or less is the conditional velocity alone, in one unguided call). See the module
    docstring."""
    batch, device = cond.shape[0], cond.device
    if lens is None:
        lens = torch.full((batch,), cond.shape[1], dtype=torch.long, device=device)
    tokens = (text != -1).sum(-1)
    durations = torch.maximum(durations.to(device).long(), torch.maximum(tokens, lens) + 1).clamp(max=MAX_FRAMES)
    longest = int(durations.max())
    cond = nn.functional.pad(cond, (0, 0, 0, max(0, longest - cond.shape[1])))[:, :longest]
    prompt = lengths_to_mask(lens, longest)
    step_cond = torch.where(prompt[..., None], cond, torch.zeros_like(cond))
    mask = lengths_to_mask(durations, longest) if batch > 1 else None
    y = y0 if y0 is not None else initial_noise(durations, cond.shape[-1], seed, device=device, dtype=cond.dtype)
    times = time_grid(steps, "epss" if epss else "uniform", sway_coef=sway_coef, device=device, dtype=cond.dtype)
    outputs: list[Tensor] = []

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        if abs(guidance - 1.0) < 1e-5:
            out = backbone(x, step_cond, text, t, mask=mask)
            outputs.append(out)
            return out
        both = backbone(x, step_cond, text, t, mask=mask, cfg_infer=True)
        outputs.append(both)
        conditional, unconditional = both.chunk(2, dim=0)
        return guide(conditional, unconditional, guidance)

    trajectory = [y] if keep_trajectory else None
    y = flow_sample(velocity, y, times, method=method,
                    on_step=(lambda k, x: trajectory.append(x)) if trajectory is not None else None)
    out = torch.where(prompt[..., None], cond, y)
    stride = 2 if method == "midpoint" else 1  # the step outputs are those at each step's start
    return Sampled(out, durations, torch.stack(trajectory) if trajectory else None,
                   torch.stack(outputs[::stride]) if keep_trajectory else None, times)


def span_mask(lens: Tensor, frac: Tensor, u: Tensor, length: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(mask [B, N], start [B], span [B])``: ``span = floor(frac · len)`` frames from ``start = floor((len -
    span) · u)``, inside the valid frames."""
    span = (frac * lens).floor().long()
    start = ((lens - span) * u).floor().long().clamp(min=0)
    n = torch.arange(length, device=lens.device)[None]
    mask = (n >= start[:, None]) & (n < (start + span)[:, None]) & lengths_to_mask(lens, length)
    return mask, start, span


def draw_infilling(inp: Tensor, flow: FlowConfig | None = None) -> dict[str, Any]:
    """The objective's random draws, in the reference's order, from torch's and Python's global generators."""
    flow = flow or FlowConfig()
    batch = inp.shape[0]
    frac = torch.zeros(batch, device=inp.device).uniform_(*flow.frac_lengths)
    u = torch.rand_like(frac)
    x0 = torch.randn_like(inp)
    time = torch.rand(batch, dtype=inp.dtype, device=inp.device)
    drop_audio = random.random() < flow.audio_drop
    drop_both = random.random() < flow.cond_drop
    return {"frac": frac, "u": u, "x0": x0, "time": time, "drop_audio_cond": drop_audio or drop_both,
            "drop_text": drop_both}


def infilling_loss(backbone: nn.Module, inp: Tensor, text: Tensor, lens: Tensor, *,
                   draws: Mapping[str, Any] | None = None, flow: FlowConfig | None = None,
                   aligned_text: bool = False) -> tuple[Tensor, dict[str, Any]]:
    """F5-TTS's training loss on ``inp [B, N, C]`` (``lens [B]`` valid frames) and ``text [B, Nt]``.

    ``draws`` (see :func:`draw_infilling`) fixes the randomness; by default it is drawn with ``flow``'s
    settings. With ``aligned_text`` the text is frame-aligned ids ``[B, N]`` (:mod:`.aligned`) and only the
    infilled span keeps them (the rest is ``-1``, as the prompt's frames at generation). Returns the loss and the
    details (``cond``, ``pred``, ``mask``, ``start``, ``span``, the draws)."""
    draws = dict(draws) if draws is not None else draw_infilling(inp, flow)
    length = inp.shape[1]
    valid = lengths_to_mask(lens, length)
    mask, start, span = span_mask(lens, draws["frac"], draws["u"], length)
    if aligned_text:
        text = text.masked_fill(~mask, -1)
    x0, t = draws["x0"], draws["time"]
    phi = (1 - t[:, None, None]) * x0 + t[:, None, None] * inp
    flow = inp - x0
    cond = torch.where(mask[..., None], torch.zeros_like(inp), inp)
    pred = backbone(phi, cond, text, t, mask=valid, drop_audio_cond=bool(draws["drop_audio_cond"]),
                    drop_text=bool(draws["drop_text"]))
    loss = (pred.float() - flow.float()).square()[mask].mean()
    return loss, {"cond": cond, "pred": pred, "mask": mask, "start": start, "span": span, **draws}
