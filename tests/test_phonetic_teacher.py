"""The supervised-teacher experiment's pieces: disjoint corpora, the paired probe comparison, its table."""

from __future__ import annotations

import pytest

from semlat.data.demo import load_sentences
from semlat.data.manifest import Manifest, Utterance
from semlat.data.splits import assign_split
from semlat.errors import DataError
from semlat.experiments.phonetic_teacher import check_disjoint, phonetic_comparison, render, teacher_sentences


def _manifest(rows):
    return Manifest([Utterance(audio=f"{i}.wav", duration=2.0, sample_rate=16000, speaker=who, text=text)
                     for i, (who, text) in enumerate(rows)])


def test_teacher_sentences_share_nothing_with_the_demo_and_no_test_words():
    made = teacher_sentences(500)
    shipped = load_sentences()
    assert not set(made) & set(shipped)
    words = {w.strip(".").lower() for m in made for w in m.split()}
    train_words = {w.strip('.,;:!?"').lower() for t in shipped if assign_split(t, 0.1, 0.1, salt="demo") == "train"
                   for w in t.replace("-", " ").split()}
    assert words and len(words - train_words) < 0.02 * len(words)  # (tokenisation differs only at the edges)


def test_check_disjoint():
    judge = _manifest([("a", "One two three."), ("b", "Four five six.")])
    figures = check_disjoint(_manifest([("c", "Seven eight."), ("d", "Nine ten.")]), judge)
    assert figures["shared_speakers"] == figures["shared_sentences"] == 0 and figures["teacher_speakers"] == 2
    with pytest.raises(DataError, match="shares 1 speaker"):
        check_disjoint(_manifest([("a", "Seven eight.")]), judge)
    with pytest.raises(DataError, match="1 sentence"):
        check_disjoint(_manifest([("c", "Four five six.")]), judge)


def _report(counts):
    correct = sum(c for c, _ in counts.values())
    total = sum(n for _, n in counts.values())
    return {"probes": {"phoneme_unseen_speakers": {
        "accuracy": correct / total, "ci95": [0.0, 1.0], "chance": 0.1, "test_utterances": len(counts),
        "test_counts": {k: list(v) for k, v in counts.items()}}}}


def test_phonetic_comparison_pairs_utterances_and_checks_the_claim():
    ids = [f"u{i}" for i in range(40)]
    vanilla = _report({k: (25 + (i % 3), 100) for i, k in enumerate(ids)})
    better = _report({k: (40 + (i % 5), 100) for i, k in enumerate(ids)})
    same = _report({k: (26 + (i % 2), 100) for i, k in enumerate(ids)})
    mel = {"vanilla": 2.00, "better": 2.05, "same": 2.0, "blurry": 2.5}
    result = phonetic_comparison({"vanilla": vanilla, "better": better, "same": same, "blurry": better}, mel)
    rows = result["spaces"]
    assert "difference" not in rows["vanilla"]
    good = rows["better"]
    assert good["difference"] == pytest.approx(good["accuracy"] - rows["vanilla"]["accuracy"])
    assert 0 < good["difference_ci95"][0] <= good["difference"] <= good["difference_ci95"][1]
    assert good["paired_utterances"] == 40 and good["mel_change"] == pytest.approx(0.025) and good["claim"]
    assert not rows["same"]["claim"]            # no gain
    assert not rows["blurry"]["claim"]          # the gain, but the mel distance 25 % worse
    text = render(result, {"better": "better (supervised)"})
    assert text.splitlines()[2].startswith("| vanilla |") and "| better (supervised) |" in text
    assert "**met**" in text and "not met" in text and "+2.5 %" in text
    skipped = phonetic_comparison({"vanilla": vanilla, "none": {"probes": {}}}, mel)
    assert "skipped" in skipped["spaces"]["none"] and "skipped" not in skipped["spaces"]["vanilla"]
