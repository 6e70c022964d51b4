"""BigVGAN as a latent space: the log-mel front-end of a BigVGAN config plus the generator.

The "latent" of a :class:`MelVocoder` is BigVGAN's own input feature, the natural-log mel
spectrogram of ``meldataset.get_mel_spectrogram`` (reflect pre-padding of ``(n_fft - hop) / 2``,
``center=False``, ``sqrt(|X|^2 + 1e-9)``, Slaney filterbank, ``ln(clamp(x, 1e-5))``), at
``sampling_rate / hop_size`` frames per second. It is the plain mel + vocoder baseline of the
design, and the vocoder that mel-domain autoencoders (DC-Speech-VAE) decode through.

Shapes: audio ``[B, 1, N]`` in [-1, 1]; mel ``[B, num_mels, T]``; ``decode`` gives ``[B, 1, T * hop]``.

:class:`MelVocoderConfig` uses the vocabulary of BigVGAN's ``config.json`` (``sampling_rate``,
``n_fft``, ``num_mels``, ``hop_size``, ``win_size``, ``fmin``, ``fmax`` and the generator keys), so a
released config maps onto it field by field (:meth:`MelVocoderConfig.from_bigvgan_json`). The
state dict holds only the generator, under ``generator.`` (the front-end has no weights).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semlat.audio.spectral import MelConfig, MelSpectrogram
from semlat.config import FromConfig, from_dict
from semlat.errors import ConfigError
from semlat.latent_space import OneRateSpace, check_decode_options
from semlat.vocoders.bigvgan import BigVGAN, BigVGANConfig

#: Mel front-end keys a BigVGAN ``config.json`` must have (``fmax`` may be null: Nyquist).
MEL_KEYS = ("sampling_rate", "n_fft", "num_mels", "hop_size", "win_size", "fmin", "fmax")

#: BigVGANConfig fields that describe the network (its sampling_rate/hop_size come from the mel fields).
_GENERATOR_FIELDS = tuple(f.name for f in dataclasses.fields(BigVGANConfig)
                          if f.name not in ("sampling_rate", "hop_size"))


@dataclass
class MelVocoderConfig:
    """Mel front-end and BigVGAN generator, named as in BigVGAN's ``config.json``.

    The defaults are ``bigvgan_v2_22khz_80band_256x`` (22.05 kHz, 80 bands, hop 256, 112 M parameters).
    ``hop_size`` must equal ``prod(upsample_rates)``.
    """

    sampling_rate: int = 22050
    num_mels: int = 80
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float | None = None
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_tanh_at_final: bool = False
    use_bias_at_final: bool = False

    def __post_init__(self) -> None:
        for name in ("sampling_rate", "num_mels", "n_fft", "hop_size", "win_size"):
            value = int(getattr(self, name))
            if value < 1:
                raise ConfigError(f"MelVocoder config: {name} must be positive, got {value}")
            setattr(self, name, value)
        self.fmin = float(self.fmin or 0.0)
        self.fmax = None if self.fmax is None else float(self.fmax)
        generator = self.generator_config()  # validates and normalises the generator fields
        for name in _GENERATOR_FIELDS:
            setattr(self, name, getattr(generator, name))
        if generator.hop_length != self.hop_size:
            raise ConfigError(f"MelVocoder config: the generator upsamples by prod(upsample_rates) = "
                              f"{generator.hop_length}, but hop_size is {self.hop_size}")
        if self.win_size > self.n_fft:
            raise ConfigError(f"MelVocoder config: win_size ({self.win_size}) exceeds n_fft ({self.n_fft})")
        if self.hop_size > self.n_fft:
            raise ConfigError(f"MelVocoder config: hop_size ({self.hop_size}) exceeds n_fft ({self.n_fft})")
        nyquist = self.sampling_rate / 2
        if self.fmax is not None and not self.fmin < self.fmax <= nyquist:
            raise ConfigError(f"MelVocoder config: need fmin < fmax <= {nyquist:g} Hz, got fmin {self.fmin:g}, "
                              f"fmax {self.fmax:g}")

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame."""
        return self.hop_size

    def generator_config(self) -> BigVGANConfig:
        """The :class:`BigVGANConfig` of the generator (``num_mels`` input channels)."""
        return BigVGANConfig(**{name: getattr(self, name) for name in _GENERATOR_FIELDS},
                             sampling_rate=self.sampling_rate, hop_size=self.hop_size)

    def mel_config(self) -> MelConfig:
        """The BigVGAN log-mel front-end (``.replace(f_max=...)`` gives BigVGAN's loss mel with
        ``fmax_for_loss``)."""
        return MelConfig.from_bigvgan({
            "sampling_rate": self.sampling_rate, "n_fft": self.n_fft, "num_mels": self.num_mels,
            "hop_size": self.hop_size, "win_size": self.win_size, "fmin": self.fmin, "fmax": self.fmax})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "MelVocoder config") -> MelVocoderConfig:
        """Build from this class's ``dataclasses.asdict`` form (a model folder's config); unknown keys are errors."""
        return from_dict(cls, data, where)

    @classmethod
    def from_bigvgan_json(cls, data: Mapping[str, Any], where: str = "BigVGAN config") -> MelVocoderConfig:
        """Build from a BigVGAN ``config.json`` dict. Training-only keys (batch_size, cqtd_*, ...) are
        ignored; v1 files without ``use_tanh_at_final``/``use_bias_at_final`` get tanh and a final bias."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        missing = [key for key in MEL_KEYS if key not in data]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
        generator = BigVGANConfig.from_json_dict(data, where=where)
        values = {key: data[key] for key in MEL_KEYS}
        values.update({name: getattr(generator, name) for name in _GENERATOR_FIELDS})
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{where}: {str(err).removeprefix('MelVocoder config: ')}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from None


class MelVocoder(FromConfig, OneRateSpace, nn.Module):
    """Log-mel front-end + BigVGAN generator, a semlat latent space whose latent is the mel.

    Attributes:
        frontend: :class:`~semlat.audio.spectral.MelSpectrogram` (no weights).
        generator: :class:`~semlat.vocoders.bigvgan.BigVGAN` (``[B, num_mels, T] -> [B, 1, T * hop]``).
    """

    def __init__(self, config: MelVocoderConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = MelSpectrogram(config.mel_config())
        self.generator = BigVGAN(config.generator_config())

    config_class = MelVocoderConfig

    @property
    def sample_rate(self) -> int:
        """Audio rate in Hz."""
        return self.config.sampling_rate

    @property
    def latent_dim(self) -> int:
        """Mel bands."""
        return self.config.num_mels

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame."""
        return self.config.hop_size

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.config.sampling_rate / self.config.hop_size

    @staticmethod
    def _check_audio(audio: Tensor) -> None:
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio shaped [B, 1, N], got {tuple(audio.shape)}")
        if audio.shape[-1] == 0:
            raise ValueError("audio is empty (0 samples)")

    def mel(self, audio: Tensor) -> Tensor:
        """BigVGAN's reference mel, no extra padding: ``[B, 1, N] -> [B, num_mels, floor(N / hop)]``.

        Computed in float32 even under autocast (the log of small magnitudes needs the mantissa). Needs ``N > (n_fft - hop) / 2`` samples (reflect padding), as the reference does.
        """
        self._check_audio(audio)
        return self._log_mel(audio[:, 0])

    def _log_mel(self, audio: Tensor) -> Tensor:
        """``[B, N] -> [B, num_mels, frames]`` in float32 (float64 for float64 input), autocast off."""
        dtype = torch.float64 if audio.dtype == torch.float64 else torch.float32
        with torch.autocast(audio.device.type, enabled=False):
            return self.frontend(audio.to(dtype))

    def encode(self, audio: Tensor) -> Tensor:
        """``[B, 1, N] -> [B, num_mels, ceil(N / hop)]`` log-mel.

        The audio is right-padded with zeros to a whole number of hops first (what chunked encoding
        does), so for ``N`` a multiple of the hop this is exactly :meth:`mel`. Inputs too short for
        the front-end's reflect padding get more zero hops, whose frames are dropped.
        """
        self._check_audio(audio)
        hop = self.hop_length
        frames = math.ceil(audio.shape[-1] / hop)
        needed = self.frontend.config.padding + 1
        padded = max(frames, math.ceil(needed / hop)) * hop
        return self._log_mel(F.pad(audio[:, 0], (0, padded - audio.shape[-1])))[..., :frames]

    def decode(self, latents: Tensor, **options: Any) -> Tensor:
        """``[B, num_mels, T] -> [B, 1, T * hop]`` audio in [-1, 1] (v2) or through tanh (v1); deterministic."""
        check_decode_options(options, where="a mel vocoder")
        if latents.ndim != 3 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"expected mels shaped [B, {self.latent_dim}, T], got {tuple(latents.shape)}")
        return self.generator(latents)

    def forward(self, audio: Tensor) -> Tensor:
        """Copy synthesis: ``[B, 1, N] -> [B, 1, N]`` (encode, decode, crop to ``N``)."""
        return self.decode(self.encode(audio))[..., : audio.shape[-1]]

    def remove_weight_norm(self) -> MelVocoder:
        """Fold the generator's weight norm into plain weights (in place); returns ``self``."""
        self.generator.remove_weight_norm()
        return self
