"""Regularisers that make an autoencoder's latent space easy to generate in (DC-Speech-VAE).

* :func:`sigma_vae_noise` — σ-VAE noise: during training the decoder sees the latent plus Gaussian
  noise whose standard deviation is drawn per sample, so it learns to decode a neighbourhood of
  every latent, not just the latent itself. :func:`fixed_noise` is the fixed-strength variant.
* :class:`LatentNorm` / :func:`latent_layer_norm` — LayerNorm without affine parameters over the
  latent channels at every position, which pins each latent vector to zero mean and unit variance.
* :func:`dispersive_loss` — the mean squared cosine similarity between the (flattened) latents of
  different samples of a batch; it pushes samples apart without positives or a temperature. With
  ``gather=True`` it uses the whole distributed batch as negatives.

All functions are device- and dtype-agnostic and draw randomness only from the global torch RNG
(or an explicit generator), so a run seeded with ``torch.manual_seed`` replays exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["LatentNorm", "dispersive_loss", "fixed_noise", "latent_layer_norm", "sigma_vae_noise"]


def _randn(latent: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn_like(latent)
    return torch.randn(latent.shape, generator=generator, dtype=latent.dtype, device=latent.device)


def sigma_vae_noise(latent: Tensor, max_std: float = 0.5, generator: torch.Generator | None = None
                    ) -> tuple[Tensor, Tensor]:
    """Add σ-VAE noise with a random per-sample strength.

    Draws, in this order, ``noise = randn_like(latent)`` (i.i.d. N(0, 1)) and then ``std = U[0, 1)
    · max_std`` shaped ``[B, 1, ..., 1]`` (one value per sample, shared by all its elements), and
    returns ``latent + std · noise``. The draw order matches DC-Speech-VAE's training code, so a
    run seeded with ``torch.manual_seed`` reproduces the reference's noise exactly — provided
    ``latent`` has the reference's memory layout (``randn_like`` preserves strides, and CPU draws
    differ between contiguous and strided tensors; :func:`latent_layer_norm`'s output has it).

    Args:
        latent: ``[B, ...]`` (e.g. ``[B, C, F, T]`` or ``[B, D, T]``), any float dtype.
        max_std: upper bound (exclusive) of the per-sample standard deviation.
        generator: optional RNG; the global torch RNG when None.

    Returns:
        ``(noisy, std)``: ``noisy`` shaped like ``latent`` and ``std`` shaped ``[B, 1, ..., 1]``
        (same number of dims as ``latent``).
    """
    if latent.dim() < 1:
        raise ValueError(f"sigma_vae_noise needs a batched latent [B, ...], got shape {tuple(latent.shape)}")
    noise = _randn(latent, generator)
    shape = (latent.shape[0],) + (1,) * (latent.dim() - 1)
    std = torch.rand(shape, generator=generator, dtype=latent.dtype, device=latent.device) * max_std
    return latent + std * noise, std


def fixed_noise(latent: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Add i.i.d. Gaussian noise of a fixed standard deviation: ``latent + std · N(0, 1)``.

    This is the reference's eval-time ``'fix'`` mode (``[B, ...] -> [B, ...]``); ``std == 0``
    returns ``latent`` unchanged without touching the RNG.
    """
    if std == 0:
        return latent
    return latent + std * _randn(latent, generator)


def latent_layer_norm(latent: Tensor, dim: int = 1, eps: float = 1e-5) -> Tensor:
    """LayerNorm without affine parameters over dimension ``dim`` (the channels) at every position.

    ``[B, C, ...] -> [B, C, ...]`` (for ``dim=1``): every vector ``latent[b, :, f, t]`` gets mean 0
    and (biased) variance 1, up to ``eps`` (added to the variance).

    The result is a transposed view (``dim`` swapped with the last dim): for ``[B, C, F, T]`` its
    memory order is ``[B, T, F, C]``, as in DC-Speech-VAE. That matters for seeded replays only:
    ``randn_like`` keeps the memory layout and, on CPU, draws different numbers for contiguous and
    non-contiguous tensors, so :func:`sigma_vae_noise` reproduces the reference's noise only on a
    latent laid out like this one.
    """
    swapped = latent.transpose(dim, -1)
    return F.layer_norm(swapped, swapped.shape[-1:], eps=eps).transpose(dim, -1)


