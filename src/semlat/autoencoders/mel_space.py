"""DC-Speech-VAE as a latent space: audio -> log-mel -> mel DCAE latent, and back through a vocoder.

::

    audio [B, 1, N] --right-pad to a multiple of hop*16--> vocoder.encode (log-mel) [B, 80, N/hop]
        --autoencoder.encode--> latent [B, 80, N/(16 hop)]
    latent --autoencoder.decode--> mel [B, 80, 16 T] --vocoder.decode--> audio [B, 1, 16 T hop]

At 22.05 kHz with hop 256 that is 22050 / 4096 ~= 5.38 latent frames per second of 80 floats. The
vocoder owns the mel front-end (so the mel the DCAE sees is exactly the one the vocoder was trained
on): ``bigvgan`` (:class:`~semlat.vocoders.mel_vocoder.MelVocoder`, the released BigVGAN-v2
22 kHz / 80-band model for the paper setup) or ``griffin_lim`` (training-free stand-in, no weights).
Like the reference, the output keeps the padded length.

Checkpoint keys: ``autoencoder.model.…`` (the DCAE) and ``vocoder.generator.…`` (BigVGAN).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from semlat.autoencoders.mel_dcae import MelDCAE, MelDCAEConfig
from semlat.errors import ConfigError
from semlat.latent_space import OneRateSpace
from semlat.utils.registry import resolve

#: vocoder type -> "module:Class" (``from_config(dict)``, ``config``, ``encode``/``decode``, ``latent_dim``)
VOCODERS = {
    "bigvgan": "semlat.vocoders.mel_vocoder:MelVocoder",
    "griffin_lim": "semlat.vocoders.griffin_lim:GriffinLimVocoder",
}


def build_vocoder(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """The vocoder ``kind`` (a :data:`VOCODERS` key) built from its config dict."""
    if kind not in VOCODERS:
        raise ConfigError(f"unknown vocoder type {kind!r} (known: {', '.join(sorted(VOCODERS))})")
    return resolve(VOCODERS[kind]).from_config(dict(config))


def vocoder_spec(vocoder: nn.Module) -> dict[str, Any]:
    """``{"type": ..., "config": {...}}`` describing a vocoder built by :func:`build_vocoder`."""
    for kind, target in VOCODERS.items():
        module, _, name = target.partition(":")
        if type(vocoder).__name__ == name and type(vocoder).__module__ == module:
            config = vocoder.config
            return {"type": kind, "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else
                    dict(config)}
    raise ConfigError(f"{type(vocoder).__name__} is not a registered vocoder")


class MelDCAESpace(OneRateSpace, nn.Module):
    """A mel DCAE plus the vocoder that turns its mels into audio: semlat's ``mel_dcae`` LatentSpace.

    Args:
        autoencoder: a :class:`MelDCAE` (weight norm may be on or removed).
        vocoder: a mel vocoder (see :data:`VOCODERS`) whose ``latent_dim`` is the DCAE's ``n_mels``.
    """

    def __init__(self, autoencoder: MelDCAE, vocoder: nn.Module):
        super().__init__()
        if vocoder.latent_dim != autoencoder.config.n_mels:
            raise ConfigError(f"the vocoder takes {vocoder.latent_dim} mel bands but the DCAE encodes "
                              f"{autoencoder.config.n_mels}")
        self.autoencoder = autoencoder
        self.vocoder = vocoder
        self.sample_rate = int(vocoder.sample_rate)
        self.mel_hop = round(vocoder.sample_rate / vocoder.frame_rate)
        self.hop = self.mel_hop * autoencoder.config.compression
        self.latent_dim = autoencoder.config.latent_dim
        self.frame_rate = self.sample_rate / self.hop

    @property
    def config(self) -> dict[str, Any]:
        return {"autoencoder": dataclasses.asdict(self.autoencoder.config), "vocoder": vocoder_spec(self.vocoder)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MelDCAESpace:
        """From ``{"autoencoder": MelDCAEConfig dict, "vocoder": {"type": ..., "config": {...}}}``."""
        unknown = sorted(set(config) - {"autoencoder", "vocoder"})
        if unknown or "autoencoder" not in config or "vocoder" not in config:
            raise ConfigError(f"mel_dcae config needs exactly 'autoencoder' and 'vocoder' (got {sorted(config)})")
        vocoder = config["vocoder"]
        if not isinstance(vocoder, Mapping) or set(vocoder) != {"type", "config"}:
            raise ConfigError("mel_dcae config: 'vocoder' must be {'type': ..., 'config': {...}}")
        return cls(MelDCAE.from_config(MelDCAEConfig.from_dict(config["autoencoder"])),
                   build_vocoder(vocoder["type"], vocoder["config"]))

    def mel(self, audio: Tensor) -> Tensor:
        """``[B, 1, N]`` -> log-mel ``[B, n_mels, ceil(N / hop) * 16]`` (right-padded with zeros)."""
        audio = F.pad(audio, (0, -audio.shape[-1] % self.hop))
        return self.vocoder.encode(audio)

    def encode(self, audio: Tensor) -> Tensor:
        """``[B, 1, N]`` -> latents ``[B, latent_dim, ceil(N / hop)]`` (deterministic, no σ-VAE noise)."""
        return self.autoencoder.encode(self.mel(audio))

    def decode_mel(self, latents: Tensor) -> Tensor:
        """``[B, latent_dim, T]`` -> log-mel ``[B, n_mels, 16 T]``."""
        return self.autoencoder.decode(latents)

    def decode(self, latents: Tensor, **options: Any) -> Tensor:
        """``[B, latent_dim, T]`` -> audio ``[B, 1, T * hop]`` (options go to the vocoder)."""
        return self.vocoder.decode(self.decode_mel(latents), **options)

    def forward(self, audio: Tensor) -> Tensor:
        return self.decode(self.encode(audio))

    def remove_weight_norm(self) -> MelDCAESpace:
        self.autoencoder.remove_weight_norm()
        if hasattr(self.vocoder, "remove_weight_norm"):
            self.vocoder.remove_weight_norm()
        return self
