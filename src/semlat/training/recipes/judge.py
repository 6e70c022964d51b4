"""Recipe ``judge``: the offline CTC judge (a phoneme or character recognizer) on the one Trainer.

The vocabulary is every unit of the training split, sorted (index 0 the CTC blank); utterances are
featurised once (normalised log-mel, :class:`~semlat.evaluation.ctc_judge.Features`) and batched whole.
Each step applies SpecAugment-style masks drawn from ``(seed, step, rank, micro-batch)`` (a resumed run
draws the same ones) and takes one AdamW step on the CTC loss. Validation: the held-out error rate
(PER for phonemes, CER for characters) on up to ``data.eval_items`` utterances of ``valid``; every
exported model folder (``model_type: ctc_judge``) carries the rate on all of ``valid`` and ``test``.
``ctc:RUN_DIR`` or ``ctc:CHECKPOINT`` loads it as a judge.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from einops import rearrange
from torch import nn

from semlat.data.datasets import ListDataset
from semlat.data.manifest import Manifest
from semlat.errors import ConfigError, DataError
from semlat.evaluation.ctc_judge import (
    BLANK,
    UNITS,
    CTCJudgeConfig,
    CTCJudgeModel,
    Features,
    FrontEnd,
    Item,
    ModelConfig,
    augment,
    collate_items,
    evaluate,
    load_split,
    min_frames,
    source_text,
    tokenize,
)
from semlat.training.logging import RunLogger
from semlat.training.settings import EMAConfig, OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe, Trainer


@dataclass
class JudgeModelConfig:
    """Sizes of the convolutional recognizer (about 2 M parameters with the defaults)."""

    channels: int = 256
    layers: int = 6
    kernel_size: int = 5
    dropout: float = 0.1


@dataclass
class JudgeDataConfig:
    """The manifest, the units to recognise, and the batches."""

    train: str = "data/manifest.jsonl"
    train_split: str = "train"
    units: str = "phonemes"
    max_seconds: float = 20.0
    batch_size: int = 16
    eval_items: int = 64

    def validate(self, where: str) -> None:
        if self.units not in UNITS:
            raise ConfigError(f"{where}.units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if self.batch_size < 1 or self.max_seconds <= 0:
            raise ConfigError(f"{where}.batch_size and max_seconds must be positive")


@dataclass
class AugmentConfig:
    """SpecAugment: ``freq_masks`` bands of up to ``freq_mask_width`` and ``time_masks`` spans of up to
    ``time_mask_width`` frames (at most a tenth of the utterance) zeroed per item."""

    freq_masks: int = 2
    freq_mask_width: int = 10
    time_masks: int = 2
    time_mask_width: int = 20


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01, grad_clip=5.0, warmup_steps=100,
                           schedule="cosine", min_lr_ratio=0.05)


def _train() -> TrainConfig:
    return TrainConfig(max_steps=700, ema=EMAConfig(enabled=False), log_every=20, valid_every=200,
                       checkpoint_every=700, num_workers=0)


@dataclass
class JudgeRecipeConfig:
    """Everything ``semlat train`` needs for the offline judge."""

    recipe: str = "judge"
    run_dir: str = "runs/judge"
    model: JudgeModelConfig = field(default_factory=JudgeModelConfig)
    data: JudgeDataConfig = field(default_factory=JudgeDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    train: TrainConfig = field(default_factory=_train)

    def validate(self, where: str) -> None:
        if self.recipe != "judge":
            raise ConfigError(f"recipe must be 'judge' for this config, got {self.recipe!r}")


class JudgeRecipe(Recipe):
    """CTC on whole utterances."""

    name = "judge"
    Config = JudgeRecipeConfig
    exported = "model"

    def __init__(self, config: JudgeRecipeConfig, trainer: Trainer):
        super().__init__(config, trainer)
        data = config.data
        self.manifest_path = Path(data.train).resolve()
        full = Manifest.read(self.manifest_path)
        train = full.split(data.train_split)
        sources = [source_text(u, data.units) for u in train]
        if not any(sources):
            field_name = "phonemes" if data.units == "phonemes" else "text"
            raise DataError(f"{self.manifest_path}: the {data.train_split} split has no utterance with {field_name!r}")
        self.front = FrontEnd()
        features = Features(self.front)
        self.vocab = [BLANK, *sorted({t for s in sources if s for t in tokenize(s, data.units)})]
        index = {t: i for i, t in enumerate(self.vocab)}
        show = config.train.progress and trainer.dist.is_main
        items = load_split(train, data.units, features, index, data.max_seconds, show, "loading train")
        # CTC needs T' >= L + repeats: drop utterances whose targets cannot fit their frames
        stride = ModelConfig(vocab_size=1).stride
        self.train_items = [it for it in items if it.targets and
                            (it.features.shape[-1] - 1) // stride + 1 >= min_frames(it.targets)]
        if not self.train_items:
            raise DataError(f"{self.manifest_path}: no usable training utterance")
        self.held = {name: load_split(full.split(name), data.units, features, None, data.max_seconds, show,
                                      f"loading {name}") for name in ("valid", "test")}
        self.metric = "per" if data.units == "phonemes" else "cer"
        self.label = f"ctc-{data.units} (offline, trained on {self.manifest_path})"

    def judge_config(self) -> CTCJudgeConfig:
        m = self.config.model
        sizes = ModelConfig(vocab_size=len(self.vocab), n_mels=self.front.n_mels, channels=m.channels,
                            layers=m.layers, kernel_size=m.kernel_size, dropout=m.dropout)
        return CTCJudgeConfig(units=self.config.data.units, vocab=list(self.vocab), label=self.label,
                              front_end=dataclasses.asdict(self.front), model=dataclasses.asdict(sizes))

    # ---------------------------------------------------------------- modules and data
    def build_modules(self) -> dict[str, nn.Module]:
        return {"model": CTCJudgeModel(self.judge_config())}

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return self.config.optim

    def train_dataset(self):
        return ListDataset(self.train_items), collate_items

    # ---------------------------------------------------------------- one step
    def train_step(self, batches: Sequence[Any], step: int) -> dict[str, float]:
        device = self.trainer.device
        model = self.trainer.module("model")
        ctc = nn.CTCLoss(blank=0, zero_infinity=True)
        losses = []
        with self.trainer.optimizer_step("model"):
            for index, (feats, frames, targets, target_lengths) in self.trainer.micro_batches(batches, "model"):
                rng = np.random.default_rng([self.config.train.seed, step, self.trainer.dist.rank, index])
                feats = augment(feats, frames, self.config.augment, rng)
                with self.trainer.autocast():
                    log_probs, lengths = model(feats.to(device), frames.to(device))
                loss = ctc(rearrange(log_probs.float(), "b t v -> t b v"), targets.to(device), lengths,
                           target_lengths.to(device))
                (loss / len(batches)).backward()
                losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}

    # ---------------------------------------------------------------- validation and export
    def _rate(self, model: nn.Module, items: list[Item]) -> float | None:
        if not items:
            return None
        rate = evaluate(model.recognizer, items, self.vocab, self.config.data.batch_size, self.trainer.device)
        return None if math.isnan(rate) else round(rate, 4)

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        items = self.held["valid"][:self.config.data.eval_items] or self.held["test"][:self.config.data.eval_items]
        rate = self._rate(model, items)
        return {} if rate is None else {self.metric: rate}

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        heldout = {name: {self.metric: self._rate(model, items), "utterances": len(items)}
                   for name, items in self.held.items()}
        extra = {"label": self.label, "units": self.config.data.units, "metric": self.metric, "heldout": heldout,
                 "parameters": sum(p.numel() for p in model.parameters()), "manifest": str(self.manifest_path),
                 "train_utterances": len(self.train_items)}
        return "ctc_judge", dataclasses.asdict(model.config), extra
