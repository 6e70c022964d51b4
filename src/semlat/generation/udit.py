"""The text-to-latent backbone: a U-shaped DiT with cross-attention to text (the module tree of SemanticVocoder's
``UDiT``, whose key names and shapes it reproduces for the sizes it is given).

``UDiT(x [B, C, T], timesteps [B], context [B, L, Dc], context_mask [B, L] bool, mask [B, T] bool | None) ->
[B, C, T]``, channel-major like the released latents, in the **release's convention**: ``timesteps = 1000 σ``
(float; σ = 1 is noise, σ = 0 data, ``x_σ = (1 - σ) z + σ ε``) and the output is ``ε - z``.
:class:`~semlat.generation.tta.TTAModel` maps semlat's flow convention onto it (``σ = 1 - t``, velocity
``z - ε`` = minus the output), so that a released backbone would run unchanged.

* ``patch_embed.proj``: 1x1 Conv1d ``C -> D``; ``context_embed``: Linear, SiLU, Linear ``Dc -> D``.
* ``time_embed.mlp``: 256-d sinusoid (``cos | sin`` of ``timesteps · 10000^(-k / 128)``) -> Linear, SiLU,
  Linear -> ``temb``. ``time_ada``: Linear ``D -> 6D`` on ``SiLU(temb)``, shared by every block; each block adds
  its own ``adaln.scale_shift_table [6, D]`` and a low-rank term ``lora_b(lora_a(SiLU(temb)))`` (rank
  ``ada_rank`` per chunk, scaled by ``ada_alpha / ada_rank``) -> shift, scale, gate for attention and for the MLP.
* **Block**: ``x += (1 - gate_a) · attn(norm1(x) · (1 + scale_a) + shift_a)`` (self-attention, heads of
  ``D / H``, LayerNorm on queries and keys per head, rotary positions over the whole head, padded keys masked);
  ``x += cross_attn(norm2(x), norm_context(context))`` (same attention on text, padded tokens masked);
  ``x += (1 - gate_m) · mlp(norm3(x) · (1 + scale_m) + shift_m)`` (GEGLU, hidden ``mlp_ratio · D``).
* **U shape**: ``depth / 2`` ``in_blocks`` (their outputs kept), a ``mid_block``, ``depth / 2`` ``out_blocks``
  each starting with ``x = skip_linear(skip_norm([x, skip]))`` on the matching in-block's output (last first).
* ``final_block``: LayerNorm modulated by ``time_ada_final`` (shift, scale), Linear ``D -> C``, then a k3
  Conv1d ``C -> C`` over time (padded frames zeroed before it).

The formulas follow the reference's ``UDiT`` (SemanticVocoder commit 1299396, ``time_fusion=ada_sola_bias``,
``context_fusion=cross``, ``rope_mode=shared``, ``qk_norm=layernorm``, GEGLU, skips with norm, a final conv);
the released checkpoint's sizes are not known (see the README): :meth:`UDiTConfig.released_assumed` is the key
listing's assumption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.config import FromConfig
from semlat.errors import ConfigError
from semlat.generation.dit import RotaryEmbedding
from semlat.nn.linear import Linear

TIME_DIM = 256


@dataclass
class UDiTConfig:
    """Sizes of a :class:`UDiT`."""

    in_chans: int = 768
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    context_dim: int = 1024
    ada_rank: int = 32
    ada_alpha: float = 32.0

    def validate(self, where: str = "udit config") -> None:
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 2:
            raise ConfigError(f"{where}: embed_dim / num_heads must be an even whole number")
        if self.depth < 2 or self.depth % 2:
            raise ConfigError(f"{where}: depth must be an even number >= 2 (half in, half out), got {self.depth}")

    @classmethod
    def released_assumed(cls, **overrides: Any) -> UDiTConfig:
        """The key listing's assumed size of the released text-to-audio backbone (600 M)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> UDiTConfig:
        return cls(**{"in_chans": 16, "embed_dim": 32, "depth": 2, "num_heads": 2, "context_dim": 16,
                      "ada_rank": 4, "ada_alpha": 4.0, **overrides})


def timestep_embedding(timesteps: Tensor, dim: int = TIME_DIM) -> Tensor:
    """``timesteps [B]`` (0 ... 1000) -> ``[B, dim]``: ``cos | sin`` of ``timesteps · 10000^(-k / (dim / 2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=timesteps.device, dtype=torch.float32) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def apply_rotary_half(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate ``x [B, H, N, d]`` by ``rotation [N, d / 2]`` (:class:`~semlat.generation.dit.RotaryEmbedding`'s unit
    complex numbers) in the rotate-half layout: channel ``j`` pairs with ``j + d / 2``, i.e. ``x · cos +
    (-x2, x1) · sin``, as one complex product of ``x1 + i x2``."""
    dtype = x.dtype
    pairs = torch.view_as_complex(rearrange(x.float(), "... (r d) -> ... d r", r=2).contiguous())
    return rearrange(torch.view_as_real(pairs * rotation), "... d r -> ... (r d)").to(dtype)


