"""F5-TTS's DiT backbone (v1 and the v0 flags): ``(x, cond, text, time) -> velocity``, all ``[B, N, C]``.

::

    time [B]      --sinusoid(256) -> Linear -> SiLU -> Linear--------------------------> t [B, dim]
    text [B, Nt]  --(+1; pad/fill to N) -> Embedding -> + sinusoid -> ConvNeXt-V2 x L--> [B, N, text_dim]
    x, cond [B, N, C] + text --Linear(2C + text_dim -> dim) -> + ConvPositionEmbedding--> [B, N, dim]
        --> depth x DiT block (AdaLN-zero from t: shift/scale/gate for attention and feed-forward,
            rotary attention, tanh-GELU feed-forward) --> AdaLN final (scale, shift) -> Linear -> [B, N, C]

Module names follow the released checkpoints (``time_embed.time_mlp``, ``text_embed.text_blocks``,
``input_embed.conv_pos_embed``, ``transformer_blocks.{i}.attn_norm/attn/ff``, ``norm_out``, ``proj_out``,
``rotary_embed.inv_freq``), so an import only strips the ``ema_model.transformer.`` prefix.

**Padding.** The reference attends over padded frames (``attn_mask_enabled=False`` in every release: the mask
only zeroes the attention output there), so a shorter sample's output depends on its padding. semlat's
default (``attn_mask=True``) masks padded keys, so a sample's output does not depend on the batch it runs
in; imported releases keep the reference mode for parity.

**v0 flags** (F5TTS_Base): ``text_mask_padding=False`` (fillers are not zeroed around the text convs) and
``pe_attn_head=1`` (rotary embedding on the first head only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.errors import ConfigError
from semlat.nn.linear import Linear

#: positions of the text sinusoid (about 87 s of 93.75 Hz frames)
TEXT_POSITIONS = 8192


@dataclass
class DiTConfig:
    """The backbone's sizes and flags. Defaults: F5TTS_v1_Base with a 2545-token vocabulary and
    semlat's masked attention (``attn_mask=False`` reproduces the releases)."""

    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 2
    dropout: float = 0.1
    mel_dim: int = 100
    text_num_embeds: int = 2545
    text_dim: int = 512
    conv_layers: int = 4
    text_mask_padding: bool = True
    pe_attn_head: int | None = None
    attn_mask: bool = True

    def validate(self, where: str = "dit config") -> None:
        for name in ("dim", "depth", "heads", "dim_head", "ff_mult", "mel_dim", "text_num_embeds", "text_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.text_dim % 2 or self.dim_head % 2:
            raise ConfigError(f"{where}: text_dim and dim_head must be even")

    @classmethod
    def v1_base(cls, **overrides) -> DiTConfig:
        return cls(**overrides)

    @classmethod
    def v1_small(cls, **overrides) -> DiTConfig:
        """F5TTS_v1_Small (the Semantic-VAE paper's TTS): dim 768, depth 18, 12 heads."""
        return cls(**{"dim": 768, "depth": 18, "heads": 12, **overrides})


def sinusoid(t: Tensor, dim: int = 256, scale: float = 1000.0) -> Tensor:
    """``t [B]`` in [0, 1] -> ``[B, dim]``: ``cat(sin, cos)`` of ``scale · t · exp(-ln(1e4) · i / (dim/2 - 1))``."""
    half = dim // 2
    step = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -step)
    angles = scale * t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimestepEmbedding(nn.Module):
    """``t [B] -> [B, dim]``: 256-d sinusoid -> Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(Linear(freq_dim, dim), nn.SiLU(), Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.time_mlp(sinusoid(t, self.freq_dim).to(self.time_mlp[0].weight.dtype))


class GRN(nn.Module):
    """ConvNeXt-V2 global response normalisation over time: ``x [B, N, C]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """``x [B, N, C]``: depthwise conv k7 -> LayerNorm -> Linear C->hC -> GELU -> GRN -> Linear -> residual."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = Linear(dim, hidden)
        self.act = nn.GELU()
        self.grn = GRN(hidden)
        self.pwconv2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = rearrange(self.dwconv(rearrange(x, "b n c -> b c n")), "b c n -> b n c")
        return x + self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(h)))))


def text_positions(dim: int, positions: int = TEXT_POSITIONS) -> Tensor:
    """``[positions, dim]``: ``cat(cos(n f), sin(n f))`` with ``f_j = 1e4^(-2j / dim)`` (cos half first)."""
    freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32)[: dim // 2] / dim))
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), freqs)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class TextEmbedding(nn.Module):
    """Token ids ``[B, Nt]`` (``-1`` padded) -> ``[B, N, text_dim]`` aligned to ``N`` frames (see the module
    docstring: ids shift by one so the pad is the filler 0; fillers zeroed around the convs with
    ``mask_padding``). Positions (clamped at ``max_position - 1``) and convs are added only with
    ``conv_layers > 0``; without them (E2) the text is the embedding alone."""

    def __init__(self, num_embeds: int, dim: int, conv_layers: int, mask_padding: bool, conv_mult: int = 2,
                 max_position: int = TEXT_POSITIONS):
        super().__init__()
        self.mask_padding = mask_padding
        self.text_embed = nn.Embedding(num_embeds + 1, dim)
        self.text_blocks = nn.Sequential(*[ConvNeXtV2Block(dim, dim * conv_mult) for _ in range(conv_layers)])
        self.register_buffer("freqs_cis", text_positions(dim, max_position), persistent=False)

    def forward(self, text: Tensor, seq_len: int, drop_text: bool = False, mask: Tensor | None = None) -> Tensor:
        text = text + 1
        text = F.pad(text[:, :seq_len], (0, max(0, seq_len - text.shape[1])), value=0)
        positions = torch.arange(seq_len, device=text.device)
        inside = None
        if mask is not None:
            inside = positions[None] < mask.sum(1, keepdim=True)
            text = text.masked_fill(~inside, 0)
        filler = text == 0
        if drop_text:
            text = torch.zeros_like(text)
        x = self.text_embed(text)
        if len(self.text_blocks) == 0:  # no "extra modeling" (E2): no positions, no convs
            return x
        pos = self.freqs_cis[positions.clamp(max=self.freqs_cis.shape[0] - 1)].to(x.dtype)[None]
        if inside is not None:
            x = (x + pos * inside[..., None]) * inside[..., None]
        else:
            x = x + pos
        if not self.mask_padding:
            return self.text_blocks(x)
        x = x.masked_fill(filler[..., None], 0.0)
        for block in self.text_blocks:
            x = block(x).masked_fill(filler[..., None], 0.0)
        return x


class ConvPositionEmbedding(nn.Module):
    """Two grouped convs (k31, 16 groups) with Mish, padded frames zeroed around each: ``[B, N, D]``."""

    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.conv1d = nn.Sequential(nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2), nn.Mish(),
                                    nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2), nn.Mish())

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        keep = None if mask is None else rearrange(mask, "b n -> b 1 n")
        h = rearrange(x, "b n d -> b d n")
        for layer in self.conv1d:
            if keep is not None and isinstance(layer, nn.Conv1d):
                h = h.masked_fill(~keep, 0.0)
            h = layer(h)
        if keep is not None:
            h = h.masked_fill(~keep, 0.0)
        return rearrange(h, "b d n -> b n d")


class InputEmbedding(nn.Module):
    """``x, cond [B, N, C]``, text ``[B, N, T]`` -> ``[B, N, dim]``: Linear over ``cat(x, cond, text)`` plus the
    convolutional position embedding (residual)."""

    def __init__(self, mel_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.proj = Linear(2 * mel_dim + text_dim, dim)
        self.conv_pos_embed = ConvPositionEmbedding(dim)

    def forward(self, x: Tensor, cond: Tensor, text: Tensor, drop_audio_cond: bool = False,
                mask: Tensor | None = None) -> Tensor:
        if drop_audio_cond:
            cond = torch.zeros_like(cond)
        x = self.proj(torch.cat([x, cond, text], dim=-1))
        return self.conv_pos_embed(x, mask) + x


class RotaryEmbedding(nn.Module):
    """x_transformers' rotary embedding (frequencies repeated in interleaved pairs, ``f0, f0, f1, f1, ...``) as
    one unit complex number per pair; ``inv_freq`` is persistent (it is in the released checkpoints)."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, length: int, device: torch.device) -> Tensor:
        """``[N, dim / 2]`` complex64: ``exp(i · n · f_j)``."""
        t = torch.arange(length, device=device, dtype=torch.float32)
        return torch.polar(torch.ones(()), torch.outer(t, self.inv_freq.float()))


