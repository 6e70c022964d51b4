"""Recipe ``dasheng_mae``: a Dasheng-architecture encoder pre-trained as a masked autoencoder (offline).

The stand-in for the released Dasheng where nothing can be downloaded (:mod:`semlat.semantic.dasheng_mae` has
the objective). Data: random crops (16 kHz) of a manifest's train split, for example the speech demo corpus and
the sound-event corpus listed in one manifest, or either alone. Each step masks ``model.mae.mask_ratio`` of the
patches and takes one AdamW step on the masked patches' reconstruction error. Validation: that error on fixed
held-out crops with fixed masks, beside the error of predicting the per-patch mean (1.0 on normalised
targets). The exported folder is a plain ``dasheng`` model (the encoder only): ``semlat:RUN_DIR`` as a teacher,
``encoder:`` of the ``semantic_vocoder`` recipe, ``semlat encode`` through a SemanticVocoder, and so on;
every figure it produces is this small offline model's, not the released Dasheng's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semlat.data.datasets import AudioCropDataset, collate_audio, fixed_subset
from semlat.errors import ConfigError
from semlat.semantic.dasheng import PATCH_SAMPLES, SAMPLE_RATE, DashengConfig
from semlat.semantic.dasheng_mae import DashengMAE, MAEConfig
from semlat.training.distributed import average_buffers
from semlat.training.logging import RunLogger
from semlat.training.settings import AudioDataConfig, EMAConfig, OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe, Trainer


@dataclass
class DashengMAEModelConfig:
    """The encoder's sizes (a Dasheng) and the MAE decoder's."""

    encoder: DashengConfig = field(default_factory=lambda: DashengConfig(embed_dim=256, depth=4, num_heads=4))
    mae: MAEConfig = field(default_factory=MAEConfig)


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05, grad_clip=1.0, warmup_steps=100,
                           schedule="cosine", min_lr_ratio=0.05)


def _train() -> TrainConfig:
    return TrainConfig(max_steps=3000, ema=EMAConfig(enabled=False), log_every=50, valid_every=500,
                       checkpoint_every=1000, num_workers=0)


def _data() -> AudioDataConfig:
    return AudioDataConfig(segment_seconds=4.0, batch_size=16, valid_items=16, valid_seconds=4.0)


@dataclass
class DashengMAERecipeConfig:
    """Everything ``semlat train`` needs for the offline Dasheng."""

    recipe: str = "dasheng_mae"
    run_dir: str = "runs/dasheng_mae"
    model: DashengMAEModelConfig = field(default_factory=DashengMAEModelConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    data: AudioDataConfig = field(default_factory=_data)
    train: TrainConfig = field(default_factory=_train)

    def validate(self, where: str) -> None:
        if self.recipe != "dasheng_mae":
            raise ConfigError(f"recipe must be 'dasheng_mae' for this config, got {self.recipe!r}")
        limit = self.model.encoder.target_length * 160 / SAMPLE_RATE
        for name in ("segment_seconds", "valid_seconds"):
            seconds = getattr(self.data, name)
            if seconds * SAMPLE_RATE < 2 * PATCH_SAMPLES or seconds > limit:
                raise ConfigError(f"data.{name} must be between 0.08 s and one encoder chunk ({limit:.2f} s), "
                                  f"got {seconds}")


class DashengMAERecipe(Recipe):
    """MAE on 64 x 4 mel patches; exports the encoder."""

    name = "dasheng_mae"
    Config = DashengMAERecipeConfig
    exported = "model"

    def __init__(self, config: DashengMAERecipeConfig, trainer: Trainer):
        super().__init__(config, trainer)
        self.manifest_path = Path(config.data.train).resolve()
        self._valid: torch.Tensor | None = None  # the held-out crops [B, N]

    def build_modules(self) -> dict[str, nn.Module]:
        return {"model": DashengMAE(self.config.model.encoder, self.config.model.mae)}

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return self.config.optim

    def train_dataset(self):
        data = self.config.data
        return AudioCropDataset(self.manifest(data.train, data.train_split), SAMPLE_RATE, data.segment_seconds,
                                seed=self.config.train.seed, min_rms_db=data.min_rms_db), collate_audio

    def train_step(self, batches: Sequence[Any], step: int) -> dict[str, float]:
        model = self.trainer.module("model")
        losses = []
        with self.trainer.optimizer_step("model"):
            for _, batch in self.trainer.micro_batches(batches, "model"):
                audio = self.trainer.to_device(batch["audio"]).mean(dim=1)
                with self.trainer.autocast():
                    loss, _ = model(audio)
                (loss / len(batches)).backward()
                losses.append(float(loss.detach()))
        average_buffers(self.trainer.unwrapped("model"), self.trainer.dist)  # BatchNorm statistics agree
        return {"loss": float(np.mean(losses))}

    def _valid_audio(self) -> torch.Tensor:
        if self._valid is None:
            data = self.config.data
            subset = fixed_subset(self.manifest(data.valid, data.valid_split), data.valid_items)
            dataset = AudioCropDataset(subset, SAMPLE_RATE, data.valid_seconds, seed=self.config.train.seed)
            self._valid = collate_audio([dataset[i] for i in range(len(dataset))])["audio"].mean(dim=1)
        return self._valid

    @torch.no_grad()
    def heldout(self, model: nn.Module) -> dict[str, float]:
        audio = self.trainer.to_device(self._valid_audio())
        was_training = model.training
        model.eval()  # BatchNorm's running statistics are used, not updated
        loss, _ = model(audio, torch.Generator().manual_seed(self.config.train.seed))
        model.train(was_training)
        return {"masked_mse": round(float(loss), 4), "mean_baseline_mse": 1.0, "items": int(audio.shape[0])}

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        return {k: float(v) for k, v in self.heldout(model).items() if k != "items"}

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        extra = {"sample_rate": SAMPLE_RATE, "frame_rate": SAMPLE_RATE / PATCH_SAMPLES,
                 "dim": model.encoder.config.embed_dim, "manifest": str(self.manifest_path),
                 "offline_mae": {**dataclasses.asdict(model.mae), "heldout": self.heldout(model)},
                 "note": "a small Dasheng-architecture MAE trained offline by semlat, not the released Dasheng"}
        return "dasheng", dataclasses.asdict(model.encoder.config), extra

    def export_weights(self, model: nn.Module) -> nn.Module:
        return model.encoder
