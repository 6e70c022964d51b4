"""The offline demo corpus: content, splits, unseen test speakers, determinism, missing tools."""

from __future__ import annotations

import re

import pytest

from semlat.audio import probe_audio
from semlat.cli import main
from semlat.data.demo import DEMO_VOICES, EXTRA_VOICES, load_sentences, make_demo_corpus, scrambled_sentences
from semlat.data.manifest import Manifest
from semlat.errors import DataError, ToolMissingError


def test_sentence_list():
    sentences = load_sentences()
    assert len(sentences) >= 500 and len({s.lower() for s in sentences}) == len(sentences)
    assert not any(re.search(r"[0-9&%$#@/()\[\]]", s) for s in sentences)
    assert all(5 <= len(s.split()) <= 20 and s.rstrip('"')[-1] in ".?!" for s in sentences)


def test_demo_corpus_is_valid(demo_corpus):
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    assert manifest.total_duration >= 60.0
    sentences = set(load_sentences())
    for i, u in enumerate(manifest):
        info = probe_audio(manifest.audio_path(i))
        assert info.sample_rate == u.sample_rate == 22050 and info.channels == 1
        assert u.duration == pytest.approx(info.duration, abs=1e-5)
        assert u.text in sentences and u.speaker and u.split in ("train", "valid", "test")
        assert u.phonemes and re.search(r"[ˈəɪʊæɛɹ]", u.phonemes)  # IPA, not letters
    texts = {split: {u.text for u in manifest.split(split)} for split in ("train", "valid", "test")}
    assert not (texts["train"] & texts["test"]) and not (texts["train"] & texts["valid"])
    train_speakers = {u.speaker for u in manifest.split("train")}
    test_speakers = {u.speaker for u in manifest.split("test")}
    held_out = {v.speaker for v in DEMO_VOICES if v.held_out}
    assert test_speakers - train_speakers and (test_speakers - train_speakers) <= held_out
    assert {u.extra["engine"] for u in manifest} == {"flite", "espeak-ng"}


def test_demo_is_deterministic_and_guards_folders(synth_tools, tmp_path):
    a = make_demo_corpus(tmp_path / "a", minutes=0.3, progress=False, workers=2)
    b = make_demo_corpus(tmp_path / "b", minutes=0.3, progress=False, workers=1)
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == (tmp_path / "b/manifest.jsonl").read_bytes()
    assert (tmp_path / "a" / a[0].audio).read_bytes() == (tmp_path / "b" / b[0].audio).read_bytes()
    make_demo_corpus(tmp_path / "a", minutes=0.1, progress=False)  # an earlier demo corpus may be replaced
    assert len(Manifest.read(tmp_path / "a/manifest.jsonl")) < len(a)
    assert len(list((tmp_path / "a/wavs").rglob("*.wav"))) == len(Manifest.read(tmp_path / "a/manifest.jsonl"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("precious")
    with pytest.raises(DataError, match="not a semlat demo corpus"):
        make_demo_corpus(tmp_path / "mine", minutes=0.1, progress=False)
    assert (tmp_path / "mine/notes.txt").read_text() == "precious"


def test_scrambled_sentences_are_new_and_deterministic():
    source = load_sentences()
    made = scrambled_sentences(source, 300, seed=1)
    assert made == scrambled_sentences(source, 300, seed=1) and made != scrambled_sentences(source, 300, seed=2)
    vocabulary = {w for text in source for w in re.findall(r"[a-z']+", text.lower())}
    plain = {" ".join(re.findall(r"[a-z']+", text.lower())) for text in source}
    assert len(set(made)) == 300 and not {" ".join(re.findall(r"[a-z']+", m.lower())) for m in made} & plain
    assert all(6 <= len(m.split()) <= 12 and m[0].isupper() and m.endswith(".") for m in made)
    assert {w for m in made for w in re.findall(r"[a-z']+", m.lower())} <= vocabulary
    with pytest.raises(DataError, match="3 distinct words"):
        scrambled_sentences(["a b c"], 1)


def test_corpus_of_other_voices_and_sentences(synth_tools, tmp_path, capsys):
    """--voices from EXTRA_VOICES and --sentences FILE: a corpus that shares no voice or sentence with the demo's."""
    assert not {v.speaker for v in EXTRA_VOICES} & {v.speaker for v in DEMO_VOICES}
    assert not {(v.voice, v.pitch) for v in EXTRA_VOICES} & {(v.voice, v.pitch) for v in DEMO_VOICES}
    texts = scrambled_sentences(load_sentences(), 60, seed=0)
    listing = tmp_path / "sentences.txt"
    listing.write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    voices = ",".join(v.speaker for v in EXTRA_VOICES[:2])
    assert main(["data", "demo", "--out", str(tmp_path / "c"), "--minutes", "0.2", "--voices", voices,
                 "--sentences", str(listing)]) == 0
    assert "2 speakers" in capsys.readouterr().out
    manifest = Manifest.read(tmp_path / "c" / "manifest.jsonl")
    assert {u.speaker for u in manifest} <= {v.speaker for v in EXTRA_VOICES[:2]}
    assert {u.text for u in manifest} <= set(texts)
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--sentences", str(tmp_path / "empty.txt")]) == 1
    err = capsys.readouterr().err
    assert "empty.txt: holds no sentence" in err and err.count("\n") == 1 and not (tmp_path / "d").exists()


def test_missing_tools_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="flite and espeak-ng not found.*apt-get install flite espeak-ng"):
        make_demo_corpus(tmp_path / "x", minutes=0.1)
    assert not (tmp_path / "x").exists()
