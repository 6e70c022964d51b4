"""Recipe ``duration``: the utterance-duration predictor (:mod:`semlat.generation.duration`) on a manifest.

Data: the ``train`` split of a manifest with ``text`` (units ``chars``) or ``phonemes``; each utterance's
target is its duration in seconds (the manifest's). The vocabulary is every unit of the training texts, by
the TTS's own rules (:func:`~semlat.text.frontend.char_tokens`, :func:`~semlat.text.frontend.ipa_tokens`).
Each step: L1 between log predicted and log real seconds over a batch of utterances. Validation: the mean
absolute error in seconds and the mean |log ratio| on the ``valid`` split (else ``test``); the exported
folder (``model_type: duration``) carries both for ``valid`` and ``test``.
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

from semlat.data.datasets import ListDataset
from semlat.data.manifest import Manifest, Utterance
from semlat.errors import ConfigError, DataError
from semlat.generation.duration import UNITS, DurationConfig, DurationPredictor
from semlat.text.frontend import Vocab, char_tokens, ipa_tokens
from semlat.training.logging import RunLogger
from semlat.training.settings import EMAConfig, OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe, Trainer


@dataclass
class DurationModelConfig:
    """Sizes of the predictor (about 0.2 M parameters with the defaults)."""

    dim: int = 128
    layers: int = 3
    kernel: int = 5
    max_rate_ratio: float = 2.0


@dataclass
class DurationDataConfig:
    """The manifest and the units."""

    train: str = "data/manifest.jsonl"
    train_split: str = "train"
    units: str = "phonemes"
    language: str = "en-us"
    batch_size: int = 32

    def validate(self, where: str) -> None:
        if self.units not in UNITS:
            raise ConfigError(f"{where}.units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size must be positive")


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01, grad_clip=1.0, warmup_steps=50,
                           schedule="cosine", min_lr_ratio=0.05)


def _train() -> TrainConfig:
    return TrainConfig(max_steps=600, ema=EMAConfig(enabled=False), log_every=20, valid_every=200,
                       checkpoint_every=600, num_workers=0)


@dataclass
class DurationRecipeConfig:
    """Everything ``semlat train`` needs for the duration predictor."""

    recipe: str = "duration"
    run_dir: str = "runs/duration"
    model: DurationModelConfig = field(default_factory=DurationModelConfig)
    data: DurationDataConfig = field(default_factory=DurationDataConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    train: TrainConfig = field(default_factory=_train)

    def validate(self, where: str) -> None:
        if self.recipe != "duration":
            raise ConfigError(f"recipe must be 'duration' for this config, got {self.recipe!r}")


def utterance_tokens(utterance: Utterance, units: str) -> list[str] | None:
    """The TTS units of an utterance (None when it has no text of that kind)."""
    if units == "chars":
        return char_tokens(utterance.text) if utterance.text else None
    return ipa_tokens(utterance.phonemes) if utterance.phonemes else None


class DurationRecipe(Recipe):
    """L1 on log seconds."""

    name = "duration"
    Config = DurationRecipeConfig
    exported = "model"

    def __init__(self, config: DurationRecipeConfig, trainer: Trainer):
        super().__init__(config, trainer)
        data = config.data
        self.manifest_path = Path(data.train).resolve()
        full = Manifest.read(self.manifest_path)
        train = self._pairs(full.split(data.train_split))
        if not train:
            field_name = "phonemes" if data.units == "phonemes" else "text"
            raise DataError(f"{self.manifest_path}: the {data.train_split} split has no utterance with {field_name!r}")
        self.vocab = Vocab.build([tokens for tokens, _ in train])
        self.train_items = [(self.vocab.ids(tokens), seconds) for tokens, seconds in train]
        self.held = {name: [(self.vocab.ids(t), s) for t, s in self._pairs(full.split(name))]
                     for name in ("valid", "test")}

    def _pairs(self, manifest: Manifest) -> list[tuple[list[str], float]]:
        pairs = []
        for utterance in manifest:
            tokens = utterance_tokens(utterance, self.config.data.units)
            if tokens and utterance.duration > 0:
                pairs.append((tokens, float(utterance.duration)))
        return pairs

    def build_modules(self) -> dict[str, nn.Module]:
        m, data = self.config.model, self.config.data
        config = DurationConfig(units=data.units, vocab=list(self.vocab.tokens), language=data.language, dim=m.dim,
                                layers=m.layers, kernel=m.kernel, max_rate_ratio=m.max_rate_ratio)
        return {"model": DurationPredictor(config)}

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return self.config.optim

    def train_dataset(self):
        return ListDataset(self.train_items), collate

    def train_step(self, batches: Sequence[Any], step: int) -> dict[str, float]:
        model = self.trainer.module("model")
        losses = []
        with self.trainer.optimizer_step("model"):
            for _, (ids, seconds) in self.trainer.micro_batches(batches, "model"):
                predicted = model(ids.to(self.trainer.device))
                loss = (predicted.clamp(min=1e-3).log() - seconds.to(predicted.device).log()).abs().mean()
                (loss / len(batches)).backward()
                losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}

    def _errors(self, model: nn.Module, items: list[tuple[list[int], float]]) -> dict[str, float] | None:
        if not items:
            return None
        ids, seconds = collate(items)
        with torch.no_grad():
            predicted = model(ids.to(self.trainer.device)).cpu().clamp(min=1e-3)
        return {"mae_seconds": round(float((predicted - seconds).abs().mean()), 4),
                "log_ratio": round(float((predicted.log() - seconds.log()).abs().mean()), 4)}

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        return self._errors(model, self.held["valid"] or self.held["test"]) or {}

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        heldout = {name: {**(self._errors(model, items) or {}), "utterances": len(items)}
                   for name, items in self.held.items()}
        extra = {"manifest": str(self.manifest_path), "train_utterances": len(self.train_items), "heldout": heldout,
                 "parameters": sum(p.numel() for p in model.parameters())}
        return "duration", dataclasses.asdict(model.config), extra


def collate(items: Sequence[tuple[list[int], float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, N]`` padded with -1, ``seconds [B])``."""
    width = max(len(ids) for ids, _ in items)
    ids = torch.tensor([ids + [-1] * (width - len(ids)) for ids, _ in items], dtype=torch.long)
    return ids, torch.tensor([seconds for _, seconds in items], dtype=torch.float32)