class LatentNorm(nn.Module):
    """:func:`latent_layer_norm` as a module (no parameters, no state-dict keys).

    Args:
        dim: the channel dimension to normalise over (1 for ``[B, C, ...]`` latents).
        eps: added to the variance (1e-5 like ``nn.LayerNorm``).
    """

    def __init__(self, dim: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, latent: Tensor) -> Tensor:
        """``[B, C, ...] -> [B, C, ...]``, normalised over ``C``."""
        return latent_layer_norm(latent, self.dim, self.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


def _gather_rows(local: Tensor) -> tuple[Tensor, int]:
    """All-gather ``[B_r, N]`` rows of every rank (sizes may differ) into ``[B_global, N]``.

    Remote rows are detached; this rank's rows are the ``local`` tensor itself (with its graph).
    Returns ``(rows, offset)`` where ``offset`` is the index of this rank's first row.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([local.shape[0]], device=local.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    biggest = max(counts)
    padded = local.detach()
    if local.shape[0] < biggest:
        padded = torch.cat([padded, padded.new_zeros(biggest - local.shape[0], local.shape[1])])
    slots = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(slots, padded.contiguous())
    pieces = [local if r == rank else slots[r][: counts[r]] for r in range(world)]
    return torch.cat(pieces), sum(counts[:rank])


def dispersive_loss(z: Tensor, gather: bool = False) -> Tensor:
    """Dispersive loss: mean squared cosine similarity between different samples of a batch.

    Each sample is flattened to one vector and L2-normalised (eps 1e-12); with ``S = Z Zᵀ`` the
    loss is ``Σ_{i≠j} S_ij² / (B(B−1))``. Only the element set of a sample matters, so a latent
    and its reshaped view (``[B,C,F,T]`` vs ``[B,C·F,T]``) give the same value.

    With ``gather=True`` and an initialised ``torch.distributed`` group of more than one process,
    every local sample is compared with every other sample of the *global* batch:
    ``Σ_{i local, j global, j≠i} S_ij² / (B_local·(B_global−1))``. Rows gathered from other ranks
    are detached, and the gradient of each cross-rank pair is doubled (its value is not), standing in
    for the half of the pair that the other rank differentiates. With equal per-rank batches the mean
    of the ranks' values is the single-process loss on the concatenated batch, and the DDP-averaged
    gradient is that loss's gradient. Per-rank batch sizes may differ. With one process
    ``gather=True`` is the plain loss.

    Args:
        z: ``[B, ...]`` latents (any trailing shape), e.g. ``[B, 16, 5, T]`` or ``[B, 80, T]``.
        gather: use negatives from all ranks (needs every rank to call this, collectively).

    Returns:
        A scalar tensor. A (global) batch of one sample has no pairs: the result is ``0.0``,
        still connected to ``z``'s graph (the reference returns NaN there).
    """
    if z.dim() < 1 or z.shape[0] == 0:
        raise ValueError(f"dispersive_loss needs a non-empty batch [B, ...], got shape {tuple(z.shape)}")
    rows = F.normalize(rearrange(z, "b ... -> b (...)"), dim=1, eps=1e-12)
    local_count = rows.shape[0]
    if gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        everyone, offset = _gather_rows(rows)
    else:
        everyone, offset = rows, 0
    total = everyone.shape[0]
    if total < 2:
        return rows.sum() * 0.0
    sim = rows @ everyone.T  # [B_local, B_global]
    own = torch.arange(local_count, device=rows.device)
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[own, own + offset] = True
    squares = sim.square().masked_fill(self_mask, 0.0)
    if total > local_count:  # cross-rank pairs: value S², gradient 2 dS²
        remote = torch.ones(total, dtype=torch.bool, device=rows.device)
        remote[offset:offset + local_count] = False
        squares = torch.where(remote[None, :], 2 * squares - squares.detach(), squares)
    return squares.sum() / (local_count * (total - 1))
