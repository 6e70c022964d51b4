"""Recipe ``tta``: text-to-audio flow matching (:mod:`semlat.generation.tta`) on any latent space's latents.

Data: a latent store written by ``semlat encode MODEL manifest.jsonl LATENTS/`` from a captioned manifest (the
store's items carry ``caption``; its index the per-channel statistics, which normalise the latents and are
saved in the model). Items longer than ``data.max_seconds`` are cropped at random to that window (the model's
``max_seconds``); shorter ones are padded and masked. The frozen caption encoder (``text_encoder``: a local
transformers T5 folder) encodes every distinct caption once, before the first step. Each step: the flow
objective with logit-normal times and caption dropout on a batch of ``data.batch_size`` items. Validation: the
loss on fixed held-out items with fixed draws (``t`` spread over (0, 1), no dropout).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semlat.data.store import TensorStore
from semlat.data.store_dataset import StoreDataset, collate_tensors
from semlat.data.store_stream import StoreBatches, StoreStream, StoreStreamItems
from semlat.errors import ConfigError, DataError
from semlat.generation.text_encoder import T5CaptionEncoder
from semlat.generation.tta import TTAConfig, TTAFlow, TTAModel
from semlat.generation.udit import UDiTConfig
from semlat.training.logging import RunLogger
from semlat.training.settings import EMAConfig, OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe, Trainer


@dataclass
class TTADataConfig:
    """The latent stores, the window and the batches."""

    latents: str = "latents/train"
    valid_latents: str | None = None
    max_seconds: float = 10.0
    batch_size: int = 32
    valid_items: int = 8
    #: read ``latents`` shard by shard (never its whole index) and encode each batch's captions as it comes,
    #: instead of every distinct caption up front: for corpora whose captions' features do not fit in memory
    stream: bool = False

    def validate(self, where: str) -> None:
        if self.max_seconds <= 0 or self.batch_size < 1:
            raise ConfigError(f"{where}.max_seconds and batch_size must be positive")


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01, grad_clip=1.0, warmup_steps=5000,
                           schedule="cosine", min_lr_ratio=0.0)


def _train() -> TrainConfig:
    return TrainConfig(max_steps=400_000, ema=EMAConfig(decay=0.9999, start_step=1000, every=10),
                       checkpoint_every=20000, valid_every=5000)


@dataclass
class TTARecipeConfig:
    """Everything ``semlat train`` needs for a text-to-audio model."""

    recipe: str = "tta"
    run_dir: str = "runs/tta"
    text_encoder: str = "models/flan-t5-large"
    model: UDiTConfig = field(default_factory=UDiTConfig)
    flow: TTAFlow = field(default_factory=TTAFlow)
    data: TTADataConfig = field(default_factory=TTADataConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    train: TrainConfig = field(default_factory=_train)

    def validate(self, where: str) -> None:
        if self.recipe != "tta":
            raise ConfigError(f"recipe must be 'tta' for this config, got {self.recipe!r}")


def _captioned(item: dict[str, Any]) -> bool:
    return bool((item.get("caption") or "").strip())


def captioned_ids(store: TensorStore) -> list[str]:
    """The ids of a store's items that have a non-empty caption."""
    return [item["id"] for item in store.items if (item.get("caption") or "").strip()]


