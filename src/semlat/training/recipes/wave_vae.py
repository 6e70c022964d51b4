"""Recipe ``wave_vae``: the waveform VAE of Semantic-VAE, trained as a GAN.

Per step (Semantic-VAE's training loop):

1. discriminator: ``L_D = lsgan(D(fake.detach()), D(real))``, AdamW step;
2. generator: ``L_G = 15 mel + 2 feature matching + 1 adversarial + 0.01 KL``, AdamW step, with the
   discriminator frozen.

The generator's fake audio is decoded from the *sampled* latent. Until ``loss.disc_start_step`` the
discriminator is neither trained nor used (reconstruction and KL only). With gradient accumulation
the discriminator first steps on all micro-batches (generator forward without gradients), then
the generator steps against the updated discriminator, as without accumulation.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from semlat.autoencoders.regularizers import dispersive_loss
from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
from semlat.data.datasets import AudioCropDataset, collate_audio, fixed_subset
from semlat.data.manifest import Manifest
from semlat.data.shards import ShardBatches, ShardItems, ShardSet, crop_cut, is_shard_folder
from semlat.errors import ConfigError
from semlat.evaluation.reconstruction import mel_distance, si_sdr
from semlat.latent_space import space_info
from semlat.losses.discriminators import WaveDiscriminator, WaveDiscriminatorConfig
from semlat.losses.mel import SEMANTIC_VAE_MELS, SEMANTIC_VAE_WINDOWS, MultiScaleMelLoss
from semlat.losses.phase import ComplexSTFTLoss, PhaseLoss
from semlat.training.logging import RunLogger
from semlat.training.recipes.gan import GANRecipe
from semlat.training.settings import AudioDataConfig, OptimizerConfig, TrainConfig


@dataclass
class WaveVAELossConfig:
    """Loss weights (Semantic-VAE's defaults) and the multi-scale mel loss's scales.

    ``dispersive`` weights DC-Speech-VAE's dispersive loss on the posterior means (0: off; negatives
    from every rank with ``dispersive_gather``), so teacher alignment and dispersion combine.

    Phase-aware terms (all 0: off, as in the paper), over STFTs with the window lengths ``stft_windows``
    (:mod:`semlat.losses.phase`):

    - ``phase``: APNet's anti-wrapped instantaneous-phase, group-delay and instantaneous-frequency
      losses (:class:`~semlat.losses.phase.PhaseLoss`, magnitude-weighted), the first scaled by
      ``phase_ip_weight``;
    - ``complex_stft``: L1 between the magnitude-compressed complex spectra
      (:class:`~semlat.losses.phase.ComplexSTFTLoss`);
    - ``waveform``: L1 between the waveforms.

    The mel loss ignores phase; these terms give an iSTFT decoder's phase a direct target from the
    first step, before (or without) a discriminator.
    """

    mel: float = 15.0
    feature_matching: float = 2.0
    adversarial: float = 1.0
    kl: float = 0.01
    dispersive: float = 0.0
    dispersive_gather: bool = True
    disc_start_step: int = 0
    mel_windows: tuple[int, ...] = SEMANTIC_VAE_WINDOWS
    mel_bands: tuple[int, ...] = SEMANTIC_VAE_MELS
    phase: float = 0.0
    phase_ip_weight: float = 1.0
    complex_stft: float = 0.0
    waveform: float = 0.0
    stft_windows: tuple[int, ...] = (512, 256, 128)


@dataclass
class WaveVAERecipeConfig:
    """Everything ``semlat train`` needs for a waveform VAE."""

    recipe: str = "wave_vae"
    run_dir: str = "runs/wave_vae"
    model: WaveVAEConfig = field(default_factory=lambda: WaveVAEConfig.paper(teacher_dim=None))
    discriminator: WaveDiscriminatorConfig = field(default_factory=WaveDiscriminatorConfig)
    loss: WaveVAELossConfig = field(default_factory=WaveVAELossConfig)
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    optim_disc: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, where: str) -> None:
        if self.recipe != "wave_vae":
            raise ConfigError(f"recipe must be 'wave_vae' for this config, got {self.recipe!r}")
        if self.model.regulator is not None:
            raise ConfigError("model.regulator is set, but the wave_vae recipe has no alignment loss to train it; "
                              "set model.regulator: null (or use the semantic_vae recipe)")
        self.check_audio_settings()

    def check_audio_settings(self) -> None:
        """Checks shared with recipes built on this one: rates agree, crops are whole latent frames,
        a batch to disperse."""
        if self.loss.dispersive > 0 and self.data.batch_size < 2:
            raise ConfigError("loss.dispersive compares samples of a batch: data.batch_size must be >= 2")
        if self.discriminator.sample_rate != self.model.sample_rate:
            raise ConfigError(f"discriminator.sample_rate ({self.discriminator.sample_rate}) must equal "
                              f"model.sample_rate ({self.model.sample_rate})")
        hop = 1
        for rate in self.model.encoder_rates:
            hop *= rate
        if round(self.data.segment_seconds * self.model.sample_rate) % hop:
            raise ConfigError(f"data.segment_seconds must be a whole number of latent frames "
                              f"({hop} samples at {self.model.sample_rate} Hz)")


class WaveVAERecipe(GANRecipe):
    """Builds the VAE ("generator") and the MPD + multi-band STFT discriminator."""

    name = "wave_vae"
    Config = WaveVAERecipeConfig

    def __init__(self, config: WaveVAERecipeConfig, trainer):
        super().__init__(config, trainer)
        loss = config.loss
        self.mel_loss = MultiScaleMelLoss(sample_rate=config.model.sample_rate, window_lengths=loss.mel_windows,
                                          n_mels=loss.mel_bands).to(trainer.device)
        self.phase_loss = (PhaseLoss(loss.stft_windows, ip_weight=loss.phase_ip_weight).to(trainer.device)
                           if loss.phase > 0 else None)
        self.complex_stft_loss = (ComplexSTFTLoss(loss.stft_windows).to(trainer.device)
                                  if loss.complex_stft > 0 else None)
        self._valid_batch: dict[str, Any] | None = None

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": WaveVAE(self.config.model),
                "discriminator": WaveDiscriminator.from_config(self.config.discriminator)}

    def crop_dataset(self, manifest: Manifest, seconds: float, min_rms_db: float | None) -> Dataset:
        """Random crops of ``seconds`` at the model's rate (subclasses add teacher features)."""
        return AudioCropDataset(manifest, self.config.model.sample_rate, seconds, seed=self.config.train.seed,
                                min_rms_db=min_rms_db)

    def train_dataset(self):
        data = self.config.data
        if is_shard_folder(data.train):  # streaming: this rank's shards, read lazily (semlat data shard)
            make = functools.partial(crop_cut, sample_rate=self.config.model.sample_rate,
                                     segment_seconds=data.segment_seconds, min_rms_db=data.min_rms_db)
            return self.shard_items(make), collate_audio
        manifest = self.manifest(data.train, data.train_split)
        return self.crop_dataset(manifest, data.segment_seconds, data.min_rms_db), collate_audio

    def shard_items(self, make) -> ShardItems:
        """Streamed crops (subclasses that need per-utterance caches refuse shards here)."""
        return ShardItems(make)

    def batch_sampler(self, dataset):
        if not isinstance(dataset, ShardItems):
            return None
        dist = self.trainer.dist
        return ShardBatches(ShardSet(self.config.data.train), batch_size=self.trainer.batch_per_rank,
                            seed=self.config.train.seed, rank=dist.rank, world_size=dist.world_size)

    def reconstruction_terms(self, batch, out, fake, real):
        w = self.config.loss
        terms = [("mel", self.mel_loss(fake.float(), real), w.mel), ("kl", out["kl"].float(), w.kl)]
        if self.phase_loss is not None:
            terms.append(("phase", self.phase_loss(fake.float(), real), w.phase))
        if self.complex_stft_loss is not None:
            terms.append(("complex_stft", self.complex_stft_loss(fake.float(), real), w.complex_stft))
        if w.waveform > 0:
            terms.append(("waveform", (fake.float() - real).abs().mean(), w.waveform))
        if w.dispersive > 0:
            terms.append(("dispersive", dispersive_loss(out["mu"].float(), gather=w.dispersive_gather), w.dispersive))
        return terms

    def _validation_batch(self) -> dict[str, Any]:
        if self._valid_batch is None:
            data = self.config.data
            manifest = self.manifest(data.valid, data.valid_split)
            subset = fixed_subset(manifest, data.valid_items)
            dataset = self.crop_dataset(subset, data.valid_seconds, None)
            self._valid_batch = collate_audio([dataset[i] for i in range(len(dataset))])
        return self._valid_batch

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        batch = self._validation_batch()
        real = self.trainer.to_device(batch["audio"])
        sr = self.config.model.sample_rate
        out = model(real, sample=False)
        fake = out["audio"]
        metrics = {"mel_distance": float(mel_distance(fake, real, sr).mean()),
                   "si_sdr": float(si_sdr(fake, real).mean()), "kl": float(out["kl"])}
        spectrogram = self.mel_loss.mels[-2]  # 1024-point, 160 bands
        for i in range(min(2, real.shape[0])):
            length = int(batch["length"][i])
            logger.audio(f"reconstruction/{i}", fake[i, :, :length], sr, step)
            logger.spectrogram(f"reconstruction_mel/{i}", torch.log(spectrogram(fake[i, 0, :length]) + 1e-5), step)
            if step == self.config.train.valid_every:  # the references once
                logger.audio(f"reference/{i}", real[i, :, :length], sr, step)
                logger.spectrogram(f"reference_mel/{i}", torch.log(spectrogram(real[i, 0, :length]) + 1e-5), step)
        return metrics

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        cfg = model.config
        extra = space_info(model)
        return "wave_vae", asdict(cfg), extra
