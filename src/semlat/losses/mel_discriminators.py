"""Mel-spectrogram GAN discriminators of DC-Speech-VAE (its ``AEDiscriminator``).

:class:`MelDiscriminator` holds, under ``discriminators.{i}``, a :class:`MelBandDiscriminator`
(the reference ``DiscriminatorR``) and a :class:`PatchGANDiscriminator` (``DiscriminatorPatchGAN``),
so the reference ``discriminator_N.pt`` state dicts load with their own keys. Every convolution is
weight-normalised with torch's parametrization API (dim 0: ``….parametrizations.weight.original0/1``)
and, except each ``conv_post``, followed by LeakyReLU(0.1). The convs are plain module-list entries
(``band_convs.{band}.{layer}.*``, ``convs.{i}.*``: no ``.0.`` as in the waveform discriminators), the
activation is applied functionally.

Both sub-discriminators read a mel ``[B, n_mels, T]`` as a one-channel image ``[B, 1, T, n_mels]``
(time = height, mel = width) and return the reference's feature maps: post-activation maps of every
conv but the first, then the ``conv_post`` output (the score). The reference applies its LeakyReLU in
place *after* recording a map, so its maps are post-activation; ours are recorded after the
activation too (verified map by map against the fixtures).

Losses. The reference (HiFi-GAN LSGAN) uses, with ``D_d`` the score of sub-discriminator ``d`` and
``fmap_{d,l}`` all its feature maps *including the score*::

    loss_D   = sum_d [ mean((1 - D_d(real))^2) + mean(D_d(fake)^2) ]
    loss_adv = sum_d mean((1 - D_d(fake))^2)
    loss_fm  = 2 * sum_d sum_l mean|fmap_{d,l}(real) - fmap_{d,l}(fake)|
    loss_G   = loss_adv + loss_fm + 5 * L1(mel_hat, mel) + 0.25 * dispersive(latent_clean)

:mod:`semlat.losses.adversarial` treats the last entry of each list as the score and leaves it out
of feature matching. :meth:`MelDiscriminator.forward` therefore returns, per sub-discriminator, the
reference maps **followed by the score once more** (the same tensor): the generic losses then give the
reference's values exactly, with the feature-matching loss weighted by
:data:`FEATURE_MATCHING_WEIGHT` = 2::

    fake_maps, real_maps = discriminate_pair(disc, mel_hat.detach(), mel)
    loss_d = discriminator_loss(fake_maps, real_maps)                          # = reference loss_disc
    fake_maps = disc(mel_hat)
    with torch.no_grad():
        real_maps = disc(mel)
    loss_g = (generator_adversarial_loss(fake_maps)                            # = reference loss_gen
              + FEATURE_MATCHING_WEIGHT * feature_matching_loss(fake_maps, real_maps)  # = loss_fm
              + RECON_L1_WEIGHT * F.l1_loss(mel_hat, mel)
              + DISPERSIVE_WEIGHT * dispersive)

Sizes. The band discriminator keeps ``T`` and ``n_mels`` (3×3 convs, padding 1), so any ``T >= 1``
works. Each PatchGAN conv (k4, s2, p1) maps a length ``L`` to ``floor(L / 2)`` and ``conv_post``
(k4, s1, p1) to ``L - 1``, so with ``n`` strided convs both ``T`` and ``n_mels`` must be at least
``2^(n+1)`` (64 for the reference's five); shorter input raises a ValueError. Odd lengths are
fine: ``T = 129`` gives the same score grid as ``T = 128`` (the last window of the first conv covers
frames 125–128 instead of 125–127 plus the zero padding), and every frame still reaches the score,
since a k4/s2/p1 window sequence covers every input row whatever the parity of the length.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semlat.config import check_keys
from semlat.nn.weight_norm import WNConv2d

LEAKY_SLOPE = 0.1
#: Reference PatchGAN widths (hard-coded there): 1 → 32 → 64 → 128 → 256 → 512 → 1.
DEFAULT_PATCHGAN_CHANNELS: tuple[int, ...] = (32, 64, 128, 256, 512)
#: Sub-discriminator kinds, in the reference's order.
DISCRIMINATOR_KINDS: tuple[str, ...] = ("band", "patchgan")
#: Reference generator-loss weights on top of :mod:`semlat.losses.adversarial` (see module docstring).
FEATURE_MATCHING_WEIGHT = 2.0
RECON_L1_WEIGHT = 5.0
DISPERSIVE_WEIGHT = 0.25

FeatureMaps = list[torch.Tensor]


def mel_to_image(mel: torch.Tensor, n_mels: int | None = None) -> torch.Tensor:
    """``[B, n_mels, T] -> [B, 1, T, n_mels]`` (a view); anything but a 3-D mel is a ValueError."""
    if mel.dim() != 3:
        raise ValueError(f"expected a mel spectrogram [B, n_mels, T], got {mel.dim()}-D input {tuple(mel.shape)}")
    if n_mels is not None and mel.shape[1] != n_mels:
        raise ValueError(f"expected a mel spectrogram [B, {n_mels}, T], got {tuple(mel.shape)}")
    return rearrange(mel, "b m t -> b 1 t m")


def mel_band_edges(n_mels: int, bands: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: ``bands`` contiguous mel-bin ranges, ``lo_k = floor(k * n_mels / bands)``.

    Integer arithmetic; for ``n_mels = 80, bands = 10`` this is the reference's
    ``int(lo * 80):int(hi * 80)`` for ``lo, hi = 0, 0.1, …, 1``: ``[0:8], [8:16], …, [72:80]``.
    """
    if not 1 <= bands <= n_mels:
        raise ValueError(f"need 1 <= bands <= n_mels, got bands={bands}, n_mels={n_mels}")
    return [(n_mels * k // bands, n_mels * (k + 1) // bands) for k in range(bands)]


class MelBandDiscriminator(nn.Module):
    """``DiscriminatorR`` on a mel: per mel band five 3×3 convs, then a shared ``conv_post``.

    Each band ``[B, 1, T, hi_k - lo_k]`` (a slice of the mel axis of the image) goes through its own
    convs 1 → C → C → C → C → C (3×3, padding 1, LeakyReLU(0.1) after each); the band outputs are
    concatenated along the mel axis and ``conv_post`` (C → 1, 3×3, padding 1) gives the score
    ``[B, 1, T, n_mels]``.

    ``forward(mel [B, n_mels, T]) -> 4 * bands + 1`` feature maps: the activations of layers 1–4 of
    band 0 (``[B, C, T, hi_0 - lo_0]`` each), then of band 1, …, then the score.
    """

    def __init__(self, n_mels: int = 80, bands: int = 10, channels: int = 32):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.n_mels = n_mels
        self.bands = mel_band_edges(n_mels, bands)
        widths = (1, channels, channels, channels, channels, channels)
        self.band_convs = nn.ModuleList(
            nn.ModuleList(WNConv2d(c_in, c_out, 3, padding=1) for c_in, c_out in itertools.pairwise(widths))
            for _ in self.bands
        )
        self.conv_post = WNConv2d(channels, 1, 3, padding=1)

    def forward(self, mel: torch.Tensor) -> FeatureMaps:
        image = mel_to_image(mel, self.n_mels)
        fmaps, outs = [], []
        for (lo, hi), stack in zip(self.bands, self.band_convs, strict=True):
            x = image[..., lo:hi]
            for i, conv in enumerate(stack):
                # In place on the conv's fresh output (conv backward does not need it).
                x = F.leaky_relu(conv(x), LEAKY_SLOPE, inplace=True)
                if i > 0:
                    fmaps.append(x)
            outs.append(x)
        fmaps.append(self.conv_post(torch.cat(outs, dim=-1)))
        return fmaps


def patchgan_min_length(n_convs: int) -> int:
    """Smallest ``T`` (and ``n_mels``) a PatchGAN with ``n_convs`` strided convs accepts: ``2^(n+1)``."""
    return 2 ** (n_convs + 1)


def patchgan_output_length(length: int, n_convs: int) -> int:
    """Score length along one axis: ``floor(length / 2)`` per strided conv, then ``- 1`` (``conv_post``)."""
    for _ in range(n_convs):
        length //= 2
    return length - 1


class PatchGANDiscriminator(nn.Module):
    """``DiscriminatorPatchGAN`` on a mel: strided 4×4 convs over the image, then a 1-channel ``conv_post``.

    ``convs.{i}``: Conv2d(k4, s2, p1) with widths 1 → c_0 → … → c_{n-1}, each followed by
    LeakyReLU(0.1); ``conv_post``: Conv2d(c_{n-1} → 1, k4, s1, p1). A length ``L`` becomes
    ``floor(L / 2)`` per strided conv and ``L - 1`` in ``conv_post`` (:func:`patchgan_output_length`):
    an 80-bin, 128-frame mel gives a ``[B, 1, 3, 1]`` score.

    ``forward(mel [B, M, T]) -> n`` feature maps: the activations of convs 1 … n-1
    (``[B, c_i, T_i, M_i]``) then the score. ``T`` and ``M`` must be at least
    :func:`patchgan_min_length` (64 for five convs).
    """

    def __init__(self, channels: Sequence[int] = DEFAULT_PATCHGAN_CHANNELS):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {channels}")
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            WNConv2d(c_in, c_out, 4, stride=2, padding=1) for c_in, c_out in itertools.pairwise(widths)
        )
        self.conv_post = WNConv2d(widths[-1], 1, 4, stride=1, padding=1)

    @property
    def min_length(self) -> int:
        return patchgan_min_length(len(self.convs))

    def forward(self, mel: torch.Tensor) -> FeatureMaps:
        x = mel_to_image(mel)
        if min(x.shape[-2:]) < self.min_length:
            raise ValueError(f"PatchGAN discriminator needs at least {self.min_length} frames and mel bins, "
                             f"got a mel {tuple(mel.shape)}")
        fmaps = []
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), LEAKY_SLOPE, inplace=True)
            if i > 0:
                fmaps.append(x)
        fmaps.append(self.conv_post(x))
        return fmaps


