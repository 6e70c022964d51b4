"""Audio embedding models for Fréchet distance, chosen by a spec string.

=====================  ==============================================================  ===========
spec                   embedder                                                        pooling
=====================  ==============================================================  ===========
``ctc:/path``          :class:`JudgeEmbedder`: the encoder of the offline CTC judge      frames
                       (``semlat judge train``), 256-d frames at 50 Hz; offline
``panns:/file.pth``    :class:`~semlat.evaluation.panns.PannsEmbedder`: PANNs Cnn14's    clip
                       2048-d clip embedding (``Cnn14_mAP=0.431.pth`` at 32 kHz or
                       ``Cnn14_16k_mAP=0.438.pth``), the FD of AudioLDM and the TTA papers
``vggish:/file.pth``   :class:`~semlat.evaluation.vggish.VGGishEmbedder`: VGGish's       frames
                       128-d embedding per 0.96 s (``vggish-10086976.pth``), FAD's model
=====================  ==============================================================  ===========

Every embedder has ``label`` (what a report prints as the figure's provenance), ``sample_rate``,
``dim`` and ``embed(audio, sample_rate) -> [T, D]`` (float32, CPU) for one signal at any rate.
``pooling`` decides what one row of the embedding set is: ``"frames"`` keeps every frame (FAD's
convention: statistics over all frames of all clips), ``"clip"`` averages each clip's frames into one
row (PANNs gives one frame per clip anyway). Nothing is downloaded: checkpoints load from local files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tqdm import tqdm

from semlat.errors import ConfigError

POOLINGS = ("frames", "clip")
EMBEDDER_SPECS = ("ctc:/path", "panns:/file.pth", "vggish:/file.pth")


@runtime_checkable
class AudioEmbedder(Protocol):
    """One signal ``[N]`` at any rate -> embeddings ``[T, D]`` (float32, CPU)."""

    label: str
    sample_rate: int
    dim: int

    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor: ...


class JudgeEmbedder:
    """The offline default: frames of the CTC judge's encoder (before its classifier), ``[T, 256]`` at 50 Hz.

    Trained to recognise phonemes (or characters) on real speech, so its statistics measure how
    speech-like and phonetically complete a set of audio is; it knows nothing of music or events.
    """

    pooling = "frames"

    def __init__(self, folder: str | Path, *, device: str | torch.device = "cpu"):
        from semlat.evaluation.ctc_judge import load_judge

        self.judge = load_judge(folder, device=device)
        self.sample_rate = self.judge.front.sample_rate
        self.dim = self.judge.model.config.channels
        self.label = f"{self.judge.label}: encoder frames ({self.dim}-d, 50 Hz)"

    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor:
        (frames,) = self.judge.hidden_states(audio, sample_rate)
        return frames


def _split(spec: str) -> tuple[str, str]:
    kind, sep, path = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind not in {s.partition(":")[0] for s in EMBEDDER_SPECS} or not sep or not path:
        raise ConfigError(f"unknown embedding model {spec!r}; use one of {', '.join(EMBEDDER_SPECS)}")
    return kind, path


def load_audio_embedder(spec: str, *, device: str | torch.device = "cpu") -> AudioEmbedder:
    """An embedder from its spec (see the module docstring); a wrong spec is a one-line ConfigError."""
    kind, path = _split(spec)
    if kind == "ctc":
        return JudgeEmbedder(path, device=device)
    if not Path(path).expanduser().is_file():
        raise ConfigError(f"{kind} embedding model: {path} is not a file (checkpoints load from local files)")
    if kind == "panns":
        from semlat.evaluation.panns import PannsEmbedder

        return PannsEmbedder(Path(path).expanduser(), device=device)
    from semlat.evaluation.vggish import VGGishEmbedder

    return VGGishEmbedder(Path(path).expanduser(), device=device)


def default_pooling(embedder: AudioEmbedder) -> str:
    """The embedder's conventional pooling: its ``pooling`` attribute, else frames."""
    return getattr(embedder, "pooling", "frames")


def pool(frames: torch.Tensor, pooling: str) -> np.ndarray:
    """``[T, D]`` -> rows of the embedding set: ``[T, D]`` (frames) or ``[1, D]`` (clip mean)."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    x = frames.detach().float().cpu().numpy().astype(np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"an embedder returned shape {tuple(frames.shape)}, expected [T >= 1, D]")
    return x.mean(axis=0, keepdims=True) if pooling == "clip" else x


def embed_set(embedder: AudioEmbedder, signals: Iterable[tuple[str, Any, int]], *, pooling: str,
              progress: bool = True, total: int | None = None, desc: str = "embedding") -> tuple[np.ndarray, list[str]]:
    """Embed ``(id, audio [N], sample_rate)`` items into rows ``[M, D]``; returns rows and the ids used.

    An item whose embedding fails or is not finite is left out (its id is not returned).
    """
    rows: list[np.ndarray] = []
    used: list[str] = []
    for item_id, audio, sr in tqdm(signals, total=total, desc=desc, unit="clip", disable=not progress):
        try:
            x = pool(embedder.embed(audio, sr), pooling)
        except ValueError:
            continue
        if np.isfinite(x).all():
            rows.append(x)
            used.append(item_id)
    dim = getattr(embedder, "dim", 0)
    return (np.concatenate(rows) if rows else np.zeros((0, dim))), used
