"""The trainer: one engine that runs every recipe, on one process or many (torchrun, DDP).

A :class:`Recipe` says *what* to train: its modules, their optimisers, the data and one training
step. The :class:`Trainer` does the rest: process group and device, per-rank seeding, sharded data
that reshuffles per epoch, gradient accumulation (DDP synchronises only on the last micro-batch),
bf16 autocast on GPU, gradient clipping, learning-rate schedules, EMA of the exported model,
TensorBoard logs (optionally W&B; throughput and data-wait time) and a progress bar, atomic checkpoints that keep the last K, and exact resume.

Run folder layout::

    <run_dir>/config.yaml                   the resolved config
    <run_dir>/tensorboard/                  event files
    <run_dir>/checkpoints/step-00001000/    model.safetensors + config.json (the EMA model: a model
                                            folder any command loads), training.safetensors (raw
                                            weights of every module and of the EMA), trainer_state.pt (optimisers,
                                            schedulers, step, data position, RNG of every rank)
    <run_dir>/checkpoints/latest            the name of the newest checkpoint

``trainer_state.pt`` holds only tensors, numbers and containers and loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import random
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from tqdm import tqdm

from semlat.checkpoints import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_state_dict,
    latest_checkpoint,
    load_state_dict_strict,
    read_model_meta,
    resolve_model_folder,
    write_model_files,
)
from semlat.config import save_yaml
from semlat.data.manifest import Manifest
from semlat.data.samplers import ShardedSampler
from semlat.data.shards import is_shard_folder
from semlat.errors import CheckpointError, ConfigError, DataError
from semlat.training import fsdp
from semlat.training.distributed import (
    DistInfo,
    any_rank,
    barrier,
    init_distributed,
    mean_across_ranks,
    shutdown,
)
from semlat.training.logging import RunLogger, batch_counts
from semlat.training.optimizers import build_optimizer
from semlat.training.schedules import lr_multiplier
from semlat.training.settings import OptimizerConfig
from semlat.utils.files import atomic_dir, atomic_write_text

__all__ = ["Recipe", "Trainer", "latest_checkpoint"]

TRAINING_WEIGHTS = "training.safetensors"
TRAINER_STATE = "trainer_state.pt"
#: prefix of the EMA model's weights in ``training.safetensors`` (module names must not use it)
EMA_PREFIX = "_ema"


class Recipe(ABC):
    """What a model family contributes to training. Subclasses set ``name`` and ``Config``.

    ``config`` is the recipe's config dataclass; it must have ``run_dir``, ``train``
    (:class:`~semlat.training.settings.TrainConfig`) and ``data`` with a ``batch_size``.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    #: the module whose EMA (or raw) weights form the exported model folder
    exported: ClassVar[str] = "generator"
    #: files the recipe itself keeps in its run folder (beside config.yaml, tensorboard/, checkpoints/)
    run_files: ClassVar[tuple[str, ...]] = ()
    #: where the exported module's weights sit in its model folder's ``model.safetensors`` (a recipe whose
    #: export wraps it, e.g. a latent space of ``autoencoder.*`` and a frozen ``vocoder.*``, names the prefix)
    exported_prefix: ClassVar[str] = ""

    def __init__(self, config: Any, trainer: Trainer):
        self.config = config
        self.trainer = trainer

    @abstractmethod
    def build_modules(self) -> dict[str, nn.Module]:
        """Every module that training changes, by name (built identically on every rank)."""

    @abstractmethod
    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        """The optimiser of module ``name``, or ``None`` if it is not trained."""

    @abstractmethod
    def train_dataset(self) -> tuple[Dataset, Callable[[list], Any]]:
        """The training dataset (indexed by sampler keys) and its collate function."""

    @abstractmethod
    def train_step(self, batches: Sequence[Any], step: int) -> dict[str, float]:
        """One optimisation step over ``grad_accum`` micro-batches; returns scalars to log."""

    @abstractmethod
    def export(self, model: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(model_type, model config dict, extra config.json entries)`` of the exported model."""

    def manifest(self, path: str | None, split: str | None) -> Manifest:
        """The ``split`` of manifest ``path`` (``data.train`` when None); an empty one is a DataError."""
        path = path or self.config.data.train
        if is_shard_folder(path):
            raise DataError(f"{path}: a shard folder streams training data only; give the validation manifest "
                            "(data.valid=...)")
        return Manifest.read_split(path, split)

    def batch_sampler(self, dataset: Dataset) -> Sampler | None:
        """A batch sampler of this rank's batches (``set_epoch`` each epoch; keys as semlat's samplers give
        them), for recipes whose batches vary in size, such as frame budgets; ``None`` (default): fixed
        batches of ``data.batch_size`` over the processes."""
        return None

    def export_weights(self, model: nn.Module) -> nn.Module | dict[str, torch.Tensor]:
        """The weights of the exported model folder (default: ``model`` itself; a recipe whose exported
        model has parts that are not trained, such as a frozen vocoder, adds them here)."""
        return model

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        """Evaluate the exported model on a fixed validation batch (rank 0 only); log media."""
        return {}

    def init_states(self, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """``train.init_from`` a model folder (no training weights): its ``model.safetensors`` as states of this
        recipe's modules, by name (default: all of it for the exported module; a recipe whose exported folder
        holds more, such as a frozen vocoder, picks its part by ``exported_prefix``)."""
        prefix = self.exported_prefix
        return {self.exported: {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}}

    def adapt_init_state(self, name: str, state: dict[str, torch.Tensor], meta: dict[str, Any],
                         module: nn.Module) -> dict[str, torch.Tensor]:
        """Module ``name``'s state from ``train.init_from``, made to fit ``module`` where the recipe allows it
        (the TTS appends new tokens' embeddings); default: unchanged (shapes must then match exactly)."""
        return state


def _length(batches: Any) -> int | None:
    """How many batches an epoch has, or None for a stream that does not know (shards)."""
    try:
        return len(batches)
    except TypeError:
        return None


def _throughput(perf: dict[str, float]) -> dict[str, float]:
    """Per-rank rates since the last log: items and frames per second of wall-clock and the fraction of it spent
    waiting for data (``frames``: audio samples or latent frames, as batches count them)."""
    total = max(perf["wait"] + perf["busy"], 1e-9)
    out = {"items_per_s": perf["items"] / total, "data_wait_fraction": perf["wait"] / total}
    if perf["frames"]:
        out["frames_per_s"] = perf["frames"] / total
    return out


def _flat_config(config: Any) -> dict[str, Any]:
    """The resolved config as plain containers (for the W&B run's config)."""
    import dataclasses

    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


class _SkipBatches(Sampler):
    """A batch sampler without its first ``skip`` batches (resuming mid-epoch)."""

    def __init__(self, inner: BatchSampler, skip: int):
        self.inner, self.skip = inner, skip

    def __iter__(self) -> Iterator[list]:
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


class Trainer:
    """Runs a :class:`Recipe`. Create it inside every process (torchrun starts one per GPU)."""

    def __init__(self, config: Any, recipe_cls: type[Recipe], *, resume: bool = False):
        self.config = config
        self.train_cfg = config.train
        self.run_dir = Path(config.run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.dist: DistInfo = init_distributed(self.train_cfg.device)
        self.device = self.dist.device
        if self.device.type == "cuda":  # TF32 matmuls/convs for fp32 work on Ampere and newer
            torch.backends.cuda.matmul.allow_tf32 = self.train_cfg.tf32
            torch.backends.cudnn.allow_tf32 = self.train_cfg.tf32
        self.step = self.epoch = self.batch_in_epoch = 0
        self._step_logs: dict[str, float] = {}

        if not resume and latest_checkpoint(self.run_dir) is not None:  # checked on every rank: all stop
            raise ConfigError(f"{self.run_dir}: holds checkpoints already; resume it (--resume) "
                              "or choose a new run_dir")
        batch = config.data.batch_size
        if batch % self.dist.world_size:
            raise ConfigError(f"data.batch_size={batch} is the global batch and must divide by the "
                              f"{self.dist.world_size} processes")
        self.batch_per_rank = batch // self.dist.world_size

        torch.manual_seed(self.train_cfg.seed)  # identical initialisation on every rank
        self.recipe = recipe_cls(config, self)
        self.raw: dict[str, nn.Module] = {n: m.to(self.device) for n, m in self.recipe.build_modules().items()}
        if recipe_cls.exported not in self.raw:
            raise ConfigError(f"recipe {recipe_cls.name} exports {recipe_cls.exported!r}, which it does not build")
        #: module name -> the folder its weights came from (``train.init_from``); empty when trained from scratch
        self.initialized: dict[str, str] = {}
        if self.train_cfg.init_from and not resume:
            self._init_from(self.train_cfg.init_from)
        trained = [name for name in self.raw if self.recipe.optimizer_config(name) is not None]
        self.ema: AveragedModel | None = None
        if self.train_cfg.ema.enabled:  # a copy of the unsharded model (FSDP shards it like the model below)
            self.ema = AveragedModel(self.raw[recipe_cls.exported], use_buffers=True,
                                     multi_avg_fn=get_ema_multi_avg_fn(self.train_cfg.ema.decay))
            self.ema.eval()
        #: modules sharded with FSDP2 (``train.strategy=fsdp`` on several processes); their exported weights are
        #: gathered into ``_replica`` (rank 0) to validate and export
        self.sharded: dict[str, nn.Module] = {}
        self._replica: nn.Module | None = None
        use_fsdp = self.train_cfg.strategy == "fsdp" and self.dist.distributed
        if use_fsdp and self.dist.is_main:  # (copied before activation checkpointing patches the blocks)
            self._replica = copy.deepcopy(self.raw[recipe_cls.exported]).cpu()
        if self.train_cfg.activation_checkpointing:
            for name in trained:
                fsdp.checkpoint_activations(fsdp.shard_units(self.raw[name]))
        if use_fsdp:
            for name in trained:
                self.sharded[name] = fsdp.shard(self.raw[name], self.train_cfg.precision, self.device)
            if self.ema is not None:
                fsdp.shard(self.ema.module, self.train_cfg.precision, self.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        for name in trained:
            opt_cfg = self.recipe.optimizer_config(name)
            optimizer = build_optimizer(self.raw[name], opt_cfg)
            self.optimizers[name] = optimizer
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lr_multiplier(opt_cfg, self.train_cfg.max_steps))
        self.modules: dict[str, nn.Module] = {}
        for name, module in self.raw.items():
            runnable = torch.compile(module) if self.train_cfg.compile else module
            if self.dist.distributed and name in self.optimizers and name not in self.sharded:
                ids = [self.device.index] if self.device.type == "cuda" else None
                runnable = DistributedDataParallel(runnable, device_ids=ids)  # broadcasts rank 0's weights
            self.modules[name] = runnable
        torch.manual_seed(self.train_cfg.seed + 1000 * (self.dist.rank + 1))  # per-rank training randomness
        random.seed(self.train_cfg.seed + self.dist.rank)
        self.logger = RunLogger(self.run_dir, enabled=self.dist.is_main, wandb=self.train_cfg.wandb,
                                project=self.train_cfg.wandb_project,
                                config=_flat_config(config) if self.train_cfg.wandb else None)
        #: wall-clock seconds spent in training steps over the whole run (resumes add to it; validation and
        #: checkpoints excluded), saved in every checkpoint's ``training.train_seconds``
        self.train_seconds = 0.0
        if resume:
            self._load_checkpoint()
        self.start_step = self.step  # where this process began (fit() may add steps to it)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_yaml(config, self.run_dir / "config.yaml")
        barrier(self.dist)

    # ----------------------------------------------------------------- services for recipes
    def module(self, name: str) -> nn.Module:
        """Module ``name`` as training should call it (DDP-wrapped / compiled where configured)."""
        return self.modules[name]

    def unwrapped(self, name: str) -> nn.Module:
        """The plain module ``name`` (its parameters are what optimisers and checkpoints hold)."""
        return self.raw[name]

    @property
    def exported_model(self) -> nn.Module:
        """The model that checkpoints export: the EMA copy when EMA is on, else the raw module (sharded under
        FSDP: see :meth:`gathered_export`)."""
        return self.ema.module if self.ema is not None else self.raw[self.recipe.exported]

    def gathered_export(self) -> nn.Module | None:
        """The exported model as one plain module on rank 0 (None elsewhere): :attr:`exported_model` itself, or
        under FSDP its full weights gathered into a replica (a collective: every rank must call it)."""
        if self._replica is None and not self.sharded:
            return self.exported_model if self.dist.is_main else None
        full = fsdp.full_state(self.exported_model)
        if self._replica is not None:
            self._replica.load_state_dict(full)
        return self._replica

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when ``train.precision=bf16`` (on GPU; on CPU it is honoured as asked)."""
        enabled = self.train_cfg.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)

    def micro_batches(self, batches: Sequence[Any], *names: str) -> Iterator[tuple[int, Any]]:
        """Iterate ``(index, batch)``; DDP gradient sync of modules ``names`` is skipped for all
        but the last micro-batch (run forward *and* backward inside the loop body)."""
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            fsdp.gradient_sync([self.raw[n] for n in names if n in self.sharded], last)
            with contextlib.ExitStack() as stack:
                if not last:
                    for name in names:
                        module = self.modules[name]
                        if isinstance(module, DistributedDataParallel):
                            stack.enter_context(module.no_sync())
                yield index, batch

    @contextlib.contextmanager
    def optimizer_step(self, name: str) -> Iterator[None]:
        """Zero ``name``'s gradients, run the block (backward passes), then clip, step and schedule."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        yield
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        clip = self.recipe.optimizer_config(name).grad_clip
        if params:
            norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf"))
            self._step_logs[f"grad_norm/{name}"] = float(norm)
        optimizer.step()
        self.schedulers[name].step()

    @contextlib.contextmanager
    def frozen(self, name: str) -> Iterator[nn.Module]:
        """Module ``name`` with ``requires_grad`` off (e.g. the discriminator during the generator
        step): no gradients are computed for it and DDP is bypassed. Yields the plain module."""
        module = self.raw[name]
        flags = [p.requires_grad for p in module.parameters()]
        for p in module.parameters():
            p.requires_grad_(False)
        try:
            yield module
        finally:
            for p, flag in zip(module.parameters(), flags):
                p.requires_grad_(flag)

    # ----------------------------------------------------------------- the loop
    def _micro_batch_stream(self) -> Iterator[Any]:
        dataset, collate = self.recipe.train_dataset()
        custom = self.recipe.batch_sampler(dataset)
        sampler = custom or ShardedSampler(len(dataset), seed=self.train_cfg.seed, rank=self.dist.rank,
                                           world_size=self.dist.world_size)
        while True:
            sampler.set_epoch(self.epoch)
            batches = custom if custom is not None else BatchSampler(sampler, self.batch_per_rank, drop_last=True)
            if _length(batches) == 0:
                raise ConfigError(f"the training set ({len(dataset)} items over {self.dist.world_size} "
                                  f"processes) is smaller than one batch of {self.batch_per_rank}")
            loader = DataLoader(
                dataset, batch_sampler=_SkipBatches(batches, self.batch_in_epoch), collate_fn=collate,
                num_workers=self.train_cfg.num_workers, pin_memory=self.device.type == "cuda",
                generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
            )
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def _update_ema(self) -> None:
        ema_cfg = self.train_cfg.ema
        if self.ema is None or self.step % ema_cfg.every:
            return
        if self.step < ema_cfg.start_step:
            self.ema.n_averaged.zero_()  # the next update copies the model
        if not self.sharded:
            self.ema.update_parameters(self.raw[self.recipe.exported])
            return
        # Under FSDP the parameters are sharded DTensors and the buffers plain tensors, which AveragedModel's
        # one foreach call cannot mix: the same update, tensor by tensor.
        model = self.raw[self.recipe.exported]
        first = int(self.ema.n_averaged) == 0
        with torch.no_grad():
            pairs = [*zip(self.ema.module.parameters(), model.parameters()),
                     *zip(self.ema.module.buffers(), model.buffers())]
            for averaged, current in pairs:
                if first or not averaged.is_floating_point():
                    averaged.copy_(current.detach())
                else:
                    averaged.lerp_(current.detach(), 1 - ema_cfg.decay)
        self.ema.n_averaged += 1

    def fit(self) -> Path | None:
        """Train until ``train.max_steps`` (or ``train.max_minutes``); returns the last checkpoint."""
        cfg = self.train_cfg
        stream = self._micro_batch_stream()
        window: dict[str, list[float]] = {}
        saved_at = self.step if latest_checkpoint(self.run_dir) is not None else -1
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.dist.is_main and cfg.progress))
        try:
            perf = dict.fromkeys(("wait", "busy", "items", "frames"), 0.0)
            while self.step < cfg.max_steps and not self._over_budget():
                waited = time.monotonic()
                batches = [next(stream) for _ in range(cfg.grad_accum)]
                for module in self.raw.values():
                    module.train()
                step_started = time.monotonic()
                perf["wait"] += step_started - waited
                logs = self.recipe.train_step(batches, self.step)
                logs.update(self._step_logs)
                self._step_logs = {}
                self.step += 1
                self._update_ema()
                self.train_seconds += time.monotonic() - step_started
                perf["busy"] += time.monotonic() - step_started
                for batch in batches:
                    items, frames = batch_counts(batch)
                    perf["items"] += items
                    perf["frames"] += frames or 0
                for key, value in logs.items():
                    window.setdefault(key, []).append(value)
                bar.update(1)
                postfix = {"loss": f"{logs['loss']:.3f}"} if "loss" in logs else {}
                if cfg.max_minutes is not None:  # the budget, not max_steps, ends this run
                    postfix["budget"] = f"{self.train_seconds / 60:.1f}/{cfg.max_minutes:g} min"
                bar.set_postfix(postfix, refresh=False)
                if self.step % cfg.log_every == 0:
                    means = mean_across_ranks({k: sum(v) / len(v) for k, v in window.items()}, self.dist)
                    means.update({f"lr/{n}": s.get_last_lr()[0] for n, s in self.schedulers.items()})
                    self.logger.scalars(self.step, means, "train/")
                    self.logger.scalars(self.step, mean_across_ranks(_throughput(perf), self.dist), "perf/")
                    window = {}
                    perf = dict.fromkeys(perf, 0.0)
                if self.step % cfg.valid_every == 0:
                    self.validate()
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    saved_at = self.step
            if saved_at != self.step:
                self.save_checkpoint()
        finally:
            bar.close()
            self.logger.flush()
        return latest_checkpoint(self.run_dir)

    def _over_budget(self) -> bool:
        """Whether ``train.max_minutes`` is spent: the training steps' time summed over every call, resumes
        included (``train_seconds``, the figure each run records), not this call's wall time."""
        budget = self.train_cfg.max_minutes
        return budget is not None and any_rank(self.train_seconds >= 60 * budget, self.dist)

    def validate(self) -> dict[str, float]:
        """Run the recipe's validation on rank 0 with the exported model; other ranks wait."""
        metrics: dict[str, float] = {}
        model = self.gathered_export()  # every rank takes part under FSDP
        if self.dist.is_main:
            was_training = model.training
            model.eval()
            with torch.no_grad():
                metrics = self.recipe.validate(self.step, model, self.logger)
            model.train(was_training)
            self.logger.scalars(self.step, metrics, "valid/")
            self.logger.flush()
        barrier(self.dist)
        return metrics

    def close(self) -> None:
        """Close logs and the process group."""
        self.logger.close()
        shutdown()

    # ----------------------------------------------------------------- checkpoints
    def _init_from(self, spec: str) -> None:
        """Load ``train.init_from`` (a model folder, checkpoint or run) into the modules, strictly."""
        folder = resolve_model_folder(spec)
        if not (folder / CONFIG_NAME).is_file():
            raise CheckpointError(f"train.init_from={spec}: not a model folder, checkpoint or training run "
                                  f"(no {CONFIG_NAME})")
        meta = read_model_meta(folder)
        exported = self.recipe.exported
        model_type = self.recipe.export(self.raw[exported])[0]
        if meta.get("model_type") != model_type:
            raise CheckpointError(f"train.init_from={folder}: a {meta.get('model_type')!r} model; recipe "
                                  f"{self.recipe.name} trains {model_type!r}")
        if (folder / TRAINING_WEIGHTS).is_file():  # a semlat checkpoint: every module it holds, by name
            raw = load_file(str(folder / TRAINING_WEIGHTS))
            states = {name: {k[len(name) + 1:]: v for k, v in raw.items() if k.startswith(name + ".")}
                      for name in self.raw}
            states = {name: state for name, state in states.items() if state}
            where = folder / TRAINING_WEIGHTS
        else:
            states = self.recipe.init_states(load_file(str(folder / WEIGHTS_NAME)), meta)
            where = folder / WEIGHTS_NAME
            for name in self.raw:  # other modules a release carries beside (``semlat import --discriminator``)
                if name not in states and (folder / f"{name}.safetensors").is_file():
                    states[name] = load_file(str(folder / f"{name}.safetensors"))
        if exported not in states:
            raise CheckpointError(f"train.init_from={folder}: holds no weights for {exported!r}")
        for name, state in states.items():
            if name not in self.raw:
                continue
            state = self.recipe.adapt_init_state(name, state, meta, self.raw[name])
            load_state_dict_strict(self.raw[name], state, f"train.init_from {where} [{name}]")
            self.initialized[name] = str(folder)
        if self.dist.is_main and self.train_cfg.progress:
            fresh = sorted(set(self.raw) - set(self.initialized))
            print(f"[train] initialised {', '.join(sorted(self.initialized))} from {folder}"
                  + (f"; {', '.join(fresh)} start from random weights" if fresh else ""))

    def _trainer_state(self) -> dict[str, Any]:
        rng = {"python": random.getstate(), "torch": torch.get_rng_state(),
               "data": [self.epoch, self.batch_in_epoch]}  # each rank's own position (shard streams differ)
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        rngs = [rng]
        if self.dist.distributed:
            rngs = [None] * self.dist.world_size if self.dist.is_main else None
            dist.gather_object(rng, rngs, dst=0)
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.dist.world_size, "train_seconds": self.train_seconds,
            "strategy": "fsdp" if self.sharded else "ddp",
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items() if n not in self.sharded},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "ema_n_averaged": self.ema.n_averaged.detach().cpu() if self.ema is not None else None,
            "rng": rngs,
        }

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-XXXXXXXX`` atomically, point ``latest`` at it, prune old ones."""
        state = self._trainer_state()  # collective: every rank takes part
        folder = self.checkpoint_dir / f"step-{self.step:08d}"
        exported = self.gathered_export()  # collective under FSDP
        shards = self.checkpoint_dir / f".{folder.name}.shards"
        if self.sharded:  # every rank writes its shards into a shared folder, moved into the checkpoint below
            if self.dist.is_main:
                shutil.rmtree(shards, ignore_errors=True)
            barrier(self.dist)
            fsdp.save_shards(shards, self.sharded, self.optimizers, self.ema.module if self.ema is not None else None)
            barrier(self.dist)
        if self.dist.is_main:
            model_type, model_config, extra = self.recipe.export(exported)
            training = {"recipe": self.recipe.name, "step": self.step, "train_seconds": round(self.train_seconds, 3)}
            if self.initialized:
                training["init_from"] = self.initialized
            extra = {**extra, "training": training}
            with atomic_dir(folder) as tmp:
                write_model_files(tmp, self.recipe.export_weights(exported), model_type=model_type,
                                  config=model_config, extra=extra)
                modules = {n: m for n, m in self.raw.items() if n not in self.sharded}  # the rest are in shards
                if self.ema is not None and not self.sharded:
                    modules[EMA_PREFIX] = self.ema.module
                raw = {f"{name}.{k}": v.detach().cpu().contiguous().clone()
                       for name, module in modules.items() for k, v in module.state_dict().items()}
                save_file(raw, str(tmp / TRAINING_WEIGHTS))
                torch.save(state, tmp / TRAINER_STATE)
                if self.sharded:
                    os.replace(shards, tmp / fsdp.SHARDS)
            atomic_write_text(self.checkpoint_dir / "latest", folder.name + "\n")
            for old in sorted(self.checkpoint_dir.glob("step-*"))[: -self.train_cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.dist)
        return folder

    def _load_checkpoint(self) -> None:
        folder = latest_checkpoint(self.run_dir)
        if folder is None:
            raise CheckpointError(f"{self.run_dir}: nothing to resume (no checkpoints/latest)")
        for name in (WEIGHTS_NAME, TRAINING_WEIGHTS, TRAINER_STATE):
            if not (folder / name).is_file():
                raise CheckpointError(f"{folder}: incomplete checkpoint ({name} is missing)")
        state = torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True)
        saved = state.get("strategy", "ddp")
        if saved != ("fsdp" if self.sharded else "ddp"):
            raise CheckpointError(f"{folder}: saved with strategy {saved}, resumed with "
                                  f"{'fsdp' if self.sharded else 'ddp'} on {self.dist.world_size} process(es); "
                                  "resume with the same train.strategy and number of processes")
        if state["world_size"] != self.dist.world_size:
            raise CheckpointError(f"{folder}: saved by {state['world_size']} processes, resumed with "
                                  f"{self.dist.world_size}; exact resume needs the same number")
        raw = load_file(str(folder / TRAINING_WEIGHTS))
        for name, module in self.raw.items():
            if name in self.sharded:
                continue
            part = {k[len(name) + 1:]: v for k, v in raw.items() if k.startswith(name + ".")}
            check_state_dict(module.state_dict(), part, f"{folder / TRAINING_WEIGHTS} [{name}]")
            module.load_state_dict(part)
        if self.sharded:
            if not (folder / fsdp.SHARDS).is_dir():
                raise CheckpointError(f"{folder}: incomplete checkpoint ({fsdp.SHARDS}/ is missing)")
            fsdp.load_shards(folder / fsdp.SHARDS, self.sharded, self.optimizers,
                             self.ema.module if self.ema is not None else None)
        for name, optimizer in self.optimizers.items():
            if name not in self.sharded:
                optimizer.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
        if self.ema is not None:
            if not self.sharded:
                ema_weights = {k[len(EMA_PREFIX) + 1:]: v for k, v in raw.items() if k.startswith(EMA_PREFIX + ".")}
                check_state_dict(self.ema.module.state_dict(), ema_weights, f"{folder / TRAINING_WEIGHTS} [ema]")
                self.ema.module.load_state_dict(ema_weights)
            self.ema.n_averaged.copy_(state["ema_n_averaged"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.initialized = dict(read_model_meta(folder).get("training", {}).get("init_from") or {})
        rng = state["rng"][self.dist.rank]
        if "data" in rng:
            self.epoch, self.batch_in_epoch = (int(v) for v in rng["data"])
        random.setstate(rng["python"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
