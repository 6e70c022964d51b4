"""Recipe ``tts``: an F5-TTS-style flow-matching backbone on the latents of any latent space.

Data: a latent store written by ``semlat encode MODEL manifest.jsonl LATENTS/`` (its items carry the text and
phonemes; its index the per-channel statistics, which normalise the latents and are saved in the model).
The vocabulary is every unit of the store's texts (characters by F5-TTS's rules, or espeak-ng phonemes
from the store's ``phonemes``). Batches are frame budgets over duration buckets
(:class:`~semlat.data.samplers.FrameBudgetBatchSampler`: ``data.max_frames`` padded frames per rank, at
most ``data.batch_size / processes`` utterances). Each step is the infilling objective
(:func:`~semlat.generation.flow.infilling_loss`: 70-100 % spans, CFG dropping of audio 0.3 and audio + text
0.2). Validation: the loss on a fixed set of held-out items with fixed draws.

``conditioning: durations`` (:mod:`semlat.generation.aligned`) trains the duration-aligned TTS: each item's
token durations come from ``data.alignments`` (forced alignments of the manifest the store was encoded from,
``semlat judge align``); items without an alignment are left out (counted in the log), and an alignment over
other symbols than the item's phonemes is a one-line error naming the file and item.
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
from einops import rearrange
from torch import nn

from semlat.checkpoints import CONFIG_NAME, read_model_meta, resolve_model_folder
from semlat.data.alignments import read_alignments
from semlat.data.samplers import FrameBudgetBatchSampler
from semlat.data.store import TensorStore
from semlat.data.store_dataset import StoreDataset, collate_tensors
from semlat.data.store_stream import StoreBatches, StoreStream, StoreStreamItems
from semlat.errors import ConfigError, DataError
from semlat.generation.aligned import bounded, token_durations
from semlat.generation.dit import DiTConfig
from semlat.generation.flow import FlowConfig
from semlat.generation.tts import CONDITIONINGS, TTSConfig, TTSModel
from semlat.text.frontend import Vocab, char_tokens, ipa_tokens
from semlat.training.logging import RunLogger
from semlat.training.recipes.duration import DurationModelConfig
from semlat.training.settings import EMAConfig, OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe, Trainer


@dataclass
class TTSDataConfig:
    """The latent stores and the batches."""

    latents: str = "latents/train"
    valid_latents: str | None = None
    alignments: str | None = None  # forced alignments (durations conditioning)
    units: str = "chars"
    language: str = "en-us"
    max_frames: int = 38400
    batch_size: int = 64
    buckets: int = 10
    min_seconds: float = 0.3
    max_seconds: float = 30.0
    valid_items: int = 8
    #: read ``latents`` shard by shard (never its whole index; each rank its own shards, frame-budget batches
    #: from a pool, exact resume): for stores too large for every rank to index (f5 conditioning)
    stream: bool = False

    def validate(self, where: str) -> None:
        if self.units not in ("chars", "phonemes"):
            raise ConfigError(f"{where}.units must be chars or phonemes, got {self.units!r}")
        if self.max_frames < 1 or self.batch_size < 1:
            raise ConfigError(f"{where}.max_frames and batch_size must be positive")


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=7.5e-5, betas=(0.9, 0.999), weight_decay=0.01, grad_clip=1.0, warmup_steps=20000,
                           schedule="cosine", min_lr_ratio=0.0)


def _train() -> TrainConfig:
    return TrainConfig(max_steps=1_200_000, ema=EMAConfig(decay=0.9999, start_step=100, every=10),
                       checkpoint_every=50000, valid_every=5000)


@dataclass
class TTSRecipeConfig:
    """Everything ``semlat train`` needs for a latent TTS model."""

    recipe: str = "tts"
    run_dir: str = "runs/tts"
    backbone: str = "DiT"
    frame_split: int = 1
    conditioning: str = "f5"
    duration: DurationModelConfig = field(default_factory=DurationModelConfig)
    duration_weight: float = 1.0
    #: fine-tuning: keep the text encoder (the token embedding and its ConvNeXt blocks) as ``train.init_from``
    #: left it (for new voices or data in the release's language; a store with tokens the release lacks needs
    #: the encoder to learn their embeddings, so freeze_text refuses it)
    freeze_text: bool = False
    model: DiTConfig = field(default_factory=DiTConfig.v1_small)
    flow: FlowConfig = field(default_factory=FlowConfig)
    data: TTSDataConfig = field(default_factory=TTSDataConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    train: TrainConfig = field(default_factory=_train)

    def validate(self, where: str) -> None:
        if self.recipe != "tts":
            raise ConfigError(f"recipe must be 'tts' for this config, got {self.recipe!r}")
        if self.backbone != "DiT":
            raise ConfigError("the tts recipe trains the DiT backbone (backbone: DiT)")
        check_conditioning(self.conditioning)


def check_conditioning(conditioning: str) -> None:
    """One-line ConfigError unless ``conditioning`` is known (both TTS recipes' configs); whether ``durations``
    has its alignments (``data.alignments`` or the store's items' own segments) the recipe checks on the store."""
    if conditioning not in CONDITIONINGS:
        raise ConfigError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")


def _tokens(item: dict[str, Any], units: str) -> list[str] | None:
    if units == "chars":
        return char_tokens(item["text"]) if item.get("text") else None
    return ipa_tokens(item["phonemes"]) if item.get("phonemes") else None


#: The text encoder's parameters in a TTS model (token embedding and ConvNeXt blocks), and its embedding table.
TEXT_ENCODER = "transformer.text_embed."
TEXT_EMBEDDING = "text_embed.text_embed.weight"


class TTSRecipe(Recipe):
    """Flow matching on latents with text."""

    name = "tts"
    Config = TTSRecipeConfig
    exported = "model"
    #: the exported model's type, its text embedding table's key (vocabulary extension) and the loss parts logged
    model_type = "tts"
    text_embedding = TEXT_EMBEDDING
    loss_parts: tuple[str, ...] = ("flow_loss", "duration_loss")

    def __init__(self, config: TTSRecipeConfig, trainer: Trainer):
        super().__init__(config, trainer)
        data = config.data
        durations = config.conditioning == "durations"
        if data.stream and durations and data.alignments:
            raise ConfigError("data.stream reads the store shard by shard, so each item's alignment must travel in its "
                              "shard: encode the store with semlat encode --alignments and leave data.alignments unset")
        #: durations from the store items' own ``segments`` (semlat encode --alignments) rather than a file
        self.store_segments = durations and not data.alignments
        self.store = StoreStream(data.latents) if data.stream else TensorStore(data.latents)
        if self.store.stats is None:
            raise DataError(f"{data.latents}: has no statistics (encode it again with this semlat)")
        self.ids = []  # (streaming: not kept; the batches read each shard's items)
        token_lists = []
        items = (item for shard in self.store.shards for item in self.store.items(shard)) if data.stream \
            else self.store.items
        tokens_seen: set[str] = set()
        accepted = unaligned = 0
        for item in items:  # (streaming: one shard's header at a time; only the set of tokens is kept)
            if not self._usable(item):
                continue
            if self.store_segments and not item.get("segments"):
                unaligned += 1
                continue
            accepted += 1
            tokens = _tokens(item, data.units)
            if data.stream:
                tokens_seen.update(tokens)
            else:
                self.ids.append(item["id"])
                token_lists.append(tokens)
        if not accepted and not unaligned:
            field_name = "text" if data.units == "chars" else "phonemes"
            raise DataError(f"{data.latents}: no item with {field_name!r} between {data.min_seconds} and "
                            f"{data.max_seconds} s (encode a manifest that has them)")
        if not accepted:
            raise ConfigError(f"conditioning: durations needs data.alignments (forced alignments of the store's "
                              f"manifest: semlat judge align) or a store whose items carry them (semlat encode "
                              f"--alignments); none of the {unaligned} usable items of {data.latents} does")
        self.vocab = self._vocabulary([sorted(tokens_seen)] if data.stream else token_lists)
        self.space = (self.store.settings if data.stream else self.store.index).get("model")
        self.durations: dict[str, list[int]] = {}
        if durations and not data.stream:
            self.durations = self._durations(self.store, self.ids, token_lists, self._alignments(self.store))
            unaligned += len(self.ids) - len(self.durations)
            self.ids = [i for i in self.ids if i in self.durations]
            if not self.ids:
                raise DataError(f"{data.alignments}: aligns none of the {len(token_lists)} items of {data.latents}")
        if unaligned and trainer.dist.rank == 0:
            where = data.alignments or "the store's items"
            print(f"[tts] {unaligned} item(s) of {data.latents} have no alignment in {where}; training on the "
                  f"{accepted if data.stream else len(self.ids)} that do")
        self._valid = None

    def _usable(self, item: dict[str, Any]) -> bool:
        data = self.config.data
        seconds = int(item["frames"]) / self.store.frame_rate
        return bool(_tokens(item, data.units)) and data.min_seconds <= seconds <= data.max_seconds

    def accept(self, item: dict[str, Any]) -> bool:
        """Whether a store item is trained on: it has the units' text and a length within the limits (and, for
        durations from the store, its ``segments``)."""
        return self._usable(item) and (not self.store_segments or bool(item.get("segments")))

    def _vocabulary(self, token_lists: list[list[str]]) -> Vocab:
        """The store's tokens; when fine-tuning (``train.init_from`` a TTS), the release's vocabulary first, in
        its order, with the store's new tokens appended (F5-TTS's vocabulary extension: old ids keep their
        embeddings)."""
        built = Vocab.build(token_lists)
        self.added_tokens: list[str] = []
        init = self.config.train.init_from
        folder = resolve_model_folder(init) if init else None
        if folder is None or not (folder / CONFIG_NAME).is_file():
            return built  # (a bad init_from is the trainer's one-line error)
        meta = read_model_meta(folder)
        if meta.get("model_type") != self.model_type:
            return built
        release, units = meta["config"]["vocab"], meta["config"].get("units")
        if units != self.config.data.units:
            raise ConfigError(f"train.init_from={folder}: its vocabulary is of {units}, data.units is "
                              f"{self.config.data.units}")
        known = set(release)
        self.added_tokens = [t for t in built.tokens if t not in known]
        return Vocab(list(release) + self.added_tokens)

    def adapt_init_state(self, name: str, state: dict[str, torch.Tensor], meta: dict[str, Any],
                         module: nn.Module) -> dict[str, torch.Tensor]:
        """The release's token embedding with rows appended for the added tokens (their fresh initial values)."""
        state = dict(state)
        own = module.state_dict()
        for key, value in state.items():
            if key.endswith(self.text_embedding) and key in own and value.shape[0] < own[key].shape[0] \
                    and value.shape[1:] == own[key].shape[1:]:
                grown = own[key].detach().clone()
                grown[: value.shape[0]] = value
                state[key] = grown
        return state

    def _alignments(self, store: TensorStore) -> dict[str, Any]:
        """``{id: segments}``: the store items' own (``semlat encode --alignments``) or ``data.alignments``'."""
        if self.store_segments:
            return {item["id"]: item["segments"] for item in store.items if item.get("segments")}
        return read_alignments(self.config.data.alignments)

    def _durations(self, store: TensorStore, ids: list[str], token_lists: list[list[str]],
                   aligned: dict[str, Any]) -> dict[str, list[int]]:
        """Backbone positions of each bounded token, from ``aligned`` (``{id: segments}``: ``data.alignments`` or
        the items' own), for the items it aligns."""
        out = {}
        for item_id, tokens in zip(ids, token_lists, strict=True):
            if item_id in aligned:
                out[item_id] = self._token_durations(tokens, aligned[item_id], store.frames(item_id), item_id,
                                                     str(store.folder))
        return out

    def _token_durations(self, tokens: list[str], segments: Sequence[Any], frames: int, item_id: str,
                         store: str) -> list[int]:
        where = f"{self.config.data.alignments}: {item_id}" if self.config.data.alignments \
            else f"{store}: item {item_id}"
        rate = self.store.frame_rate * self.config.frame_split
        return token_durations(tokens, [tuple(s) for s in segments], rate, frames * self.config.frame_split,
                               where=where)

    # ---------------------------------------------------------------- model and data
    def tts_config(self) -> TTSConfig:
        cfg = self.config
        arch = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in ("mel_dim", "text_num_embeds")}
        return TTSConfig(backbone=cfg.backbone, arch=arch, units=cfg.data.units, vocab=list(self.vocab.tokens),
                         language=cfg.data.language, space=str(self.space or ""), latent_dim=self.store.dim,
                         frame_rate=self.store.frame_rate,
                         max_frames=2 * math.ceil(cfg.data.max_seconds * self.store.frame_rate),
                         flow=dataclasses.replace(cfg.flow, frac_lengths=tuple(cfg.flow.frac_lengths)),
                         frame_split=cfg.frame_split, conditioning=cfg.conditioning,
                         duration=dataclasses.asdict(cfg.duration) if cfg.conditioning == "durations" else {},
                         duration_weight=cfg.duration_weight)

    def build_modules(self) -> dict[str, nn.Module]:
        model = TTSModel(self.tts_config())
        mean, std = self.store.stats
        model.set_stats(mean, std)
        if self.config.freeze_text:
            if not self.config.train.init_from:
                raise ConfigError("freeze_text keeps a released text encoder: it needs train.init_from")
            if self.added_tokens:
                raise ConfigError(f"freeze_text: the store has {len(self.added_tokens)} token(s) the release lacks "
                                  f"({' '.join(self.added_tokens[:10])}); their embeddings must learn (drop freeze_text)")
            for key, param in model.named_parameters():
                if key.startswith(TEXT_ENCODER):
                    param.requires_grad_(False)
        return {"model": model}

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return self.config.optim

    def _dataset(self, store: TensorStore, ids: list[str]) -> StoreDataset:
        return StoreDataset(store, ids, normalize=False, fields=("text", "phonemes"))

    def _fields(self) -> tuple[str, ...]:
        return ("text", "phonemes", "segments") if self.store_segments else ("text", "phonemes")

    def train_dataset(self):
        if self.config.data.stream:
            return StoreStreamItems(self.store, fields=self._fields()), self.collate
        return self._dataset(self.store, self.ids), self.collate

    def batch_sampler(self, dataset: StoreDataset) -> FrameBudgetBatchSampler | StoreBatches:
        data, dist = self.config.data, self.trainer.dist
        if data.stream:
            return StoreBatches(self.store, self.accept, data.max_frames,
                                max_batch_size=max(1, data.batch_size // dist.world_size),
                                seed=self.config.train.seed, rank=dist.rank, world_size=dist.world_size)
        return FrameBudgetBatchSampler(dataset.durations, data.max_frames, self.store.frame_rate,
                                       max_batch_size=max(1, data.batch_size // dist.world_size),
                                       num_buckets=data.buckets, seed=self.config.train.seed, rank=dist.rank,
                                       world_size=dist.world_size)

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = collate_tensors(items)
        units = self.config.data.units
        if self.config.conditioning == "durations":
            rows = [self.vocab.ids(bounded(_tokens(it, units) or [])) for it in items]
            counts = [self.durations[it["id"]] if it["id"] in self.durations else  # (streaming: from the item)
                      self._token_durations(_tokens(it, units) or [], it["segments"], int(it["frames"]), it["id"],
                                            str(self.config.data.latents)) for it in items]
            width = max(len(r) for r in rows)
            batch["token_durations"] = torch.tensor([c + [0] * (width - len(c)) for c in counts], dtype=torch.long)
        else:
            rows = [self.vocab.ids(_tokens(it, units) or [" "]) for it in items]
            width = max(len(r) for r in rows)
        batch["text_ids"] = torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)
        return batch

    # ---------------------------------------------------------------- one step
    def _inputs(self, model: TTSModel, batch: dict[str, Any]) -> dict[str, Any]:
        """The model's arguments: normalised time-major latents (zero past each item's frames), text ids,
        lengths, and per-token durations with ``durations`` conditioning."""
        latents = rearrange(self.trainer.to_device(batch["tensor"]), "b d t -> b t d")
        lens = batch["frames"].to(latents.device)
        valid = torch.arange(latents.shape[1], device=latents.device)[None] < lens[:, None]
        normed = model.normalize(latents) * valid[..., None]
        inputs = {"latents": normed, "text": batch["text_ids"].to(latents.device), "lens": lens}
        if "token_durations" in batch:
            inputs["token_durations"] = batch["token_durations"].to(latents.device)
        return inputs

    def train_step(self, batches: Sequence[Any], step: int) -> dict[str, float]:
        model = self.trainer.module("model")
        raw = self.trainer.unwrapped("model")
        losses: dict[str, list[float]] = {}
        with self.trainer.optimizer_step("model"):
            for _, batch in self.trainer.micro_batches(batches, "model"):
                with self.trainer.autocast():
                    loss, details = model(**self._inputs(raw, batch))  # TTSModel.forward through DDP
                (loss / len(batches)).backward()
                losses.setdefault("loss", []).append(float(loss.detach()))
                for key in self.loss_parts:
                    if key in details:
                        losses.setdefault(key, []).append(float(details[key]))
        return {key: float(np.mean(values)) for key, values in losses.items()}

    # ---------------------------------------------------------------- validation and export
    def _valid_batch(self) -> dict[str, Any] | None:
        if self._valid is None:
            data = self.config.data
            if data.stream and not data.valid_latents:  # the first items of the first shard
                chosen = [i for i in self.store.items(self.store.shards[0]) if self.accept(i)][: data.valid_items]
                items = StoreStreamItems(self.store, fields=self._fields(),
                                         items={(i["shard"], i["id"]): i for i in chosen})
                self._valid = self.collate([items[(i["shard"], i["id"], 0)] for i in chosen]) if chosen else None
                return self._valid
            store = TensorStore(data.valid_latents) if data.valid_latents else self.store
            ids = [item["id"] for item in store.items if _tokens(item, data.units)]
            if self.config.conditioning == "durations":
                if store is not self.store:
                    tokens = {item["id"]: _tokens(item, data.units) for item in store.items}
                    self.durations.update(self._durations(store, ids, [tokens[i] for i in ids], self._alignments(store)))
                ids = [i for i in ids if i in self.durations]
            ids = ids[: data.valid_items]
            if not ids:
                return None
            dataset = self._dataset(store, ids)
            self._valid = self.collate([dataset[i] for i in range(len(dataset))])
        return self._valid

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        batch = self._valid_batch()
        if batch is None:
            return {}
        inputs = self._inputs(model, batch)
        latents = inputs["latents"]
        generator = torch.Generator().manual_seed(self.config.train.seed)
        b = latents.shape[0]
        draws = {"frac": torch.full((b,), 0.85), "u": torch.full((b,), 0.5),
                 "x0": torch.randn(latents.shape, generator=generator).to(latents.device),
                 "time": torch.linspace(0.1, 0.9, b).to(latents.device), "drop_audio_cond": False, "drop_text": False}
        loss, details = model.loss(**inputs, draws=draws)
        out = {"loss": float(loss)}
        out.update({key: float(details[key]) for key in ("flow_loss", "duration_loss") if key in details})
        return out

    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        extra = {**self.store.space_info, "space": str(self.space or ""),
                 "latents": str(Path(self.config.data.latents).resolve()), "units": self.config.data.units,
                 "vocab_size": len(self.vocab)}
        return "tts", dataclasses.asdict(model.config), extra

