"""The offline teacher: HuBERT's first iteration, trained from scratch on a manifest.

When no pretrained SSL model is at hand, ``semlat teacher train`` makes one the way HuBERT's first
iteration did (Hsu et al., 2021):

1. **MFCC targets** (:class:`MFCC`): 13 MFCCs with deltas and delta-deltas, 39 dims at 100 Hz.
2. **k-means** (:func:`fit_kmeans`): ``clusters`` centroids (default 100) fitted with scikit-learn's
   ``MiniBatchKMeans`` on a seeded subsample of the training split's MFCC frames.
3. **Masked prediction** (:class:`HubertTeacherModel`): a small ``transformers.HubertModel`` (a 50 Hz conv
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

**Training** is the ``teacher`` recipe of the one Trainer (``semlat train teacher/default`` or the
``semlat teacher train`` wrapper; :mod:`semlat.training.recipes.teacher`): resume, DDP, TensorBoard and
the progress bar come with it. The k-means centroids are fitted once per run (``<run>/kmeans.safetensors``).

**Output**: an ordinary model folder (``model_type: hubert_teacher``, :class:`HubertTeacherModel`: the
HuBERT, the head and the centroids, with its config and held-out figures in ``config.json``).
``semlat:PATH[@layers]`` loads it (:func:`load_semlat_teacher`; PATH may also be the training run,
standing for its latest checkpoint, or a folder of semlat 0.1 with ``teacher.json``) as an
``HFTeacher``; without ``@layers`` it uses the recommended layer, by default the middle transformer
layer (``ceil(layers / 2)``), after HuBERT, whose second iteration clusters the middle (6th of 12)
layer of the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semlat.audio.io import load_audio
from semlat.audio.mfcc import MFCC, MFCCConfig, dct_matrix, deltas, lifter_weights, mfcc
from semlat.checkpoints import CONFIG_NAME, legacy_layout, load_model_of_type, resolve_model_folder
from semlat.config import FromConfig, read_json_object
from semlat.errors import CheckpointError, ConfigError, DataError
from semlat.semantic.teachers import Teacher, TeacherSpec

if TYPE_CHECKING:
    from semlat.data.manifest import Manifest

#: MFCC lives in semlat.audio.mfcc; these names stay importable from here
__all__ = ["MFCC", "HubertTeacherConfig", "HubertTeacherModel", "MFCCConfig", "assign_clusters", "collect_mfcc_frames",
           "conv_frames", "dct_matrix", "deltas", "evaluate", "fit_kmeans", "frame_labels", "hubert_config",
           "lifter_weights", "load_semlat_teacher", "mfcc", "normalize_audio", "read_teacher_info", "span_mask"]

FORMAT = "semlat-teacher/1"
KIND = "hubert-iter1"
SAMPLE_RATE = 16000
#: Conv feature extractor of every wav2vec2/HuBERT model: receptive field 400 samples, hop 320 (50 Hz).
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
#: MFCC frames per model frame (100 Hz labels, 50 Hz features).
LABEL_STRIDE = 2
#: files of a teacher folder of semlat 0.1 (still loadable)
TEACHER_JSON = "teacher.json"
#: model types that are teachers (their class has ``as_teacher(spec, folder)``)
TEACHER_MODEL_TYPES = ("hubert_teacher", "dasheng")
HUBERT_DIR = "hubert"
KMEANS_FILE = "kmeans.safetensors"


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


@dataclass
class HubertTeacherConfig:
    """The offline teacher's sizes: a ``hubert_config(hidden, layers, heads, conv_dim, dropout)`` model,
    a head over ``clusters`` k-means targets, and the layer a ``semlat:`` spec without ``@layer`` uses
    (``None``: the middle one, ``ceil(layers / 2)``)."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    conv_dim: int = 128
    dropout: float = 0.0
    clusters: int = 100
    recommended_layer: int | None = None

    def validate(self, where: str) -> None:
        for name in ("hidden", "layers", "heads", "conv_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name} must be >= 1, got {getattr(self, name)}")
        if self.clusters < 2:
            raise ConfigError(f"{where}.clusters must be >= 2, got {self.clusters}")
        if self.hidden % self.heads:
            raise ConfigError(f"{where}.hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.recommended_layer is not None and not 0 <= self.recommended_layer <= self.layers:
            raise ConfigError(f"{where}.recommended_layer must be in 0..{self.layers}")


class HubertTeacherModel(FromConfig, nn.Module):
    """The trained offline teacher as an ordinary model folder (``model_type: hubert_teacher``):
    the masked predictor (``predictor.hubert``, ``predictor.head``) and the k-means ``centroids``
    ``[clusters, 39]`` its targets came from.

    ``forward(audio [B, N] normalised, mask [B, T] or None) -> logits [B, T, clusters]``."""

    config_class = HubertTeacherConfig
    config_where = "hubert_teacher config"

    def __init__(self, config: HubertTeacherConfig):
        super().__init__()
        config.validate("hubert_teacher config")
        self.config = config
        self.predictor = MaskedPredictor(hubert_config(config.hidden, config.layers, config.heads, config.conv_dim,
                                                      config.dropout), config.clusters)
        self.register_buffer("centroids", torch.zeros(config.clusters, MFCCConfig().dim))


    @property
    def recommended_layer(self) -> int:
        layer = self.config.recommended_layer
        return int(layer) if layer is not None else math.ceil(self.config.layers / 2)

    def forward(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.predictor(audio, mask)

    def as_teacher(self, spec: TeacherSpec, folder: Path) -> Teacher:
        """A frozen :class:`HFTeacher` over this model's HuBERT (normalised input, no attention mask, as in
        training), named ``spec``; no ``@layers`` means :attr:`recommended_layer`."""
        from semlat.semantic.hf_teacher import HFTeacher

        layers = spec.layers if spec.layers is not None else (self.recommended_layer,)
        teacher = HFTeacher(TeacherSpec("hf", str(folder), layers), model=self.predictor.hubert,
                            preprocessor={"sampling_rate": SAMPLE_RATE, "do_normalize": True,
                                          "return_attention_mask": False})
        teacher.spec = spec
        return teacher


@dataclass
class _Held:
    """A fixed held-out set: normalised audio, labels, masks and valid frames, per batch."""

    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    split: str


class Labeler(nn.Module):
    """``audio [B, N]`` raw -> 50 Hz cluster labels ``[B, T]`` of the model's frames."""

    def __init__(self, config: MFCCConfig, centroids: torch.Tensor):
        super().__init__()
        self.mfcc = MFCC(config)
        self.register_buffer("centroids", centroids, persistent=False)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        labels = assign_clusters(self.mfcc(audio), self.centroids)
        return frame_labels(labels, conv_frames(audio.shape[-1]))


def prepare_batch(batch: dict[str, Any], labeler: Labeler, mask_prob: float, mask_length: int,
                  rng: np.random.Generator, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A collated batch -> ``(normalised audio [B, N], labels [B, T], mask [B, T], valid [B, T])``."""
    audio = batch["audio"][:, 0].to(device)
    lengths = batch["length"].to(device)
    labels = labeler(audio)
    frames = labels.shape[1]
    valid_frames = conv_frames(lengths).clamp(max=frames)
    valid = torch.arange(frames, device=device)[None] < valid_frames[:, None]
    mask = span_mask(valid_frames.cpu(), frames, mask_prob, mask_length, rng).to(device)
    return normalize_audio(audio, lengths), labels, mask, valid


def masked_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor,
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


def held_out_set(manifest: Manifest, split: str | None, fallback: str, crops: int, crop_seconds: float,
                 batch_size: int, mask_prob: float, mask_length: int, seed: int, labeler: Labeler,
                 device: torch.device) -> _Held:
    """Fixed crops (seeded by item) and masks of the held-out ``split`` (``fallback`` when it is empty)."""
    from semlat.data.datasets import AudioCropDataset, collate_audio, fixed_subset

    held = manifest.split(split) if split else manifest.split(fallback)
    if len(held) == 0:
        split, held = fallback, manifest.split(fallback)
    held = fixed_subset(held, crops, salt="teacher-heldout")
    dataset = AudioCropDataset(held, SAMPLE_RATE, crop_seconds, seed=seed + 1)
    rng = np.random.default_rng([seed, 1])
    batches = []
    for start in range(0, len(dataset), batch_size):
        batch = collate_audio([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        batches.append(prepare_batch(batch, labeler, mask_prob, mask_length, rng, device))
    return _Held(batches, split or fallback)


@torch.no_grad()
def evaluate(model: nn.Module, held: _Held, clusters: int) -> dict[str, float]:
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
    """The teacher a ``semlat:`` spec names, whose ``spec`` is the semlat spec.

    The path is a ``hubert_teacher`` model folder, a training run of the ``teacher`` recipe (its latest
    checkpoint), an imported Dasheng (``semlat import dasheng``), or a folder written by earlier versions
    (``teacher.json`` + ``hubert/``). ``semlat:<folder>`` (no layers) uses the model's recommended layer;
    ``@k``, ``@i,j`` and ``@all`` select layers as for ``hf:`` specs (a Dasheng gives its last layer)."""
    spec = TeacherSpec.parse(spec)
    given = Path(spec.path)
    if legacy_layout(given) == TEACHER_JSON:
        return _load_legacy_teacher(spec, given)
    model_type = "hubert_teacher"
    meta_path = resolve_model_folder(given) / CONFIG_NAME
    if meta_path.is_file():
        kind = read_json_object(meta_path, "model description").get("model_type")
        model_type = kind if kind in TEACHER_MODEL_TYPES else model_type
    try:
        from semlat.semantic.dasheng import Dasheng

        cls = Dasheng if model_type == "dasheng" else HubertTeacherModel
        model, _, folder = load_model_of_type(given, cls, model_type, "a semlat teacher",
                                             "make one with `semlat teacher train` or `semlat import dasheng`")
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    return model.as_teacher(spec, folder)


def _load_legacy_teacher(spec: TeacherSpec, folder: Path) -> Teacher:
    """A teacher folder of semlat 0.1's own loop (``teacher.json``, ``hubert/``)."""
    from semlat.semantic.hf_teacher import HFTeacher

    info = read_teacher_info(folder)
    layers = spec.layers if spec.layers is not None else (int(info["recommended_layer"]),)
    model_path = folder / HUBERT_DIR
    teacher = HFTeacher(TeacherSpec("hf", str(model_path), layers), model_path=model_path)
    if teacher.dim != info["dim"] or teacher.sample_rate != info["sample_rate"]:
        raise ConfigError(f"{folder}: {HUBERT_DIR}/ does not match {TEACHER_JSON} (dim {teacher.dim} vs "
                          f"{info['dim']}, rate {teacher.sample_rate} vs {info['sample_rate']})")
    teacher.spec = spec
    return teacher
