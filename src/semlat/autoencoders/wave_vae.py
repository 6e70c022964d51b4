"""The waveform VAE of Semantic-VAE: DAC-style encoder, attention-projection Gaussian bottleneck, BigVGAN decoder.

::

    audio [B, 1, N] --encoder--> [B, C, T] --pre_block (AttnProjection)--> [B, T, D]
        --fc_mu / fc_var--> mu, logvar (clamped to +-12) --reparameterize--> z --decoder (BigVGAN)--> [B, 1, T*hop]

The tiny CPU configuration swaps both ends for frame-rate networks that learn in minutes: a log-mel +
ConvNeXt encoder (:class:`MelEncoder`, ``mel_encoder``) and a Vocos-style iSTFT decoder (``istft_decoder``).

Submodules carry the reference's checkpoint names: ``encoder``, ``pre_block``, ``fc_mu``, ``fc_var``,
``decoder`` and, when a regulator is configured, ``projectors`` (the alignment projector that the
training loss uses; the forward pass never calls it). Inside, the bottleneck is time-major like the
reference; every public tensor is channel-major ``[B, D, T]``.

The VAE implements semlat's ``LatentSpace`` protocol (``sample_rate``, ``latent_dim``, ``frame_rate``,
``encode``, ``decode``). At 16 kHz with encoder rates (4, 4, 5, 5) the hop is 400 samples: 40 latent
frames per second.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.autoencoders.bottlenecks import AttnProjection, gaussian_kl, reparameterize
from semlat.autoencoders.encoder import Encoder
from semlat.autoencoders.regularizers import latent_layer_norm, sigma_vae_noise
from semlat.config import FromConfig, from_dict
from semlat.errors import ConfigError
from semlat.latent_space import OneRateSpace, check_decode_options
from semlat.nn.linear import Linear
from semlat.nn.weight_norm import remove_weight_norm
from semlat.semantic.regulator import InterpolateRegulator
from semlat.vocoders.bigvgan import BigVGAN, BigVGANConfig
from semlat.vocoders.istft_decoder import ISTFTDecoder, ISTFTDecoderConfig


@dataclass
class RegulatorConfig:
    """The alignment projector (reference ``InterpolateRegulator``).

    ``teacher_dim`` is the teacher feature width (reference ``distill_hidden_dim``), ``num_blocks`` the
    number of conv/GroupNorm/Mish blocks (reference ``len(sampling_ratios)``), ``channels`` their
    width (``2 * latent_dim`` when None).
    """

    teacher_dim: int = 1024
    num_blocks: int = 2
    channels: int | None = None
    groups: int = 1


def _paper_decoder(latent_dim: int) -> BigVGANConfig:
    """``conf/bigvgan_conf/bigvgan_v2_16khz_40hz_base_vae{D}.json`` of the reference."""
    return BigVGANConfig(num_mels=latent_dim, upsample_rates=(5, 5, 2, 2, 2, 2),
                         upsample_kernel_sizes=(9, 9, 4, 4, 4, 4), upsample_initial_channel=1024, resblock="1",
                         resblock_kernel_sizes=(3, 7, 11), resblock_dilation_sizes=((1, 3, 5),) * 3,
                         activation="snakebeta", snake_logscale=True, use_tanh_at_final=False, use_bias_at_final=False)


@dataclass
class MelEncoderConfig:
    """A log-mel front-end encoder (the tiny CPU config's choice instead of the DAC convolutions).

    ``audio --log-mel (n_fft = 4 hop', hop' = hop / frames_per_latent, n_mels)--> stack
    frames_per_latent frames per latent frame --ConvNeXt (channels, hidden, layers)--> Conv1d(k3)
    --> [B, encoder_out_dim, N / hop]``. It runs at the latent rate, so it costs a fraction of the
    waveform-rate convolutions and starts from features where formants are already visible.
    """

    n_mels: int = 80
    frames_per_latent: int = 4
    channels: int = 256
    hidden: int = 768
    layers: int = 4


class MelEncoder(nn.Module):
    """``[B, 1, N] -> [B, out_dim, N / hop]`` (N a multiple of ``hop``); see :class:`MelEncoderConfig`."""

    def __init__(self, sample_rate: int, hop_length: int, out_dim: int, config: MelEncoderConfig):
        super().__init__()
        from semlat.audio.spectral import MelConfig, MelSpectrogram
        from semlat.nn.convnext import ConvNeXtBackbone

        if hop_length % config.frames_per_latent:
            raise ConfigError(f"mel encoder: hop {hop_length} is not a multiple of frames_per_latent "
                              f"{config.frames_per_latent}")
        self.config = config
        hop = hop_length // config.frames_per_latent
        self.mel = MelSpectrogram(MelConfig(n_fft=4 * hop, hop_length=hop, center=True, pad_mode="reflect",
                                            power=1.0, sample_rate=sample_rate, n_mels=config.n_mels,
                                            log="ln", clamp_min=1e-5))
        self.backbone = ConvNeXtBackbone(config.n_mels * config.frames_per_latent, config.channels,
                                         config.hidden, config.layers)
        self.out = nn.Conv1d(config.channels, out_dim, 3, padding=1)

    def forward(self, audio: Tensor) -> Tensor:
        k = self.config.frames_per_latent
        frames = audio.shape[-1] // (self.mel.config.hop_length * k) * k
        mel = self.mel(audio[:, 0].float())[..., :frames]  # [B, n_mels, frames]
        x = rearrange(mel, "b m (t k) -> b (k m) t", k=k)
        return self.out(self.backbone(x))


@dataclass
class WaveVAEConfig:
    """Waveform VAE hyper-parameters in semlat's vocabulary (reference names in brackets).

    Attributes:
        sample_rate: audio rate in Hz.
        encoder_dim: channels after the encoder's first conv (doubling per block) [encoder_dim].
        encoder_rates: encoder strides; their product is the hop [encoder_rates].
        encoder_out_dim: encoder output channels; ``encoder_dim * 2^len(rates)`` when None [latent_dim].
        latent_dim: VAE latent width D [vae_dim].
        attn_heads: heads of the bottleneck attention projection (8 in the reference, hard-coded).
        logvar_clamp: log-variance is clamped to ``[-logvar_clamp, logvar_clamp]``.
        decoder: the BigVGAN generator; its ``num_mels`` must equal ``latent_dim``.
        regulator: the alignment projector, or None to build without one.
        decoder_input: ``"conv"`` (BigVGAN's conv_pre) or ``"attn_proj"`` (an AttnProjection from D to
            the decoder's initial channels, as in the experimental ``vae64_attn_proj`` config; no
            reference numbers exist for it because the reference cannot run it).
        decoder_attn_heads: heads of that decoder attention projection.
        latent_norm: LayerNorm (no affine, over D) on the posterior mean, DC-Speech-VAE's latent
            normalisation (:mod:`semlat.autoencoders.regularizers`); usually with ``loss.kl: 0``.
        istft_decoder: when set, a Vocos-style ConvNeXt + iSTFT decoder
            (:mod:`semlat.vocoders.istft_decoder`) replaces BigVGAN (``decoder`` is then unused): the
            tiny CPU config's choice, since it learns harmonics in minutes where BigVGAN needs hours.
        noise_max_std: σ-VAE noise: in training, the decoded latent gets ``std * N(0, 1)`` with one
            ``std ~ U(0, noise_max_std)`` per sample (0: off).
        mel_encoder: when set, a log-mel + ConvNeXt encoder (:class:`MelEncoder`) replaces the DAC
            convolutions (``encoder_dim`` is then unused; the hop is still ``prod(encoder_rates)``).
        logvar_init: when set, ``fc_var`` starts with zero weights and this bias, so every posterior
            log-variance starts there instead of near 0 (std 1, as large as the prior): a negative value
            (the tiny config's -6, std 0.05) lets the decoder see informative latents from the first
            step instead of waiting for the posterior to narrow. None: PyTorch's default init.

    The defaults are the published vae64 model (see :meth:`paper`).
    """

    sample_rate: int = 16000
    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (4, 4, 5, 5)
    encoder_out_dim: int | None = None
    latent_dim: int = 64
    attn_heads: int = 8
    logvar_clamp: float = 12.0
    decoder: BigVGANConfig = field(default_factory=lambda: _paper_decoder(64))
    regulator: RegulatorConfig | None = None
    decoder_input: str = "conv"
    decoder_attn_heads: int = 8
    latent_norm: bool = False
    noise_max_std: float = 0.0
    istft_decoder: ISTFTDecoderConfig | None = None
    logvar_init: float | None = None
    mel_encoder: MelEncoderConfig | None = None

    def __post_init__(self) -> None:
        self.encoder_rates = tuple(int(r) for r in self.encoder_rates)
        if self.encoder_out_dim is None:
            self.encoder_out_dim = self.encoder_dim * 2 ** len(self.encoder_rates)
        if isinstance(self.decoder, Mapping):
            self.decoder = from_dict(BigVGANConfig, self.decoder, "WaveVAE config 'decoder'")
        if isinstance(self.istft_decoder, Mapping):
            self.istft_decoder = from_dict(ISTFTDecoderConfig, self.istft_decoder, "WaveVAE config 'istft_decoder'")
        if self.istft_decoder is not None:
            self.istft_decoder.istft_hop(self.hop_length)
        if isinstance(self.mel_encoder, Mapping):
            self.mel_encoder = from_dict(MelEncoderConfig, self.mel_encoder, "WaveVAE config 'mel_encoder'")
        if isinstance(self.regulator, Mapping):
            self.regulator = from_dict(RegulatorConfig, self.regulator, "WaveVAE config 'regulator'")
        if self.regulator is not None and self.regulator.channels is None:
            self.regulator = dataclasses.replace(self.regulator, channels=2 * self.latent_dim)
        if self.istft_decoder is None and self.decoder.num_mels != self.latent_dim:
            raise ConfigError(f"WaveVAE config: decoder.num_mels ({self.decoder.num_mels}) must equal latent_dim "
                              f"({self.latent_dim})")
        if self.decoder_input not in ("conv", "attn_proj"):
            raise ConfigError("WaveVAE config: decoder_input must be 'conv' or 'attn_proj', "
                              f"got {self.decoder_input!r}")
        if self.istft_decoder is None and self.decoder.hop_length != self.hop_length:
            raise ConfigError(f"WaveVAE config: decoder upsamples by {self.decoder.hop_length} but the encoder hop is "
                              f"{self.hop_length}")

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame: ``prod(encoder_rates)``."""
        return math.prod(self.encoder_rates)

    @classmethod
    def paper(cls, latent_dim: int = 64, teacher_dim: int | None = 1024) -> WaveVAEConfig:
        """The published sizes (``conf/svae/example.yml``; vae16/vae32 with ``latent_dim`` 16/32).

        Encoder 64 channels, rates (4, 4, 5, 5), 1024 output channels; BigVGAN-v2 decoder with 1024
        initial channels, rates (5, 5, 2, 2, 2, 2); regulator from 1024-dim teacher features with two
        blocks (None for ``teacher_dim=None``).
        """
        regulator = RegulatorConfig(teacher_dim=teacher_dim, num_blocks=2) if teacher_dim else None
        return cls(latent_dim=latent_dim, decoder=_paper_decoder(latent_dim), regulator=regulator)

    @classmethod
    def tiny(cls, latent_dim: int = 16, teacher_dim: int | None = None) -> WaveVAEConfig:
        """A small model that trains on CPU: 16 kHz, hop 400 (40 Hz), encoder 16 channels, decoder 128."""
        decoder = BigVGANConfig(num_mels=latent_dim, upsample_rates=(5, 5, 4, 4), upsample_kernel_sizes=(9, 9, 8, 8),
                                upsample_initial_channel=128, resblock="1", resblock_kernel_sizes=(3, 7),
                                resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)), activation="snakebeta",
                                snake_logscale=True, use_tanh_at_final=False, use_bias_at_final=False)
        regulator = RegulatorConfig(teacher_dim=teacher_dim, num_blocks=2) if teacher_dim else None
        return cls(encoder_dim=16, latent_dim=latent_dim, decoder=decoder, regulator=regulator)


