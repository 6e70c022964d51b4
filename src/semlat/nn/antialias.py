"""Anti-aliased activations (BigVGAN's alias-free ``Activation1d``): upsample x2, activation, downsample x2.

The reference semantics, per channel (depthwise), with ``f`` the 12-tap Kaiser-windowed sinc lowpass
(cutoff 0.25, half-width 0.3, normalised to sum 1):

* :class:`UpSample1d`: replicate-pad 5 on each side, ``2 * conv_transpose1d(stride 2, f)``, crop 15
  samples from each end: ``[B, C, T] -> [B, C, 2T]``.
* :class:`DownSample1d`: replicate-pad 5 left / 6 right, ``conv1d(stride 2, f)``: ``[B, C, 2T] -> [B, C, T]``.

:class:`Activation1d` composes them around a Snake activation. Its forward uses an equivalent
*polyphase* form that never builds the zero-stuffed signal:

1. Upsampling by 2 with a 12-tap filter is two 6-tap filters, one per output phase
   (:func:`polyphase_weights`); downsampling is one 7-tap filter per input phase.
2. Every channel is laid out in rows of ``_BLOCK`` samples (replicate-padded by 6). Seen as a
   channels-last image whose "channels" are the positions inside a row, each polyphase filter is a
   dense ``k=2`` convolution (:func:`block_conv_weights`): oneDNN runs it far faster than a
   depthwise transposed convolution, and its output is already the interleaved upsampled signal.
3. The Snake runs in place on that buffer; the replicate padding the downsampler would see is
   written into its edge samples; the downsampling convolution writes the result.
4. On CPU, channels are processed in chunks of about ``_CHUNK_SAMPLES`` samples so temporaries stay
   cache-sized (and are recycled by the allocator instead of being page-faulted in).

It matches the literal three steps (:meth:`Activation1d.forward_reference`) to float rounding, with
and without autograd (tested). The filters are persistent buffers (checkpoint keys
``upsample.filter`` and ``downsample.lowpass.filter``, each ``[1, 1, 12]``); the block weights are
derived from them and cached per buffer version, so loaded filters are honoured.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semlat.nn.activations import snake


def kaiser_sinc_filter(cutoff: float = 0.25, half_width: float = 0.3, kernel_size: int = 12) -> Tensor:
    """The Kaiser-windowed sinc lowpass of BigVGAN/StyleGAN3 as ``[1, 1, kernel_size]`` float32.

    ``cutoff`` and ``half_width`` are in cycles per sample. The Kaiser beta follows Kaiser's formula
    for the attenuation ``A = 2.285 (K/2 - 1) pi (4 half_width) + 7.95`` (beta ~ 4.663 for the
    defaults); taps sit at ``t = -K/2 + 0.5 ... K/2 - 0.5`` for even ``K``; the filter sums to 1.
    Computed in float32 exactly like the reference, so it equals the stored buffers bit for bit.
    """
    even = kernel_size % 2 == 0
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False, dtype=torch.float32)
    time = (torch.arange(-half, half) + 0.5) if even else (torch.arange(kernel_size) - half)
    if cutoff == 0:
        taps = torch.zeros(kernel_size)
    else:
        taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
        taps = taps / taps.sum()
    return taps.view(1, 1, kernel_size)


class LowPassFilter1d(nn.Module):
    """Depthwise FIR lowpass with replicate padding: ``[B, C, T] -> [B, C, ceil-ish(T / stride)]``.

    Pads ``K/2 - 1`` left and ``K/2`` right (even ``K``) so that ``stride=1`` keeps the length.
    Buffer ``filter`` ``[1, 1, K]``.
    """

    def __init__(self, cutoff: float = 0.5, half_width: float = 0.6, stride: int = 1, kernel_size: int = 12) -> None:
        super().__init__()
        if not 0.0 <= cutoff <= 0.5:
            raise ValueError(f"cutoff must lie in [0, 0.5], got {cutoff}")
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T']`` with ``T' = (T + K - 1 - K) // stride + 1``."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class UpSample1d(nn.Module):
    """Band-limited upsampling by ``ratio``: ``[B, C, T] -> [B, C, ratio * T]``. Buffer ``filter``."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.pad = self.kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (self.kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (self.kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, self.kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, ratio * T]``."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio,
                                            groups=channels)
        return x[..., self.crop_left: x.shape[-1] - self.crop_right]


class DownSample1d(nn.Module):
    """Band-limited downsampling by ``ratio``: ``[B, C, ratio * T] -> [B, C, T]``. Submodule ``lowpass``."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, stride=ratio, kernel_size=self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, ratio * T] -> [B, C, T]``."""
        return self.lowpass(x)


