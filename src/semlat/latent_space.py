"""The one interface every latent space offers, and chunked (bounded-memory) encode/decode.

A latent space turns mono audio ``[B, 1, N]`` at ``input_rate`` into latents ``[B, D, T]`` at
``frame_rate`` frames per second (``encode`` is deterministic: the posterior mean for a VAE) and
latents back into audio ``[B, 1, T * output_hop]`` at ``output_rate`` (``decode``). For an
autoencoder both rates are the same (its ``sample_rate``); the SemanticVocoder reads 16 kHz and
writes 24 kHz. ``decode(latents, **options)`` takes the sampling options of decoders that sample
(``steps``, ``schedule``, ``seed``); deterministic decoders accept ``seed`` and ignore it, and refuse
any other option with a one-line error (:func:`check_decode_options`). TTS and text-to-audio models
only ever talk to this protocol.

Long audio is processed in chunks with context on both sides (:func:`semlat.chunking.run_chunked`):
each chunk is encoded (or decoded) together with ``context`` seconds of its neighbours and only its
own frames (or samples) are kept, so peak memory depends on the chunk size, not on the length of the
input. With a context longer than the model's receptive field the result equals the unchunked one up
to float rounding; models with unbounded context (the causal attention of Semantic-VAE's bottleneck)
differ slightly, see ``tests/test_latent_space.py`` for the measured tolerance. Sampling decoders get
a per-chunk seed and crossfaded overlaps (``overlap_seconds``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from semlat.chunking import ChunkStream, frames_for, run_chunked
from semlat.errors import ConfigError

#: decode options every latent space accepts (deterministic ones ignore them)
UNIVERSAL_OPTIONS = frozenset({"seed"})


@runtime_checkable
class LatentSpace(Protocol):
    """Audio <-> latents. Shapes: audio ``[B, 1, N]``, latents ``[B, D, T]``."""

    input_rate: int
    output_rate: int
    latent_dim: int
    frame_rate: float

    def encode(self, audio: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor, **options: Any) -> torch.Tensor: ...


def check_decode_options(options: Mapping[str, Any], accepted: Iterable[str] = (), where: str = "this model") -> None:
    """Raise ConfigError for a decode option outside ``accepted`` and :data:`UNIVERSAL_OPTIONS`."""
    allowed = UNIVERSAL_OPTIONS | set(accepted)
    unknown = sorted(set(options) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed))
        raise ConfigError(f"{where} does not take decode option {unknown[0]!r} (it takes: {takes})")



def space_info(space: LatentSpace) -> dict[str, Any]:
    """``{input_rate, output_rate, sample_rate?, latent_dim, frame_rate}`` of a space: the metadata that
    model folders, latent stores and reports record (``sample_rate`` only where both rates agree)."""
    info: dict[str, Any] = {"input_rate": int(space.input_rate), "output_rate": int(space.output_rate),
                            "latent_dim": int(space.latent_dim), "frame_rate": float(space.frame_rate)}
    if info["input_rate"] == info["output_rate"]:
        info["sample_rate"] = info["input_rate"]
    return info


def _hop(rate: int, frame_rate: float, what: str) -> int:
    hop = rate / frame_rate
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"chunking needs a whole number of {what} samples per frame, got {hop}")
    return round(hop)


def input_hop(space: LatentSpace) -> int:
    """Input audio samples per latent frame."""
    return _hop(space.input_rate, space.frame_rate, "input")


def output_hop(space: LatentSpace) -> int:
    """Output audio samples per latent frame."""
    return _hop(space.output_rate, space.frame_rate, "output")


def hop_length(space: LatentSpace) -> int:
    """Audio samples per latent frame of a space whose two rates agree."""
    hop = input_hop(space)
    if space.input_rate != space.output_rate:
        raise ValueError(f"this space reads {space.input_rate} Hz and writes {space.output_rate} Hz: "
                         "use input_hop or output_hop")
    return hop


def encode_chunked(space: LatentSpace, audio: torch.Tensor, chunk_seconds: float = 30.0,
                   context_seconds: float = 2.0, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``encode`` of ``[B, 1, N]`` in chunks of ``chunk_seconds`` with ``context_seconds`` each side
    (``progress(chunks done, chunks)`` after each).

    Returns ``[B, D, ceil(N / hop)]``, the frame count unchunked ``encode`` gives after padding.
    """
    hop = input_hop(space)
    frames = math.ceil(audio.shape[-1] / hop)
    chunk, context = frames_for(chunk_seconds, space.frame_rate), frames_for(context_seconds, space.frame_rate)
    if frames > max(1, chunk) + 2 * context:
        audio = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))
    return run_chunked(space.encode, audio, frames=frames, chunk=chunk, context=context, in_hop=hop, out_hop=1,
                       progress=progress)


def decode_chunked(space: LatentSpace, latents: torch.Tensor, chunk_seconds: float = 30.0,
                   context_seconds: float = 2.0, overlap_seconds: float = 0.0,
                   progress: Callable[[int, int], None] | None = None, **options: Any) -> torch.Tensor:
    """``decode`` of ``[B, D, T]`` in chunks of ``chunk_seconds`` with ``context_seconds`` each side
    (``progress(chunks done, chunks)`` after each).

    ``options`` go to ``decode``; a ``seed`` becomes one seed per chunk, and ``overlap_seconds`` are
    crossfaded between chunks (for decoders that sample). Returns ``[B, 1, T * output_hop]``.
    """
    seed = options.pop("seed", None)
    return run_chunked(space.decode, latents, frames=latents.shape[-1],
                       chunk=frames_for(chunk_seconds, space.frame_rate),
                       context=frames_for(context_seconds, space.frame_rate), in_hop=1, out_hop=output_hop(space),
                       overlap=frames_for(overlap_seconds, space.frame_rate), seed=seed, progress=progress,
                       **options)


def decode_stream(space: LatentSpace, chunk_seconds: float = 1.0, context_seconds: float = 2.0,
                  overlap_seconds: float = 0.0, **options: Any) -> ChunkStream:
    """:func:`decode_chunked` for latents that arrive a few frames at a time: a
    :class:`~semlat.chunking.ChunkStream` whose ``push(latents [B, D, n])`` returns the audio ``[B, 1, m]`` that
    is final so far (or None) and ``finish()`` the rest; joined, they equal :func:`decode_chunked` of the whole
    latents with the same seconds."""
    seed = options.pop("seed", None)
    return ChunkStream(space.decode, chunk=frames_for(chunk_seconds, space.frame_rate),
                       context=frames_for(context_seconds, space.frame_rate), in_hop=1, out_hop=output_hop(space),
                       overlap=frames_for(overlap_seconds, space.frame_rate), seed=seed, **options)


class OneRateSpace:
    """Mixin for latent spaces that read and write audio at one ``sample_rate`` and decode
    deterministically: ``input_rate = output_rate = sample_rate``."""

    sample_rate: int

    @property
    def input_rate(self) -> int:
        """Audio rate ``encode`` reads (Hz)."""
        return int(self.sample_rate)

    @property
    def output_rate(self) -> int:
        """Audio rate ``decode`` writes (Hz)."""
        return int(self.sample_rate)
