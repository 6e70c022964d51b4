"""Duration-aligned text conditioning: each text token spread over the frames that speak it.

F5-TTS gives its backbone the text as a token sequence padded to the frame count and lets attention find the
alignment, which it learns late (hundreds of thousands of steps on thousands of hours). The ``durations``
conditioning of :class:`~semlat.generation.tts.TTSModel` gives the alignment instead, as FastSpeech and
Matcha-TTS do: token ``i`` is repeated over its ``d_i`` backbone positions, so every position carries the id of
the unit spoken there. Training takes the durations from forced alignments (the CTC judge's ``semlat judge
align`` file); generation from the model's own duration predictor.

**Token sequence** (:func:`bounded`): the front-end's tokens with a ``" "`` (id 0) added at both ends; the first
takes the leading silence, the last the trailing one, and the spaces between words take no time unless the
alignment leaves a gap there.

**Durations from an alignment** (:func:`token_durations`): the alignment's segments are matched, in order, to
the non-space tokens (an alignment over another symbol sequence is an error, so a file that does not belong
to the store is refused); the boundaries become positions ``round(seconds · rate)`` at the backbone's
``rate`` (latent frames a second times ``frame_split``), clamped to the sequence, so that the durations sum to
its length exactly.

**Expansion** (:func:`expand`): ids ``[B, N]`` and durations ``[B, N]`` -> frame ids ``[B, T]`` (``-1`` past each
item's total, and before ``offset`` positions: the prompt's frames, which carry no text at generation and,
in training, every frame outside the infilled span).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from semlat.errors import DataError

SPACE = " "


def bounded(tokens: Sequence[str]) -> list[str]:
    """``[" "] + tokens + [" "]`` (see the module docstring)."""
    return [SPACE, *tokens, SPACE]


def token_durations(tokens: Sequence[str], segments: Sequence[tuple[str, float, float]], rate: float,
                    length: int, where: str = "alignment") -> list[int]:
    """Positions of each token of ``bounded(tokens)`` (so ``len(tokens) + 2`` counts summing to ``length``),
    from ``segments`` ``[(label, start_s, end_s)]`` over the non-space tokens, at ``rate`` positions a second.
    A one-line DataError (naming ``where``) when the segments are not the tokens."""
    spoken = [t for t in tokens if t != SPACE]
    labels = [s[0] for s in segments]
    if labels != spoken:
        first = next((i for i, (a, b) in enumerate(zip(labels, spoken)) if a != b), min(len(labels), len(spoken)))
        raise DataError(f"{where}: its {len(labels)} segments are not the text's {len(spoken)} units "
                        f"(they differ at unit {first + 1})")
    if not spoken:
        raise DataError(f"{where}: no segment")

    def position(seconds: float) -> int:
        return min(max(round(seconds * rate), 0), length)

    # boundaries: start of the first unit, then each unit's end (the next unit starts where it ends, or later)
    starts = [position(s[1]) for s in segments]
    ends = [position(s[2]) for s in segments]
    counts = [0] * (len(tokens) + 2)
    cursor = starts[0]
    counts[0] = cursor  # leading silence
    unit = 0
    for i, token in enumerate(tokens):
        if token == SPACE:
            nxt = starts[unit] if unit < len(starts) else cursor
            gap = max(0, nxt - cursor)
            counts[i + 1] = gap
            cursor += gap
            continue
        end = max(ends[unit], cursor)
        counts[i + 1] = end - cursor
        cursor = end
        unit += 1
    counts[-1] = max(0, length - cursor)  # trailing silence
    return counts


def expand(ids: Tensor, durations: Tensor, offset: Tensor | None = None, length: int | None = None) -> Tensor:
    """Token ids ``[B, N]`` (``-1`` padded) repeated by ``durations [B, N]`` -> frame ids ``[B, T]``, each item
    starting at ``offset [B]`` (default 0) with ``-1`` before it and after its last token; ``T`` = ``length``
    or the longest ``offset + sum(durations)``."""
    batch = ids.shape[0]
    durations = durations.clamp(min=0) * (ids >= 0)
    offset = torch.zeros(batch, dtype=torch.long, device=ids.device) if offset is None else offset.long()
    ends = offset + durations.sum(-1)
    total = int(ends.max()) if length is None else length
    out = torch.full((batch, total), -1, dtype=torch.long, device=ids.device)
    for b in range(batch):
        row = torch.repeat_interleave(ids[b], durations[b].long())
        start = int(offset[b])
        keep = min(row.shape[0], max(0, total - start))
        out[b, start:start + keep] = row[:keep]
    return out


def positions_from_seconds(seconds: Tensor, rate: float) -> Tensor:
    """Per-token ``seconds [N]`` -> whole positions ``[N]`` at ``rate`` a second, rounding the running total so
    that the sum is ``round(sum(seconds) · rate)`` (no drift over a long text)."""
    bounds = torch.round(torch.cumsum(seconds.double(), 0) * rate).long()
    return torch.diff(bounds, prepend=bounds.new_zeros(1)).clamp(min=0)


def check_durations(tokens: int, durations: Sequence[int], where: str) -> None:
    """One-line DataError unless there is one duration per bounded token."""
    if len(durations) != tokens:
        raise DataError(f"{where}: {len(durations)} durations for {tokens} tokens")
