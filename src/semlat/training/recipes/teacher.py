"""Recipe ``teacher``: the offline teacher (HuBERT's first iteration) on the one Trainer.

Before the first step the run fits k-means on MFCC frames of the training split (rank 0; every other
rank waits and reads the result) and keeps the centroids in ``<run_dir>/kmeans.safetensors``, so a
resumed run reuses them. Each step then masks spans of the model's 50 Hz frames, predicts the
cluster of every masked frame and takes one AdamW step (:mod:`semlat.semantic.hubert_teacher` has
the details). Validation: masked-prediction accuracy on fixed held-out crops with its chance and
majority baselines; the exported model folder (``model_type: hubert_teacher``) carries those
figures in ``config.json``. ``semlat:RUN_DIR`` or ``semlat:CHECKPOINT`` loads it as a teacher.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from semlat.audio.mfcc import MFCCConfig
from semlat.checkpoints import write_tensors
from semlat.data.datasets import AudioCropDataset, collate_audio
from semlat.data.manifest import Manifest
from semlat.errors import ConfigError, DataError
from semlat.semantic.hubert_teacher import (
    CONV_STRIDES,
    SAMPLE_RATE,
    HubertTeacherConfig,
    HubertTeacherModel,
    Labeler,
    collect_mfcc_frames,
    evaluate,
    fit_kmeans,
    held_out_set,
    masked_loss,
    prepare_batch,
)
from semlat.training.distributed import barrier
from semlat.training.logging import RunLogger
from semlat.training.settings import EMAConfig, OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe, Trainer

KMEANS = "kmeans.safetensors"


@dataclass
class TeacherDataConfig:
    """Crops of the training split; the k-means sample; the held-out crops validation scores."""

    train: str = "data/manifest.jsonl"
    train_split: str = "train"
    heldout_split: str | None = "valid"
    crop_seconds: float = 3.0
    batch_size: int = 8
    min_rms_db: float | None = -45.0
    kmeans_frames: int = 200_000
    kmeans_init: int = 3
    heldout_crops: int = 32

    def validate(self, where: str) -> None:
        if self.batch_size < 1 or self.crop_seconds <= 0 or self.heldout_crops < 1:
            raise ConfigError(f"{where}.batch_size, crop_seconds and heldout_crops must be positive")


@dataclass
class MaskingConfig:
    """HuBERT's span masking (``mask_prob`` 0.8, spans of ``mask_length`` 10 frames) and the weight of
    the loss on unmasked frames (0, as in HuBERT)."""

    mask_prob: float = 0.8
    mask_length: int = 10
    unmasked_weight: float = 0.0

    def validate(self, where: str) -> None:
        if not 0.0 < self.mask_prob <= 1.0:
            raise ConfigError(f"{where}.mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.mask_length < 1:
            raise ConfigError(f"{where}.mask_length must be >= 1, got {self.mask_length}")


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=5e-4, betas=(0.9, 0.98), weight_decay=0.01, grad_clip=5.0, warmup_steps=50,
                           schedule="cosine", min_lr_ratio=0.1)


def _train() -> TrainConfig:
    return TrainConfig(max_steps=400, ema=EMAConfig(enabled=False), log_every=20, valid_every=200,
                       checkpoint_every=200, num_workers=0)


@dataclass
class TeacherRecipeConfig:
    """Everything ``semlat train`` needs for the offline teacher."""

    recipe: str = "teacher"
    run_dir: str = "runs/teacher"
    model: HubertTeacherConfig = field(default_factory=HubertTeacherConfig)
    data: TeacherDataConfig = field(default_factory=TeacherDataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    train: TrainConfig = field(default_factory=_train)

    def validate(self, where: str) -> None:
        if self.recipe != "teacher":
            raise ConfigError(f"recipe must be 'teacher' for this config, got {self.recipe!r}")
        if self.data.crop_seconds * SAMPLE_RATE < 400 * self.masking.mask_length:
            raise ConfigError(f"data.crop_seconds {self.data.crop_seconds} is too short for masking.mask_length "
                              f"{self.masking.mask_length}")


class TeacherRecipe(Recipe):
    """Masked prediction of MFCC k-means clusters."""

    name = "teacher"
    Config = TeacherRecipeConfig
    exported = "model"
    run_files = (KMEANS,)

    def __init__(self, config: TeacherRecipeConfig, trainer: Trainer):
        super().__init__(config, trainer)
        self.manifest_path = Path(config.data.train).resolve()
        self.manifest = Manifest.read(self.manifest_path)
        self.train_set = self.manifest.split(config.data.train_split)
        if len(self.train_set) == 0:
            raise DataError(f"{self.manifest_path}: split {config.data.train_split!r} has no utterances")
        self.mfcc = MFCCConfig()
        self.centroids, self.kmeans_info = self._centroids()
        self.labeler = Labeler(self.mfcc, self.centroids).to(trainer.device)
        self._held = None

    def _centroids(self) -> tuple[torch.Tensor, dict[str, Any]]:
        """k-means once per run: rank 0 fits and saves, every rank reads ``<run_dir>/kmeans.safetensors``."""
        path = Path(self.config.run_dir) / KMEANS
        data, seed = self.config.data, self.config.train.seed
        if self.trainer.dist.is_main and not path.is_file():
            frames = collect_mfcc_frames(self.train_set, self.mfcc, max_frames=data.kmeans_frames, seed=seed,
                                         progress=self.config.train.progress)
            centroids, inertia = fit_kmeans(frames, self.config.model.clusters, seed=seed, n_init=data.kmeans_init)
            write_tensors(path, {"centroids": centroids},
                          {"frames": str(len(frames)), "inertia_per_frame": f"{inertia:.6g}"})
        barrier(self.trainer.dist)
        centroids = load_file(str(path))["centroids"]
        if centroids.shape[0] != self.config.model.clusters:
            raise ConfigError(f"{path}: {centroids.shape[0]} clusters, but model.clusters is "
                              f"{self.config.model.clusters}; use a new run_dir")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return centroids, {"frames": int(meta.get("frames", 0)), "inertia_per_frame": float(meta.get(
            "inertia_per_frame", "nan"))}

    # ---------------------------------------------------------------- modules and data
    def build_modules(self) -> dict[str, nn.Module]:
        model = HubertTeacherModel(self.config.model)
        model.centroids.copy_(self.centroids)
        return {"model": model}

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return self.config.optim

    def train_dataset(self):
        data = self.config.data
        dataset = AudioCropDataset(self.train_set, SAMPLE_RATE, data.crop_seconds, seed=self.config.train.seed,
                                   min_rms_db=data.min_rms_db, max_tries=3)
        return dataset, collate_audio

    # ---------------------------------------------------------------- one step
    def train_step(self, batches, step: int) -> dict[str, float]:
        masking, device = self.config.masking, self.trainer.device
        model = self.trainer.module("model")
        logs: list[dict[str, float]] = []
        with self.trainer.optimizer_step("model"):
            for index, batch in self.trainer.micro_batches(batches, "model"):
                # the masks come from (seed, step, rank, micro-batch): a resumed run draws the same ones
                rng = np.random.default_rng([self.config.train.seed, step, self.trainer.dist.rank, index])
                audio, labels, mask, valid = prepare_batch(batch, self.labeler, masking.mask_prob,
                                                           masking.mask_length, rng, device)
                with self.trainer.autocast():
                    logits = model(audio, mask)
                loss, part = masked_loss(logits.float(), labels, mask, valid, masking.unmasked_weight)
                (loss / len(batches)).backward()
                logs.append(part)
        return {key: float(np.mean([part[key] for part in logs])) for key in logs[0]}

    # ---------------------------------------------------------------- validation and export
    def _held_out(self):
        if self._held is None:
            data, masking = self.config.data, self.config.masking
            self._held = held_out_set(self.manifest, data.heldout_split, data.train_split, data.heldout_crops,
                                      data.crop_seconds, data.batch_size, masking.mask_prob, masking.mask_length,
                                      self.config.train.seed, self.labeler, self.trainer.device)
        return self._held

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        scores = evaluate(model, self._held_out(), self.config.model.clusters)
        return {k: float(v) for k, v in scores.items() if k != "frames"}

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        held = self._held_out()
        scores = evaluate(model, held, self.config.model.clusters)
        cfg = model.config
        extra = {
            "sample_rate": SAMPLE_RATE, "frame_rate": SAMPLE_RATE / float(np.prod(CONV_STRIDES)), "dim": cfg.hidden,
            "num_layers": cfg.layers, "clusters": cfg.clusters, "recommended_layer": model.recommended_layer,
            "mfcc": dataclasses.asdict(self.mfcc),
            "heldout": {"split": held.split, "masked_frames": scores["frames"],
                        "accuracy": round(scores["accuracy"], 4),
                        "unmasked_accuracy": round(scores["unmasked_accuracy"], 4),
                        "majority_baseline": round(scores["majority"], 4), "chance": scores["chance"]},
            "kmeans": self.kmeans_info, "manifest": str(self.manifest_path),
        }
        return "hubert_teacher", dataclasses.asdict(cfg), extra