#: samples per row of the blocked layout of the fused activation (rows are "channels" of a k=2 conv).
_BLOCK = 8
#: rows (channels x batch) are processed in chunks of about this many samples, to keep temporaries cache-sized.
_CHUNK_SAMPLES = 1 << 19


def polyphase_weights(up_filter: Tensor, down_filter: Tensor) -> tuple[Tensor, Tensor]:
    """7-tap polyphase kernels equivalent to 2x :class:`UpSample1d` and :class:`DownSample1d` (K=12).

    Returns ``(up [2, 7], down [2, 7])``. With ``x`` replicate-padded by 6, the even (row 0) and odd
    (row 1) upsampled phases at half-rate positions ``j = -3 ... T+2`` are ``sum_s up[p, s] x[j + s - 3]``;
    the downsampled output is ``y[i] = sum_{p,s} down[p, s] phase_p[i + s - 3]`` over the same
    positions. The factor 2 of the upsampler is folded into ``up`` (exact in floating point).
    """
    f = up_filter.reshape(12).flip(0)
    up = up_filter.new_zeros(2, 7)
    up[0, :6] = 2 * f[0::2]  # even phase: 2 f[11 - 2s], s = 0..5
    up[1, 1:] = 2 * f[1::2]  # odd phase: 2 f[12 - 2s], s = 1..6
    g = down_filter.reshape(12)
    down = down_filter.new_zeros(2, 7)
    down[0, 1:] = g[1::2]  # even phase: g[2s - 1], s = 1..6
    down[1, :6] = g[0::2]  # odd phase: g[2s], s = 0..5
    return up, down


def _banded(kernel: Tensor, outputs: int, step: int) -> Tensor:
    """``M [(outputs - 1) * step + K, outputs]`` with ``M[i * step + k, i] = kernel[k]`` (a strided FIR as a matrix)."""
    taps = kernel.shape[0]
    matrix = kernel.new_zeros(outputs, (outputs - 1) * step + taps)
    index = torch.arange(outputs, device=kernel.device)[:, None] * step + torch.arange(taps, device=kernel.device)
    matrix.scatter_(1, index, kernel.expand(outputs, taps))
    return matrix.T


def block_conv_weights(up_filter: Tensor, down_filter: Tensor, block: int = _BLOCK) -> tuple[Tensor, Tensor]:
    """The polyphase filters as k=2 convolutions over rows of ``block`` samples (channels-last weights).

    Seen as a channels-last image ``[1, block, 1, rows]``, a signal stored in rows of ``block`` samples
    is upsampled (interleaved phases, rows of ``2 block``) by ``conv2d(rows, up)`` with ``up [2 block,
    block, 1, 2]`` (tap 1 reaches the first 6 samples of the next row), and a signal stored in rows of
    ``2 block`` is downsampled by ``conv2d(rows, down)`` with ``down [block, 2 block, 1, 2]``.
    """
    up, down = polyphase_weights(up_filter, down_filter)
    # upsampled[2i + p] = sum_s up[p, s] x[i + s], interleaved as columns 2i + p
    up_matrix = torch.stack([_banded(up[p], block, 1) for p in range(2)], dim=-1).flatten(1)  # [block + 6, 2 block]
    # out[i] = sum_q d[q] upsampled[2i + q] with d[2s + p] = down[p, s]
    down_matrix = _banded(down.T.reshape(14), block, 2)  # [2 block + 12, block]
    up_weight = up.new_zeros(2 * block, block, 1, 2)
    up_weight[:, :, 0, 0] = up_matrix[:block].T
    up_weight[:, :6, 0, 1] = up_matrix[block:].T
    down_weight = down.new_zeros(block, 2 * block, 1, 2)
    down_weight[:, :, 0, 0] = down_matrix[: 2 * block].T
    down_weight[:, :12, 0, 1] = down_matrix[2 * block:].T
    return (up_weight.contiguous(memory_format=torch.channels_last),
            down_weight.contiguous(memory_format=torch.channels_last))


def _rows_as_image(flat: Tensor, width: int) -> Tensor:
    """View a flat buffer of rows of ``width`` samples as a channels-last image ``[1, width, 1, rows]``."""
    return flat.view(1, -1, 1, width).permute(0, 3, 2, 1)


def _image_as_flat(image: Tensor) -> Tensor:
    """Inverse of :func:`_rows_as_image` (a view): ``[1, width, 1, rows] -> [rows * width]``."""
    return image.permute(0, 3, 2, 1).reshape(-1)


