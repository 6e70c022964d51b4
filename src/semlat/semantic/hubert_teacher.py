"""The offline teacher: HuBERT's first iteration, trained from scratch on a manifest.

When no pretrained SSL model is at hand, ``semlat teacher train`` makes one the way HuBERT's first
iteration did (Hsu et al., 2021):

1. **MFCC targets** (:class:`MFCC`): 13 MFCCs with deltas and delta-deltas, 39 dims at 100 Hz.
2. **k-means** (:func:`fit_kmeans`): ``clusters`` centroids (default 100) fitted with scikit-learn's
   ``MiniBatchKMeans`` on a seeded subsample of the training split's MFCC frames.
3. **Masked prediction** (:func:`train_teacher`): a small ``transformers.HubertModel`` (a 50 Hz conv
   feature extractor and a post-LN transformer) sees the waveform with spans of its frames replaced
   by a learned mask embedding, and a linear head predicts the k-means cluster of every masked frame
   (cross-entropy; unmasked frames weigh ``unmasked_weight``, 0 by default as in HuBERT).

**Frame alignment.** The MFCC frames are *not* centred (Kaldi's convention, which fairseq's HuBERT
features use): MFCC frame ``k`` covers samples ``[160k, 160k + 400)``. The conv feature extractor
(kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: receptive field 400, hop 320) makes frame ``j`` from
samples ``[320j, 320j + 400)``: the same window as MFCC frame ``2j``. The 100 Hz labels are therefore
downsampled to 50 Hz by taking every second label, ``labels[:, 0::2]`` (:func:`frame_labels`), and
the label of each 20 ms frame is the cluster of the MFCC window with exactly its span.

**Masking.** Masks are drawn by :func:`span_mask` from the run's seeded generator (not the global
NumPy state HF's own SpecAugment uses) and passed to ``HubertModel.forward(mask_time_indices=...)``:
``int(mask_prob * T / mask_length + u)`` span starts (``u ~ U[0, 1)``) are drawn without replacement
and each masks ``mask_length`` frames, HuBERT's ``p = 0.8, l = 10`` by default (about 55 % of the
frames end up masked, as spans overlap). The saved config keeps HF's fine-tuning default
``mask_time_prob = 0.05``; inference (eval mode) never masks.

**Output folder** (written atomically)::

    OUT/teacher.json          format, kind, rates, dim, layers, clusters, MFCC parameters, training
                              summary (steps, minutes, held-out masked accuracy and its baselines),
                              recommended_layer
    OUT/hubert/               config.json + model.safetensors (HubertModel.save_pretrained) and
                              preprocessor_config.json (Wav2Vec2FeatureExtractor, do_normalize=True)
    OUT/kmeans.safetensors    "centroids" [clusters, 39] float32
    OUT/head.safetensors      the masked-prediction head ("weight" [clusters, dim], "bias" [clusters])
    OUT/options.json          the resolved training options

``semlat:OUT[@layers]`` loads it (:func:`load_semlat_teacher`) as an ``HFTeacher`` over
``OUT/hubert``; without ``@layers`` it uses ``recommended_layer``, by default the middle transformer
layer (``ceil(layers / 2)``), after HuBERT, whose second iteration clusters the middle (6th of 12)
layer of the first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import semlat
from semlat.audio.io import load_audio
from semlat.audio.spectral import MelConfig, MelSpectrogram
from semlat.config import read_json_object
from semlat.errors import ConfigError, DataError
from semlat.semantic.teachers import Teacher, TeacherSpec
from semlat.training.schedules import budget_progress, cosine_decay
from semlat.utils.files import atomic_dir

if TYPE_CHECKING:
    from semlat.data.manifest import Manifest

FORMAT = "semlat-teacher/1"
KIND = "hubert-iter1"
SAMPLE_RATE = 16000
#: Conv feature extractor of every wav2vec2/HuBERT model: receptive field 400 samples, hop 320 (50 Hz).
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
#: MFCC frames per model frame (100 Hz labels, 50 Hz features).
LABEL_STRIDE = 2
#: The warm-up never lasts longer than this share of the run.
WARMUP_FRACTION = 0.1
TEACHER_JSON = "teacher.json"
HUBERT_DIR = "hubert"
KMEANS_FILE = "kmeans.safetensors"
HEAD_FILE = "head.safetensors"
OPTIONS_FILE = "options.json"


# --------------------------------------------------------------------------------------------- MFCC


@dataclass(frozen=True)
class MFCCConfig:
    """MFCC + Δ + ΔΔ parameters (Kaldi-like; what HuBERT's iteration 1 clustered).

    Attributes:
        sample_rate: input rate (Hz).
        n_fft, hop_length: 25 ms periodic-Hann windows every 10 ms, *not* centred (frame ``k`` covers
            samples ``[k * hop, k * hop + n_fft)``), so ``T = (N - n_fft) // hop + 1`` frames at 100 Hz.
        n_mels, f_min, f_max: an HTK-scale triangular filterbank without area normalisation over
            ``f_min``-``f_max`` Hz (``None``: Nyquist), applied to the power spectrum (``|X|^2``).
        log_floor: the mel power is floored here before the natural log (audio in [-1, 1]; a floor of
            1e-5 is about 110 dB below a full-scale tone's band power).
        n_mfcc: cepstra kept from the orthonormal DCT-II of the log-mel (c0 included: it is the
            log-mel mean times ``sqrt(n_mels)``, a log-energy term).
        lifter: Kaldi/HTK sinusoidal cepstral liftering ``1 + L/2 sin(pi i / L)`` (0: none).
        delta_window: ``N`` of the regression deltas ``sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2)``,
            edges replicated (HTK, Kaldi, ``torchaudio.functional.compute_deltas``).
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float | None = None
    log_floor: float = 1e-5
    n_mfcc: int = 13
    lifter: int = 22
    delta_window: int = 2

    @property
    def dim(self) -> int:
        """Feature size: ``3 * n_mfcc``."""
        return 3 * self.n_mfcc

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def frames(self, num_samples: int) -> int:
        """MFCC frames of ``num_samples`` samples (0 when shorter than one window)."""
        return max(0, (num_samples - self.n_fft) // self.hop_length + 1)

    def mel_config(self) -> MelConfig:
        """The log-mel front-end as a semlat :class:`MelConfig`."""
        return MelConfig(
            n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.n_fft, center=False, padding=0,
            pad_mode="constant", power=2.0, magnitude_eps=0.0, sample_rate=self.sample_rate,
            n_mels=self.n_mels, f_min=self.f_min, f_max=self.f_max, mel_scale="htk", norm=None,
            filterbank="torchaudio", log="ln", clamp_min=self.log_floor,
        )


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Orthonormal DCT-II as ``[n_out, n_in]`` (the first ``n_out`` rows of ``scipy.fft.dct(norm="ortho")``):
    ``D[k, m] = s_k cos(pi k (m + 1/2) / n_in)`` with ``s_0 = sqrt(1/n_in)``, ``s_k = sqrt(2/n_in)``."""
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.arange(n_in, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi * k * (m + 0.5) / n_in) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def lifter_weights(n_mfcc: int, lifter: int) -> torch.Tensor:
    """``[n_mfcc]`` cepstral lifter ``1 + L/2 sin(pi i / L)`` (all ones for ``L = 0``)."""
    if lifter <= 0:
        return torch.ones(n_mfcc)
    i = torch.arange(n_mfcc, dtype=torch.float64)
    return (1.0 + 0.5 * lifter * torch.sin(math.pi * i / lifter)).float()


def deltas(features: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas along time of ``[B, T, C]`` -> ``[B, T, C]``, edges replicated."""
    if window < 1:
        raise ValueError(f"delta window must be >= 1, got {window}")
    padded = F.pad(features.transpose(1, 2), (window, window), mode="replicate")  # [B, C, T + 2w]
    length = features.shape[1]
    out = torch.zeros_like(features.transpose(1, 2))
    for n in range(1, window + 1):
        out = out + n * (padded[..., window + n:window + n + length] - padded[..., window - n:window - n + length])
    denom = 2 * sum(n * n for n in range(1, window + 1))
    return (out / denom).transpose(1, 2)


class MFCC(nn.Module):
    """``audio [B, N]`` (or ``[N]``) at ``config.sample_rate`` -> ``[B, T, 3 * n_mfcc]`` MFCC + Δ + ΔΔ,
    ``T = config.frames(N)`` at 100 Hz (float32)."""

    def __init__(self, config: MFCCConfig | None = None):
        super().__init__()
        self.config = config or MFCCConfig()
        self.mel = MelSpectrogram(self.config.mel_config())
        dct = dct_matrix(self.config.n_mfcc, self.config.n_mels)
        dct = dct * lifter_weights(self.config.n_mfcc, self.config.lifter)[:, None]
        self.register_buffer("dct", dct, persistent=False)  # [n_mfcc, n_mels], liftered

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 1:
            audio = audio[None]
        if audio.shape[-1] < self.config.n_fft:
            raise ValueError(f"audio of {audio.shape[-1]} samples is shorter than one MFCC window "
                             f"({self.config.n_fft})")
        log_mel = self.mel(audio.float())  # [B, n_mels, T]
        cepstra = torch.matmul(self.dct, log_mel).transpose(1, 2)  # [B, T, n_mfcc]
        d1 = deltas(cepstra, self.config.delta_window)
        d2 = deltas(d1, self.config.delta_window)
        return torch.cat([cepstra, d1, d2], dim=-1)


def mfcc(audio: torch.Tensor, config: MFCCConfig | None = None) -> torch.Tensor:
    """MFCC + Δ + ΔΔ of ``audio [B, N]`` at 16 kHz -> ``[B, T, 39]`` at 100 Hz (see :class:`MFCCConfig`)."""
    return MFCC(config).to(audio.device)(audio)


# ------------------------------------------------------------------------------------------ k-means


def collect_mfcc_frames(manifest: Manifest, config: MFCCConfig, *, max_frames: int = 200_000, seed: int = 0,
                        progress: bool = False) -> np.ndarray:
    """MFCC frames of every utterance of ``manifest`` (read at ``config.sample_rate``) as
    ``[F, dim]`` float32, each frame kept with probability ``max_frames / total`` (seeded), then at
    most ``max_frames`` of them (a seeded choice), so memory stays bounded."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    expected = sum(config.frames(round(u.duration * config.sample_rate)) for u in manifest)
    keep = min(1.0, max_frames / max(expected, 1))
    extractor = MFCC(config)
    chunks = []
    for index in tqdm(range(len(manifest)), desc="mfcc", unit="utt", disable=not progress, dynamic_ncols=True):
        audio, _ = load_audio(manifest.audio_path(index), config.sample_rate)
        if audio.shape[-1] < config.n_fft:
            continue
        with torch.no_grad():
            frames = extractor(audio[:1])[0].numpy()
        chunks.append(frames[rng.random(len(frames)) < keep] if keep < 1.0 else frames)
    if not chunks:
        raise DataError("no utterance is long enough for one MFCC frame")
    frames = np.concatenate(chunks)
    if len(frames) > max_frames:
        frames = frames[np.sort(rng.choice(len(frames), max_frames, replace=False))]
    return np.ascontiguousarray(frames, dtype=np.float32)


def fit_kmeans(frames: np.ndarray, clusters: int, *, seed: int = 0, batch_size: int = 10_000,
               max_iter: int = 100, n_init: int = 3) -> tuple[torch.Tensor, float]:
    """Fit ``MiniBatchKMeans`` (k-means++ init, seeded) on ``frames [F, D]``.

    Returns ``(centroids [clusters, D] float32, inertia per frame)``; the same frames and seed give
    the same centroids. The settings follow fairseq's HuBERT ``learn_kmeans.py`` (no reassignment,
    ``tol = 0``) with fewer initialisations. It runs on one thread: the result is the same, and on a
    busy 2-core machine OpenMP's barriers made two threads 2-80x slower."""
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    if len(frames) < clusters:
        raise DataError(f"{len(frames)} MFCC frames are too few for {clusters} clusters")
    kmeans = MiniBatchKMeans(
        n_clusters=clusters, init="k-means++", n_init=n_init, max_iter=max_iter, batch_size=batch_size,
        random_state=seed, tol=0.0, max_no_improvement=100, reassignment_ratio=0.0, compute_labels=False,
    )
    with threadpool_limits(1):  # same result; OpenMP threads stall badly on a busy 2-core machine
        kmeans.fit(frames)
    centroids = torch.from_numpy(np.asarray(kmeans.cluster_centers_, dtype=np.float32))
    inertia = float(assign_clusters(torch.from_numpy(frames), centroids, return_distance=True)[1].mean())
    return centroids, inertia


def assign_clusters(features: torch.Tensor, centroids: torch.Tensor,
                    return_distance: bool = False) -> Any:
    """Nearest centroid of each frame: ``features [..., D]``, ``centroids [K, D]`` -> labels ``[...]``
    (long); with ``return_distance`` also the squared distances ``[...]``."""
    flat = features.reshape(-1, features.shape[-1]).float()
    c = centroids.to(flat.device, torch.float32)
    dist = flat.square().sum(-1, keepdim=True) - 2 * flat @ c.T + c.square().sum(-1)[None]
    best, labels = dist.min(-1)
    labels = labels.reshape(features.shape[:-1])
    if return_distance:
        return labels, best.clamp(min=0).reshape(features.shape[:-1])
    return labels


# ---------------------------------------------------------------------------- model and masking


def conv_frames(num_samples: torch.Tensor | int) -> Any:
    """Frames the conv feature extractor makes from ``num_samples`` (a tensor or an int)."""
    for kernel, stride in zip(CONV_KERNELS, CONV_STRIDES):
        if isinstance(num_samples, torch.Tensor):
            num_samples = torch.div(num_samples - kernel, stride, rounding_mode="floor") + 1
        else:
            num_samples = (num_samples - kernel) // stride + 1
    return num_samples.clamp(min=0) if isinstance(num_samples, torch.Tensor) else max(0, num_samples)


def frame_labels(labels: torch.Tensor, num_frames: int) -> torch.Tensor:
    """100 Hz labels ``[B, T100]`` -> the 50 Hz labels ``[B, num_frames]`` of the conv frames
    (``labels[:, 0::2]``: MFCC frame ``2j`` and conv frame ``j`` share the window ``[320j, 320j + 400)``)."""
    picked = labels[:, ::LABEL_STRIDE][:, :num_frames]
    if picked.shape[1] < num_frames:
        raise ValueError(f"{labels.shape[1]} label frames cannot cover {num_frames} model frames")
    return picked


def span_mask(frame_lengths: torch.Tensor, num_frames: int, prob: float, span: int,
              rng: np.random.Generator) -> torch.Tensor:
    """HuBERT/wav2vec 2.0 span masking: ``[B, num_frames]`` bool.

    For an item of ``L`` valid frames, ``int(prob * L / span + u)`` starts (``u ~ U[0, 1)``, at
    least one) are drawn without replacement from ``[0, L - span]`` and each masks ``span`` frames;
    padding frames are never masked."""
    mask = np.zeros((len(frame_lengths), num_frames), dtype=bool)
    for row, length in enumerate(frame_lengths.tolist()):
        length = min(int(length), num_frames)
        width = min(span, length)
        if width < 1:
            continue
        starts_available = length - width + 1
        count = min(starts_available, max(1, int(prob * length / span + rng.random())))
        starts = rng.choice(starts_available, count, replace=False)
        for start in starts:
            mask[row, start:start + width] = True
    return torch.from_numpy(mask)


def normalize_audio(audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """What ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does to each item of ``audio [B, N]``:
    zero mean and unit variance over its ``lengths [B]`` valid samples (``/ sqrt(var + 1e-7)``),
    padding set to 0. Returns ``[B, N]``."""
    valid = torch.arange(audio.shape[-1], device=audio.device)[None] < lengths[:, None].to(audio.device)
    count = valid.sum(-1, keepdim=True).clamp(min=1)
    mean = (audio * valid).sum(-1, keepdim=True) / count
    var = ((audio - mean).square() * valid).sum(-1, keepdim=True) / count
    return torch.where(valid, (audio - mean) / torch.sqrt(var + 1e-7), torch.zeros_like(audio))


def hubert_config(hidden: int = 256, layers: int = 4, heads: int = 4, conv_dim: int = 128,
                  dropout: float = 0.0) -> Any:
    """A small ``HubertConfig``: ``conv_dim`` channels in the 7 conv layers (GroupNorm on the first,
    as HuBERT Base), ``layers`` post-LN transformer layers of width ``hidden`` with ``heads`` heads
    and a ``4 * hidden`` feed-forward, HF's 128-tap grouped positional convolution, no layer drop."""
    from transformers import HubertConfig

    if hidden % heads:
        raise ConfigError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    return HubertConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * hidden,
        hidden_act="gelu", hidden_dropout=dropout, activation_dropout=dropout, attention_dropout=dropout,
        feat_proj_dropout=dropout, final_dropout=dropout, layerdrop=0.0, feat_extract_norm="group",
        feat_extract_activation="gelu", conv_dim=(conv_dim,) * len(CONV_KERNELS), conv_stride=CONV_STRIDES,
        conv_kernel=CONV_KERNELS, conv_bias=False, num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=math.gcd(16, hidden), do_stable_layer_norm=False,
        apply_spec_augment=True, mask_time_prob=0.05, mask_time_length=10, mask_feature_prob=0.0,
    )


class MaskedPredictor(nn.Module):
    """A ``HubertModel`` plus a linear head over the clusters.

    ``forward(audio [B, N] normalised, mask [B, T] bool or None) -> logits [B, T, clusters]``."""

    def __init__(self, config: Any, clusters: int):
        super().__init__()
        from transformers import HubertModel

        self.hubert = HubertModel(config)
        self.head = nn.Linear(config.hidden_size, clusters)

    def forward(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.hubert(audio, mask_time_indices=mask).last_hidden_state
        return self.head(hidden)


# ------------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class TeacherTrainOptions:
    """Every option of :func:`train_teacher` (written to ``options.json``)."""

    manifest: str
    out: str
    split: str = "train"
    heldout_split: str = "valid"
    clusters: int = 100
    max_minutes: float | None = 5.0
    max_steps: int | None = None
    seed: int = 0
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    conv_dim: int = 128
    dropout: float = 0.0
    batch_size: int = 8
    crop_seconds: float = 3.0
    lr: float = 5e-4
    warmup_steps: int = 50
    final_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    mask_prob: float = 0.8
    mask_length: int = 10
    unmasked_weight: float = 0.0
    kmeans_frames: int = 200_000
    kmeans_init: int = 3
    heldout_crops: int = 32
    recommended_layer: int | None = None
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True
    mfcc: MFCCConfig = MFCCConfig()

    def validate(self) -> None:
        """One-line :class:`ConfigError` for an impossible option."""
        if self.max_minutes is None and self.max_steps is None:
            raise ConfigError("teacher training needs max_minutes or max_steps")
        positive = {"clusters": self.clusters, "hidden": self.hidden, "layers": self.layers, "heads": self.heads,
                    "conv_dim": self.conv_dim, "batch_size": self.batch_size, "mask_length": self.mask_length}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"teacher training: {name} must be >= 1, got {value}")
        if self.clusters < 2:
            raise ConfigError(f"teacher training: clusters must be >= 2, got {self.clusters}")
        if not 0.0 < self.mask_prob <= 1.0:
            raise ConfigError(f"teacher training: mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.crop_seconds * SAMPLE_RATE < 400 * self.mask_length:
            raise ConfigError(f"teacher training: crop_seconds {self.crop_seconds} is too short for "
                              f"mask_length {self.mask_length}")
        if self.recommended_layer is not None and not 0 <= self.recommended_layer <= self.layers:
            raise ConfigError(f"teacher training: recommended_layer must be in 0..{self.layers}")
        if self.mfcc.sample_rate != SAMPLE_RATE or self.mfcc.hop_length * LABEL_STRIDE != 320:
            raise ConfigError("teacher training: the MFCC labels must be 100 Hz at 16 kHz")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Held:
    """A fixed held-out set: normalised audio, labels, masks and valid frames, per batch."""

    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    split: str


class _Labeler(nn.Module):
    """``audio [B, N]`` raw -> 50 Hz cluster labels ``[B, T]`` of the model's frames."""

    def __init__(self, config: MFCCConfig, centroids: torch.Tensor):
        super().__init__()
        self.mfcc = MFCC(config)
        self.register_buffer("centroids", centroids, persistent=False)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        labels = assign_clusters(self.mfcc(audio), self.centroids)
        return frame_labels(labels, conv_frames(audio.shape[-1]))


def _batches(dataset: Any, batch_size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Endless shuffled batches of crops (a new order and new crops every epoch)."""
    from semlat.data.datasets import collate_audio
    from semlat.data.samplers import ShardedSampler

    sampler = ShardedSampler(len(dataset), shuffle=True, seed=seed, rank=0, world_size=1)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        keys = list(sampler)
        for start in range(0, len(keys) - batch_size + 1, batch_size):  # the last partial batch is dropped
            yield collate_audio([dataset[key] for key in keys[start:start + batch_size]])
        epoch += 1


def _prepare(batch: dict[str, Any], labeler: _Labeler, opts: TeacherTrainOptions, rng: np.random.Generator,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A collated batch -> ``(normalised audio [B, N], labels [B, T], mask [B, T], valid [B, T])``."""
    audio = batch["audio"][:, 0].to(device)
    lengths = batch["length"].to(device)
    labels = labeler(audio)
    frames = labels.shape[1]
    valid_frames = conv_frames(lengths).clamp(max=frames)
    valid = torch.arange(frames, device=device)[None] < valid_frames[:, None]
    mask = span_mask(valid_frames.cpu(), frames, opts.mask_prob, opts.mask_length, rng).to(device)
    return normalize_audio(audio, lengths), labels, mask, valid


def _loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor,
          unmasked_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on masked valid frames (+ ``unmasked_weight`` x that on unmasked ones) and the
    masked-frame accuracy. ``logits [B, T, K]``, ``labels/mask/valid [B, T]``."""
    ce = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # [B, T]
    masked, unmasked = mask & valid, ~mask & valid
    loss = (ce * masked).sum() / masked.sum().clamp(min=1)
    if unmasked_weight > 0:
        loss = loss + unmasked_weight * (ce * unmasked).sum() / unmasked.sum().clamp(min=1)
    correct = (logits.argmax(-1) == labels) & masked
    return loss, {"loss": float(loss.detach()), "acc": float(correct.sum()) / max(1, int(masked.sum()))}


def _learning_rate(opts: TeacherTrainOptions, step: int, elapsed: float) -> float:
    """Linear warm-up over ``warmup_steps`` (cut short at 10 % of the run, so a slow machine still
    leaves it), then a cosine decay to ``final_lr_ratio * lr`` along the run's progress (the larger of
    ``step / max_steps`` and ``elapsed / max_minutes``)."""
    progress = budget_progress(step, elapsed, opts.max_steps, opts.max_minutes)
    if step < opts.warmup_steps and progress < WARMUP_FRACTION:
        return opts.lr * max((step + 1) / opts.warmup_steps, progress / WARMUP_FRACTION)
    return cosine_decay(opts.lr, opts.final_lr_ratio, progress)


def _held_out(manifest: Manifest, opts: TeacherTrainOptions, labeler: _Labeler,
              device: torch.device) -> _Held:
    """Fixed crops (seeded by item) and masks of the held-out split (the training split if it is empty)."""
    from semlat.data.datasets import AudioCropDataset, collate_audio, fixed_subset

    split = opts.heldout_split
    held = manifest.split(split) if split else manifest.split(opts.split)
    if len(held) == 0:
        split, held = opts.split, manifest.split(opts.split)
    held = fixed_subset(held, opts.heldout_crops, salt="teacher-heldout")
    dataset = AudioCropDataset(held, SAMPLE_RATE, opts.crop_seconds, seed=opts.seed + 1)
    rng = np.random.default_rng([opts.seed, 1])
    batches = []
    for start in range(0, len(dataset), opts.batch_size):
        batch = collate_audio([dataset[i] for i in range(start, min(len(dataset), start + opts.batch_size))])
        batches.append(_prepare(batch, labeler, opts, rng, device))
    return _Held(batches, split)


@torch.no_grad()
def evaluate(model: MaskedPredictor, held: _Held, clusters: int) -> dict[str, float]:
    """Masked-prediction accuracy on the held-out set, with two baselines: ``chance`` (1 / clusters)
    and ``majority`` (the share of the most frequent cluster among the masked frames: the best
    accuracy a constant guess could reach). Also the accuracy on unmasked frames."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(clusters, dtype=torch.long)
    correct = total = correct_unmasked = total_unmasked = 0
    for audio, labels, mask, valid in held.batches:
        predicted = model(audio, mask).argmax(-1)
        masked, unmasked = mask & valid, ~mask & valid
        correct += int(((predicted == labels) & masked).sum())
        total += int(masked.sum())
        correct_unmasked += int(((predicted == labels) & unmasked).sum())
        total_unmasked += int(unmasked.sum())
        counts += torch.bincount(labels[masked].cpu(), minlength=clusters)
    model.train(was_training)
    return {"accuracy": correct / max(1, total), "unmasked_accuracy": correct_unmasked / max(1, total_unmasked),
            "majority": float(counts.max()) / max(1, total), "chance": 1.0 / clusters, "frames": total}


def _fit(model: MaskedPredictor, manifest: Manifest, labeler: _Labeler, opts: TeacherTrainOptions,
         device: torch.device) -> dict[str, Any]:
    """The masked-prediction loop; returns ``{"steps", "minutes", "train_accuracy", "train_loss"}``."""
    from tqdm import tqdm

    from semlat.data.datasets import AudioCropDataset

    dataset = AudioCropDataset(manifest, SAMPLE_RATE, opts.crop_seconds, seed=opts.seed, min_rms_db=-45.0,
                               max_tries=3)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "norm" in name else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=opts.lr, betas=(0.9, 0.98))
    rng = np.random.default_rng([opts.seed, 0])
    stream = _batches(dataset, min(opts.batch_size, len(dataset)), opts.seed)
    recent: list[dict[str, float]] = []
    step, started = 0, time.monotonic()
    bar = tqdm(total=opts.max_steps, desc="teacher", unit="step", dynamic_ncols=True, disable=not opts.progress)
    model.train()
    try:
        while opts.max_steps is None or step < opts.max_steps:
            elapsed = time.monotonic() - started
            if opts.max_minutes is not None and elapsed > 60 * opts.max_minutes:
                break
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(opts, step, elapsed)
            audio, labels, mask, valid = _prepare(next(stream), labeler, opts, rng, device)
            loss, logs = _loss(model(audio, mask), labels, mask, valid, opts.unmasked_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            optimizer.step()
            step += 1
            recent = (recent + [logs])[-20:]
            bar.update(1)
            postfix = {"loss": f"{logs['loss']:.3f}", "acc": f"{np.mean([r['acc'] for r in recent]):.3f}"}
            if opts.max_minutes is not None:
                postfix["budget"] = f"{(time.monotonic() - started) / 60:.1f}/{opts.max_minutes:g} min"
            bar.set_postfix(postfix, refresh=False)
    finally:
        bar.close()
    return {"steps": step, "minutes": round((time.monotonic() - started) / 60, 3),
            "train_loss": float(np.mean([r["loss"] for r in recent])) if recent else None,
            "train_accuracy": float(np.mean([r["acc"] for r in recent])) if recent else None}


def _check_out(out: Path) -> None:
    """Refuse to replace an existing folder that is not a semlat teacher."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / TEACHER_JSON).is_file())):
        raise ConfigError(f"{out} exists and is not a semlat teacher; refusing to replace it")


def _save(folder: Path, model: MaskedPredictor, centroids: torch.Tensor, info: dict[str, Any],
          opts: TeacherTrainOptions) -> None:
    """Write the teacher folder's files into ``folder`` (the atomic temporary)."""
    from safetensors.torch import save_file
    from transformers import Wav2Vec2FeatureExtractor
    from transformers.utils import logging as hf_logging

    model = model.cpu()
    bars = hf_logging.is_progress_bar_enabled()
    if not opts.progress:
        hf_logging.disable_progress_bar()
    try:
        model.hubert.save_pretrained(folder / HUBERT_DIR)
    finally:
        if bars and not opts.progress:
            hf_logging.enable_progress_bar()
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(folder / HUBERT_DIR)
    save_file({"centroids": centroids.contiguous()}, str(folder / KMEANS_FILE),
              metadata={"format": FORMAT, "mfcc": json.dumps(dataclasses.asdict(opts.mfcc))})
    save_file({k: v.detach().contiguous() for k, v in model.head.state_dict().items()}, str(folder / HEAD_FILE))
    (folder / TEACHER_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (folder / OPTIONS_FILE).write_text(json.dumps(opts.to_dict(), indent=2) + "\n", encoding="utf-8")


def train_teacher(manifest: str, out: str, *, split: str = "train", clusters: int = 100,
                  max_minutes: float | None = 5.0, max_steps: int | None = None, seed: int = 0, hidden: int = 256,
                  layers: int = 4, device: str = "cpu", progress: bool = True, **options: Any) -> Path:
    """Train HuBERT's first iteration on ``manifest``'s ``split`` and write the teacher to ``out``.

    MFCC frames of the split are clustered (k-means, ``clusters``), then the model learns masked
    prediction of those clusters until ``max_minutes`` of training (the feature extraction, k-means
    and the final held-out evaluation come on top, usually seconds) or ``max_steps`` (whichever comes
    first; with ``max_steps`` alone the run is deterministic for a seed). Other keyword options are the
    fields of :class:`TeacherTrainOptions` (``batch_size``, ``crop_seconds``, ``lr``, ``mask_prob``, ...);
    ``threads`` sets torch's CPU threads for the run (restored afterwards): on a machine whose cores
    are busy with another job, 1 thread was up to 4x faster than 2.
    Returns the folder, loadable as ``semlat:<out>``.
    """
    from semlat.data.manifest import Manifest

    unknown = set(options) - {f.name for f in dataclasses.fields(TeacherTrainOptions)}
    if unknown:
        raise ConfigError(f"unknown teacher training option {min(unknown)!r}")
    opts = TeacherTrainOptions(
        manifest=str(Path(manifest).resolve()), out=str(Path(out).resolve()), split=split, clusters=clusters,
        max_minutes=max_minutes, max_steps=max_steps, seed=seed, hidden=hidden, layers=layers, device=device,
        progress=progress, **options,
    )
    opts.validate()
    out_path = Path(opts.out)
    _check_out(out_path)
    full = Manifest.read(opts.manifest)
    train = full.split(opts.split)
    if len(train) == 0:
        raise DataError(f"{opts.manifest}: split {opts.split!r} has no utterances")
    previous_threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        info, model, centroids = _train(full, train, opts)
    finally:
        torch.set_num_threads(previous_threads)
    with atomic_dir(out_path) as tmp:
        _save(tmp, model, centroids, info, opts)
    return out_path


def _train(full: Manifest, train: Manifest,
           opts: TeacherTrainOptions) -> tuple[dict[str, Any], MaskedPredictor, torch.Tensor]:
    """k-means, masked prediction and the held-out evaluation: ``(teacher.json, model, centroids)``."""
    torch_device = torch.device(opts.device)
    started = time.monotonic()
    frames = collect_mfcc_frames(train, opts.mfcc, max_frames=opts.kmeans_frames, seed=opts.seed,
                                 progress=opts.progress)
    centroids, inertia = fit_kmeans(frames, opts.clusters, seed=opts.seed, n_init=opts.kmeans_init)
    kmeans_minutes = (time.monotonic() - started) / 60

    torch.manual_seed(opts.seed)
    model = MaskedPredictor(hubert_config(opts.hidden, opts.layers, opts.heads, opts.conv_dim, opts.dropout),
                            opts.clusters).to(torch_device)
    labeler = _Labeler(opts.mfcc, centroids).to(torch_device)
    held = _held_out(full, opts, labeler, torch_device)
    summary = _fit(model, train, labeler, opts, torch_device)
    scores = evaluate(model, held, opts.clusters)

    info = {
        "format": FORMAT, "kind": KIND, "sample_rate": SAMPLE_RATE,
        "frame_rate": SAMPLE_RATE / math.prod(CONV_STRIDES), "dim": opts.hidden, "num_layers": opts.layers,
        "clusters": opts.clusters, "label_rate": opts.mfcc.frame_rate, "mfcc": dataclasses.asdict(opts.mfcc),
        "training": {
            **summary, "final_accuracy": round(scores["accuracy"], 4),
            "heldout": {"split": held.split, "masked_frames": scores["frames"],
                        "unmasked_accuracy": round(scores["unmasked_accuracy"], 4),
                        "majority_baseline": round(scores["majority"], 4), "chance": scores["chance"]},
            "kmeans": {"frames": len(frames), "inertia_per_frame": round(inertia, 4),
                       "minutes": round(kmeans_minutes, 3)},
            "manifest": opts.manifest, "split": opts.split, "seed": opts.seed,
        },
        "recommended_layer": opts.recommended_layer if opts.recommended_layer is not None
        else math.ceil(opts.layers / 2),
        "semlat_version": semlat.__version__,
    }
    return info, model, centroids


# ------------------------------------------------------------------------------------- loading


def read_teacher_info(folder: str | Path) -> dict[str, Any]:
    """``teacher.json`` of a semlat teacher folder, validated; one-line :class:`ConfigError` otherwise."""
    folder = Path(folder)
    path = folder / TEACHER_JSON
    hint = "make one with `semlat teacher train`"
    if not path.is_file():
        raise ConfigError(f"{folder} is not a semlat teacher (no {TEACHER_JSON}; {hint})")
    info = read_json_object(path, "teacher description")
    if info.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a semlat teacher (format {info.get('format')!r}, expected {FORMAT!r})")
    for key in ("sample_rate", "frame_rate", "dim", "num_layers", "recommended_layer"):
        if isinstance(info.get(key), bool) or not isinstance(info.get(key), (int, float)):
            raise ConfigError(f"{path}: missing or invalid {key!r}")
    if not (folder / HUBERT_DIR / "config.json").is_file():
        raise ConfigError(f"{folder}: the teacher's model folder {HUBERT_DIR}/ is missing or incomplete")
    return info


def load_semlat_teacher(spec: TeacherSpec) -> Teacher:
    """The teacher a ``semlat:`` spec names: an ``HFTeacher`` over ``<folder>/hubert`` whose ``spec``
    is the semlat spec. ``semlat:<folder>`` (no layers) uses the folder's ``recommended_layer``;
    ``@k``, ``@i,j`` and ``@all`` select layers as for ``hf:`` specs."""
    from semlat.semantic.hf_teacher import HFTeacher

    spec = TeacherSpec.parse(spec)
    folder = Path(spec.path)
    info = read_teacher_info(folder)
    layers = spec.layers if spec.layers is not None else (int(info["recommended_layer"]),)
    model_path = folder / HUBERT_DIR
    teacher = HFTeacher(TeacherSpec("hf", str(model_path), layers), model_path=model_path)
    if teacher.dim != info["dim"] or teacher.sample_rate != info["sample_rate"]:
        raise ConfigError(f"{folder}: {HUBERT_DIR}/ does not match {TEACHER_JSON} (dim {teacher.dim} vs "
                          f"{info['dim']}, rate {teacher.sample_rate} vs {info['sample_rate']})")
    teacher.spec = spec
    return teacher