@dataclass(frozen=True)
class MelDiscriminatorConfig:
    """Constructor arguments of :class:`MelDiscriminator` (JSON-friendly through ``dataclasses.asdict``).

    The defaults are the reference ``AEDiscriminator(n_mel_bins=80)``. ``discriminators`` picks the
    sub-discriminators and their order (kinds from :data:`DISCRIMINATOR_KINDS`); they are numbered
    ``discriminators.{i}`` in that order, so only the default order loads reference checkpoints.
    """

    n_mels: int = 80
    bands: int = 10
    band_channels: int = 32
    patchgan_channels: tuple[int, ...] = DEFAULT_PATCHGAN_CHANNELS
    discriminators: tuple[str, ...] = DISCRIMINATOR_KINDS

    def __post_init__(self) -> None:
        mel_band_edges(self.n_mels, self.bands)  # validates bands / n_mels
        if self.band_channels < 1:
            raise ValueError(f"band_channels must be positive, got {self.band_channels}")
        if not self.patchgan_channels or min(self.patchgan_channels) < 1:
            raise ValueError(f"patchgan_channels must be non-empty and positive, got {self.patchgan_channels}")
        kinds = self.discriminators
        if not kinds or len(set(kinds)) != len(kinds) or not set(kinds) <= set(DISCRIMINATOR_KINDS):
            raise ValueError(f"discriminators must be distinct kinds from {DISCRIMINATOR_KINDS}, got {kinds}")
        if "patchgan" in kinds and self.n_mels < patchgan_min_length(len(self.patchgan_channels)):
            raise ValueError(f"the PatchGAN discriminator with {len(self.patchgan_channels)} convs needs "
                             f"n_mels >= {patchgan_min_length(len(self.patchgan_channels))}, got {self.n_mels}")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> MelDiscriminatorConfig:
        """Build from a dict (lists allowed where tuples are stored); unknown keys are an error."""
        check_keys(cls, config, "MelDiscriminator config")
        values = dict(config)
        for key in ("n_mels", "bands", "band_channels"):
            if key in values:
                values[key] = int(values[key])
        if "patchgan_channels" in values:
            values["patchgan_channels"] = tuple(int(c) for c in values["patchgan_channels"])
        if "discriminators" in values:
            values["discriminators"] = tuple(str(k) for k in values["discriminators"])
        return cls(**values)