def apply_rotary(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate ``x [B, H, N, d]`` by ``rotation [N, d / 2]`` (from :class:`RotaryEmbedding`): each adjacent pair
    ``(a, b)`` is the complex ``a + ib`` times the pair's unit rotation, i.e. ``x · cos + (-b, a) · sin``, in one
    complex product."""
    dtype = x.dtype
    pairs = torch.view_as_complex(rearrange(x.float(), "... (d r) -> ... d r", r=2).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2).to(dtype)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions (SDPA)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float, pe_attn_head: int | None):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.pe_attn_head = heads, pe_attn_head
        self.to_q, self.to_k, self.to_v = Linear(dim, inner), Linear(dim, inner), Linear(dim, inner)
        self.to_out = nn.Sequential(Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor | None, mask_keys: bool) -> Tensor:
        q, k, v = (rearrange(f(x), "b n (h d) -> b h n d", h=self.heads) for f in (self.to_q, self.to_k, self.to_v))
        if self.pe_attn_head is None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        else:
            n = self.pe_attn_head
            q = torch.cat([apply_rotary(q[:, :n], rope), q[:, n:]], dim=1)
            k = torch.cat([apply_rotary(k[:, :n], rope), k[:, n:]], dim=1)
        attn_mask = None
        if mask is not None and mask_keys:
            attn_mask = rearrange(mask, "b n -> b 1 1 n")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        return out


class AdaLayerNormZero(nn.Module):
    """``Linear(SiLU(t))`` -> shift/scale/gate for attention and feed-forward (in that order)."""

    def __init__(self, dim: int):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = Linear(dim, dim * 6)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: Tensor, t: Tensor) -> tuple[Tensor, ...]:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.linear(self.silu(t)).chunk(6, dim=-1)
        x = torch.addcmul(shift_msa[:, None], self.norm(x), 1 + scale_msa[:, None])  # LN(x)·(1+scale)+shift
        return x, gate_msa, shift_mlp, scale_mlp, gate_mlp


class FeedForward(nn.Module):
    """Linear -> tanh-GELU -> Dropout -> Linear (keys ``ff.0.0``, ``ff.2``)."""

    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        inner = dim * mult
        self.ff = nn.Sequential(nn.Sequential(Linear(dim, inner, activation="gelu_tanh")), nn.Dropout(dropout),
                                Linear(inner, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.ff(x)


class DiTBlock(nn.Module):
    """AdaLN-zero transformer block: ``x += gate · Attn(mod(LN(x)))``, ``x += gate · FF(mod(LN(x)))``."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.attn_norm = AdaLayerNormZero(config.dim)
        self.attn = Attention(config.dim, config.heads, config.dim_head, config.dropout, config.pe_attn_head)
        self.ff_norm = nn.LayerNorm(config.dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(config.dim, config.ff_mult, config.dropout)

    def forward(self, x: Tensor, t: Tensor, rope: Tensor, mask: Tensor | None, mask_keys: bool) -> Tensor:
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.attn_norm(x, t)
        x = torch.addcmul(x, gate_msa[:, None], self.attn(normed, rope, mask, mask_keys))
        normed = torch.addcmul(shift_mlp[:, None], self.ff_norm(x), 1 + scale_mlp[:, None])
        return torch.addcmul(x, gate_mlp[:, None], self.ff(normed))


class AdaLayerNormFinal(nn.Module):
    """``LN(x) · (1 + scale) + shift`` with ``scale, shift = Linear(SiLU(t))`` (scale first)."""

    def __init__(self, dim: int):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = Linear(dim, dim * 2)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        scale, shift = self.linear(self.silu(t)).chunk(2, dim=-1)
        return torch.addcmul(shift[:, None], self.norm(x), 1 + scale[:, None])


def guidance_batch(embed, time: Tensor, mask: Tensor | None, batch: int, cfg_infer: bool, drop_audio_cond: bool,
                   drop_text: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """The embedded input, times ``[B]`` and mask of one backbone call; with ``cfg_infer`` the batch is doubled:
    the conditional rows, then the rows with audio and text dropped. ``embed(drop_audio, drop_text)`` embeds
    the inputs."""
    if time.ndim == 0:
        time = time.repeat(batch)
    if not cfg_infer:
        return embed(drop_audio_cond, drop_text), time, mask
    h = torch.cat([embed(False, False), embed(True, True)])
    return h, torch.cat([time, time]), None if mask is None else torch.cat([mask, mask])


class DiT(nn.Module):
    """F5-TTS's DiT; ``forward(x, cond, text, time, mask=None, drop_audio_cond=False, drop_text=False,
    cfg_infer=False) -> [B, N, mel_dim]`` (``[2B, N, mel_dim]`` with ``cfg_infer``: the conditional rows,
    then the rows with audio and text dropped)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.time_embed = TimestepEmbedding(config.dim)
        self.text_embed = TextEmbedding(config.text_num_embeds, config.text_dim, config.conv_layers,
                                        config.text_mask_padding)
        self.input_embed = InputEmbedding(config.mel_dim, config.text_dim, config.dim)
        self.rotary_embed = RotaryEmbedding(config.dim_head)
        self.transformer_blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.norm_out = AdaLayerNormFinal(config.dim)
        self.proj_out = Linear(config.dim, config.mel_dim)

    def embed_text(self, text: Tensor, seq_len: int, drop_text: bool, mask: Tensor | None) -> Tensor:
        return self.text_embed(text, seq_len, drop_text, mask)

    def forward(self, x: Tensor, cond: Tensor, text: Tensor, time: Tensor, mask: Tensor | None = None,
                drop_audio_cond: bool = False, drop_text: bool = False, cfg_infer: bool = False) -> Tensor:
        seq_len = x.shape[1]

        def embed(drop_audio: bool, drop: bool) -> Tensor:
            return self.input_embed(x, cond, self.embed_text(text, seq_len, drop, mask), drop_audio, mask)

        h, time, mask = guidance_batch(embed, time, mask, x.shape[0], cfg_infer, drop_audio_cond, drop_text)
        t = self.time_embed(time)
        rope = self.rotary_embed(seq_len, h.device)
        for block in self.transformer_blocks:
            h = block(h, t, rope, mask, self.config.attn_mask)
        return self.proj_out(self.norm_out(h, t))
