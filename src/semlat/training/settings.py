"""Settings shared by every recipe: optimiser, EMA, training loop, and audio data.

Defaults are Semantic-VAE's published training setup (AdamW lr 1e-4, betas 0.8/0.99, exponential
decay 0.999996 per step, clip 10, EMA 0.9999) so a recipe only states what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from semlat.errors import ConfigError


@dataclass
class OptimizerConfig:
    """The optimiser and its learning-rate schedule (linear warm-up, then constant/exponential/cosine).

    ``name``: ``adamw`` (every parameter) or ``muon`` (Muon for parameters with 2+ dims, AdamW with
    ``betas``/``eps`` for the rest; see :mod:`semlat.training.optimizers`). ``momentum``,
    ``nesterov`` and ``ns_steps`` are Muon's.
    """

    name: str = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    eps: float = 1e-8
    grad_clip: float | None = 10.0
    warmup_steps: int = 0
    schedule: str = "exponential"
    gamma: float = 0.999996
    min_lr_ratio: float = 0.0
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5

    def validate(self, where: str) -> None:
        if self.name not in ("adamw", "muon"):
            raise ConfigError(f"{where}.name must be adamw or muon, got {self.name!r}")
        if self.schedule not in ("constant", "exponential", "cosine"):
            raise ConfigError(f"{where}.schedule must be constant, exponential or cosine, got {self.schedule!r}")
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr must be positive, got {self.lr}")


@dataclass
class EMAConfig:
    """Exponential moving average of the exported model (torch's AveragedModel).

    Until ``start_step`` the average is a copy of the model; after it, every ``every`` steps
    ``ema = decay * ema + (1 - decay) * model``.
    """

    enabled: bool = True
    decay: float = 0.9999
    start_step: int = 100
    every: int = 10


@dataclass
class TrainConfig:
    """The training loop."""

    max_steps: int = 600_000
    max_minutes: float | None = None
    grad_accum: int = 1
    precision: str = "fp32"
    tf32: bool = True
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    num_workers: int = 4
    log_every: int = 50
    valid_every: int = 5000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    progress: bool = True
    ema: EMAConfig = field(default_factory=EMAConfig)
    #: fine-tune: start from this model folder, checkpoint or training run (its latest checkpoint) instead of
    #: random weights. Same model type and sizes (strict shapes); a semlat checkpoint also gives the other
    #: modules it holds (discriminators). Optimiser state and step start afresh. Ignored on resume.
    init_from: str | None = None
    #: also log to Weights & Biases: ``offline`` (no network; ``wandb sync`` later) or ``online``; None: TensorBoard only
    wandb: str | None = None
    wandb_project: str = "semlat"
    #: how trained modules spread over processes: ``ddp`` (a full copy per rank) or ``fsdp`` (FSDP2: weights,
    #: gradients and optimiser state sharded over the ranks, block by block; sharded checkpoints)
    strategy: str = "ddp"
    #: recompute each block's activations in the backward pass (less memory, ~30 % more compute)
    activation_checkpointing: bool = False

    def validate(self, where: str) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"{where}.precision must be fp32 or bf16, got {self.precision!r}")
        if self.strategy not in ("ddp", "fsdp"):
            raise ConfigError(f"{where}.strategy must be ddp or fsdp, got {self.strategy!r}")
        if self.strategy == "fsdp" and self.compile:
            raise ConfigError(f"{where}.compile with strategy fsdp is not supported yet (use ddp to compile)")
        if self.wandb not in (None, "offline", "online"):
            raise ConfigError(f"{where}.wandb must be offline, online or null, got {self.wandb!r}")
        for name in ("max_steps", "grad_accum", "log_every", "valid_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class AudioDataConfig:
    """Random-crop audio training data and a fixed validation batch, from manifests."""

    train: str = "data/manifest.jsonl"
    train_split: str | None = "train"
    valid: str | None = None
    valid_split: str | None = "valid"
    segment_seconds: float = 3.0
    batch_size: int = 8
    min_rms_db: float | None = -40.0
    valid_items: int = 8
    valid_seconds: float = 5.0

    def validate(self, where: str) -> None:
        if self.batch_size < 1 or self.segment_seconds <= 0:
            raise ConfigError(f"{where}.batch_size and {where}.segment_seconds must be positive")
