"""Recipe ``ar_tts``: the autoregressive latent TTS (:mod:`semlat.generation.ar_tts`) on any latent store.

Data, vocabulary, batches, streaming and fine-tuning are the ``tts`` recipe's (:class:`TTSRecipe`: a latent
store from ``semlat encode``, its statistics saved in the model, frame-budget batches over duration buckets,
``data.stream`` for stores read shard by shard, ``train.init_from`` with vocabulary extension); only the model
and its objective differ: teacher-forced next-patch flow matching plus the stop classifier, with noisy
context patches and text dropped for guidance (:meth:`~semlat.generation.ar_tts.ARTTSModel.forward`).
``conditioning: durations`` (with ``data.alignments`` or a store encoded with ``--alignments``, as for the
``tts`` recipe) gives the model frame-aligned
text from forced alignments instead of a text prefix, and trains its duration predictor in the same steps;
``frame_split`` sets the alignment's positions per latent frame (4 for the 5.4 Hz DC-VAE, as for the DiT).
Validation: the loss on a fixed set of held-out items with fixed draws (clean context, no dropping).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from semlat.errors import ConfigError
from semlat.generation.ar_tts import ARArch, ARTTSConfig, ARTTSModel
from semlat.training.logging import RunLogger
from semlat.training.recipes.duration import DurationModelConfig
from semlat.training.recipes.tts import TTSDataConfig, TTSRecipe, check_conditioning
from semlat.training.settings import EMAConfig, OptimizerConfig, TrainConfig


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.01, grad_clip=1.0, warmup_steps=2000,
                           schedule="cosine", min_lr_ratio=0.1)


def _train() -> TrainConfig:
    return TrainConfig(max_steps=200_000, ema=EMAConfig(decay=0.9999, start_step=100, every=10),
                       checkpoint_every=10000, valid_every=2000)


@dataclass
class ARTTSRecipeConfig:
    """Everything ``semlat train`` needs for an autoregressive latent TTS."""

    recipe: str = "ar_tts"
    run_dir: str = "runs/ar_tts"
    conditioning: str = "f5"
    frame_split: int = 1
    duration: DurationModelConfig = field(default_factory=DurationModelConfig)
    duration_weight: float = 1.0
    model: ARArch = field(default_factory=ARArch)
    data: TTSDataConfig = field(default_factory=TTSDataConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    train: TrainConfig = field(default_factory=_train)

    def validate(self, where: str) -> None:
        if self.recipe != "ar_tts":
            raise ConfigError(f"recipe must be 'ar_tts' for this config, got {self.recipe!r}")
        check_conditioning(self.conditioning)
        if self.frame_split < 1:
            raise ConfigError(f"frame_split must be >= 1, got {self.frame_split}")
        self.model.validate(f"{where}.model")


class ARTTSRecipe(TTSRecipe):
    """Next-patch flow matching with a stop classifier, on the ``tts`` recipe's data."""

    name = "ar_tts"
    Config = ARTTSRecipeConfig
    model_type = "ar_tts"
    loss_parts = ("flow_loss", "stop_loss", "duration_loss")

    def tts_config(self) -> ARTTSConfig:
        cfg = self.config
        return ARTTSConfig(**dataclasses.asdict(cfg.model), units=cfg.data.units, vocab=list(self.vocab.tokens),
                           language=cfg.data.language, space=str(self.space or ""), latent_dim=self.store.dim,
                           frame_rate=self.store.frame_rate, conditioning=cfg.conditioning, frame_split=cfg.frame_split,
                           duration=dataclasses.asdict(cfg.duration) if cfg.conditioning == "durations" else {},
                           duration_weight=cfg.duration_weight)

    def build_modules(self) -> dict[str, nn.Module]:
        model = ARTTSModel(self.tts_config())
        model.set_stats(*self.store.stats)
        longest = self.config.data.max_seconds * self.store.frame_rate / self.config.model.patch
        if longest + 1 > model.config.max_positions:
            raise ConfigError(f"data.max_seconds={self.config.data.max_seconds} makes {int(longest)} patches, more "
                              f"than model.max_positions={model.config.max_positions} leaves for text")
        return {"model": model}

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        batch = self._valid_batch()
        if batch is None:
            return {}
        inputs = self._inputs(model, batch)
        latents, lens = inputs["latents"], inputs["lens"]
        k = model.config.patch
        patches = model.patches(latents)
        valid = int(torch.div(lens + k - 1, k, rounding_mode="floor").sum())
        generator = torch.Generator().manual_seed(self.config.train.seed)
        repeats = model.config.head_repeats
        draws = {"drop": torch.zeros(len(lens), dtype=torch.bool), "sigma": torch.zeros(len(lens)),
                 "prompt": torch.zeros(len(lens)),
                 "noise": torch.zeros_like(patches),
                 "t": torch.linspace(0.05, 0.95, repeats * valid).reshape(repeats, valid),
                 "x0": torch.randn(repeats, valid, patches.shape[-1], generator=generator)}
        draws = {key: value.to(latents.device) for key, value in draws.items()}
        loss, details = model.loss(**inputs, draws=draws)
        return {"loss": float(loss), **{key: float(details[key]) for key in self.loss_parts if key in details}}

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        _, config, extra = super().export(model)
        return "ar_tts", config, extra
