"""Vocos (Siuzdak, 2023): a ConvNeXt backbone and an iSTFT head; F5-TTS's vocoder, a LatentSpace of its mel.

::

    mel [B, 100, T] --Conv1d k7--> LayerNorm (or AdaLN) --ConvNeXt blocks--> LayerNorm   (backbone, [B, T, dim])
        --Linear--> log-magnitude | phase [B, n_fft + 2, T] --exp, clip 100; iSTFT--> audio   (head)

The released mel model (24 kHz, 100 bands, n_fft 1024, hop 256, dim 512,
8 blocks) reads the front-end ``vocos_24k_100`` (torchaudio's HTK mel, natural log floored at 1e-7;
F5-TTS's mel is the same with a 1e-5 floor). A Vocos folder is a :class:`~semlat.latent_space.LatentSpace`
whose latent *is* that mel: ``encode(audio [B, 1, N]) -> [B, 100, 1 + N // 256]`` and ``decode(mel [B, 100, T])
-> [B, 1, T · 256]``. :meth:`Vocos.decode_reference` gives the reference's own output length (``(T - 1) · 256``
with the centre padding; the samples are the same).

The released EnCodec variant has an AdaLN backbone over 128-d EnCodec features and a
``same``-padding head: ``decode(features, bandwidth_id=k)``; its ``codebook_weights`` turn codes into features
(:meth:`Vocos.codes_to_features`). It has no mel front-end, so it is not a LatentSpace of audio (``encode``
refuses); EnCodec itself is not part of semlat.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from semlat.audio.spectral import MelSpectrogram, mel_preset
from semlat.config import FromConfig
from semlat.errors import ConfigError
from semlat.latent_space import OneRateSpace, check_decode_options
from semlat.nn.convnext import ConvNeXtBackbone
from semlat.nn.istft import PADDINGS, ISTFTHead


@dataclass
class VocosConfig:
    """Sizes and front-end of a Vocos model (the reference's ``feature_extractor``/``backbone``/``head``
    ``init_args`` flattened). ``mel_floor``: the log-mel's floor, Vocos' 1e-7 (F5-TTS's mel is the same
    with 1e-5: set it so that ``encode`` gives F5's latents). ``features``: ``"mel"`` (the released mel model) or ``"encodec"`` (features given,
    with ``codebooks`` x 1024 codebook rows of ``input_channels``; 0 when the checkpoint has none)."""

    features: str = "mel"
    sample_rate: int = 24000
    n_mels: int = 100
    mel_n_fft: int = 1024
    mel_hop_length: int = 256
    mel_padding: str = "center"
    mel_floor: float = 1e-7
    input_channels: int = 100
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    layer_scale_init_value: float | None = None
    adanorm_num_embeddings: int | None = None
    n_fft: int = 1024
    hop_length: int = 256
    padding: str = "center"
    codebooks: int = 0

    def validate(self, where: str = "vocos config") -> None:
        if self.features not in ("mel", "encodec"):
            raise ConfigError(f"{where}: features must be mel or encodec, got {self.features!r}")
        if self.padding not in PADDINGS or self.mel_padding not in PADDINGS:
            raise ConfigError(f"{where}: padding must be one of {', '.join(PADDINGS)}")
        if self.features == "mel" and self.n_mels != self.input_channels:
            raise ConfigError(f"{where}: the backbone reads {self.input_channels} channels but the mel has "
                              f"{self.n_mels} bands")
        if self.features == "mel" and self.mel_hop_length != self.hop_length:
            raise ConfigError(f"{where}: mel hop {self.mel_hop_length} != head hop {self.hop_length}")

    @classmethod
    def mel_24khz(cls) -> VocosConfig:
        """The released mel model (13.5 M parameters), F5-TTS's vocoder."""
        return cls()

    @classmethod
    def encodec_24khz(cls) -> VocosConfig:
        """The released EnCodec variant (7.9 M trainable parameters)."""
        return cls(features="encodec", input_channels=128, dim=384, intermediate_dim=1152, num_layers=8,
                   adanorm_num_embeddings=4, n_fft=1280, hop_length=320, padding="same", codebooks=16)


