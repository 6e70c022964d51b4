"""ConvNeXt blocks over time (Vocos' backbone): ``[B, C, T] -> [B, C, T]``.

Block: depthwise Conv1d (k7) -> LayerNorm over C -> Linear C->hC -> GELU -> Linear hC->C -> layer scale
-> residual. The blocks keep the frame rate; they are cheap because they run at the frame rate, not
the audio rate.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt-1d block on ``[B, C, T]``."""

    def __init__(self, channels: int, hidden: int, kernel_size: int = 7, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, channels)
        self.gamma = nn.Parameter(torch.full((channels,), layer_scale)) if layer_scale > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        h = rearrange(self.dwconv(x), "b c t -> b t c")
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        if self.gamma is not None:
            h = self.gamma * h
        return x + rearrange(h, "b t c -> b c t")


class ConvNeXtBackbone(nn.Module):
    """``[B, D_in, T] -> [B, C, T]``: input conv (k7), LayerNorm, ``layers`` ConvNeXt blocks, LayerNorm."""

    def __init__(self, in_channels: int, channels: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Conv1d(in_channels, channels, 7, padding=3)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(channels, hidden, layer_scale=1 / layers) for _ in range(layers))
        self.final_norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(self.norm(rearrange(self.embed(x), "b c t -> b t c")), "b t c -> b c t")
        for block in self.blocks:
            x = block(x)
        return rearrange(self.final_norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")
