"""``Linear``: ``nn.Linear`` (same parameters and keys) with a faster CPU inference path.

On CPU, PyTorch's dense ``F.linear`` calls MKL, which on AMD processors runs a narrower code path; oneDNN with
the weight reordered once into its blocked layout ("prepacked", as torch.compile's CPU backend and IPEX do)
runs the same fp32 product about 2x faster on this project's machines (``benchmarks/bench_tts.py``), with
fp32 rounding (max 4e-6 against float64 where MKL gives 2e-6 on a 1024-deep product).

The fast path is taken only when nothing needs gradients (``torch.no_grad`` / ``torch.inference_mode``), the
input and weight are float32 on CPU, and PyTorch was built with oneDNN; training, autocast dtypes and GPUs
use ``F.linear`` unchanged. The packed weight is a cache, not state: it is rebuilt when the weight tensor
changes (new storage or an in-place update such as ``load_state_dict`` or an optimiser step) and is never
saved. ``SEMLAT_ONEDNN_LINEAR=0`` turns the path off.

``activation="gelu_tanh"`` fuses F5-TTS's feed-forward activation into the product (oneDNN post-op).
:class:`PointwiseConv1d` is the same path for ``k = 1`` convolutions.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("none", "gelu_tanh")


@functools.cache
def _onednn_linear_available() -> bool:
    """Whether this PyTorch build has the oneDNN ops (checked once: it cannot change in a process)."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def onednn_linear_enabled() -> bool:
    """Whether the prepacked oneDNN path can run here (and is not switched off by ``SEMLAT_ONEDNN_LINEAR=0``)."""
    return os.environ.get("SEMLAT_ONEDNN_LINEAR", "1") != "0" and _onednn_linear_available()


class _Prepacked:
    """The packed-weight cache shared by :class:`Linear` and :class:`PointwiseConv1d`."""

    weight: Tensor
    _packed: tuple[tuple[int, int], Tensor] | None = None

    def _fast(self, x: Tensor) -> bool:
        return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and onednn_linear_enabled())

    def _packed_weight(self) -> Tensor:
        # inference tensors (made under torch.inference_mode) have no version counter
        key = (self.weight.data_ptr(), -1 if self.weight.is_inference() else self.weight._version)
        if self._packed is None or self._packed[0] != key:
            matrix = self.weight.reshape(self.weight.shape[0], -1)  # [out, in] (a k1 conv's [out, in, 1] too)
            self._packed = (key, torch.ops.mkldnn._reorder_linear_weight(matrix, None))
        return self._packed[1]


class Linear(_Prepacked, nn.Linear):
    """``nn.Linear`` plus an optional fused activation; ``[..., in] -> [..., out]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "none"):
        super().__init__(in_features, out_features, bias=bias)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self._packed = None

    def forward(self, x: Tensor) -> Tensor:
        if self._fast(x):
            attr, algorithm = ("gelu", "tanh") if self.activation == "gelu_tanh" else ("none", "")
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self._packed_weight(), self.bias, attr, [],
                                                      algorithm)
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y, approximate="tanh") if self.activation == "gelu_tanh" else y


class PointwiseConv1d(_Prepacked, nn.Conv1d):
    """``nn.Conv1d(in, out, 1)`` (same parameters and keys) on ``[B, in, T] -> [B, out, T]``, whose CPU inference
    runs as the prepacked oneDNN product over time-major rows (PyTorch sends a batch-1 k1 convolution to its
    slow im2col path). The result is a channel-major view of time-major memory, so that a following pointwise
    convolution reads it without a copy."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)
        self._packed = None

    def forward(self, x: Tensor) -> Tensor:
        if self._fast(x):
            rows = x.transpose(1, 2).contiguous()  # [B, T, in]
            out = torch.ops.mkldnn._linear_pointwise(rows, self._packed_weight(), self.bias, "none", [], "")
            return out.transpose(1, 2)
        return super().forward(x)