class Attention(nn.Module):
    """Multi-head attention with per-head LayerNorm on queries and keys (``kv_dim`` for cross-attention)."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, rotary: bool = False):
        super().__init__()
        self.heads, head = heads, dim // heads
        self.to_q = Linear(dim, dim, bias=False)
        self.to_k = Linear(kv_dim or dim, dim, bias=False)
        self.to_v = Linear(kv_dim or dim, dim, bias=False)
        self.norm_q = nn.LayerNorm(head)
        self.norm_k = nn.LayerNorm(head)
        self.proj = Linear(dim, dim)
        self.rotary = RotaryEmbedding(head) if rotary else None

    def forward(self, x: Tensor, context: Tensor | None = None, key_mask: Tensor | None = None) -> Tensor:
        """``x [B, N, D]``, ``context [B, L, Dk]`` (None: self-attention), ``key_mask [B, L]`` True = attend."""
        source = x if context is None else context
        q = self.norm_q(rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads))
        k = self.norm_k(rearrange(self.to_k(source), "b n (h d) -> b h n d", h=self.heads))
        v = rearrange(self.to_v(source), "b n (h d) -> b h n d", h=self.heads)
        if self.rotary is not None:
            rotation = self.rotary(q.shape[-2], q.device)  # once for queries and keys
            q, k = apply_rotary_half(q, rotation), apply_rotary_half(k, rotation)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class GEGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = Linear(dim, 2 * hidden)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """``net``: GEGLU, dropout (identity), Linear (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, hidden), nn.Identity(), Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AdaLNSola(nn.Module):
    """A block's modulation: shared ``time_ada`` output + ``scale_shift_table`` + a low-rank term."""

    def __init__(self, dim: int, rank: int, alpha: float):
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)
        self.lora_a = Linear(dim, 6 * rank, bias=False)
        self.lora_b = Linear(6 * rank, 6 * dim, bias=False)
        nn.init.zeros_(self.lora_b.weight)
        self.scaling = alpha / rank

    def forward(self, shared: Tensor, temb: Tensor) -> tuple[Tensor, ...]:
        """``shared [B, 6D]`` (time_ada of SiLU(temb)), ``temb [B, D]`` -> six ``[B, 1, D]``."""
        mod = shared + self.lora_b(self.lora_a(F.silu(temb))) * self.scaling
        mod = rearrange(mod, "b (k d) -> b k d", k=6) + self.scale_shift_table[None]
        return tuple(rearrange(mod, "b k d -> k b 1 d").unbind(0))


class UDiTBlock(nn.Module):
    def __init__(self, config: UDiTConfig, skip: bool = False):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, config.num_heads, rotary=True)
        self.cross_attn = Attention(dim, config.num_heads, kv_dim=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * config.mlp_ratio))
        self.adaln = AdaLNSola(dim, config.ada_rank, config.ada_alpha)
        if skip:
            self.skip_norm = nn.LayerNorm(2 * dim)
            self.skip_linear = Linear(2 * dim, dim)

    def forward(self, x: Tensor, shared: Tensor, temb: Tensor, context: Tensor, context_mask: Tensor | None,
                mask: Tensor | None, skip: Tensor | None = None) -> Tensor:
        if skip is not None:
            x = self.skip_linear(self.skip_norm(torch.cat([x, skip], dim=-1)))
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaln(shared, temb)
        x = x + (1 - gate_a) * self.attn(self.norm1(x) * (1 + scale_a) + shift_a, key_mask=mask)
        x = x + self.cross_attn(self.norm2(x), self.norm_context(context), key_mask=context_mask)
        return x + (1 - gate_m) * self.mlp(self.norm3(x) * (1 + scale_m) + shift_m)


class TimeEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(Linear(TIME_DIM, dim), nn.SiLU(), Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t))


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv1d(channels, dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class FinalBlock(nn.Module):
    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = Linear(dim, channels)
        self.final_layer = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.final_layer.weight)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: Tensor, shift: Tensor, scale: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.linear(self.norm(x) * (1 + scale) + shift)
        if mask is not None:  # padded frames must not reach valid ones through the k3 conv
            x = x * mask[..., None].to(x.dtype)
        return self.final_layer(rearrange(x, "b n c -> b c n"))


class UDiT(FromConfig, nn.Module):
    """See the module docstring."""

    def __init__(self, config: UDiTConfig):
        super().__init__()
        config.validate()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.in_chans, dim)
        self.time_embed = TimeEmbed(dim)
        self.time_ada_final = Linear(dim, 2 * dim)
        self.time_ada = Linear(dim, 6 * dim)
        self.context_embed = nn.Sequential(Linear(config.context_dim, dim), nn.SiLU(), Linear(dim, dim))
        half = config.depth // 2
        self.in_blocks = nn.ModuleList(UDiTBlock(config) for _ in range(half))
        self.mid_block = UDiTBlock(config)
        self.out_blocks = nn.ModuleList(UDiTBlock(config, skip=True) for _ in range(half))
        self.final_block = FinalBlock(dim, config.in_chans)

    config_class = UDiTConfig
    config_where = "udit config"

    def forward(self, x: Tensor, timesteps: Tensor, context: Tensor, context_mask: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        h = rearrange(self.patch_embed(x), "b d n -> b n d")
        temb = self.time_embed(timesteps.reshape(-1).expand(x.shape[0]))
        shared = self.time_ada(F.silu(temb))
        ctx = self.context_embed(context)
        skips = []
        for block in self.in_blocks:
            h = block(h, shared, temb, ctx, context_mask, mask)
            skips.append(h)
        h = self.mid_block(h, shared, temb, ctx, context_mask, mask)
        for block in self.out_blocks:
            h = block(h, shared, temb, ctx, context_mask, mask, skip=skips.pop())
        shift, scale = rearrange(self.time_ada_final(F.silu(temb)), "b (k d) -> k b 1 d", k=2).unbind(0)
        return self.final_block(h, shift, scale, mask)
