"""STFT magnitude and log-mel front-ends as differentiable torch modules.

Every parameter that changes the numbers is explicit in :class:`SpectrogramConfig` /
:class:`MelConfig`; :data:`MEL_PRESETS` names the configurations that released models were trained
with, and the fixtures in ``tests/test_spectral.py`` prove each one reproduces its reference.

Shapes: input ``[..., N]`` samples, output ``[..., F, T]`` (``F = n_fft // 2 + 1`` bins or
``n_mels`` bands) with ``T = frames(N)``. Computation runs on the module's device in float32, or in
float64 after ``module.double()`` (half precision is not used: the log of small powers needs the
mantissa; under autocast the input is upcast).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semlat.audio.filterbanks import mel_filterbank


@dataclass(frozen=True)
class SpectrogramConfig:
    """A short-time Fourier magnitude spectrogram.

    Attributes:
        n_fft: FFT size; ``n_fft // 2 + 1`` frequency bins.
        hop_length: samples between frames.
        win_length: periodic Hann window length (``None``: ``n_fft``), zero-padded to ``n_fft``.
        center: torch.stft centring, i.e. pad ``n_fft // 2`` on both sides.
        padding: extra samples padded on both sides before the STFT (BigVGAN pads
            ``(n_fft - hop) // 2`` with ``center=False``).
        pad_mode: "reflect" or "constant" (zeros), for both kinds of padding.
        power: exponent of the magnitude (1: amplitude, 2: power).
        magnitude_eps: magnitude is ``sqrt(re^2 + im^2 + eps)``; 0 gives ``|X|`` exactly.
    """

    n_fft: int
    hop_length: int
    win_length: int | None = None
    center: bool = True
    padding: int = 0
    pad_mode: str = "reflect"
    power: float = 1.0
    magnitude_eps: float = 0.0

    def frames(self, num_samples: int) -> int:
        """Number of frames for an input of ``num_samples``."""
        total = num_samples + 2 * self.padding
        if self.center:
            return total // self.hop_length + 1
        return max(0, (total - self.n_fft) // self.hop_length + 1)


@dataclass(frozen=True)
class MelConfig(SpectrogramConfig):
    """A (log-)mel spectrogram: a :class:`SpectrogramConfig` followed by a filterbank and a log.

    Attributes (beyond the spectrogram's):
        sample_rate, n_mels, f_min, f_max: the filterbank (``f_max=None``: Nyquist).
        mel_scale: "slaney" or "htk". norm: "slaney" (unit-area filters) or ``None``.
        filterbank: numeric convention, "librosa" or "torchaudio" (see ``filterbanks``).
        log: "ln", "log10", "db" or ``None`` (linear mel).
        clamp_min: floor applied before the log (``amin`` of the dB conversion).
        top_db: with ``log="db"``, floor every value at ``max - top_db``.
        top_db_over_batch: take that max over the whole batch instead of per item
            (what torchaudio's AmplitudeToDB does for a 3-D input; Dasheng depends on it).
    """

    sample_rate: int = 22050
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: str = "slaney"
    norm: str | None = "slaney"
    filterbank: str = "librosa"
    log: str | None = "ln"
    clamp_min: float = 1e-5
    top_db: float | None = None
    top_db_over_batch: bool = False

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    def replace(self, **changes: Any) -> MelConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_bigvgan(cls, h: Mapping[str, Any]) -> MelConfig:
        """The mel of a BigVGAN/HiFi-GAN ``config.json`` (keys ``sampling_rate``, ``n_fft``,
        ``num_mels``, ``hop_size``, ``win_size``, ``fmin``, ``fmax``)."""
        n_fft, hop = int(h["n_fft"]), int(h["hop_size"])
        return cls(
            n_fft=n_fft, hop_length=hop, win_length=int(h["win_size"]), center=False,
            padding=(n_fft - hop) // 2, pad_mode="reflect", power=1.0, magnitude_eps=1e-9,
            sample_rate=int(h["sampling_rate"]), n_mels=int(h["num_mels"]),
            f_min=float(h.get("fmin") or 0.0), f_max=h.get("fmax"), mel_scale="slaney",
            norm="slaney", filterbank="librosa", log="ln", clamp_min=1e-5,
        )


def _bigvgan(sr: int, n_mels: int, n_fft: int = 1024, hop: int = 256, f_max: float | None = None) -> MelConfig:
    return MelConfig.from_bigvgan(
        {"sampling_rate": sr, "n_fft": n_fft, "num_mels": n_mels, "hop_size": hop, "win_size": n_fft,
         "fmin": 0, "fmax": f_max}
    )


def _torchaudio_mel(sr: int, n_fft: int, hop: int, n_mels: int, clamp_min: float, **kw: Any) -> MelConfig:
    return MelConfig(n_fft=n_fft, hop_length=hop, center=True, pad_mode="reflect", power=1.0,
                     sample_rate=sr, n_mels=n_mels, mel_scale="htk", norm=None,
                     filterbank="torchaudio", log="ln", clamp_min=clamp_min, **kw)


#: Named front-ends of released models. Each reproduces its reference within the fixtures' tolerance.
MEL_PRESETS: Mapping[str, MelConfig] = MappingProxyType({
    # BigVGAN(-v2) and HiFi-GAN style: reflect pad (n_fft-hop)/2, center=False, sqrt(|X|^2+1e-9), ln(clamp 1e-5).
    "bigvgan_22k_80": _bigvgan(22050, 80),
    "bigvgan_22k_80_fmax8k": _bigvgan(22050, 80, f_max=8000.0),
    "bigvgan_24k_100": _bigvgan(24000, 100),
    "bigvgan_44k_128_512x": _bigvgan(44100, 128, n_fft=2048, hop=512),
    # DC-Speech-VAE encodes BigVGAN-v2's 22 kHz / 80-band mel.
    "dc_speech_vae": _bigvgan(22050, 80),
    # F5-TTS "vocos" mel: torchaudio MelSpectrogram(power=1, htk, no norm), ln(clamp 1e-5).
    "f5_tts_vocos": _torchaudio_mel(24000, 1024, 256, 100, 1e-5),
    # Vocos' own feature extractor: the same mel floored at 1e-7.
    "vocos_24k_100": _torchaudio_mel(24000, 1024, 256, 100, 1e-7),
    # Dasheng's front-end: power mel (htk, 0-8 kHz) in dB with top_db 120 over the batch.
    "dasheng_16k_64": _torchaudio_mel(
        16000, 512, 160, 64, 1e-10, f_max=8000.0
    ).replace(power=2.0, log="db", top_db=120.0, top_db_over_batch=True),
})


def mel_preset(name: str, **overrides: Any) -> MelConfig:
    """The named :data:`MEL_PRESETS` entry, optionally with fields overridden."""
    try:
        config = MEL_PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown mel preset {name!r}; known: {', '.join(sorted(MEL_PRESETS))}") from None
    return config.replace(**overrides) if overrides else config


class Spectrogram(nn.Module):
    """``[..., N]`` waveform -> ``[..., n_fft // 2 + 1, T]`` magnitude ** power (float32)."""

    def __init__(self, config: SpectrogramConfig):
        super().__init__()
        self.config = config
        win_length = config.win_length or config.n_fft
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        c = self.config
        lead, n = audio.shape[:-1], audio.shape[-1]
        dtype = torch.float64 if self.window.dtype == torch.float64 else torch.float32
        x = audio.reshape(-1, n).to(dtype)
        reflect_pad = c.padding + (c.n_fft // 2 if c.center else 0)
        if c.pad_mode == "reflect" and n <= reflect_pad:
            raise ValueError(
                f"audio of {n} samples is too short for this spectrogram (reflect padding of "
                f"{reflect_pad} needs more than {reflect_pad} samples)"
            )
        if c.padding:
            x = F.pad(x.unsqueeze(1), (c.padding, c.padding), mode=c.pad_mode).squeeze(1)
        spec = torch.stft(
            x, c.n_fft, hop_length=c.hop_length, win_length=c.win_length or c.n_fft,
            window=self.window.to(dtype), center=c.center, pad_mode=c.pad_mode, normalized=False,
            onesided=True, return_complex=True,
        )
        if c.magnitude_eps > 0:
            mag = torch.sqrt(spec.real.square() + spec.imag.square() + c.magnitude_eps)
        else:
            mag = spec.abs()
        if c.power != 1.0:
            mag = mag.pow(c.power)
        return mag.reshape(*lead, *mag.shape[-2:])


class MelSpectrogram(nn.Module):
    """``[..., N]`` waveform -> ``[..., n_mels, T]`` (log-)mel spectrogram, per :class:`MelConfig`."""

    def __init__(self, config: MelConfig):
        super().__init__()
        self.config = config
        self.spectrogram = Spectrogram(config)
        fb = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.f_min,
                            config.f_max, config.mel_scale, config.norm, config.filterbank)
        self.register_buffer("filterbank", fb, persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(audio)
        mel = torch.matmul(self.filterbank.to(spec.dtype), spec)
        return apply_log(mel, self.config)


def apply_log(mel: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Apply ``config.log`` (with its floor and, for dB, ``top_db``) to a linear mel ``[..., M, T]``."""
    if config.log is None:
        return mel
    floored = mel.clamp(min=config.clamp_min)
    if config.log == "ln":
        return torch.log(floored)
    if config.log == "log10":
        return torch.log10(floored)
    if config.log != "db":
        raise ValueError(f"log must be 'ln', 'log10', 'db' or None, got {config.log!r}")
    db = (20.0 / config.power) * torch.log10(floored)
    if config.top_db is not None:
        if config.top_db_over_batch or db.dim() < 3:
            peak = db.amax()
        else:
            peak = db.flatten(-2).amax(-1)[..., None, None]
        db = torch.maximum(db, peak - config.top_db)
    return db

