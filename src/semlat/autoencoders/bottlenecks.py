"""Bottlenecks of the waveform VAE: Semantic-VAE's attention projection and the Gaussian posterior.

:class:`AttnProjection` maps encoder features to the VAE width (time-major ``[B, T, C_in] -> [B, T,
C_out]``)::

    out = proj(norm3(x)) + attn(norm1(x))
    out = out + mlp(norm2(out))            # mlp = GeGluMlp with its own LayerNorm

``attn`` is a causal multi-head self-attention (:class:`CausalAttention`). When it narrows (``C_in >
C_out``) the head outputs are *averaged* and the head width is average-pooled to ``C_out``; when it
widens, heads are concatenated as usual. The qkv bias is ``(q_bias, zero_k_bias, v_bias)`` with a
zero key bias kept as a persistent buffer (it is a checkpoint key).

The posterior helpers implement Semantic-VAE's Gaussian: clamped log-variance, reparameterised
sampling with an optional given noise, and its KL (with the reference's ``- 1e-6`` term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.nn.linear import Linear


class GeGluMlp(nn.Module):
    """``w2(gelu_tanh(w0(norm(x))) * w1(norm(x)))``: ``[..., C] -> [..., C]`` with hidden width ``hidden``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.w0 = Linear(dim, hidden)
        self.w1 = Linear(dim, hidden)
        self.w2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., C] -> [..., C]``."""
        x = self.norm(x)
        return self.w2(F.gelu(self.w0(x), approximate="tanh") * self.w1(x))


class CausalAttention(nn.Module):
    """Causal self-attention that changes the feature width: ``[B, T, C_in] -> [B, T, C_out]``.

    The attention width is ``W = max(C_in, C_out)`` split into ``num_heads`` contiguous heads of
    ``W / num_heads``. Narrowing: mean over heads, then ``adaptive_avg_pool1d`` of the head width to
    ``C_out`` if they differ. Otherwise the heads are concatenated. Then ``proj`` (``C_out -> C_out``).
    No padding mask, no dropout; default scale ``1/sqrt(head_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, num_heads: int = 8) -> None:
        super().__init__()
        width = max(in_dim, out_dim)
        self.in_dim, self.out_dim, self.num_heads = in_dim, out_dim, num_heads
        self.head_dim = width // num_heads
        self.qkv = Linear(in_dim, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width), persistent=True)
        self.proj = Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, C_in] -> [B, T, C_out]``."""
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, d]
        if self.in_dim > self.out_dim:
            y = y.mean(dim=1)
            if self.head_dim != self.out_dim:
                y = F.adaptive_avg_pool1d(y, self.out_dim)
        else:
            y = rearrange(y, "b h t d -> b t (h d)")
        return self.proj(y)


class AttnProjection(nn.Module):
    """Attention projection ``[B, T, C_in] -> [B, T, C_out]`` (or ``[B, C, T]`` if ``channels_first``).

    Submodules ``norm1``, ``norm3`` (LayerNorm(C_in)), ``attn`` (:class:`CausalAttention`), ``proj``
    (Linear(C_in, C_out)), ``norm2`` (LayerNorm(C_out)) and ``mlp`` (:class:`GeGluMlp`, hidden
    ``mlp_ratio * C_out``).
    """

    def __init__(self, in_dim: int, out_dim: int, num_heads: int = 8, mlp_ratio: float = 2.0,
                 channels_first: bool = False) -> None:
        super().__init__()
        if in_dim % out_dim and out_dim % in_dim:
            raise ValueError(f"AttnProjection needs one width to divide the other, got {in_dim} and {out_dim}")
        self.channels_first = channels_first
        self.norm1 = nn.LayerNorm(in_dim)
        self.attn = CausalAttention(in_dim, out_dim, num_heads)
        self.proj = Linear(in_dim, out_dim)
        self.norm3 = nn.LayerNorm(in_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = GeGluMlp(out_dim, int(out_dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, C_in] -> [B, T, C_out]`` (``[B, C_in, T] -> [B, C_out, T]`` when ``channels_first``)."""
        if self.channels_first:
            x = rearrange(x, "b c t -> b t c")
        x = self.proj(self.norm3(x)) + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        if self.channels_first:
            x = rearrange(x, "b t c -> b c t").contiguous()
        return x


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
    """``z = eps * exp(logvar / 2) + mu`` with ``eps ~ N(0, I)`` unless given (same shape as ``mu``)."""
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn_like(std)
    elif eps.shape != mu.shape:
        raise ValueError(f"eps has shape {tuple(eps.shape)}, expected {tuple(mu.shape)}")
    return eps * std + mu


def gaussian_kl(mu: Tensor, logvar: Tensor, dim: int = -1) -> Tensor:
    """Semantic-VAE's KL to N(0, I): summed over the latent ``dim``, averaged over everything else.

    ``mean(-0.5 * sum_d(1 + logvar - mu^2 - (exp(logvar) + 1e-6)))``. The ``1e-6`` (a reference
    quirk) adds ``0.5e-6 * D``. Returns a scalar.
    """
    return (-0.5 * torch.sum(1 + logvar - mu.pow(2) - (logvar.exp() + 1e-6), dim=dim)).mean()