class Vocos(FromConfig, OneRateSpace, nn.Module):
    """Vocos; see the module docstring. Keys: ``backbone.*`` (semlat's ConvNeXt names), ``head.out.*``, and
    ``codebook_weights`` for the EnCodec variant."""

    #: decode options besides ``seed``: the EnCodec variant's bandwidth id
    decode_options = ("bandwidth_id",)

    def __init__(self, config: VocosConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.backbone = ConvNeXtBackbone(config.input_channels, config.dim, config.intermediate_dim,
                                         config.num_layers, layer_scale=config.layer_scale_init_value,
                                         adanorm_num_embeddings=config.adanorm_num_embeddings)
        self.head = ISTFTHead(config.dim, config.n_fft, config.hop_length, config.padding)
        self.mel = None
        if config.features == "mel":
            mel = mel_preset("vocos_24k_100", sample_rate=config.sample_rate, n_fft=config.mel_n_fft,
                             hop_length=config.mel_hop_length, n_mels=config.n_mels, clamp_min=config.mel_floor)
            if config.mel_padding == "same":  # reflect-pad (n_fft - hop) / 2, no centring
                mel = mel.replace(center=False, padding=(config.mel_n_fft - config.mel_hop_length) // 2,
                                  pad_mode="reflect")
            self.mel = MelSpectrogram(mel)
        if config.codebooks:
            self.codebook_weights = nn.Parameter(torch.zeros(config.codebooks * 1024, config.input_channels))

    config_class = VocosConfig
    config_where = "vocos config"

    # -- LatentSpace ----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def latent_dim(self) -> int:
        return int(self.config.input_channels)

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop_length

    def encode(self, audio: Tensor) -> Tensor:
        """``[B, 1, N]`` -> log-mel ``[B, n_mels, 1 + N // hop]`` (centre padding), float32."""
        if self.mel is None:
            raise ConfigError("this Vocos reads EnCodec features, not audio: it has no mel front-end")
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio shaped [B, 1, N], got {tuple(audio.shape)}")
        with torch.autocast(audio.device.type, enabled=False):
            return self.mel(audio[:, 0].float())

    def features(self, latents: Tensor, bandwidth_id: Tensor | int | None = None) -> Tensor:
        """The backbone's output, time-major ``[B, T, dim]``."""
        if latents.ndim != 3 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"expected features shaped [B, {self.latent_dim}, T], got {tuple(latents.shape)}")
        cond = None if bandwidth_id is None else torch.as_tensor(bandwidth_id, dtype=torch.long)
        return rearrange(self.backbone(latents, cond), "b c t -> b t c")

    def decode_reference(self, latents: Tensor, bandwidth_id: Tensor | int | None = None) -> Tensor:
        """The reference's ``Vocos.decode``: ``[B, C, T] -> [B, N]`` with ``N = (T - 1) · hop`` (centre) or
        ``T · hop`` (same)."""
        return self.head(self.features(latents, bandwidth_id))

    def decode(self, latents: Tensor, **options: Any) -> Tensor:
        """``[B, C, T] -> [B, 1, T · hop]`` (deterministic; ``bandwidth_id`` for the EnCodec variant)."""
        bandwidth_id = options.pop("bandwidth_id", None)
        check_decode_options(options, where="Vocos")
        length = latents.shape[-1] * self.config.hop_length
        return self.head(self.features(latents, bandwidth_id), length=length)[:, None, :]

    def codes_to_features(self, codes: Tensor) -> Tensor:
        """EnCodec codes ``[K, L]`` or ``[K, B, L]`` -> features ``[B, C, L]``: the sum over the K quantizers of
        ``codebook_weights[k · 1024 + codes[k]]``."""
        if not self.config.codebooks:
            raise ConfigError("codes_to_features needs the EnCodec variant of Vocos with its codebook_weights")
        if codes.ndim == 2:
            codes = codes[:, None]
        offsets = torch.arange(codes.shape[0], device=codes.device)[:, None, None] * 1024
        rows = nn.functional.embedding(codes + offsets, self.codebook_weights)  # [K, B, L, C]
        return rearrange(rows.sum(0), "b l c -> b c l")

    def forward(self, audio: Tensor) -> Tensor:
        """Copy synthesis ``[B, 1, N] -> [B, 1, (1 + N // hop) · hop]``."""
        return self.decode(self.encode(audio))

    @property
    def info(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