class Activation1d(nn.Module):
    """Anti-aliased activation: ``downsample(act(upsample(x)))``, ``[B, C, T] -> [B, C, T]``.

    Submodules ``upsample`` (:class:`UpSample1d`), ``act`` and ``downsample`` (:class:`DownSample1d`).
    With the default 2x / 12-tap resamplers and a Snake-family ``act`` (anything with
    ``coefficients()``) the forward uses the fused polyphase form described in the module docstring;
    :meth:`forward_reference` runs the literal three steps.
    """

    def __init__(self, activation: nn.Module, up_ratio: int = 2, down_ratio: int = 2, up_kernel_size: int = 12,
                 down_kernel_size: int = 12) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)
        self.fused = (up_ratio == down_ratio == 2 and up_kernel_size == down_kernel_size == 12
                      and hasattr(activation, "coefficients"))
        self._weights_cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None

    def forward_reference(self, x: Tensor) -> Tensor:
        """The literal upsample -> activation -> downsample path: ``[B, C, T] -> [B, C, T]``."""
        return self.downsample(self.act(self.upsample(x)))

    def _block_weights(self, x: Tensor, block: int) -> tuple[Tensor, Tensor]:
        up, down = self.upsample.filter, self.downsample.lowpass.filter
        if up.is_inference() or down.is_inference():  # built under inference_mode: no version counter to key on
            with torch.no_grad():
                return tuple(w.to(x.dtype) for w in block_conv_weights(up, down, block))
        key = (up.data_ptr(), up._version, down.data_ptr(), down._version, x.dtype, x.device, block,
               torch.is_inference_mode_enabled())
        if self._weights_cache is None or self._weights_cache[0] != key:
            with torch.no_grad():
                weights = tuple(w.to(x.dtype) for w in block_conv_weights(up, down, block))
            self._weights_cache = (key, weights)
        return self._weights_cache[1]

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        if not self.fused:
            return self.forward_reference(x)
        batch, channels, length = x.shape
        freq, inv_mag = (c.to(x.dtype).repeat(batch)[:, None] for c in self.act.coefficients())
        rows = x.reshape(batch * channels, length)
        if torch.is_grad_enabled() and (x.requires_grad or freq.requires_grad or inv_mag.requires_grad):
            return self._filtered(rows, freq, inv_mag).view(batch, channels, length)
        out = x.new_empty(batch * channels, length)
        width = (-(-(length + 6) // _BLOCK) + 1) * _BLOCK
        step = max(1, _CHUNK_SAMPLES // width) if x.device.type == "cpu" else batch * channels
        for start in range(0, batch * channels, step):
            stop = start + step
            out[start:stop] = self._filtered(rows[start:stop], freq[start:stop], inv_mag[start:stop])
        return out.view(batch, channels, length)

    def _filtered(self, x: Tensor, freq: Tensor, inv_mag: Tensor) -> Tensor:
        """Rows ``[R, T]`` (one per channel) with per-row Snake factors ``[R, 1]`` -> ``[R, T]``."""
        block = _BLOCK
        count, length = x.shape
        up_weight, down_weight = self._block_weights(x, block)
        # Each row: 6 replicate samples, the signal, replicate samples up to a whole number of blocks
        # with at least one spare block; plus one spare block at the very end (the k=2 conv's last tap).
        width = (-(-(length + 6) // block) + 1) * block
        buffer = x.new_empty(count * width + block)
        padded = buffer[: count * width].view(count, width)
        padded[:, 6: length + 6] = x
        padded[:, :6] = x[:, :1]
        padded[:, length + 6:] = x[:, -1:]
        buffer[count * width:] = 0  # the spare block only feeds discarded outputs, but must be finite
        # Interleaved upsampled phases at half-rate positions -3 ... width - 4, rows of 2 * width.
        signal = _image_as_flat(F.conv2d(_rows_as_image(buffer, block), up_weight)).view(count, 2 * width)
        signal = snake(signal, freq, inv_mag, inplace=True)
        # The downsampler sees the upsampled signal replicate-padded: its first sample (position 0,
        # even phase: index 6) on the left, its last (position T - 1, odd phase: index 2T + 5) on the right.
        first, last = signal[:, 6:7], signal[:, 2 * length + 5: 2 * length + 6]
        if signal.requires_grad:
            signal = torch.cat([first.expand(-1, 6), signal[:, 6: 2 * length + 6],
                                last.expand(-1, 2 * width - 2 * length - 6)], dim=-1)
        else:
            signal[:, :6] = first
            signal[:, 2 * length + 6: 2 * length + 12] = last
        out = _image_as_flat(F.conv2d(_rows_as_image(signal.reshape(-1), 2 * block), down_weight))
        if out.requires_grad:
            return F.pad(out, (0, block)).view(count, width)[:, :length]
        return out.as_strided((count, length), (width, 1))
