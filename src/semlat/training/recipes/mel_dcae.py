"""Recipe ``mel_dcae``: DC-Speech-VAE, a deep-compression autoencoder on log-mel, trained as a GAN.

Per step (the reference's training loop), on the log-mel ``x [B, 80, T]`` of random audio crops:

1. discriminator: ``L_D = lsgan(D(x_hat.detach()), D(x))`` with D = multi-band mel + PatchGAN;
2. generator: ``L_G = adv + 2 fm + 5 L1(x_hat, x) + 0.25 dispersive(latent_clean)``, where ``x_hat``
   is decoded from the σ-VAE-noised latent and the dispersive loss sees the clean (LayerNormed)
   latent; with ``loss.dispersive_gather`` its negatives come from every rank's batch (the
   reference compares only within a GPU's batch of 4).

Optimisers: Muon for matrices + AdamW (betas 0.9/0.95) for vectors, lr 1e-4, weight decay 0.1,
gradient clipping at 500, constant rate (``optim.name: muon``; ``adamw`` also works).

The vocoder (``vocoder:``: a semlat ``bigvgan`` folder or ``griffin-lim``) is not trained; it owns
the mel front-end and makes the exported model a ``mel_dcae`` latent space (audio in, audio out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semlat.autoencoders.mel_dcae import MelDCAE, MelDCAEConfig
from semlat.autoencoders.mel_space import MelDCAESpace
from semlat.autoencoders.regularizers import dispersive_loss
from semlat.data.datasets import AudioCropDataset, collate_audio, fixed_subset
from semlat.errors import ConfigError
from semlat.evaluation.reconstruction import mel_distance
from semlat.latent_space import space_info
from semlat.losses.mel_discriminators import MelDiscriminator, MelDiscriminatorConfig
from semlat.training.logging import RunLogger
from semlat.training.recipes.gan import GANRecipe
from semlat.training.settings import AudioDataConfig, OptimizerConfig, TrainConfig


def _muon() -> OptimizerConfig:
    return OptimizerConfig(name="muon", lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, grad_clip=500.0,
                           schedule="constant")


@dataclass
class MelDCAELossConfig:
    """Generator loss weights (the reference's) and when the discriminator starts."""

    reconstruction: float = 5.0
    feature_matching: float = 2.0
    adversarial: float = 1.0
    dispersive: float = 0.25
    dispersive_gather: bool = True
    disc_start_step: int = 0


@dataclass
class MelDCAERecipeConfig:
    """Everything ``semlat train`` needs for a mel DCAE. ``vocoder``: a semlat ``bigvgan`` model folder
    (``semlat import bigvgan``) or ``griffin-lim``."""

    recipe: str = "mel_dcae"
    run_dir: str = "runs/mel_dcae"
    model: MelDCAEConfig = field(default_factory=MelDCAEConfig.paper)
    vocoder: str = "griffin-lim"
    discriminator: MelDiscriminatorConfig = field(default_factory=MelDiscriminatorConfig)
    loss: MelDCAELossConfig = field(default_factory=MelDCAELossConfig)
    optim: OptimizerConfig = field(default_factory=_muon)
    optim_disc: OptimizerConfig = field(default_factory=_muon)
    data: AudioDataConfig = field(default_factory=lambda: AudioDataConfig(segment_seconds=245760 / 22050,
                                                                          batch_size=4))
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, where: str) -> None:
        if self.recipe != "mel_dcae":
            raise ConfigError(f"recipe must be 'mel_dcae' for this config, got {self.recipe!r}")
        if self.discriminator.n_mels != self.model.n_mels:
            raise ConfigError(f"discriminator.n_mels ({self.discriminator.n_mels}) must equal model.n_mels "
                              f"({self.model.n_mels})")
        if self.loss.dispersive > 0 and self.data.batch_size < 2:
            raise ConfigError("the dispersive loss compares samples of a batch: data.batch_size must be >= 2")


