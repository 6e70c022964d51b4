"""The one interface every latent space offers, and chunked (bounded-memory) encode/decode.

A latent space turns mono audio ``[B, 1, N]`` at ``sample_rate`` into latents ``[B, D, T]`` at
``frame_rate`` frames per second (``encode`` is deterministic: the posterior mean for a VAE) and
back (``decode``). TTS and text-to-audio models only ever talk to this protocol.

Long audio is processed in chunks with context on both sides: each chunk is encoded (or decoded)
together with ``context`` seconds of its neighbours and only its own frames (or samples) are
kept, so peak memory depends on the chunk size, not on the length of the input. With a context
longer than the model's receptive field the result equals the unchunked one up to float rounding;
models with unbounded context (the causal attention of Semantic-VAE's bottleneck) differ slightly,
see ``tests/test_latent_space.py`` for the measured tolerance.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class LatentSpace(Protocol):
    """Audio <-> latents. Shapes: audio ``[B, 1, N]``, latents ``[B, D, T]``."""

    sample_rate: int
    latent_dim: int
    frame_rate: float

    def encode(self, audio: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


def hop_length(space: LatentSpace) -> int:
    """Audio samples per latent frame (must be a whole number for chunking)."""
    hop = space.sample_rate / space.frame_rate
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"chunking needs a whole number of samples per frame, got {hop}")
    return round(hop)


def encode_chunked(space: LatentSpace, audio: torch.Tensor, chunk_seconds: float = 30.0,
                   context_seconds: float = 2.0) -> torch.Tensor:
    """``encode`` of ``[B, 1, N]`` in chunks of ``chunk_seconds`` with ``context_seconds`` each side.

    Returns ``[B, D, ceil(N / hop)]``, the frame count unchunked ``encode`` gives after padding.
    """
    hop = hop_length(space)
    frames = math.ceil(audio.shape[-1] / hop)
    chunk = max(1, round(chunk_seconds * space.frame_rate))
    context = max(0, round(context_seconds * space.frame_rate))
    if frames <= chunk + 2 * context:
        return space.encode(audio)
    padded = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))
    pieces = []
    for start in range(0, frames, chunk):
        stop = min(frames, start + chunk)
        left, right = max(0, start - context), min(frames, stop + context)
        latents = space.encode(padded[..., left * hop:right * hop])
        pieces.append(latents[..., start - left:stop - left])
    return torch.cat(pieces, dim=-1)


def decode_chunked(space: LatentSpace, latents: torch.Tensor, chunk_seconds: float = 30.0,
                   context_seconds: float = 2.0) -> torch.Tensor:
    """``decode`` of ``[B, D, T]`` in chunks of ``chunk_seconds`` with ``context_seconds`` each side.

    Returns ``[B, 1, T * hop]``, like unchunked ``decode``.
    """
    hop = hop_length(space)
    frames = latents.shape[-1]
    chunk = max(1, round(chunk_seconds * space.frame_rate))
    context = max(0, round(context_seconds * space.frame_rate))
    if frames <= chunk + 2 * context:
        return space.decode(latents)
    pieces = []
    for start in range(0, frames, chunk):
        stop = min(frames, start + chunk)
        left, right = max(0, start - context), min(frames, stop + context)
        audio = space.decode(latents[..., left:right])
        pieces.append(audio[..., (start - left) * hop:(stop - left) * hop])
    return torch.cat(pieces, dim=-1)
