"""A *supervised* phonetic teacher for the semantic VAE, and the measurement of how phonetic the VAE becomes.

The self-supervised offline teacher (HuBERT's first iteration on the demo corpus) carries little phonetic
information, so the semantic VAE aligned to it is no more phonetic than the vanilla one. This experiment
gives the alignment a teacher that certainly is phonetic: the encoder of a CTC phoneme recognizer
(:mod:`semlat.evaluation.ctc_teacher`, ``ctc:`` specs), labelled *supervised* wherever it is reported.
So that the judge that scores PER and labels the probe is never the teacher nor shares its training data,
the teacher learns from its own corpus (:func:`make_teacher_corpus`): voices that are not demo voices
(:data:`~semlat.data.demo.EXTRA_VOICES`) speaking new sentences scrambled from the words of the demo's
*training* sentences (no test sentence, none of the demo's sentences), checked by :func:`check_disjoint`.

The claim measured (:func:`phonetic_comparison`, issue 21): at equal steps and mel distance within 5 %, the
semantic VAE's phoneme probe beats the vanilla VAE's by at least 8 points on speakers never heard in
training. Both probes are scored on the same test utterances, so the difference's interval is a paired
bootstrap over those utterances.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from semlat.data.demo import EXTRA_VOICES, load_sentences, make_demo_corpus, scrambled_sentences
from semlat.data.manifest import Manifest
from semlat.data.splits import assign_split
from semlat.errors import DataError
from semlat.evaluation.recon_eval import paired_ratio_difference
from semlat.utils.figures import percent

#: The teacher corpus: minutes of speech and how many scrambled sentences it draws from.
TEACHER_MINUTES = 30.0
TEACHER_SENTENCES = 3000
#: The claim: at least this many probe points over the vanilla VAE, with mel distance within this fraction.
CLAIM_POINTS = 0.08
CLAIM_MEL = 0.05


def teacher_sentences(count: int = TEACHER_SENTENCES, seed: int = 0) -> list[str]:
    """New sentences from the words of the shipped sentences that the demo corpus trains on (its ``train``
    split), so no word seen only in a test sentence, and no sentence of the demo, is in the teacher's text."""
    train = [t for t in load_sentences() if assign_split(t, 0.1, 0.1, salt="demo") == "train"]
    return scrambled_sentences(train, count, seed=seed)


def make_teacher_corpus(out: str | Path, minutes: float | None = None, *, sample_rate: int = 16000,
                        progress: bool = True) -> Path:
    """Synthesise the teacher's corpus into ``out`` (``minutes``, default :data:`TEACHER_MINUTES`; every voice of
    :data:`EXTRA_VOICES`, :func:`teacher_sentences`) unless it is there; returns its manifest."""
    manifest = Path(out) / "manifest.jsonl"
    if not manifest.is_file():
        make_demo_corpus(out, minutes or TEACHER_MINUTES, sample_rate=sample_rate, voices=[v.speaker for v in EXTRA_VOICES],
                         sentences=teacher_sentences(), progress=progress)
    return manifest


def check_disjoint(teacher: Manifest, judge: Manifest) -> dict[str, Any]:
    """What the teacher's and the judge's corpora share: a DataError if a speaker or a sentence; else the
    figures that say they share none (for the report)."""
    speakers = set(teacher.speakers()) & set(judge.speakers())
    texts = {u.text for u in teacher} & {u.text for u in judge}
    if speakers or texts:
        shared = sorted(speakers)[:1] or sorted(t for t in texts if t)[:1]
        raise DataError(f"the phonetic teacher's corpus shares {len(speakers)} speaker(s) and {len(texts)} "
                        f"sentence(s) with the judge's (first: {shared[0]!r}); it must share none")
    return {"teacher_minutes": round(teacher.total_duration / 60, 2), "teacher_utterances": len(teacher),
            "teacher_speakers": len(teacher.speakers()), "shared_speakers": 0, "shared_sentences": 0}


def _probe(report: dict[str, Any]) -> dict[str, Any] | None:
    probe = (report.get("probes") or {}).get("phoneme_unseen_speakers")
    return probe if probe and "accuracy" in probe else None