class WaveVAE(FromConfig, OneRateSpace, nn.Module):
    """Semantic-VAE generator: ``[B, 1, N]`` audio <-> ``[B, D, T]`` latents at ``sample_rate / hop`` Hz."""

    def __init__(self, config: WaveVAEConfig) -> None:
        super().__init__()
        self.config = config
        if config.mel_encoder is not None:
            self.encoder = MelEncoder(config.sample_rate, config.hop_length, config.encoder_out_dim, config.mel_encoder)
        else:
            self.encoder = Encoder(config.encoder_dim, config.encoder_rates, config.encoder_out_dim)
        self.pre_block = AttnProjection(config.encoder_out_dim, config.latent_dim, config.attn_heads)
        self.fc_mu = Linear(config.latent_dim, config.latent_dim)
        self.fc_var = Linear(config.latent_dim, config.latent_dim)
        if config.logvar_init is not None:
            nn.init.zeros_(self.fc_var.weight)
            nn.init.constant_(self.fc_var.bias, config.logvar_init)
        input_layer = None
        if config.decoder_input == "attn_proj":
            input_layer = AttnProjection(config.latent_dim, config.decoder.upsample_initial_channel,
                                         config.decoder_attn_heads, channels_first=True)
        if config.istft_decoder is not None:
            self.decoder = ISTFTDecoder(config.latent_dim, config.hop_length, config.istft_decoder)
        else:
            self.decoder = BigVGAN(config.decoder, input_layer)
        if config.regulator is not None:
            reg = config.regulator
            self.projectors = InterpolateRegulator(reg.teacher_dim, reg.channels, config.latent_dim, reg.num_blocks,
                                                   reg.groups)

    config_class = WaveVAEConfig
    config_where = "WaveVAE config"

    @property
    def sample_rate(self) -> int:
        """Audio rate in Hz."""
        return self.config.sample_rate

    @property
    def latent_dim(self) -> int:
        """Latent width D."""
        return self.config.latent_dim

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.config.sample_rate / self.config.hop_length

    def _check_audio(self, audio: Tensor) -> None:
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio shaped [B, 1, N], got {tuple(audio.shape)}")

    def pad_to_hop(self, audio: Tensor) -> Tensor:
        """Right-pad ``[B, 1, N]`` with zeros to ``[B, 1, ceil(N / hop) * hop]``."""
        return F.pad(audio, (0, -audio.shape[-1] % self.hop_length))

    def _bottleneck(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder features ``[B, C, T]`` -> time-major ``(mu, logvar)``, each ``[B, T, D]``."""
        h = self.pre_block(rearrange(features, "b c t -> b t c"))
        limit = self.config.logvar_clamp
        mu = self.fc_mu(h)
        if self.config.latent_norm:
            mu = latent_layer_norm(mu, dim=-1)
        return mu, self.fc_var(h).clamp(-limit, limit)

    def posterior(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``audio [B, 1, N]`` (N a multiple of the hop) -> ``(mu, logvar)``, each ``[B, D, N / hop]``."""
        self._check_audio(audio)
        if audio.shape[-1] % self.hop_length:
            raise ValueError(f"audio length {audio.shape[-1]} is not a multiple of the hop ({self.hop_length}); "
                             "use encode() or pad_to_hop()")
        mu, logvar = self._bottleneck(self.encoder(audio))
        return _channel_major(mu), _channel_major(logvar)

    def encode(self, audio: Tensor) -> Tensor:
        """Deterministic latents (the posterior mean): ``[B, 1, N] -> [B, D, ceil(N / hop)]``.

        The audio is right-padded with zeros to a multiple of the hop first.
        """
        self._check_audio(audio)
        mu, _ = self._bottleneck(self.encoder(self.pad_to_hop(audio)))
        return _channel_major(mu)

    def decode(self, latents: Tensor, **options: Any) -> Tensor:
        """``[B, D, T] -> [B, 1, T * hop]`` audio in [-1, 1] (deterministic: ``seed`` is ignored)."""
        check_decode_options(options, where="a waveform VAE")
        if latents.ndim != 3 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents shaped [B, {self.latent_dim}, T], got {tuple(latents.shape)}")
        return self.decoder(latents)

    def project_teacher(self, features: Tensor, valid: Tensor, latent_frames: int) -> Tensor:
        """The alignment target: teacher ``features [B, T_t, dim]`` projected by the regulator onto
        ``latent_frames`` frames, of which ``valid [B]`` are covered by the teacher (see
        :func:`~semlat.semantic.alignment.latent_valid_frames`). Returns ``[B, latent_frames, D]``.
        ConfigError for a VAE trained without a regulator."""
        if not hasattr(self, "projectors"):
            raise ConfigError("this VAE has no alignment regulator (it was trained without teacher_to_latent alignment)")
        target, _ = self.projectors(features, valid, valid.new_full(valid.shape, latent_frames))
        return target

    def forward(self, audio: Tensor, eps: Tensor | None = None, sample: bool = True) -> dict[str, Tensor]:
        """Pad, encode, sample, decode, crop (the reference ``DAC.forward`` without the alignment loss).

        Args:
            audio: ``[B, 1, N]``.
            eps: ``[B, D, T]`` standard-normal noise for the sample (drawn when None).
            sample: decode ``z = mu + eps * std`` (True) or ``mu``.
        Returns:
            ``audio`` ``[B, 1, N]`` (the decoded signal cropped to N), ``z``, ``mu``, ``logvar`` (each
            ``[B, D, T]``, T = ceil(N / hop); ``z`` is ``mu`` when ``sample`` is False, plus σ-VAE noise in
            training when ``noise_max_std > 0``), ``kl`` (scalar)
            and ``encoder_out`` ``[B, C, T]``.
        """
        self._check_audio(audio)
        length = audio.shape[-1]
        features = self.encoder(self.pad_to_hop(audio))
        mu, logvar = self._bottleneck(features)
        kl = gaussian_kl(mu, logvar, dim=-1)
        if sample:
            z = reparameterize(mu, logvar, None if eps is None else rearrange(eps, "b d t -> b t d"))
        else:
            z = mu
        z = _channel_major(z)
        if self.training and self.config.noise_max_std > 0:
            z, _ = sigma_vae_noise(z, self.config.noise_max_std)
        decoded = self.decoder(z)[..., :length]
        return {"audio": decoded, "z": z, "mu": _channel_major(mu), "logvar": _channel_major(logvar), "kl": kl,
                "encoder_out": features}

    def remove_weight_norm(self) -> WaveVAE:
        """Fold every weight norm into plain weights (in place; outputs unchanged); returns ``self``."""
        return remove_weight_norm(self)


def _channel_major(x: Tensor) -> Tensor:
    return rearrange(x, "b t d -> b d t").contiguous()

