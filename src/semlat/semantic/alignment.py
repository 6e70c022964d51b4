"""Alignment of VAE latents to teacher features: projections, losses and adaptive weighting.

Everything happens at the latent frame rate: teacher features ``[B, T_g, D_t]`` (e.g. 50 Hz) are
linearly interpolated to the latent length ``T`` (e.g. 40 Hz). Two directions:

- ``teacher_to_latent`` (Semantic-VAE, as published): the regulator (``InterpolateRegulator``, the
  VAE's ``projectors`` module; dropped at inference) maps the features to ``[B, T, D]`` and the
  target is compared with the *sampled* latent ``z``;
- ``latent_to_teacher`` (REPA): a small MLP maps ``z`` to ``[B, T, D_t]`` and is compared with the
  interpolated features;
- ``teacher_pca``: no learned projector at all. The teacher's top ``k`` principal components, whitened
  (:class:`TeacherPCA`, fitted once on the training items' cached features and kept fixed), are the target of the
  first ``k`` latent channels, ``z[..., :k]``; the other channels are left to the reconstruction. A learned
  projector can meet a cosine target through a few directions the probe cannot use (the published alignment
  reaches cosines up to 0.9 at demo scale while the latents' phoneme probe gains 1-3 points); a fixed target cannot.

Losses, per frame then a masked mean over frames and a mean over the batch:

- ``cosine``: ``-cos(a_t, b_t)`` over the feature dimension (the paper's loss, weight 1.0);
- ``l1`` / ``mse``: mean absolute / squared difference over the feature dimension;
- ``vf``: VA-VAE's vision-foundation loss — a margin cosine ``relu(1 - m1 - cos(a_t, b_t))``
  (m1 = 0.5) plus a margin distance-matrix term ``relu(|cos(a_i, a_j) - cos(b_i, b_j)| - m2)``
  (m2 = 0.25) averaged over valid frame pairs of each item; with ``adaptive`` weighting its
  weight is ``||grad L_rec|| / ||grad L_vf||`` at the encoder's last layer (VA-VAE's rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.errors import ConfigError

LOSSES = ("cosine", "l1", "mse", "vf")
DIRECTIONS = ("teacher_to_latent", "latent_to_teacher", "teacher_pca")


@dataclass
class AlignmentConfig:
    """How latents are aligned to a teacher. ``weight = 0`` (or no teacher) is the vanilla VAE.

    Attributes:
        teacher: a teacher spec (``hf:/path/wavlm-large@23``, ``semlat:/path``), or None.
        cache: a feature folder from ``semlat features extract`` (None: run the teacher online).
        weight: loss weight (1.0 in the paper).
        loss: ``cosine`` | ``l1`` | ``mse`` | ``vf``.
        direction: ``teacher_to_latent`` (published) | ``latent_to_teacher`` (REPA) | ``teacher_pca`` (the first
            ``pca_channels`` latent channels regress the teacher's whitened top principal components; needs a cache).
        projector_hidden: hidden width of the latent-to-teacher MLP; 0 makes it one linear layer, so that
            the teacher's features must be linearly readable from the latent (what a linear probe measures).
        pca_channels: ``teacher_pca``: latent channels tied to the teacher (at most the latent's width).
        pca_fit_items: ``teacher_pca``: training items whose cached features fit the components.
        vf_margin_cos, vf_margin_dist: VA-VAE's margins m1 and m2.
        vf_adaptive: scale the VF loss by the gradient-norm ratio at the encoder's last layer.
        vf_max_weight: upper clamp of that adaptive ratio.
    """

    teacher: str | None = None
    cache: str | None = None
    weight: float = 1.0
    loss: str = "cosine"
    direction: str = "teacher_to_latent"
    projector_hidden: int = 512
    pca_channels: int = 8
    pca_fit_items: int = 256
    vf_margin_cos: float = 0.5
    vf_margin_dist: float = 0.25
    vf_adaptive: bool = True
    vf_max_weight: float = 1e4

    @property
    def enabled(self) -> bool:
        return self.teacher is not None and self.weight > 0

    def validate(self, where: str) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"{where}.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"{where}.direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if self.weight < 0:
            raise ConfigError(f"{where}.weight must be >= 0, got {self.weight}")
        if self.projector_hidden < 0:
            raise ConfigError(f"{where}.projector_hidden must be >= 0 (0: linear), got {self.projector_hidden}")
        if self.pca_channels < 1 or self.pca_fit_items < 1:
            raise ConfigError(f"{where}.pca_channels and {where}.pca_fit_items must be >= 1, got "
                              f"{self.pca_channels} and {self.pca_fit_items}")
        if self.direction == "teacher_pca" and self.loss == "vf":
            raise ConfigError(f"{where}.loss=vf compares frame similarities; direction teacher_pca takes cosine, l1 "
                              "or mse")
        if self.cache is not None and self.teacher is None:
            raise ConfigError(f"{where}.cache is set but {where}.teacher is not; name the teacher the cache was "
                              "made with")


class LatentToTeacher(nn.Module):
    """REPA's projector: ``z [B, T, D] -> [B, T, D_t]`` by a 3-layer SiLU MLP (``hidden = 0``: one linear layer)."""

    def __init__(self, latent_dim: int, teacher_dim: int, hidden: int = 512):
        super().__init__()
        if hidden == 0:
            self.net = nn.Sequential(nn.Linear(latent_dim, teacher_dim))
            return
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, teacher_dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class TeacherPCA(nn.Module):
    """A fixed map from teacher features ``[B, T, D_t]`` to their top ``channels`` principal components, each scaled
    to unit variance (``[B, T, channels]``). :meth:`fit` sets it from sample frames; the buffers are saved with the
    run and never trained."""

    def __init__(self, teacher_dim: int, channels: int):
        super().__init__()
        if not 1 <= channels <= teacher_dim:
            raise ConfigError(f"teacher_pca: {channels} components of {teacher_dim}-dim teacher features")
        self.register_buffer("mean", torch.zeros(teacher_dim))
        self.register_buffer("components", torch.zeros(channels, teacher_dim))
        self.register_buffer("scale", torch.ones(channels))

    @torch.no_grad()
    def fit(self, frames: Tensor) -> Tensor:
        """Fit on ``frames [N, D_t]`` (float64 covariance, eigenvectors by decreasing variance, each signed so
        that its largest entry is positive); returns the fraction of the variance each component explains."""
        if frames.ndim != 2 or frames.shape[1] != self.mean.numel() or frames.shape[0] < 2:
            raise ConfigError(f"teacher_pca: cannot fit {self.mean.numel()}-dim components on frames of shape "
                              f"{tuple(frames.shape)}")
        x = frames.to(torch.float64)
        mean = x.mean(dim=0)
        covariance = torch.cov((x - mean).T)
        values, vectors = torch.linalg.eigh(covariance)
        order = torch.argsort(values, descending=True)[: self.components.shape[0]]
        top = vectors[:, order].T
        top = top * torch.sign(top.gather(1, top.abs().argmax(dim=1, keepdim=True)))
        self.mean.copy_(mean.float())
        self.components.copy_(top.float())
        self.scale.copy_(values[order].clamp_min(1e-12).rsqrt().float())
        return (values[order] / values.clamp_min(0).sum()).float()

    def forward(self, features: Tensor) -> Tensor:
        return ((features.float() - self.mean) @ self.components.T) * self.scale


def interpolate_features(features: Tensor, length: int) -> Tensor:
    """Teacher features ``[B, T_g, D]`` linearly resampled in time to ``[B, length, D]``."""
    x = F.interpolate(rearrange(features, "b t d -> b d t"), size=length, mode="linear", align_corners=False)
    return rearrange(x, "b d t -> b t d")


def latent_valid_frames(teacher_frames: Tensor, teacher_rate: float, latent_rate: float, latent_length: int) -> Tensor:
    """Latent frames fully covered by ``teacher_frames`` valid teacher frames, ``[B]`` (at most ``latent_length``)."""
    valid = torch.floor(teacher_frames.to(torch.float64) * latent_rate / teacher_rate + 1e-6).to(torch.long)
    return valid.clamp(max=latent_length)


def frame_mask(valid: Tensor, length: int) -> Tensor:
    """``[B, length]`` bool: True for frames ``t < valid[b]``."""
    return torch.arange(length, device=valid.device)[None, :] < valid[:, None]


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per-item masked mean over frames (``[B, T]`` values), then mean over items with any valid frame."""
    weights = mask.to(values.dtype)
    counts = weights.sum(dim=1)
    keep = counts > 0
    if not bool(keep.any()):
        return values.sum() * 0.0
    return ((values * weights).sum(dim=1)[keep] / counts[keep]).mean()


def frame_loss(a: Tensor, b: Tensor, mask: Tensor, kind: str, margin: float = 0.5) -> Tensor:
    """Per-frame loss between ``a`` and ``b`` (``[B, T, C]``), masked mean over frames, mean over items.

    ``kind``: ``cosine`` (-cos), ``l1``, ``mse``, or ``margin_cosine`` (``relu(1 - margin - cos)``).
    """
    if kind in ("cosine", "margin_cosine"):
        cos = F.cosine_similarity(a, b, dim=-1, eps=1e-8)
        values = -cos if kind == "cosine" else F.relu(1 - margin - cos)
    elif kind == "l1":
        values = (a - b).abs().mean(dim=-1)
    elif kind == "mse":
        values = (a - b).square().mean(dim=-1)
    else:
        raise ValueError(f"unknown frame loss {kind!r}")
    return _masked_mean(values, mask)


def distance_matrix_loss(a: Tensor, b: Tensor, mask: Tensor, margin: float = 0.25) -> Tensor:
    """VA-VAE's margin distance-matrix similarity: mean over valid frame pairs of
    ``relu(|cos(a_i, a_j) - cos(b_i, b_j)| - margin)``, per item, then mean over items."""
    an, bn = F.normalize(a, dim=-1, eps=1e-8), F.normalize(b, dim=-1, eps=1e-8)
    diff = (an @ an.transpose(1, 2) - bn @ bn.transpose(1, 2)).abs()
    pairs = (mask[:, :, None] & mask[:, None, :]).to(diff.dtype)
    counts = pairs.sum(dim=(1, 2))
    keep = counts > 0
    if not bool(keep.any()):
        return diff.sum() * 0.0
    return ((F.relu(diff - margin) * pairs).sum(dim=(1, 2))[keep] / counts[keep]).mean()


def mean_cosine(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Masked mean cosine similarity of ``a`` and ``b`` (``[B, T, C]``): the alignment figure reported."""
    return -frame_loss(a, b, mask, "cosine")


def adaptive_weight(reconstruction: Tensor, alignment: Tensor, parameter: Tensor, max_weight: float = 1e4) -> Tensor:
    """VA-VAE's adaptive weight ``||d L_rec / d p|| / ||d L_align / d p||`` at ``parameter`` (detached).

    ``parameter`` is the encoder's last layer weight. Both losses must still have their graphs.
    """
    g_rec = torch.autograd.grad(reconstruction, parameter, retain_graph=True)[0]
    g_align = torch.autograd.grad(alignment, parameter, retain_graph=True)[0]
    return (g_rec.norm() / (g_align.norm() + 1e-6)).clamp(0.0, max_weight).detach()
