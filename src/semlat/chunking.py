"""The one chunk loop: run a frame-aligned function over long inputs in bounded memory.

Every long-input pass in semlat goes through :func:`run_chunked`: a latent space's encode (audio
samples in, latent frames out), its decode (latent frames in, audio samples out) and a teacher's
feature pass (audio samples in, feature frames out). The input and output are both measured in
*frames* of one common grid; ``in_hop`` and ``out_hop`` say how many elements of the last axis make
one frame on each side (``hop`` audio samples per latent frame for an encoder, 1 for latents).

Each chunk keeps ``chunk`` frames and is computed together with ``context`` frames of its neighbours
on each side, which are then thrown away, so a function whose receptive field fits in the context
gives the unchunked result to float rounding. The last window reaches to the end of the input
(whatever is left after its last whole frame goes with it).

Decoders that *sample* (a flow-matching vocoder) are not bit-exact across chunks: two chunks never
agree on the frames they share. For them:

- ``seed``: chunk ``i`` runs with its own seed :func:`chunk_seed` ``(seed, i)``, derived from one user
  seed, so the same seed and the same chunking give the same output, and chunks do not repeat one
  noise pattern;
- ``overlap``: chunk ``i`` also computes ``overlap`` frames past its end, and the output of those
  frames is crossfaded linearly into chunk ``i + 1``'s beginning instead of cutting hard between
  them (linear, because the two versions are strongly correlated renderings of the same latents).

Inputs no longer than ``chunk + 2 * context`` frames run in one call (with ``chunk_seed(seed, 0)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk ``index`` under user seed ``seed`` (a 63-bit integer; NumPy's SeedSequence
    mixes the pair, so neighbouring chunks and neighbouring user seeds get unrelated seeds)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def frames_for(seconds: float, frame_rate: float) -> int:
    """``seconds`` as a whole number of frames (at least 0)."""
    return max(0, round(seconds * frame_rate))


def run_chunked(fn: Callable[..., torch.Tensor], source: torch.Tensor, *, frames: int, chunk: int, context: int,
                in_hop: int = 1, out_hop: int = 1, overlap: int = 0, seed: int | None = None,
                progress: Callable[[int, int], None] | None = None, **options: Any) -> torch.Tensor:
    """Apply ``fn`` to ``source`` window by window and join the outputs along the last axis.

    Args:
        fn: ``fn(piece, **options) -> output``; ``piece`` is ``source[..., a * in_hop : b * in_hop]``
            (the last window to the end of ``source``) and the output holds ``out_hop`` elements per
            frame of the window along its last axis. With ``seed`` given, ``fn`` also gets ``seed=``.
        source: ``[..., L]`` with ``L >= frames * in_hop``.
        frames: frames of the output (``ceil(N / hop)`` for an encoder, ``T`` for a decoder).
        chunk, context: frames kept per window and frames of context on each side.
        overlap: frames computed past each window's end and crossfaded into the next (0: hard cuts).
        seed: user seed; window ``i`` gets ``chunk_seed(seed, i)``.
        progress: called as ``progress(windows done, windows)`` after every window (a progress bar).
        options: passed on to ``fn`` (sampling steps, seed, ...).

    Returns ``[..., frames * out_hop]`` (an output that comes back shorter is an error: the function's
    receptive field does not fit the context).
    """
    chunk, context, overlap = max(1, int(chunk)), max(0, int(context)), max(0, int(overlap))
    if frames <= chunk + 2 * context:
        out = _call(fn, source, seed, 0, options)
        if progress is not None:
            progress(1, 1)
        return out
    pieces: list[torch.Tensor] = []
    starts = list(range(0, frames, chunk))
    for index, start in enumerate(starts):
        stop = min(frames, start + chunk)
        keep_stop = min(frames, stop + overlap)
        left, right = max(0, start - context), min(frames, keep_stop + context)
        end = source.shape[-1] if right >= frames else right * in_hop
        out = _call(fn, source[..., left * in_hop:end], seed, index, options)
        piece = out[..., (start - left) * out_hop:(keep_stop - left) * out_hop]
        if piece.shape[-1] != (keep_stop - start) * out_hop:
            raise RuntimeError(f"window [{left}, {right}) gave {out.shape[-1]} output elements, too few for frames "
                               f"[{start}, {keep_stop}): the function's receptive field is wider than the context")
        pieces.append(piece)
        if progress is not None:
            progress(index + 1, len(starts))
    if overlap == 0:
        return torch.cat(pieces, dim=-1)
    return _crossfade(pieces, starts, out_hop, frames)


def _call(fn: Callable[..., torch.Tensor], piece: torch.Tensor, seed: int | None, index: int,
          options: dict[str, Any]) -> torch.Tensor:
    if seed is None:
        return fn(piece, **options)
    return fn(piece, seed=chunk_seed(seed, index), **options)


def _crossfade(pieces: list[torch.Tensor], starts: list[int], hop: int, frames: int) -> torch.Tensor:
    """Join pieces that start at ``starts`` (frames) and may run past the next start: the shared
    elements are blended with a linear ramp from the earlier piece to the later one."""
    first = pieces[0]
    out = first.new_zeros(*first.shape[:-1], frames * hop)
    written = 0  # elements of ``out`` already final or partly written
    for piece, start in zip(pieces, starts):
        a = start * hop
        shared = max(0, min(written - a, piece.shape[-1]))
        if shared:
            ramp = torch.linspace(0.0, 1.0, shared + 2, dtype=piece.dtype, device=piece.device)[1:-1]
            out[..., a:a + shared] = out[..., a:a + shared] * (1 - ramp) + piece[..., :shared] * ramp
        out[..., a + shared:a + piece.shape[-1]] = piece[..., shared:]
        written = a + piece.shape[-1]
    return out



class ChunkStream:
    """:func:`run_chunked` over a source that grows (streaming: latents as a generator makes them).

    :meth:`push` appends elements along the last axis and returns the output that became final (possibly
    empty); :meth:`finish` returns the rest. Window ``i`` runs as soon as its right context is there; its
    crossfaded overlap (``overlap`` frames) is held back until window ``i + 1`` is blended into it. Windows,
    inputs, seeds and crossfades are :func:`run_chunked`'s, and a source that ends no longer than ``chunk + 2 *
    context`` frames runs in one call at :meth:`finish`, as there; so the concatenated outputs equal
    ``run_chunked`` over the whole source (same arguments) exactly.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], *, chunk: int, context: int, in_hop: int = 1,
                 out_hop: int = 1, overlap: int = 0, seed: int | None = None, **options: Any):
        self.fn, self.in_hop, self.out_hop, self.seed, self.options = fn, in_hop, out_hop, seed, options
        self.chunk, self.context, self.overlap = max(1, int(chunk)), max(0, int(context)), max(0, int(overlap))
        self.source: torch.Tensor | None = None
        self.index = 0  # the next window
        self.pending: torch.Tensor | None = None  # the last window's overlap, waiting for the next window
        self.windowed = False

    @property
    def frames(self) -> int:
        return 0 if self.source is None else self.source.shape[-1] // self.in_hop

    def push(self, piece: torch.Tensor) -> torch.Tensor | None:
        """Append ``piece [..., n]``; returns the output that is final now, or None."""
        self.source = piece if self.source is None else torch.cat([self.source, piece], dim=-1)
        out = []
        while True:
            start = self.index * self.chunk
            right = start + self.chunk + self.overlap + self.context
            if not self.windowed and self.frames <= self.chunk + 2 * self.context:
                break  # run_chunked would still make this one call
            if self.frames < right:
                break
            self.windowed = True
            out.append(self._window(start, start + self.chunk, start + self.chunk + self.overlap, right * self.in_hop))
        return torch.cat(out, dim=-1) if out else None

    def finish(self) -> torch.Tensor | None:
        """The rest of the output, once the source is complete (None for an empty source)."""
        if self.source is None:
            return None
        frames = self.frames
        if not self.windowed:
            self.windowed = True
            return _call(self.fn, self.source, self.seed, 0, self.options)
        out = []
        for start in range(self.index * self.chunk, frames, self.chunk):
            stop = min(frames, start + self.chunk)
            keep_stop = min(frames, stop + self.overlap)
            right = min(frames, keep_stop + self.context)
            end = self.source.shape[-1] if right >= frames else right * self.in_hop
            out.append(self._window(start, stop, keep_stop, end, last=stop >= frames))
        if self.pending is not None:
            out.append(self.pending)
            self.pending = None
        return torch.cat(out, dim=-1) if out else None

    def _window(self, start: int, stop: int, keep_stop: int, end: int, last: bool = False) -> torch.Tensor:
        """Run window ``self.index`` (frames ``[start, keep_stop)`` kept) and return what is final of it."""
        left = max(0, start - self.context)
        result = _call(self.fn, self.source[..., left * self.in_hop:end], self.seed, self.index, self.options)
        piece = result[..., (start - left) * self.out_hop:(keep_stop - left) * self.out_hop]
        if piece.shape[-1] != (keep_stop - start) * self.out_hop:
            raise RuntimeError(f"window from frame {left} gave {result.shape[-1]} output elements, too few for frames "
                               f"[{start}, {keep_stop}): the function's receptive field is wider than the context")
        self.index += 1
        if self.pending is not None:
            shared = min(self.pending.shape[-1], piece.shape[-1])
            ramp = torch.linspace(0.0, 1.0, shared + 2, dtype=piece.dtype, device=piece.device)[1:-1]
            blended = self.pending[..., :shared] * (1 - ramp) + piece[..., :shared] * ramp
            piece = torch.cat([blended, piece[..., shared:]], dim=-1)
            self.pending = None
        own = (stop - start) * self.out_hop
        if not last and piece.shape[-1] > own:
            self.pending = piece[..., own:]
            piece = piece[..., :own]
        return piece
