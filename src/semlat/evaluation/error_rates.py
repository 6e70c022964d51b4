"""Error rates and the judges' audio batching: the pieces every recognizer shares (the Whisper and speaker
judges of :mod:`semlat.evaluation.judges`, the offline CTC judge of :mod:`semlat.evaluation.ctc_judge`), below
both so neither imports the other to get them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from semlat.evaluation.metrics import Score, as_signal, resample_to, undefined
from semlat.text.units import normalize_text, split_chars, split_phonemes

JUDGE_RATE = 16000

# --- tokens and edit distance ---------------------------------------------------------------

def edit_distance(hyp: Sequence[Any], ref: Sequence[Any]) -> int:
    """Levenshtein distance (unit costs) between two token sequences; O(len(hyp) * len(ref))."""
    if len(hyp) < len(ref):
        hyp, ref = ref, hyp
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, start=1):
        current = [i] + [0] * len(ref)
        for j, r in enumerate(ref, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r))
        previous = current
    return previous[-1]


def _pairs(hyps: str | Sequence[Any], refs: str | Sequence[Any]) -> tuple[list[Any], list[Any]]:
    if isinstance(hyps, str):
        hyps = [hyps]
    if isinstance(refs, str):
        refs = [refs]
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    return hyps, refs


def error_rate(hyps: Sequence[Sequence[Any]], refs: Sequence[Sequence[Any]]) -> Score:
    """Corpus error rate of token sequences: total edits / total reference tokens (0 .. inf)."""
    hyps, refs = _pairs(hyps, refs)
    total = sum(len(r) for r in refs)
    if total == 0:
        return undefined("the references hold no unit")
    return Score(sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / total)


def wer(hyps: str | Sequence[str], refs: str | Sequence[str]) -> Score:
    """Word error rate of transcripts (one string or a list each), normalised; lower is better."""
    hyps, refs = _pairs(hyps, refs)
    return error_rate([normalize_text(h).split() for h in hyps], [normalize_text(r).split() for r in refs])


def cer(hyps: str | Sequence[str], refs: str | Sequence[str]) -> Score:
    """Character error rate of normalised transcripts (spaces between words count); lower is better."""
    hyps, refs = _pairs(hyps, refs)
    return error_rate([split_chars(h) for h in hyps], [split_chars(r) for r in refs])


def phoneme_error_rate(hyps: str | Sequence[str | Sequence[str]],
                       refs: str | Sequence[str | Sequence[str]]) -> Score:
    """Phoneme error rate: each item an IPA string (split by :func:`split_phonemes`) or a token list."""
    hyps, refs = _pairs(hyps, refs)

    def tokens(x: str | Sequence[str]) -> list[str]:
        return split_phonemes(x) if isinstance(x, str) else list(x)

    return error_rate([tokens(h) for h in hyps], [tokens(r) for r in refs])


def as_batch(audio: Any, sample_rate: int, target: int = JUDGE_RATE) -> list[np.ndarray]:
    """One signal (``[N]``, ``[1, N]``; numpy or torch) or a list of them -> float32 ``[N']`` at ``target`` Hz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    items = list(audio) if isinstance(audio, (list, tuple)) else [audio]
    out = []
    for i, item in enumerate(items):
        x = resample_to(as_signal(item, f"audio[{i}]"), int(sample_rate), target)
        if not np.isfinite(x).all():
            raise ValueError(f"audio[{i}] has NaN or infinite samples")
        out.append(x.astype(np.float32))
    return out
