"""CTC decoding and forced alignment over frame posteriors ``log_probs [T, V]`` (blank = 0 by default).

- :func:`greedy_decode`: best path, repeats merged, blanks removed.
- :func:`ctc_forced_align`: Viterbi alignment of a known token sequence under the CTC topology.
- :func:`min_frames`: the fewest frames that can emit a sequence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch


def greedy_decode(log_probs: torch.Tensor, blank: int = 0) -> list[int]:
    """Best-path CTC decoding of ``log_probs [T, V]``: argmax per frame, repeats merged, blanks removed."""
    best = log_probs.argmax(-1).tolist()
    out, previous = [], None
    for k in best:
        if k != previous and k != blank:
            out.append(k)
        previous = k
    return out


def min_frames(targets: Sequence[int]) -> int:
    """The fewest CTC frames that can emit ``targets``: one per label plus a blank between repeats."""
    return len(targets) + sum(1 for a, b in itertools.pairwise(targets) if a == b)


def ctc_forced_align(log_probs: torch.Tensor, targets: Sequence[int], blank: int = 0) -> list[tuple[int, int]]:
    """Viterbi forced alignment of ``targets [L]`` to ``log_probs [T, V]`` under the CTC topology.

    The standard trellis over the blank-extended sequence ``[blank, y1, blank, y2, ..., yL, blank]``
    (``S = 2L + 1`` states): a state is entered from itself, from the previous state, or (for a label
    that differs from the label two states back) skipping the blank between them; the path must start
    in one of the first two states and end in one of the last two. Returns, per target, its frame span
    ``(start, end)`` (``end`` exclusive): the frames on which the best path emits that label. Spans are
    ordered and disjoint. ValueError when ``T`` is too short for the targets (``L`` plus repeats).
    """
    lp = log_probs.detach().double().cpu()
    frames, length = lp.shape[0], len(targets)
    if length == 0:
        return []
    if frames < min_frames(targets):
        raise ValueError(f"{frames} frames cannot hold {length} tokens (and a blank between repeats); "
                         "the audio is too short")
    states = torch.full((2 * length + 1,), blank, dtype=torch.long)
    states[1::2] = torch.as_tensor(list(targets), dtype=torch.long)
    n = len(states)
    can_skip = torch.zeros(n, dtype=torch.bool)
    can_skip[2:] = (states[2:] != blank) & (states[2:] != states[:-2])
    emit = lp[:, states]                                    # [T, S]
    score = torch.full((n,), -math.inf, dtype=torch.float64)
    score[:2] = emit[0, :2]
    back = torch.zeros(frames, n, dtype=torch.long)         # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, frames):
        stay = score
        step = torch.cat([score.new_full((1,), -math.inf), score[:-1]])
        skip = torch.cat([score.new_full((2,), -math.inf), score[:-2]])
        skip = torch.where(can_skip, skip, torch.full_like(skip, -math.inf))
        candidates = torch.stack([stay, step, skip])        # [3, S]
        best, back[t] = candidates.max(0)
        score = best + emit[t]
    end = n - 1 if score[n - 1] >= score[n - 2] else n - 2
    if not math.isfinite(float(score[end])):
        raise ValueError("no CTC alignment of the targets exists for these frames")
    path = [0] * frames
    s = end
    for t in range(frames - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    spans: list[list[int]] = [[-1, -1] for _ in range(length)]
    for t, s in enumerate(path):
        if s % 2 == 1:
            i = s // 2
            if spans[i][0] < 0:
                spans[i][0] = t
            spans[i][1] = t + 1
    return [(a, b) for a, b in spans]
