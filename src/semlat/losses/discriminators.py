"""Waveform GAN discriminators of DAC / Semantic-VAE: multi-period (MPD) and multi-band STFT (MRD).

:class:`WaveDiscriminator` holds, in this order, one :class:`PeriodDiscriminator` per period and one
:class:`MultiBandSTFTDiscriminator` per FFT size, under ``discriminators.{i}``, so the reference
checkpoints (``discriminator/weights.pth``) load with their own keys. Every convolution is
weight-normalised (torch parametrization, dim 0) and, except each ``conv_post``, followed by
LeakyReLU(0.1); a conv with an activation is a ``Sequential(conv, LeakyReLU)``, hence the ``.0.``
in its keys (``convs.{i}.0.*``, ``band_convs.{band}.{layer}.0.*``).

Every discriminator maps audio ``[B, 1, T]`` to its list of feature maps, each recorded after its
activation; the last map is the logits (``conv_post``, no activation). The losses in
:mod:`semlat.losses.adversarial` consume ``list[list[Tensor]]``, one list per discriminator.

The reference hard-codes the widths (MPD 1→32→128→512→1024→1024→1, MRD 32 channels); they are
arguments here so that the small oracle fixtures load.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semlat.config import check_keys
from semlat.nn.weight_norm import WNConv2d

#: Frequency bands of the MRD as fractions of the ``w // 2 + 1`` STFT bins.
DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
DEFAULT_PERIODS: tuple[int, ...] = (2, 3, 5, 7, 11)
DEFAULT_FFT_SIZES: tuple[int, ...] = (2048, 1024, 512)
DEFAULT_MPD_CHANNELS: tuple[int, ...] = (32, 128, 512, 1024, 1024)
LEAKY_SLOPE = 0.1

FeatureMaps = list[torch.Tensor]


def _conv_act(*args: Any, **kwargs: Any) -> nn.Sequential:
    """``Sequential(WNConv2d(*args, **kwargs), LeakyReLU(0.1))``: the conv's keys sit under ``.0.``.

    The activation runs in place on the conv's output (which nothing else needs), halving the
    activation memory kept for the backward pass.
    """
    return nn.Sequential(WNConv2d(*args, **kwargs), nn.LeakyReLU(LEAKY_SLOPE, inplace=True))


class PeriodDiscriminator(nn.Module):
    """MPD sub-discriminator: the waveform folded into ``period`` columns, convolved along time.

    ``forward(audio [B, 1, T]) -> 6 feature maps [B, C_i, L_i, period]``: with ``L_0 = T' / period``
    rows (``T' = T + period - T % period``, see :meth:`fold`), ``L_{i+1} = ceil(L_i / 3)`` for the
    four strided layers, then two stride-1 layers (the last, ``conv_post``, has one channel: the logits).
    """

    def __init__(self, period: int, channels: Sequence[int] = DEFAULT_MPD_CHANNELS):
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be positive, got {period}")
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two widths, got {tuple(channels)}")
        self.period = period
        widths = (1, *channels)
        strides = [3] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            _conv_act(c_in, c_out, (5, 1), (s, 1), padding=(2, 0))
            for c_in, c_out, s in zip(widths[:-1], widths[1:], strides, strict=True)
        )
        self.conv_post = WNConv2d(widths[-1], 1, (3, 1), padding=(1, 0))

    def fold(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, 1, T' / p, p]`` with ``x[b, 0, t // p, t % p] = audio[b, 0, t]``.

        The right side is reflect-padded by ``p - T % p`` samples, as in the reference: always at
        least one, a whole extra period when ``T`` is already a multiple of ``p``.
        """
        pad = self.period - audio.shape[-1] % self.period
        audio = F.pad(audio, (0, pad), mode="reflect")
        return rearrange(audio, "b c (l p) -> b c l p", p=self.period)

    def forward(self, audio: torch.Tensor) -> FeatureMaps:
        x = self.fold(audio)
        fmaps = []
        for layer in self.convs:
            x = layer(x)
            fmaps.append(x)
        fmaps.append(self.conv_post(x))
        return fmaps


def band_edges(window_length: int, bands: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]`` bin ranges of ``bands`` (fractions of the ``w // 2 + 1`` bins, truncated).

    For ``w = 512`` and :data:`DEFAULT_BANDS`: 0-25, 25-64, 64-128, 128-192, 192-257.
    """
    n_bins = window_length // 2 + 1
    return [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]


class MultiBandSTFTDiscriminator(nn.Module):
    """MRD sub-discriminator: convolutions over frequency bands of a complex STFT.

    The STFT (:meth:`stft`) gives ``[B, 2 (re, im), F = ceil(T / hop), w // 2 + 1]``; each band is a
    slice of the last axis and has its own stack of five convs (frequency strides 1, 2, 2, 2, 1), the
    band outputs are concatenated along frequency and ``conv_post`` gives the logits
    ``[B, 1, F, sum_k W_k]``. ``forward(audio [B, 1, T])`` returns ``5 * n_bands + 1`` feature maps,
    band 0's five layers first, then band 1's, ..., then the logits.

    ``window_length`` must be a multiple of 8 (the framing pads ``3w/8``); ``sample_rate`` is only
    recorded (the reference's STFT does not depend on it).
    """

    def __init__(self, window_length: int, sample_rate: int = 16000,
                 bands: Sequence[Sequence[float]] = DEFAULT_BANDS, channels: int = 32):
        super().__init__()
        if window_length % 8:
            raise ValueError(f"window_length must be a multiple of 8, got {window_length}")
        self.window_length = window_length
        self.hop_length = window_length // 4
        self.sample_rate = sample_rate
        self.bands = band_edges(window_length, bands)
        ch = channels
        self.band_convs = nn.ModuleList(
            nn.ModuleList([
                _conv_act(2, ch, (3, 9), (1, 1), padding=(1, 4)),
                _conv_act(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                _conv_act(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                _conv_act(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                _conv_act(ch, ch, (3, 3), (1, 1), padding=(1, 1)),
            ])
            for _ in self.bands
        )
        self.conv_post = WNConv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1))
        # scipy's periodic Hann (what the reference uses) is float64, cast to float32.
        window = torch.hann_window(window_length, periodic=True, dtype=torch.float64).float()
        self.register_buffer("window", window, persistent=False)

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, 2, ceil(T / hop), w // 2 + 1]``: real and imaginary parts (float32, or
        float64 after ``module.double()``; never half precision, even under autocast).

        The reference's "match_stride" framing: reflect-pad ``3w/8`` on the left and ``3w/8`` plus
        ``ceil(T / hop) * hop - T`` on the right, ``torch.stft(center=True, reflect)`` with a periodic
        Hann window (unnormalised, onesided), then drop two frames at each end.
        """
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, T], got {tuple(audio.shape)}")
        length, hop = audio.shape[-1], self.hop_length
        pad = (self.window_length - hop) // 2
        right = math.ceil(length / hop) * hop - length
        dtype = torch.float64 if self.window.dtype == torch.float64 else torch.float32
        x = F.pad(audio.to(dtype), (pad, pad + right), mode="reflect")
        spec = torch.stft(
            rearrange(x, "b 1 t -> b t"), self.window_length, hop_length=hop, window=self.window.to(dtype),
            center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
        )
        return rearrange(torch.view_as_real(spec[..., 2:-2]), "b f t c -> b c t f")

    def spectrogram(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """The band inputs: ``[B, 2, frames, hi_k - lo_k]`` for each band ``k`` (views of :meth:`stft`)."""
        spec = self.stft(audio)
        return [spec[..., lo:hi] for lo, hi in self.bands]

    def forward(self, audio: torch.Tensor) -> FeatureMaps:
        fmaps, outs = [], []
        for x, stack in zip(self.spectrogram(audio), self.band_convs, strict=True):
            for layer in stack:
                x = layer(x)
                fmaps.append(x)
            outs.append(x)
        fmaps.append(self.conv_post(torch.cat(outs, dim=-1)))
        return fmaps


@dataclass(frozen=True)
class WaveDiscriminatorConfig:
    """Constructor arguments of :class:`WaveDiscriminator` (JSON-friendly through ``dataclasses.asdict``).

    The defaults are Semantic-VAE's discriminator (DAC's, at 16 kHz, without the MSD).
    """

    periods: tuple[int, ...] = DEFAULT_PERIODS
    fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES
    sample_rate: int = 16000
    bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS
    mpd_channels: tuple[int, ...] = DEFAULT_MPD_CHANNELS
    mrd_channels: int = 32

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> WaveDiscriminatorConfig:
        """Build from a dict (lists allowed where tuples are stored); unknown keys are an error."""
        check_keys(cls, config, "WaveDiscriminator config")
        values = dict(config)
        for key in ("periods", "fft_sizes", "mpd_channels"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        if "bands" in values:
            values["bands"] = tuple((float(lo), float(hi)) for lo, hi in values["bands"])
        for key in ("sample_rate", "mrd_channels"):
            if key in values:
                values[key] = int(values[key])
        return cls(**values)

    @classmethod
    def from_reference(cls, kwargs: Mapping[str, Any], **widths: Any) -> WaveDiscriminatorConfig:
        """From the reference ``Discriminator(...)`` arguments (``rates``, ``periods``, ``fft_sizes``,
        ``sample_rate``, ``bands``, ``use_msstft_replace_mrd``); ``widths`` may set ``mpd_channels``
        and ``mrd_channels``, which the reference hard-codes."""
        if kwargs.get("rates"):
            raise ValueError("the multi-scale discriminator (non-empty 'rates') is not implemented")
        if kwargs.get("use_msstft_replace_mrd"):
            raise ValueError("'use_msstft_replace_mrd' (the MS-STFT discriminator) is not implemented")
        picked = {k: kwargs[k] for k in ("periods", "fft_sizes", "sample_rate", "bands") if k in kwargs}
        return cls.from_dict({**picked, **widths})


class WaveDiscriminator(nn.Module):
    """MPDs and MRDs on a common, per-item normalised input.

    ``forward(audio [B, 1, T]) -> list[list[Tensor]]``: for each sub-discriminator (MPD per period,
    then MRD per FFT size, the order of ``discriminators``) its feature maps, the last one the
    logits. The input first goes through :meth:`preprocess`.

    The sub-discriminators work per item, so a batch of fake and real audio can go through one
    call (see :func:`semlat.losses.adversarial.discriminate_pair`).
    """

    def __init__(
        self,
        periods: Sequence[int] = DEFAULT_PERIODS,
        fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
        sample_rate: int = 16000,
        bands: Sequence[Sequence[float]] = DEFAULT_BANDS,
        mpd_channels: Sequence[int] = DEFAULT_MPD_CHANNELS,
        mrd_channels: int = 32,
    ):
        super().__init__()
        self._config = WaveDiscriminatorConfig.from_dict({
            "periods": periods, "fft_sizes": fft_sizes, "sample_rate": sample_rate, "bands": bands,
            "mpd_channels": mpd_channels, "mrd_channels": mrd_channels,
        })
        c = self._config
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(p, c.mpd_channels) for p in c.periods]
            + [MultiBandSTFTDiscriminator(w, c.sample_rate, c.bands, c.mrd_channels) for w in c.fft_sizes]
        )

    @property
    def config(self) -> WaveDiscriminatorConfig:
        return self._config

    @classmethod
    def from_config(cls, config: WaveDiscriminatorConfig | Mapping[str, Any]) -> WaveDiscriminator:
        if not isinstance(config, WaveDiscriminatorConfig):
            config = WaveDiscriminatorConfig.from_dict(config)
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})

    @property
    def names(self) -> list[str]:
        """``mpd{period}`` and ``mrd{window}`` for each sub-discriminator, in order."""
        return [f"mpd{p}" for p in self._config.periods] + [f"mrd{w}" for w in self._config.fft_sizes]

    @staticmethod
    def preprocess(audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, 1, T]``: remove each item's DC offset, then scale its peak to 0.8
        (``0.8 * x / (max|x| + 1e-9)``)."""
        x = audio - audio.mean(dim=-1, keepdim=True)
        return 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)

    def forward(self, audio: torch.Tensor) -> list[FeatureMaps]:
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, T], got {tuple(audio.shape)}")
        x = self.preprocess(audio)
        return [d(x) for d in self.discriminators]
