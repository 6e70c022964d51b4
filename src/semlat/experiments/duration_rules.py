"""How long should the generated speech be? F5's ratio rule against a trained duration predictor.

For each cross-sentence pair of a manifest split (:func:`~semlat.experiments.tts_convergence.cross_sentence_rows`:
a target utterance and a prompt of the same speaker) both rules predict the target's duration from the prompt
(its text and its seconds, clipped to the TTS's 12 s window) and the target's text; the real target duration
is the reference. Reported per rule: mean absolute error in seconds, mean |log(predicted / real)|, and the
share of targets within 10 % of their real duration.
"""

from __future__ import annotations

import math
import os
from typing import Any

from semlat.checkpoints import load_model_of_type
from semlat.data.manifest import Manifest
from semlat.errors import DataError
from semlat.experiments.tts_convergence import cross_sentence_rows
from semlat.generation.duration import DurationPredictor, ratio_rule_seconds
from semlat.generation.synthesis import MAX_PROMPT_SECONDS


def _summary(pairs: list[tuple[float, float]]) -> dict[str, float]:
    errors = [abs(p - t) for p, t in pairs]
    logs = [abs(math.log(max(p, 1e-3) / t)) for p, t in pairs]
    return {"mae_seconds": round(sum(errors) / len(errors), 4), "log_ratio": round(sum(logs) / len(logs), 4),
            "within_10_percent": round(sum(abs(p / t - 1) <= 0.1 for p, t in pairs) / len(pairs), 4)}


def compare_duration_rules(model: str | os.PathLike, manifest: str | os.PathLike, split: str = "test"
                           ) -> dict[str, Any]:
    """``{"pairs": n, "rules": {"ratio rule": {...}, "predictor": {...}}}`` (module docstring)."""
    predictor, _, resolved = load_model_of_type(model, DurationPredictor, "duration", "a duration model",
                                                "train one with `semlat train duration/...`")  # in eval mode
    data = Manifest.read(manifest)
    seconds = {str(data.audio_path(i).resolve()): u.duration for i, u in enumerate(data)}
    rows = cross_sentence_rows(data, split)
    if not rows:
        raise DataError(f"{manifest}: no {split} utterance with text")
    rule, learned = [], []
    for row in rows:
        prompt_seconds = min(seconds[row["prompt"]], MAX_PROMPT_SECONDS)
        truth = seconds[row["target"]]
        rule.append((ratio_rule_seconds(row["prompt_text"], prompt_seconds, row["text"]), truth))
        # the manifest's texts: a phoneme model's front-end phonemises them with espeak-ng, as at synthesis
        learned.append((predictor.target_seconds(row["prompt_text"], prompt_seconds, row["text"]), truth))
    return {"model": str(resolved), "manifest": str(manifest), "split": split, "pairs": len(rows),
            "rules": {"ratio rule": _summary(rule), "predictor": _summary(learned)}}


def render(result: dict[str, Any]) -> str:
    """A Markdown table of the comparison."""
    lines = [f"Duration of {result['pairs']} cross-sentence targets ({result['split']} split):", "",
             "| rule | MAE (s) ↓ | mean abs log ratio ↓ | within 10 % ↑ |", "|---|---:|---:|---:|"]
    for name, r in result["rules"].items():
        lines.append(f"| {name} | {r['mae_seconds']:.3f} | {r['log_ratio']:.3f} | {100 * r['within_10_percent']:.0f} % |")
    return "\n".join(lines) + "\n"