def phonetic_comparison(latents: dict[str, dict[str, Any]], mel: dict[str, float | None],
                        baseline: str = "vanilla") -> dict[str, Any]:
    """Each space's phoneme probe on unseen speakers against ``baseline``'s.

    ``latents`` maps a space to its ``eval latents`` report, ``mel`` to its mel distance on the test split.
    Per space: ``accuracy`` and ``ci95``; against the baseline, ``difference`` (accuracy points as a fraction)
    with its paired ``difference_ci95`` over the test utterances both probes scored, ``mel_change`` (relative)
    and ``claim``: the difference is at least :data:`CLAIM_POINTS`, its interval excludes 0, and the mel
    distance is at most :data:`CLAIM_MEL` above the baseline's."""
    base = _probe(latents.get(baseline, {}))
    rows: dict[str, Any] = {}
    for name, report in latents.items():
        probe = _probe(report)
        if probe is None:
            rows[name] = {"skipped": "no phoneme probe on unseen speakers"}
            continue
        row: dict[str, Any] = {"accuracy": probe["accuracy"], "ci95": probe.get("ci95"),
                               "chance": probe["chance"], "test_utterances": probe["test_utterances"],
                               "mel_distance": mel.get(name)}
        if base is not None and name != baseline:
            shared = sorted(set(probe["test_counts"]) & set(base["test_counts"]))
            mine = [tuple(probe["test_counts"][k]) for k in shared]
            theirs = [tuple(base["test_counts"][k]) for k in shared]
            difference, low, high = paired_ratio_difference(mine, theirs)
            base_mel, own_mel = mel.get(baseline), mel.get(name)
            change = (own_mel / base_mel - 1.0) if own_mel is not None and base_mel else None
            finite = math.isfinite(low) and math.isfinite(high)
            row.update({"difference": difference, "difference_ci95": [low, high] if finite else None,
                        "paired_utterances": len(shared), "mel_change": change,
                        "claim": bool(difference >= CLAIM_POINTS and finite and low > 0
                                      and change is not None and change <= CLAIM_MEL)})
        rows[name] = row
    return {"baseline": baseline, "claim": {"points": CLAIM_POINTS, "mel": CLAIM_MEL}, "spaces": rows}


def render(result: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """The comparison as a Markdown table (one row per space, the baseline first)."""
    labels = labels or {}
    base = result["baseline"]

    def pct(x: float | None) -> str:
        return percent(x, missing="n/a")

    def interval(ci: list[float] | None) -> str:
        return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""

    header = (f"| latent space | phoneme probe, unseen speakers ↑ [95 % CI] | vs {base} (points) [95 % CI] | "
              f"mel distance ↓ | mel vs {base} | claim (≥ {100 * result['claim']['points']:.0f} points, mel within "
              f"{100 * result['claim']['mel']:.0f} %) |")
    lines = [header, "|---|---:|---:|---:|---:|---|"]
    order = [base, *[n for n in result["spaces"] if n != base]]
    for name in order:
        row = result["spaces"].get(name)
        if row is None:
            continue
        label = labels.get(name, name)
        if "skipped" in row:
            lines.append(f"| {label} | {row['skipped']} | | | | |")
            continue
        mel = "n/a" if row["mel_distance"] is None else f"{row['mel_distance']:.3f}"
        if name == base:
            lines.append(f"| {label} | {pct(row['accuracy'])}{interval(row['ci95'])} | — | {mel} | — | — |")
            continue
        diff = row.get("difference")
        diff_text = "n/a" if diff is None or not math.isfinite(diff) else f"{100 * diff:+.1f}"
        change = row.get("mel_change")
        change_text = "n/a" if change is None else f"{100 * change:+.1f} %"
        verdict = "**met**" if row.get("claim") else "not met"
        lines.append(f"| {label} | {pct(row['accuracy'])}{interval(row['ci95'])} | {diff_text}"
                     f"{interval(row.get('difference_ci95'))} | {mel} | {change_text} | {verdict} |")
    return "\n".join(lines) + "\n"
