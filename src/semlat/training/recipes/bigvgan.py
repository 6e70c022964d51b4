"""Recipe ``bigvgan``: train a BigVGAN vocoder (mel -> waveform) as a GAN, as in the BigVGAN paper.

Generator: :class:`~semlat.vocoders.mel_vocoder.MelVocoder` (BigVGAN log-mel front-end + generator),
fed with the mel of a random crop of ``data.segment_size`` samples (whole hops), each crop
peak-normalised to 0.95 as BigVGAN's data loader does (``data.normalize_volume``).
Discriminator: MPD (periods 2, 3, 5, 7, 11) + the multi-resolution STFT discriminator
(:mod:`semlat.losses.resolution_discriminator`), one module and one optimiser, like BigVGAN's ``optim_d``.

Per step (BigVGAN's ``train.py``):

1. discriminator: ``L_D = sum_D [mean(D(fake.detach())^2) + mean((1 - D(real))^2)]``, AdamW step;
2. generator, discriminator frozen: ``L_G = 45 L_mel + 2 L_fm + 1 L_adv`` with
   ``L_mel = mean|mel(fake) - mel(real)|`` on the BigVGAN log-mel (band limit ``loss.mel_fmax``, BigVGAN's
   ``fmax_for_loss``), ``L_adv = sum_D mean((1 - D(fake))^2)`` and HiFi-GAN's feature matching
   ``L_fm = sum_D sum_j mean|D_j(fake) - D_j(real)|`` over *every* map including the logits (HiFi-GAN
   writes the factor 2 inside ``feature_loss``; here it is ``loss.feature_matching``).

``loss.mel_type: multiscale`` switches to BigVGAN-v2's multi-scale log10-mel loss (DAC's, seven scales;
v2 weights it 15). Until ``loss.disc_start_step`` (BigVGAN's ``freeze_step``) only the mel loss trains.
With gradient accumulation the discriminator steps on all micro-batches first, then the generator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semlat.audio.spectral import MelSpectrogram
from semlat.data.datasets import AudioCropDataset, collate_audio, fixed_subset
from semlat.errors import ConfigError
from semlat.evaluation.reconstruction import mel_distance
from semlat.latent_space import space_info
from semlat.losses.discriminators import DEFAULT_MPD_CHANNELS, DEFAULT_PERIODS, PeriodDiscriminator
from semlat.losses.mel import MultiScaleMelLoss
from semlat.losses.resolution_discriminator import DEFAULT_RESOLUTIONS, MultiResolutionDiscriminator
from semlat.training.logging import RunLogger
from semlat.training.recipes.gan import GANRecipe
from semlat.training.settings import EMAConfig, OptimizerConfig, TrainConfig
from semlat.vocoders.mel_vocoder import MelVocoder, MelVocoderConfig

#: BigVGAN's data loader scales every crop to this peak (``librosa.util.normalize(audio) * 0.95``).
PEAK = 0.95


@dataclass
class BigVGANDiscriminatorConfig:
    """MPD periods (``mpd_reshapes``), MRD ``(n_fft, hop, win)`` resolutions and the width multiplier
    (``discriminator_channel_mult``: MPD 32-128-512-1024-1024 and MRD 32 channels at 1)."""

    periods: tuple[int, ...] = DEFAULT_PERIODS
    resolutions: tuple[tuple[int, int, int], ...] = DEFAULT_RESOLUTIONS
    channel_mult: float = 1.0

    def __post_init__(self) -> None:
        self.periods = tuple(int(p) for p in self.periods)
        self.resolutions = tuple(tuple(int(v) for v in r) for r in self.resolutions)

    def validate(self, where: str) -> None:
        if not self.periods and not self.resolutions:
            raise ConfigError(f"{where}: needs at least one period or resolution")
        if self.channel_mult <= 0 or int(32 * self.channel_mult) < 1:
            raise ConfigError(f"{where}.channel_mult must leave at least one channel (32 * mult >= 1), "
                              f"got {self.channel_mult}")
        for resolution in self.resolutions:
            if len(resolution) != 3:
                raise ConfigError(f"{where}.resolutions: each entry is [n_fft, hop, win], got {list(resolution)}")


class BigVGANDiscriminator(nn.Module):
    """MPD + MRD: ``audio [B, 1, T] -> list[list[Tensor]]``, the feature maps of each period
    discriminator (``mpd.{i}``), then of each resolution (``mrd.discriminators.{j}``); in every list the
    last map is the logits. Items of a batch are independent (see ``discriminate_pair``)."""

    def __init__(self, config: BigVGANDiscriminatorConfig):
        super().__init__()
        self.config = config
        mpd_channels = tuple(int(c * config.channel_mult) for c in DEFAULT_MPD_CHANNELS)
        self.mpd = nn.ModuleList(PeriodDiscriminator(p, mpd_channels) for p in config.periods)
        self.mrd = MultiResolutionDiscriminator(config.resolutions, config.channel_mult)

    @property
    def names(self) -> list[str]:
        """``mpd{period}`` and ``mrd{n_fft}`` per sub-discriminator, in output order."""
        return [f"mpd{d.period}" for d in self.mpd] + self.mrd.names

    def forward(self, audio: torch.Tensor) -> list[list[torch.Tensor]]:
        """``[B, 1, T]`` -> per sub-discriminator its feature maps."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, T], got {tuple(audio.shape)}")
        return [d(audio) for d in self.mpd] + self.mrd(audio)


