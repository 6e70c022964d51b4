"""Least-squares GAN losses over any discriminator that returns feature maps (DAC's ``GANLoss``).

A discriminator maps audio to ``list[list[Tensor]]``: per sub-discriminator ``D`` its feature maps,
the last one the logits ``D_last``. With ``fake`` the generator's output and ``real`` the data::

    discriminator_loss = sum_D [ mean(D(fake)_last^2) + mean((1 - D(real)_last)^2) ]
    generator_adversarial_loss = sum_D mean((1 - D(fake)_last)^2)
    feature_matching_loss = sum_D sum_{j < last} mean|D(fake)_j - D(real)_j|     (real detached)

Nothing is normalised by the number of layers or sub-discriminators, as in the reference. The
sums run in the reference's order, so the values match it to float32 rounding.

A training step, as in the reference::

    fake_maps, real_maps = discriminate_pair(disc, fake.detach(), real)   # one batched pass
    loss_d = discriminator_loss(fake_maps, real_maps)                     # step D
    fake_maps = disc(fake)
    with torch.no_grad():                                                 # real maps are detached anyway
        real_maps = disc(real)
    loss_g = generator_adversarial_loss(fake_maps), feature_matching_loss(fake_maps, real_maps)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

FeatureMaps = Sequence[torch.Tensor]


def _check_pairs(fake_maps: Sequence[FeatureMaps], real_maps: Sequence[FeatureMaps]) -> None:
    if not fake_maps:
        raise ValueError("no discriminator outputs")
    if len(fake_maps) != len(real_maps):
        raise ValueError(f"{len(fake_maps)} fake vs {len(real_maps)} real discriminator outputs")
    for i, (fake, real) in enumerate(zip(fake_maps, real_maps, strict=True)):
        if len(fake) != len(real):
            raise ValueError(f"discriminator {i}: {len(fake)} fake vs {len(real)} real feature maps")


def discriminator_loss(fake_maps: Sequence[FeatureMaps], real_maps: Sequence[FeatureMaps]) -> torch.Tensor:
    """Scalar ``sum_D [mean(D(fake)_last^2) + mean((1 - D(real)_last)^2)]``.

    ``fake_maps`` must come from detached fake audio (only the discriminator learns from this loss).
    """
    _check_pairs(fake_maps, real_maps)
    total = None
    for fake, real in zip(fake_maps, real_maps, strict=True):
        for term in (fake[-1].square().mean(), (1 - real[-1]).square().mean()):
            total = term if total is None else total + term
    return total


def generator_adversarial_loss(fake_maps: Sequence[FeatureMaps]) -> torch.Tensor:
    """Scalar ``sum_D mean((1 - D(fake)_last)^2)``."""
    if not fake_maps:
        raise ValueError("no discriminator outputs")
    total = None
    for fake in fake_maps:
        term = (1 - fake[-1]).square().mean()
        total = term if total is None else total + term
    return total


def feature_matching_loss(fake_maps: Sequence[FeatureMaps], real_maps: Sequence[FeatureMaps]) -> torch.Tensor:
    """Scalar ``sum_D sum_{j < last} mean|D(fake)_j - D(real)_j|``; the real maps are detached."""
    _check_pairs(fake_maps, real_maps)
    total = None
    for fake, real in zip(fake_maps, real_maps, strict=True):
        for f, r in zip(fake[:-1], real[:-1], strict=True):
            term = F.l1_loss(f, r.detach())
            total = term if total is None else total + term
    if total is None:
        raise ValueError("no feature maps before the logits")
    return total


def discriminate_pair(
    discriminator: Callable[[torch.Tensor], list[list[torch.Tensor]]], fake: torch.Tensor, real: torch.Tensor,
) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """``(D(fake), D(real))`` from one call on the batch ``cat([fake, real])`` (fewer, larger kernels).

    Valid for discriminators that treat batch items independently (every map keeps the batch on
    dim 0), which holds for :class:`~semlat.losses.discriminators.WaveDiscriminator`. The returned
    maps are views of the batched maps: the first ``len(fake)`` items, then the rest.
    """
    if fake.shape[1:] != real.shape[1:]:
        raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} differ beyond the batch dim")
    n = fake.shape[0]
    maps = discriminator(torch.cat([fake, real], dim=0))
    return [[m[:n] for m in d] for d in maps], [[m[n:] for m in d] for d in maps]