class MelDCAERecipe(GANRecipe):
    """Builds the DCAE ("generator") and the mel discriminator; the vocoder is loaded, frozen."""

    name = "mel_dcae"
    Config = MelDCAERecipeConfig
    exported_prefix = "autoencoder."

    def __init__(self, config: MelDCAERecipeConfig, trainer):
        super().__init__(config, trainer)
        from semlat.autoencoders.import_dc_speech_vae import load_mel_vocoder

        self.vocoder = load_mel_vocoder(config.vocoder).to(trainer.device).eval()
        for p in self.vocoder.parameters():
            p.requires_grad_(False)
        if self.vocoder.latent_dim != config.model.n_mels:
            raise ConfigError(f"vocoder {config.vocoder} takes {self.vocoder.latent_dim} mel bands, "
                              f"model.n_mels is {config.model.n_mels}")
        self.sample_rate = int(self.vocoder.sample_rate)
        self.hop = round(self.sample_rate / self.vocoder.frame_rate) * config.model.compression
        segment = round(config.data.segment_seconds * self.sample_rate)
        if segment % self.hop:
            raise ConfigError(f"data.segment_seconds must be a whole number of latent frames ({self.hop} samples "
                              f"at {self.sample_rate} Hz; e.g. {segment // self.hop * self.hop / self.sample_rate!r})")
        self._valid_batch: dict[str, Any] | None = None

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": MelDCAE(self.config.model),
                "discriminator": MelDiscriminator.from_config(self.config.discriminator)}

    def train_dataset(self):
        data = self.config.data
        dataset = AudioCropDataset(self.manifest(data.train, data.train_split), self.sample_rate,
                                   data.segment_seconds, seed=self.config.train.seed, min_rms_db=data.min_rms_db)
        return dataset, collate_audio

    @torch.no_grad()
    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` audio -> the vocoder's log-mel ``[B, n_mels, N / mel_hop]`` (float32)."""
        return self.vocoder.encode(audio.float())

    def real_input(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.mel(self.trainer.to_device(batch["audio"]))

    def fake_output(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return out["mel"].float()

    def reconstruction_terms(self, batch, out, fake, real):
        w = self.config.loss
        terms = [("mel_l1", F.l1_loss(fake, real), w.reconstruction)]
        if w.dispersive > 0:
            terms.append(("dispersive", dispersive_loss(out["latent"].float(), gather=w.dispersive_gather),
                          w.dispersive))
        return terms

    def _validation_batch(self) -> dict[str, Any]:
        if self._valid_batch is None:
            data = self.config.data
            subset = fixed_subset(self.manifest(data.valid, data.valid_split), data.valid_items)
            seconds = max(1, round(data.valid_seconds * self.sample_rate) // self.hop) * self.hop / self.sample_rate
            dataset = AudioCropDataset(subset, self.sample_rate, seconds, seed=self.config.train.seed)
            self._valid_batch = collate_audio([dataset[i] for i in range(len(dataset))])
        return self._valid_batch

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        batch = self._validation_batch()
        real = self.trainer.to_device(batch["audio"])
        mel = self.mel(real)
        out = model(mel, noise=False)
        audio = self.vocoder.decode(out["mel"])
        metrics = {"mel_l1": float(F.l1_loss(out["mel"], mel)),
                   "mel_distance": float(mel_distance(audio, real, self.sample_rate).mean()),
                   "latent_std": float(out["latent"].std())}
        for i in range(min(2, real.shape[0])):
            length = int(batch["length"][i])
            frames = -(-length // (self.hop // self.config.model.compression))
            logger.audio(f"reconstruction/{i}", audio[i, :, :length], self.sample_rate, step)
            logger.spectrogram(f"reconstruction_mel/{i}", out["mel"][i, :, :frames], step)
            if step == self.config.train.valid_every:
                logger.audio(f"reference/{i}", real[i, :, :length], self.sample_rate, step)
                logger.spectrogram(f"reference_mel/{i}", mel[i, :, :frames], step)
        return metrics

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        space = MelDCAESpace(model, self.vocoder)
        extra = space_info(space)
        return "mel_dcae", space.config, extra

    def export_weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return MelDCAESpace(model, self.vocoder).state_dict()