def feature_loss(fake_maps: Sequence[Sequence[torch.Tensor]], real_maps: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """HiFi-GAN/BigVGAN feature matching without its factor 2: ``sum_D sum_j mean|fake_j - real_j|`` over
    every map *including the logits* (unlike :func:`semlat.losses.adversarial.feature_matching_loss`,
    DAC's, which skips them). Real maps are detached. Returns a scalar."""
    if len(fake_maps) != len(real_maps) or not fake_maps:
        raise ValueError(f"{len(fake_maps)} fake vs {len(real_maps)} real discriminator outputs")
    terms = [F.l1_loss(f.float(), r.detach().float())
             for fake, real in zip(fake_maps, real_maps, strict=True) for f, r in zip(fake, real, strict=True)]
    return torch.stack(terms).sum()


@dataclass
class BigVGANLossConfig:
    """Generator loss weights (BigVGAN: ``lambda_melloss`` 45, feature matching 2, adversarial 1).

    ``mel_type``: "single" (L1 of BigVGAN log-mels) or "multiscale" (v2's DAC loss, weight 15 there).
    ``mel_fmax``: band limit of the loss mel (BigVGAN's ``fmax_for_loss``; null: Nyquist).
    ``disc_start_step``: steps of mel-only training first (BigVGAN's ``freeze_step``).
    """

    mel: float = 45.0
    mel_type: str = "single"
    mel_fmax: float | None = None
    feature_matching: float = 2.0
    adversarial: float = 1.0
    disc_start_step: int = 0

    def validate(self, where: str) -> None:
        if self.mel_type not in ("single", "multiscale"):
            raise ConfigError(f"{where}.mel_type must be 'single' or 'multiscale', got {self.mel_type!r}")


@dataclass
class VocoderDataConfig:
    """Random crops of ``segment_size`` samples (whole hops) for training, a fixed validation batch.

    ``batch_size`` is the global batch (BigVGAN-v2's released models: 32 = 4 per GPU on 8 GPUs).
    """

    train: str = "data/manifest.jsonl"
    train_split: str | None = "train"
    valid: str | None = None
    valid_split: str | None = "valid"
    segment_size: int = 65536
    batch_size: int = 32
    normalize_volume: bool = True
    min_rms_db: float | None = None
    valid_items: int = 8
    valid_seconds: float = 5.0

    def validate(self, where: str) -> None:
        if self.batch_size < 1 or self.segment_size < 1 or self.valid_seconds <= 0:
            raise ConfigError(f"{where}.batch_size, {where}.segment_size and {where}.valid_seconds must be positive")


def _bigvgan_optimizer() -> OptimizerConfig:
    """BigVGAN's AdamW (lr 1e-4, betas 0.8/0.99, torch's default weight decay 0.01), lr x 0.9999996 per step,
    gradients clipped at 500 (v2's ``clip_grad_norm``)."""
    return OptimizerConfig(lr=1e-4, betas=(0.8, 0.99), weight_decay=0.01, grad_clip=500.0, schedule="exponential",
                           gamma=0.9999996)


@dataclass
class BigVGANRecipeConfig:
    """Everything ``semlat train`` needs for a BigVGAN vocoder (defaults: the v2 22 kHz 80-band model)."""

    recipe: str = "bigvgan"
    run_dir: str = "runs/bigvgan"
    model: MelVocoderConfig = field(default_factory=MelVocoderConfig)
    discriminator: BigVGANDiscriminatorConfig = field(default_factory=BigVGANDiscriminatorConfig)
    loss: BigVGANLossConfig = field(default_factory=BigVGANLossConfig)
    optim: OptimizerConfig = field(default_factory=_bigvgan_optimizer)
    optim_disc: OptimizerConfig = field(default_factory=_bigvgan_optimizer)
    data: VocoderDataConfig = field(default_factory=VocoderDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(ema=EMAConfig(enabled=False)))

    def validate(self, where: str) -> None:
        if self.recipe != "bigvgan":
            raise ConfigError(f"recipe must be 'bigvgan' for this config, got {self.recipe!r}")
        model, data = self.model, self.data
        hop = model.hop_size
        if data.segment_size % hop:
            raise ConfigError(f"data.segment_size ({data.segment_size}) must be a whole number of hops ({hop} samples)")
        longest = max([model.n_fft, *(r[0] for r in self.discriminator.resolutions)])
        if data.segment_size < longest:
            raise ConfigError(f"data.segment_size ({data.segment_size}) must be at least the longest FFT ({longest})")
        if round(data.valid_seconds * model.sampling_rate) < model.n_fft:
            raise ConfigError(f"data.valid_seconds ({data.valid_seconds}) is shorter than one FFT ({model.n_fft} "
                              "samples)")
        fmax = self.loss.mel_fmax
        if fmax is not None and not model.fmin < fmax <= model.sampling_rate / 2:
            raise ConfigError(f"loss.mel_fmax ({fmax}) must lie in (model.fmin, sampling_rate / 2]")


class BigVGANRecipe(GANRecipe):
    """Builds the :class:`MelVocoder` ("generator") and the MPD + MRD ("discriminator")."""

    name = "bigvgan"
    Config = BigVGANRecipeConfig

    def __init__(self, config: BigVGANRecipeConfig, trainer):
        super().__init__(config, trainer)
        model = config.model
        #: the loss (and validation) mel: the model's front-end with ``fmax_for_loss``
        self.loss_mel = MelSpectrogram(model.mel_config().replace(f_max=config.loss.mel_fmax)).to(trainer.device)
        self.multiscale = (MultiScaleMelLoss(sample_rate=model.sampling_rate).to(trainer.device)
                           if config.loss.mel_type == "multiscale" else None)
        self._valid_batch: dict[str, Any] | None = None

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": MelVocoder(self.config.model),
                "discriminator": BigVGANDiscriminator(self.config.discriminator)}

    # ------------------------------------------------------------------ data

    def train_dataset(self):
        data, sr = self.config.data, self.config.model.sampling_rate
        manifest = self.manifest(data.train, data.train_split)
        crops = AudioCropDataset(manifest, sr, data.segment_size / sr, seed=self.config.train.seed,
                                 min_rms_db=data.min_rms_db)
        if crops.segment != data.segment_size:  # float rounding of segment_size / sr * sr
            raise ConfigError(f"data.segment_size {data.segment_size} does not survive the crop arithmetic")
        return crops, collate_audio

    def normalize(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` -> each item scaled to a peak of 0.95 (silence unchanged) if ``data.normalize_volume``."""
        if not self.config.data.normalize_volume:
            return audio
        peak = audio.abs().amax(dim=-1, keepdim=True)
        return audio * torch.where(peak > 0, PEAK / peak.clamp_min(torch.finfo(audio.dtype).tiny), 1.0)

    def _real(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.normalize(self.trainer.to_device(batch["audio"]))

    # ------------------------------------------------------------------ losses
    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """The loss mel ``[B, 1, N] -> [B, num_mels, N / hop]`` in float32 (autocast off)."""
        with torch.autocast(audio.device.type, enabled=False):
            return self.loss_mel(audio[:, 0].float())

    def mel_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Scalar mel reconstruction loss of ``fake`` vs ``real`` (both ``[B, 1, N]``), per ``loss.mel_type``."""
        if self.multiscale is not None:
            with torch.autocast(fake.device.type, enabled=False):
                return self.multiscale(fake.float(), real.float())
        return F.l1_loss(self.log_mel(fake), self.log_mel(real))

    def real_input(self, batch: dict[str, Any]) -> torch.Tensor:
        return self._real(batch)

    def reconstruction_terms(self, batch, out, fake, real):
        return [("mel", self.mel_loss(fake, real), self.config.loss.mel)]

    def feature_matching(self, fake_maps, real_maps) -> torch.Tensor:
        return feature_loss(fake_maps, real_maps)

    # ------------------------------------------------------------------ validation and export
    def _validation_batch(self) -> dict[str, Any]:
        if self._valid_batch is None:
            data, sr = self.config.data, self.config.model.sampling_rate
            subset = fixed_subset(self.manifest(data.valid, data.valid_split), data.valid_items)
            crops = AudioCropDataset(subset, sr, data.valid_seconds, seed=self.config.train.seed)
            self._valid_batch = collate_audio([crops[i] for i in range(len(crops))])
        return self._valid_batch

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        """Copy-synthesis of the fixed validation crops (each cut to whole hops, volume-normalised):
        mean ``mel_l1`` (the loss mel's L1, BigVGAN's validation "mel error") and the multi-scale
        ``mel_distance``; logs audio and mel images of the first two items."""
        batch = self._validation_batch()
        sr, hop = self.config.model.sampling_rate, self.config.model.hop_size
        l1s, distances = [], []
        for i in range(batch["audio"].shape[0]):
            length = int(batch["length"][i]) // hop * hop
            if length < self.config.model.n_fft:
                continue
            real = self.normalize(self.trainer.to_device(batch["audio"][i:i + 1, :, :length]))
            fake = model.decode(model.mel(real))
            fake_mel, real_mel = self.log_mel(fake), self.log_mel(real)
            l1s.append(float(F.l1_loss(fake_mel, real_mel)))
            distances.append(float(mel_distance(fake, real, sr)[0]))
            if i < 2:
                logger.audio(f"synthesis/{i}", fake[0], sr, step)
                logger.spectrogram(f"synthesis_mel/{i}", fake_mel[0], step)
                if step == self.config.train.valid_every:  # the references once
                    logger.audio(f"reference/{i}", real[0], sr, step)
                    logger.spectrogram(f"reference_mel/{i}", real_mel[0], step)
        if not l1s:  # every validation utterance is shorter than one FFT
            return {}
        return {"mel_l1": sum(l1s) / len(l1s), "mel_distance": sum(distances) / len(distances)}

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        cfg = model.config
        extra = space_info(model)
        return "bigvgan", dataclasses.asdict(cfg), extra
