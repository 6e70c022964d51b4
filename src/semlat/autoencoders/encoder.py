"""The DAC-style convolutional waveform encoder used by Semantic-VAE.

Checkpoint keys (``block.{i}`` of one ``nn.Sequential``)::

    block.0               WN Conv1d(1 -> d, k7)
    block.1 .. block.S    EncoderBlock(2d, 4d, ..., 2^S d; stride r_i)
    block.S+1             Snake1d(2^S d)
    block.S+2             WN Conv1d(2^S d -> out_dim, k3)

An EncoderBlock (``block.{i}.block.{0..4}``) is three ResidualUnits (dilations 1, 3, 9), a Snake1d and
a strided WN Conv1d(dim/2 -> dim, kernel 2r, stride r, padding ceil(r/2)). A ResidualUnit
(``block.{0..3}``) is ``x + conv1x1(snake(conv7_dilated(snake(x))))``.

Inference on long inputs runs each EncoderBlock (the first one together with ``block.0``) over time
tiles with a halo that covers its receptive field, so every temporary stays cache-sized; tiles
reproduce the untiled result exactly (the zero padding at the true signal edges is kept, interior
tile edges see real neighbours).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semlat.nn.activations import Snake1d
from semlat.nn.weight_norm import WNConv1d


class ResidualUnit(nn.Module):
    """``x + conv1(snake(conv7_dil(snake(x))))``: ``[B, C, T] -> [B, C, T]`` (submodule ``block``)."""

    def __init__(self, dim: int, dilation: int = 1) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        return self.block(x).add_(x)


#: inference tiles of an EncoderBlock hold about this many input elements (channels x samples).
_TILE_ELEMENTS = 1 << 19


def _same_conv_radius(module: nn.Module) -> int:
    """Samples of context on each side needed by the stride-1 'same' convolutions inside ``module``."""
    return sum(m.dilation[0] * (m.kernel_size[0] - 1) // 2 for m in module.modules() if isinstance(m, nn.Conv1d))


class EncoderBlock(nn.Module):
    """Three residual units then a strided conv: ``[B, dim/2, T] -> [B, dim, T / stride]``."""

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ResidualUnit(dim // 2, dilation=1),
            ResidualUnit(dim // 2, dilation=3),
            ResidualUnit(dim // 2, dilation=9),
            Snake1d(dim // 2),
            WNConv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, dim/2, T] -> [B, dim, T / stride]``."""
        return self.block(x)

    def forward_tiled(self, x: Tensor, pre: nn.Module | None = None, tile_elements: int | None = None) -> Tensor:
        """``self(pre(x))`` computed over time tiles (inference): ``[B, C_in, T] -> [B, dim, T / stride]``.

        ``pre`` is an optional stride-1 'same' convolution applied first (the encoder's ``block.0``).
        Each tile holds about ``tile_elements`` elements of the block's widest input. The result
        equals the untiled one; only the temporaries are smaller.
        """
        units, down = self.block[:4], self.block[4]
        stride, pad, kernel = down.stride[0], down.padding[0], down.kernel_size[0]
        halo = _same_conv_radius(units) + (0 if pre is None else _same_conv_radius(pre))
        length = x.shape[-1]
        out_length = (length + 2 * pad - kernel) // stride + 1
        if out_length < 1:  # too short to tile; let the plain path report it
            return self(x if pre is None else pre(x))
        tile = max(1, (tile_elements or _TILE_ELEMENTS) // (down.in_channels * stride))  # output frames per tile
        weight, bias = down.weight, down.bias
        out = x.new_empty(x.shape[0], down.out_channels, out_length)
        for first in range(0, out_length, tile):
            last = min(out_length, first + tile)
            # the strided conv reads h[start:stop] (zeros outside [0, length)); h needs `halo` more context
            start, stop = stride * first - pad, stride * (last - 1) - pad + kernel
            lo, hi = max(0, start - halo), min(length, stop + halo)
            h = x[..., lo:hi]
            if pre is not None:
                h = pre(h)
            h = units(h)[..., max(start, 0) - lo: min(stop, length) - lo]
            h = F.pad(h, (max(0, -start), max(0, stop - length)))
            out[..., first:last] = F.conv1d(h, weight, bias, stride=stride)
        return out


class Encoder(nn.Module):
    """Waveform encoder: ``[B, 1, N] -> [B, out_dim, N / prod(rates)]`` (N a multiple of the hop).

    Args:
        dim: channels after the first conv (doubles at every block).
        rates: the stride of each block.
        out_dim: output channels (``dim * 2^len(rates)`` when None).
    """

    def __init__(self, dim: int = 64, rates: Sequence[int] = (4, 4, 5, 5), out_dim: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, dim, kernel_size=7, padding=3)]
        for stride in rates:
            dim *= 2
            layers.append(EncoderBlock(dim, stride))
        self.hidden_dim = dim
        self.out_dim = dim if out_dim is None else out_dim
        layers += [Snake1d(dim), WNConv1d(dim, self.out_dim, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, audio: Tensor) -> Tensor:
        """``[B, 1, N] -> [B, out_dim, N / hop]``."""
        recording = torch.is_grad_enabled() and (audio.requires_grad or any(p.requires_grad for p in self.parameters()))
        if recording or audio.device.type != "cpu":
            return self.block(audio)
        blocks = list(self.block)
        x = blocks[1].forward_tiled(audio, pre=blocks[0])
        for block in blocks[2:-2]:
            x = block.forward_tiled(x)
        return blocks[-1](blocks[-2](x))