class TTARecipe(Recipe):
    """Flow matching on latents with caption cross-attention."""

    name = "tta"
    Config = TTARecipeConfig
    exported = "model"

    def __init__(self, config: TTARecipeConfig, trainer: Trainer):
        super().__init__(config, trainer)
        data = config.data
        self.store = StoreStream(data.latents) if data.stream else TensorStore(data.latents)
        if self.store.stats is None:
            raise DataError(f"{data.latents}: has no statistics (encode it again with this semlat)")
        if self.store.dim != config.model.in_chans:
            raise ConfigError(f"{data.latents}: latents are {self.store.dim}-d but model.in_chans is "
                              f"{config.model.in_chans}")
        self.ids = [] if data.stream else captioned_ids(self.store)
        if not (self.ids or data.stream and any(_captioned(i) for i in self.store.items(self.store.shards[0]))):
            raise DataError(f"{data.latents}: no item has a caption (encode a captioned manifest, such as "
                            "`semlat data demo-events`)")
        self.window = max(1, math.floor(data.max_seconds * self.store.frame_rate))
        self.valid_store = TensorStore(data.valid_latents) if data.valid_latents else (
            None if data.stream else self.store)
        encoder = T5CaptionEncoder(config.text_encoder, device=trainer.device)
        self.text_folder, self.text_dim, self.text_label = encoder.folder, encoder.dim, encoder.label
        # the frozen encoder runs once, here, on every distinct caption (then it is let go); streaming keeps it and
        # encodes each batch's captions as they come (only the validation captions are kept)
        self.encoder = encoder if data.stream else None
        stores = [s for s in (None if data.stream else self.store, self.valid_store) if s is not None]
        captions = {store.item(i)["caption"] for store in stores for i in captioned_ids(store)}
        if data.stream and self.valid_store is None:
            captions = {i["caption"] for i in self._first_items()}
        self.captions = {caption: encoder([caption])[0][0].cpu() for caption in sorted(captions)}  # -> [L, d]
        self.space = (self.store.settings if data.stream else self.store.index).get("model")
        self._valid: dict[str, Any] | None = None

    # ---------------------------------------------------------------- model and data
    def tta_config(self) -> TTAConfig:
        cfg = self.config
        return TTAConfig(backbone=cfg.model, text_dim=self.text_dim, text_encoder=str(self.text_folder),
                         space=str(self.space or ""), frame_rate=self.store.frame_rate,
                         max_seconds=self.window / self.store.frame_rate, flow=dataclasses.replace(cfg.flow))

    def build_modules(self) -> dict[str, nn.Module]:
        model = TTAModel(self.tta_config())
        mean, std = self.store.stats
        model.set_stats(mean, std)
        return {"model": model}

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return self.config.optim

    def _dataset(self, store: TensorStore, ids: list[str]) -> StoreDataset:
        return StoreDataset(store, ids, normalize=False, crop_frames=self.window, fields=("caption",))

    def _first_items(self) -> list[dict[str, Any]]:
        """Streaming without ``valid_latents``: the first captioned items of the first shard validate."""
        chosen = [i for i in self.store.items(self.store.shards[0]) if _captioned(i)]
        return chosen[: self.config.data.valid_items]

    def train_dataset(self):
        if self.config.data.stream:
            return StoreStreamItems(self.store, fields=("caption",), crop_frames=self.window), self.collate
        return self._dataset(self.store, self.ids), self.collate

    def batch_sampler(self, dataset):
        if not self.config.data.stream:
            return None
        dist = self.trainer.dist
        return StoreBatches(self.store, _captioned, 10**12, max_batch_size=self.trainer.batch_per_rank,
                            seed=self.config.train.seed, rank=dist.rank, world_size=dist.world_size)

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = collate_tensors(items)
        if any(item["caption"] not in self.captions for item in items):  # streaming: encoded at the step
            batch["captions"] = [item["caption"] for item in items]
            return batch
        hidden = [self.captions[item["caption"]] for item in items]
        width = max(h.shape[0] for h in hidden)
        batch["hidden"] = torch.zeros(len(items), width, hidden[0].shape[-1])
        batch["text_mask"] = torch.zeros(len(items), width, dtype=torch.bool)
        for row, h in enumerate(hidden):
            batch["hidden"][row, : h.shape[0]] = h
            batch["text_mask"][row, : h.shape[0]] = True
        return batch

    def _inputs(self, model: TTAModel, batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        if "hidden" not in batch:
            with torch.no_grad():
                hidden, mask = self.encoder(batch["captions"])
            batch = {**batch, "hidden": hidden, "text_mask": mask}
        latents = self.trainer.to_device(batch["tensor"])
        lengths = batch["frames"].to(latents.device)
        valid = torch.arange(latents.shape[-1], device=latents.device)[None] < lengths[:, None]
        normed = model.normalize(latents) * valid[:, None]
        return normed, lengths, self.trainer.to_device(batch["hidden"]), self.trainer.to_device(batch["text_mask"])

    # ---------------------------------------------------------------- one step
    def train_step(self, batches: Sequence[Any], step: int) -> dict[str, float]:
        model = self.trainer.module("model")
        raw = self.trainer.unwrapped("model")
        losses = []
        with self.trainer.optimizer_step("model"):
            for _, batch in self.trainer.micro_batches(batches, "model"):
                inputs = self._inputs(raw, batch)
                with self.trainer.autocast():
                    loss = model(*inputs)  # TTAModel.loss through DDP
                (loss / len(batches)).backward()
                losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}

    # ---------------------------------------------------------------- validation and export
    def _valid_batch(self) -> dict[str, Any]:
        if self._valid is None:
            if self.valid_store is None:  # streaming: the first captioned items of the first shard
                chosen = self._first_items()
                items = StoreStreamItems(self.store, fields=("caption",), crop_frames=self.window,
                                         items={(i["shard"], i["id"]): i for i in chosen})
                self._valid = self.collate([items[(i["shard"], i["id"], n)] for n, i in enumerate(chosen)])
                return self._valid
            ids = captioned_ids(self.valid_store)[: self.config.data.valid_items]
            dataset = self._dataset(self.valid_store, ids)  # crops drawn from each index's fixed seed
            self._valid = self.collate([dataset[i] for i in range(len(dataset))])
        return self._valid

    @torch.no_grad()
    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        batch = self._valid_batch()
        latents, lengths, hidden, mask = self._inputs(model, batch)
        generator = torch.Generator().manual_seed(self.config.train.seed)
        b = latents.shape[0]
        draws = {"x0": torch.randn(latents.shape, generator=generator).to(latents.device),
                 "t": torch.linspace(0.05, 0.95, b, device=latents.device),
                 "drop": torch.zeros(b, dtype=torch.bool, device=latents.device)}
        return {"loss": float(model.loss(latents, lengths, hidden, mask, draws=draws))}

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        extra = {**self.store.space_info, "space": str(self.space or ""),
                 "latents": str(Path(self.config.data.latents).resolve()), "text_encoder_label": self.text_label,
                 "captions": None if self.config.data.stream else len(self.captions),
                 "train_items": None if self.config.data.stream else len(self.ids)}
        return "tta", dataclasses.asdict(model.config), extra
