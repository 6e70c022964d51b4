"""E2-TTS's flat U-Net transformer (``UNetT``): the same call as :class:`~semlat.generation.dit.DiT`.

::

    x, cond, text -> InputEmbedding (text embedded at mel width, no text convs) -> prepend the time
    embedding as one extra token -> depth x [skip (second half: concat with the mirrored first-half
    input, Linear 2d -> d), RMSNorm -> rotary attention -> residual, RMSNorm -> feed-forward -> residual]
    -> RMSNorm -> drop the time token -> Linear -> [B, N, mel_dim]

Layer ``i`` is ``layers.i.{0: skip projection or nothing, 1: attention norm, 2: attention, 3: feed-forward
norm, 4: feed-forward}``; RMSNorm is x_transformers' ``normalize(x) · sqrt(d) · g``. The text is its
embedding alone (no text convs, so no positions either); the mask touches neither the text nor the input
embedding, only the attention (as released). Rotary positions cover the
``N + 1`` tokens; the first head only (``pe_attn_head = 1``) in the releases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semlat.errors import ConfigError
from semlat.generation.dit import (
    Attention,
    FeedForward,
    InputEmbedding,
    RotaryEmbedding,
    TextEmbedding,
    TimestepEmbedding,
    guidance_batch,
)
from semlat.nn.linear import Linear


@dataclass
class UNetTConfig:
    """E2-TTS Base by default (dim 1024, depth 24, 16 heads, ff_mult 4); ``text_dim`` None = ``mel_dim``."""

    dim: int = 1024
    depth: int = 24
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 4
    dropout: float = 0.1
    mel_dim: int = 100
    text_num_embeds: int = 2545
    text_dim: int | None = None
    pe_attn_head: int | None = 1
    attn_mask: bool = True

    def validate(self, where: str = "unett config") -> None:
        if self.depth % 2:
            raise ConfigError(f"{where}: depth must be even (a U-Net pairs its layers), got {self.depth}")


class RMSNorm(nn.Module):
    """``normalize(x) · sqrt(d) · g`` over the last axis (key ``g``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim ** 0.5
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.g


class UNetT(nn.Module):
    """E2-TTS's backbone; see the module docstring and :class:`~semlat.generation.dit.DiT` for the call."""

    def __init__(self, config: UNetTConfig):
        super().__init__()
        config.validate()
        self.config = config
        text_dim = config.text_dim or config.mel_dim
        self.time_embed = TimestepEmbedding(config.dim)
        self.text_embed = TextEmbedding(config.text_num_embeds, text_dim, 0, mask_padding=False, max_position=4096)
        self.input_embed = InputEmbedding(config.mel_dim, text_dim, config.dim)
        self.rotary_embed = RotaryEmbedding(config.dim_head)
        layers = []
        for index in range(config.depth):
            skip = Linear(2 * config.dim, config.dim, bias=False) if index >= config.depth // 2 else None
            layers.append(nn.ModuleList([
                skip if skip is not None else nn.Identity(), RMSNorm(config.dim),
                Attention(config.dim, config.heads, config.dim_head, config.dropout, config.pe_attn_head),
                RMSNorm(config.dim), FeedForward(config.dim, config.ff_mult, config.dropout)]))
        self.layers = nn.ModuleList(layers)
        self.norm_out = RMSNorm(config.dim)
        self.proj_out = Linear(config.dim, config.mel_dim)

    def forward(self, x: Tensor, cond: Tensor, text: Tensor, time: Tensor, mask: Tensor | None = None,
                drop_audio_cond: bool = False, drop_text: bool = False, cfg_infer: bool = False) -> Tensor:
        seq_len = x.shape[1]

        def embed(drop_audio: bool, drop: bool) -> Tensor:
            return self.input_embed(x, cond, self.text_embed(text, seq_len, drop), drop_audio)

        h, time, mask = guidance_batch(embed, time, mask, x.shape[0], cfg_infer, drop_audio_cond, drop_text)
        t = self.time_embed(time)
        h = torch.cat([t[:, None], h], dim=1)
        if mask is not None:
            mask = F.pad(mask, (1, 0), value=True)
        rope = self.rotary_embed(seq_len + 1, h.device)
        skips = []
        for index, (skip_proj, attn_norm, attn, ff_norm, ff) in enumerate(self.layers):
            if index < self.config.depth // 2:
                skips.append(h)
            else:
                h = skip_proj(torch.cat([h, skips.pop()], dim=-1))
            h = attn(attn_norm(h), rope, mask, self.config.attn_mask) + h
            h = ff(ff_norm(h)) + h
        return self.proj_out(self.norm_out(h)[:, 1:])
