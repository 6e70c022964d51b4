"""The BigVGAN(-v2) generator: mel (or any ``[B, num_mels, T]`` feature) -> waveform.

Architecture (NVIDIA BigVGAN, v2.4), with checkpoint keys in brackets::

    conv_pre        WN Conv1d(num_mels -> C, k7)                               [conv_pre]
    for stage i:    WN ConvTranspose1d(C/2^i -> C/2^(i+1), k_i, stride u_i)    [ups.{i}.0]
                    mean of len(resblock_kernel_sizes) AMP blocks              [resblocks.{i*K + j}]
    activation_post anti-aliased Snake/SnakeBeta                               [activation_post]
    conv_post       WN Conv1d(C/2^S -> 1, k7, bias only if use_bias_at_final)  [conv_post]
    output          clamp(-1, 1) (v2: use_tanh_at_final false) or tanh (v1)

Weight norm is torch's parametrization form (``...parametrizations.weight.original0/1``); released
BigVGAN files use the legacy ``weight_g``/``weight_v`` names, converted by
:func:`semlat.nn.weight_norm.legacy_to_parametrized`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from semlat.errors import ConfigError
from semlat.nn.activations import make_snake
from semlat.nn.antialias import Activation1d
from semlat.nn.weight_norm import WNConv1d, WNConvTranspose1d, remove_weight_norm

_REQUIRED = ("num_mels", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock",
             "resblock_kernel_sizes", "resblock_dilation_sizes", "activation", "snake_logscale")


def _ints(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclass
class BigVGANConfig:
    """Generator hyper-parameters, named exactly as in BigVGAN's JSON configs.

    ``use_tanh_at_final``/``use_bias_at_final`` default to True, as for v1 configs that lack them.
    ``sampling_rate`` and ``hop_size`` are informational (not used by the network). The defaults are
    the ``bigvgan_v2_22khz_80band_256x`` architecture.
    """

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True
    sampling_rate: int | None = None
    hop_size: int | None = None

    def __post_init__(self) -> None:
        self.upsample_rates = _ints(self.upsample_rates)
        self.upsample_kernel_sizes = _ints(self.upsample_kernel_sizes)
        self.resblock_kernel_sizes = _ints(self.resblock_kernel_sizes)
        self.resblock_dilation_sizes = tuple(_ints(d) for d in self.resblock_dilation_sizes)
        self.resblock = str(self.resblock)
        if self.resblock not in ("1", "2"):
            raise ConfigError(f"BigVGAN resblock must be '1' or '2', got {self.resblock!r}")
        if self.activation not in ("snake", "snakebeta"):
            raise ConfigError(f"BigVGAN activation must be 'snake' or 'snakebeta', got {self.activation!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError("BigVGAN upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError("BigVGAN resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if self.upsample_initial_channel >> len(self.upsample_rates) < 1:
            raise ConfigError(f"BigVGAN upsample_initial_channel {self.upsample_initial_channel} is too small for "
                              f"{len(self.upsample_rates)} stages (channels halve at each stage)")

    @property
    def hop_length(self) -> int:
        """Output samples per input frame: ``prod(upsample_rates)``."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any], where: str = "BigVGAN config") -> BigVGANConfig:
        """Build from a BigVGAN ``config.json`` dict; training-only keys (batch_size, ...) are ignored."""
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
        if data.get("attn_proj", False):
            raise ConfigError(f"{where}: 'attn_proj' generators exist only inside the waveform VAE "
                              "(WaveVAEConfig.decoder_input='attn_proj')")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block with two convs per dilation: ``[B, C, T] -> [B, C, T]``.

    For each dilation ``d_j``: ``x = x + convs2[j](act[2j+1](convs1[j](act[2j](x))))``; ``convs1[j]`` is
    dilated by ``d_j`` with 'same' padding, ``convs2[j]`` is undilated.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], activation: str,
                 logscale: bool) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations)
        self.convs2 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations)
        self.activations = nn.ModuleList(
            Activation1d(make_snake(activation, channels, logscale)) for _ in range(2 * len(dilations)))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        for j, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            h = conv2(self.activations[2 * j + 1](conv1(self.activations[2 * j](x))))
            x = h.add_(x)
        return x


class AMPBlock2(nn.Module):
    """AMP block with one dilated conv per dilation: ``x = x + convs[j](act[j](x))``; ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], activation: str,
                 logscale: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations)
        self.activations = nn.ModuleList(
            Activation1d(make_snake(activation, channels, logscale)) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        for conv, act in zip(self.convs, self.activations):
            x = conv(act(x)).add_(x)
        return x


class BigVGAN(nn.Module):
    """BigVGAN generator: ``[B, num_mels, T] -> [B, 1, T * prod(upsample_rates)]`` in [-1, 1].

    Args:
        config: the hyper-parameters.
        input_layer: replaces ``conv_pre`` (it must map ``[B, num_mels, T] -> [B, C, T]``); used by
            the Semantic-VAE variant whose first layer is an attention projection.
    """

    def __init__(self, config: BigVGANConfig, input_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        channels = config.upsample_initial_channel
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.conv_pre = input_layer if input_layer is not None else WNConv1d(config.num_mels, channels, 7, padding=3)
        self.ups = nn.ModuleList(
            nn.ModuleList([WNConvTranspose1d(channels >> i, channels >> (i + 1), k, u, padding=(k - u) // 2)])
            for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)))
        block = AMPBlock1 if config.resblock == "1" else AMPBlock2
        self.resblocks = nn.ModuleList(
            block(channels >> (i + 1), k, d, config.activation, config.snake_logscale)
            for i in range(len(self.ups))
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes))
        out_channels = channels >> len(self.ups)
        self.activation_post = Activation1d(make_snake(config.activation, out_channels, config.snake_logscale))
        self.conv_post = WNConv1d(out_channels, 1, 7, padding=3, bias=config.use_bias_at_final)

    @classmethod
    def from_config(cls, config: BigVGANConfig | Mapping[str, Any]) -> BigVGAN:
        """Build from a :class:`BigVGANConfig` or a BigVGAN JSON dict."""
        if not isinstance(config, BigVGANConfig):
            config = BigVGANConfig.from_json_dict(config)
        return cls(config)

    @property
    def hop_length(self) -> int:
        """Output samples per input frame."""
        return self.config.hop_length

    def forward_unbounded(self, x: Tensor) -> Tensor:
        """The ``conv_post`` output before the final clamp/tanh: ``[B, num_mels, T] -> [B, 1, T * hop]``."""
        x = self.conv_pre(x)
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            blocks = self.resblocks[i * self.num_kernels: (i + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total.add_(block(x))
            x = total.div_(self.num_kernels)
        return self.conv_post(self.activation_post(x))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, num_mels, T] -> [B, 1, T * hop]``, clamped to [-1, 1] (v2) or through tanh (v1)."""
        x = self.forward_unbounded(x)
        return torch.tanh(x) if self.config.use_tanh_at_final else x.clamp(-1.0, 1.0)

    def remove_weight_norm(self) -> BigVGAN:
        """Fold weight norm into plain weights (in place; outputs unchanged); returns ``self``."""
        return remove_weight_norm(self)
