"""Semantic-VAE's alignment projector (``InterpolateRegulator``) and its cosine alignment loss.

The regulator resamples teacher features (e.g. WavLM at 50 Hz) to the latent length by linear
interpolation, then maps them to the latent width::

    model.0  Conv1d(D_in -> ch, k3)    model.1  GroupNorm(groups, ch)    model.2  Mish
    model.3  Conv1d(ch -> ch, k3)      model.4  GroupNorm(groups, ch)    model.5  Mish
    model.6  Conv1d(ch -> D_out, k1)

(``num_blocks`` conv/norm/Mish blocks; with 0 blocks a single ``model.0`` Conv1d(D_in -> D_out, k1)).

Reference quirk kept on purpose: the output is multiplied by ``position < feature_length`` where the
positions are on the *latent* axis but the lengths count *teacher* frames. With full-length guidance
(teacher longer than latent) the mask is all ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[B, max_len]`` bool, True where ``position < lengths[b]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class InterpolateRegulator(nn.Module):
    """Teacher features ``[B, T_g, D_in]`` -> projections ``[B, T_y, D_out]`` at the latent length ``T_y``."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, num_blocks: int = 2,
                 groups: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_blocks):
            layers += [nn.Conv1d(in_channels if i == 0 else channels, channels, 3, padding=1),
                       nn.GroupNorm(groups, channels), nn.Mish()]
        layers.append(nn.Conv1d(channels if num_blocks else in_channels, out_channels, 1))
        self.model = nn.Sequential(*layers)

    def interpolate(self, features: Tensor, length: int) -> Tensor:
        """Linear resampling of the time axis: ``[B, T_g, D_in] -> [B, D_in, length]`` (align_corners=False)."""
        return F.interpolate(rearrange(features, "b t d -> b d t"), size=length, mode="linear")

    def forward(self, features: Tensor, feature_lengths: Tensor, latent_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Project teacher features to the latent rate.

        Args:
            features: ``[B, T_g, D_in]`` teacher features (time-major).
            feature_lengths: ``[B]`` valid teacher frames (used for the mask, see the module docstring).
            latent_lengths: ``[B]`` latent frames; the output has ``T_y = max(latent_lengths)`` frames.
        Returns:
            ``(projections [B, T_y, D_out], latent_lengths)``.
        """
        length = int(latent_lengths.max())
        out = rearrange(self.model(self.interpolate(features, length)), "b d t -> b t d")
        return out * length_mask(feature_lengths, length)[..., None], latent_lengths


def alignment_loss(z: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Semantic-VAE's alignment loss: per-item masked mean of ``-cos(z_t, target_t)``, averaged over items.

    Args:
        z: ``[B, T, D]`` sampled latents (time-major).
        target: ``[B, T, D]`` regulator projections.
        mask: ``[B, T]`` bool, frames that count.
    Returns:
        a scalar.
    """
    cos = F.cosine_similarity(z, target, dim=-1, eps=1e-8)
    weights = mask.to(cos.dtype)
    return ((-cos * weights).sum(dim=1) / weights.sum(dim=1)).mean()
