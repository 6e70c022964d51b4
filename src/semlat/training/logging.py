"""Run logging: TensorBoard scalars, audio and spectrogram images, optionally mirrored to Weights & Biases
(rank 0 only); and the throughput of a batch (items and frames)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semlat.errors import ConfigError

#: Anchor colours of the spectrogram colour map (dark blue -> purple -> orange -> pale yellow).
_PALETTE = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                     [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float32)


def spectrogram_image(spec: torch.Tensor, floor_db: float = 80.0) -> np.ndarray:
    """A log-magnitude spectrogram ``[F, T]`` as an ``[F, T, 3]`` uint8 image (low frequencies at the
    bottom), scaled to its own maximum and a floor ``floor_db`` below it (for natural-log mels the
    floor is in nepers x 8.686 dB)."""
    x = spec.detach().float().cpu().numpy()
    top = x.max()
    x = np.clip((x - (top - floor_db / 8.686)) / (floor_db / 8.686), 0.0, 1.0)
    pos = x * (len(_PALETTE) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_PALETTE) - 2)
    frac = (pos - lo)[..., None]
    rgb = _PALETTE[lo] * (1 - frac) + _PALETTE[lo + 1] * frac
    return np.ascontiguousarray(rgb[::-1].astype(np.uint8))


def batch_counts(batch: Any) -> tuple[int, int | None]:
    """``(items, frames)`` of a collated batch: its first tensor's batch size, and the sum of its ``length``
    (audio samples) or ``frames`` (latent frames) entry; frames None when it has neither."""
    items = 0
    if isinstance(batch, Mapping):
        for key in ("length", "frames", "lengths"):
            value = batch.get(key)
            if isinstance(value, torch.Tensor) and value.ndim == 1:
                return int(value.numel()), int(value.sum())
        batch = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    if isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    if isinstance(batch, torch.Tensor) and batch.ndim:
        items = int(batch.shape[0])
    return items, None


class RunLogger:
    """TensorBoard writer under ``<run_dir>/tensorboard`` and, with ``wandb`` (``offline`` or ``online``), a
    Weights & Biases run under ``<run_dir>/wandb`` (one id per run folder, so a resumed run continues it);
    every method is a no-op when disabled."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool, wandb: str | None = None,
                 project: str = "semlat", config: Mapping[str, Any] | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / "tensorboard"
        self._writer = None
        self._wandb = None
        if enabled and wandb:
            try:
                import wandb as wandb_lib
            except ImportError:
                raise ConfigError("train.wandb needs the wandb package (pip install wandb)") from None
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            run_id = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
            self._wandb = wandb_lib.init(project=project, dir=str(run_dir), mode=wandb, id=run_id, resume="allow",
                                         name=run_dir.name, config=dict(config or {}), settings=wandb_lib.Settings(
                                             silent=True, console="off"))

    @property
    def writer(self):
        if self._writer is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path))
        return self._writer

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        if self.enabled:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}{key}", value, step)
            if self._wandb is not None and values:
                self._wandb.log({f"{prefix}{k}": v for k, v in values.items()}, step=step)

    def audio(self, tag: str, audio: torch.Tensor, sample_rate: int, step: int) -> None:
        if self.enabled:
            wave = audio.detach().float().cpu().reshape(-1).clamp(-1, 1)
            self.writer.add_audio(tag, wave, step, sample_rate=sample_rate)

    def spectrogram(self, tag: str, spec: torch.Tensor, step: int) -> None:
        if self.enabled:
            self.writer.add_image(tag, spectrogram_image(spec), step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
