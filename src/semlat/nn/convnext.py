"""ConvNeXt blocks over time (Vocos' backbone): ``[B, C, T] -> [B, C, T]``.

Block: depthwise Conv1d (k7) -> LayerNorm over C (or AdaLayerNorm) -> Linear C->hC -> exact GELU ->
Linear hC->C -> layer scale ``gamma`` -> residual. The blocks keep the frame rate; they are cheap
because they run at the frame rate, not the audio rate.

With ``adanorm_num_embeddings`` set (Vocos' EnCodec variant) every LayerNorm is an
:class:`AdaLayerNorm` whose scale and shift are looked up by one condition id for the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.nn.linear import Linear


class AdaLayerNorm(nn.Module):
    """``x [..., C]`` -> ``layer_norm(x, no affine) * scale[id] + shift[id]`` (Vocos' AdaLN: ``x · scale``,
    not ``x · (1 + scale)``). ``cond_id``: one id for the batch (``[1]`` or 0-dim long)."""

    def __init__(self, num_embeddings: int, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Embedding(num_embeddings, channels)
        self.shift = nn.Embedding(num_embeddings, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, cond_id: Tensor) -> Tensor:
        cond_id = torch.as_tensor(cond_id, device=x.device).reshape(-1)
        if cond_id.numel() != 1:
            raise ValueError(f"AdaLayerNorm takes one condition id for the batch, got {cond_id.numel()}")
        x = F.layer_norm(x, (x.shape[-1],), eps=self.eps)
        return x * self.scale(cond_id)[0] + self.shift(cond_id)[0]


def _norm(channels: int, adanorm_num_embeddings: int | None) -> nn.Module:
    if adanorm_num_embeddings:
        return AdaLayerNorm(adanorm_num_embeddings, channels)
    return nn.LayerNorm(channels, eps=1e-6)


def _apply_norm(norm: nn.Module, x: Tensor, cond_id: Tensor | None) -> Tensor:
    if isinstance(norm, AdaLayerNorm):
        if cond_id is None:
            raise ValueError("this backbone uses AdaLayerNorm: give a condition id (e.g. Vocos' bandwidth_id)")
        return norm(x, cond_id)
    return norm(x)


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt-1d block on ``[B, C, T]``."""

    def __init__(self, channels: int, hidden: int, kernel_size: int = 7, layer_scale: float = 1e-6,
                 adanorm_num_embeddings: int | None = None):
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = _norm(channels, adanorm_num_embeddings)
        self.pwconv1 = Linear(channels, hidden)
        self.act = nn.GELU()
        self.pwconv2 = Linear(hidden, channels)
        self.gamma = nn.Parameter(torch.full((channels,), layer_scale)) if layer_scale > 0 else None

    def forward(self, x: Tensor, cond_id: Tensor | None = None) -> Tensor:
        h = rearrange(self.dwconv(x), "b c t -> b t c")
        h = self.pwconv2(self.act(self.pwconv1(_apply_norm(self.norm, h, cond_id))))
        if self.gamma is not None:
            h = self.gamma * h
        return x + rearrange(h, "b t c -> b c t")


class ConvNeXtBackbone(nn.Module):
    """``[B, D_in, T] -> [B, C, T]``: input conv (k7), LayerNorm, ``layers`` ConvNeXt blocks, LayerNorm.

    ``layer_scale`` is the blocks' initial ``gamma`` (``None``: ``1 / layers``, as Vocos). The final
    LayerNorm is never adaptive. ``forward(x, cond_id=None)``; ``cond_id`` only with AdaLN."""

    def __init__(self, in_channels: int, channels: int, hidden: int, layers: int, *,
                 layer_scale: float | None = None, adanorm_num_embeddings: int | None = None):
        super().__init__()
        scale = 1 / layers if layer_scale is None else layer_scale
        self.embed = nn.Conv1d(in_channels, channels, 7, padding=3)
        self.norm = _norm(channels, adanorm_num_embeddings)
        self.blocks = nn.ModuleList(ConvNeXtBlock(channels, hidden, layer_scale=scale,
                                                  adanorm_num_embeddings=adanorm_num_embeddings)
                                    for _ in range(layers))
        self.final_norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: Tensor, cond_id: Tensor | None = None) -> Tensor:
        x = rearrange(_apply_norm(self.norm, rearrange(self.embed(x), "b c t -> b t c"), cond_id), "b t c -> b c t")
        for block in self.blocks:
            x = block(x, cond_id)
        return rearrange(self.final_norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")
