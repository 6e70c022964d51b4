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

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
from semlat.data.datasets import AudioCropDataset, collate_audio, fixed_subset
from semlat.data.manifest import Manifest
from semlat.errors import ConfigError
from semlat.evaluation.reconstruction import mel_distance, si_sdr
from semlat.losses.adversarial import (
    discriminate_pair,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semlat.losses.discriminators import WaveDiscriminator, WaveDiscriminatorConfig
from semlat.losses.mel import SEMANTIC_VAE_MELS, SEMANTIC_VAE_WINDOWS, MultiScaleMelLoss
from semlat.training.logging import RunLogger
from semlat.training.settings import AudioDataConfig, OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe


@dataclass
class WaveVAELossConfig:
    """Loss weights (Semantic-VAE's defaults) and the multi-scale mel loss's scales."""

    mel: float = 15.0
    feature_matching: float = 2.0
    adversarial: float = 1.0
    kl: float = 0.01
    disc_start_step: int = 0
    mel_windows: tuple[int, ...] = SEMANTIC_VAE_WINDOWS
    mel_bands: tuple[int, ...] = SEMANTIC_VAE_MELS


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
                              "set model.regulator: null")
        if self.discriminator.sample_rate != self.model.sample_rate:
            raise ConfigError(f"discriminator.sample_rate ({self.discriminator.sample_rate}) must equal "
                              f"model.sample_rate ({self.model.sample_rate})")
        hop = 1
        for rate in self.model.encoder_rates:
            hop *= rate
        if round(self.data.segment_seconds * self.model.sample_rate) % hop:
            raise ConfigError(f"data.segment_seconds must be a whole number of latent frames "
                              f"({hop} samples at {self.model.sample_rate} Hz)")


class WaveVAERecipe(Recipe):
    """Builds the VAE ("generator") and the MPD + multi-band STFT discriminator."""

    name = "wave_vae"
    Config = WaveVAERecipeConfig
    exported = "generator"

    def __init__(self, config: WaveVAERecipeConfig, trainer):
        super().__init__(config, trainer)
        loss = config.loss
        self.mel_loss = MultiScaleMelLoss(sample_rate=config.model.sample_rate, window_lengths=loss.mel_windows,
                                          n_mels=loss.mel_bands).to(trainer.device)
        self._valid_batch: dict[str, Any] | None = None

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": WaveVAE(self.config.model),
                "discriminator": WaveDiscriminator.from_config(self.config.discriminator)}

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return {"generator": self.config.optim, "discriminator": self.config.optim_disc}.get(name)

    def _manifest(self, path: str | None, split: str | None) -> Manifest:
        manifest = Manifest.read(path or self.config.data.train, split=split)
        if len(manifest) == 0:
            raise ConfigError(f"{path or self.config.data.train}: no utterances in split {split!r}")
        return manifest

    def train_dataset(self):
        data = self.config.data
        manifest = self._manifest(data.train, data.train_split)
        dataset = AudioCropDataset(manifest, self.config.model.sample_rate, data.segment_seconds,
                                   seed=self.config.train.seed, min_rms_db=data.min_rms_db)
        return dataset, collate_audio

    def train_step(self, batches, step: int) -> dict[str, float]:
        t, w = self.trainer, self.config.loss
        gen, disc = t.module("generator"), t.module("discriminator")
        adversarial = step >= w.disc_start_step
        reuse = len(batches) == 1  # keep the generator output for the generator step
        outputs: list[dict[str, torch.Tensor] | None] = [None] * len(batches)
        logs: dict[str, float] = {}

        def add(key: str, value: torch.Tensor) -> None:
            logs[key] = logs.get(key, 0.0) + float(value.detach()) / len(batches)

        if adversarial:
            with t.optimizer_step("discriminator"):
                for i, batch in t.micro_batches(batches, "discriminator"):
                    real = t.to_device(batch["audio"])
                    with t.autocast(), torch.set_grad_enabled(reuse):
                        out = gen(real)
                    if reuse:
                        outputs[i] = out
                    with t.autocast():
                        d_loss = discriminator_loss(*discriminate_pair(disc, out["audio"].detach(), real))
                    (d_loss / len(batches)).backward()
                    add("d_loss", d_loss)

        with t.optimizer_step("generator"), t.frozen("discriminator") as plain_disc:
            for i, batch in t.micro_batches(batches, "generator"):
                real = t.to_device(batch["audio"])
                with t.autocast():
                    out = outputs[i] if outputs[i] is not None else gen(real)
                    fake = out["audio"]
                mel = self.mel_loss(fake.float(), real)
                total = w.mel * mel + w.kl * out["kl"].float()
                add("mel", mel)
                add("kl", out["kl"])
                if adversarial:
                    with t.autocast():
                        fake_maps = plain_disc(fake)
                        with torch.no_grad():
                            real_maps = plain_disc(real)
                    adv = generator_adversarial_loss(fake_maps).float()
                    fm = feature_matching_loss(fake_maps, real_maps).float()
                    total = total + w.adversarial * adv + w.feature_matching * fm
                    add("adversarial", adv)
                    add("feature_matching", fm)
                (total / len(batches)).backward()
                add("loss", total)
        return logs

    def _validation_batch(self) -> dict[str, Any]:
        if self._valid_batch is None:
            data = self.config.data
            manifest = self._manifest(data.valid, data.valid_split)
            subset = fixed_subset(manifest, data.valid_items)
            dataset = AudioCropDataset(subset, self.config.model.sample_rate, data.valid_seconds,
                                       seed=self.config.train.seed)
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
        cfg = self.config.model
        extra = {"sample_rate": cfg.sample_rate, "latent_dim": cfg.latent_dim, "frame_rate": model.frame_rate}
        return "wave_vae", asdict(cfg), extra