class MelDiscriminator(nn.Module):
    """DC-Speech-VAE's ``AEDiscriminator``: band discriminator and PatchGAN on a mel ``[B, n_mels, T]``.

    ``forward(mel) -> list[list[Tensor]]``, one list per sub-discriminator (order of
    ``discriminators``): its reference feature maps (41 for the band discriminator with 10 bands,
    5 for the PatchGAN; the last is the score) **followed by the score again**, so that
    :func:`~semlat.losses.adversarial.feature_matching_loss` (which skips the last entry) includes
    the score as the reference does; see the module docstring for the loss recipe. Items of a batch
    are independent, so :func:`~semlat.losses.adversarial.discriminate_pair` applies.
    """

    def __init__(
        self,
        n_mels: int = 80,
        bands: int = 10,
        band_channels: int = 32,
        patchgan_channels: Sequence[int] = DEFAULT_PATCHGAN_CHANNELS,
        discriminators: Sequence[str] = DISCRIMINATOR_KINDS,
    ):
        super().__init__()
        self._config = MelDiscriminatorConfig.from_dict({
            "n_mels": n_mels, "bands": bands, "band_channels": band_channels,
            "patchgan_channels": patchgan_channels, "discriminators": discriminators,
        })
        c = self._config
        build = {
            "band": lambda: MelBandDiscriminator(c.n_mels, c.bands, c.band_channels),
            "patchgan": lambda: PatchGANDiscriminator(c.patchgan_channels),
        }
        self.discriminators = nn.ModuleList(build[kind]() for kind in c.discriminators)

    @property
    def config(self) -> MelDiscriminatorConfig:
        return self._config

    @classmethod
    def from_config(cls, config: MelDiscriminatorConfig | Mapping[str, Any]) -> MelDiscriminator:
        if not isinstance(config, MelDiscriminatorConfig):
            config = MelDiscriminatorConfig.from_dict(config)
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})

    @property
    def names(self) -> list[str]:
        """The sub-discriminator kinds, in order (``["band", "patchgan"]`` by default)."""
        return list(self._config.discriminators)

    def forward(self, mel: torch.Tensor) -> list[FeatureMaps]:
        mel_to_image(mel, self._config.n_mels)  # one clear error for a bad shape
        out = []
        for disc in self.discriminators:
            fmaps = disc(mel)
            out.append([*fmaps, fmaps[-1]])
        return out
