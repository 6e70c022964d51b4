"""The offline sound-event corpus: deterministic, every class present, captioned, split, bad input refused."""

from __future__ import annotations

import hashlib
import json

import pytest

from semlat.cli import main
from semlat.data.events import EVENT_CLASSES
from semlat.data.manifest import Manifest


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "wavs").iterdir())}


def test_event_corpus_is_deterministic_labelled_and_split(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["data", "demo-events", "--out", str(out), "--minutes", "1.5"]) == 0
    assert "12 classes" in capsys.readouterr().out
    assert _digest(a) == _digest(b) and (a / "manifest.jsonl").read_text() == (b / "manifest.jsonl").read_text()
    manifest = Manifest.read(a / "manifest.jsonl")
    assert manifest.total_duration >= 90 and len(EVENT_CLASSES) >= 10
    assert {u.label for u in manifest} == {c.label for c in EVENT_CLASSES}
    assert {u.split for u in manifest} == {"train", "valid", "test"}
    captions = {u.caption for u in manifest}
    assert len(captions) > len(EVENT_CLASSES) and all(c.endswith(".") and "{" not in c for c in captions)
    assert any("background" in u.extra["params"] for u in manifest)
    for u in list(manifest)[:12]:
        assert 1.5 <= u.duration <= 4.0 and u.sample_rate == 16000
    assert main(["data", "demo-events", "--out", str(tmp_path / "c"), "--minutes", "1.5", "--seed", "1"]) == 0
    assert _digest(tmp_path / "c") != _digest(a)  # another seed, other clips


def test_test_minutes_add_test_clips_and_leave_the_train_split_alone(tmp_path):
    plain, more = tmp_path / "plain", tmp_path / "more"
    assert main(["data", "demo-events", "--out", str(plain), "--minutes", "1"]) == 0
    assert main(["data", "demo-events", "--out", str(more), "--minutes", "1", "--test-minutes", "0.5"]) == 0
    a, b = list(Manifest.read(plain / "manifest.jsonl")), list(Manifest.read(more / "manifest.jsonl"))
    assert [(u.audio, u.split, u.caption) for u in a] == [(u.audio, u.split, u.caption) for u in b[: len(a)]]
    assert _digest(plain).items() <= _digest(more).items()  # the same first clips, byte for byte
    extra = b[len(a):]
    assert {u.split for u in extra} == {"test"} and sum(u.duration for u in extra) >= 30
    assert json.loads((more / "events_config.json").read_text())["test_minutes"] == 0.5
    assert main(["data", "demo-events", "--out", str(tmp_path / "neg"), "--minutes", "1", "--test-minutes", "-1"]) == 2
    from semlat.data.events import make_event_corpus
    from semlat.errors import DataError

    with pytest.raises(DataError, match="--test-minutes must be zero or positive"):
        make_event_corpus(tmp_path / "neg", 1, test_minutes=-1)
    assert not (tmp_path / "neg").exists()


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["data", "demo-events", "--out", str(tmp_path / "x"), "--minutes", "0"]) == 2  # a usage error
    assert "Invalid value for '--minutes' / '-m': 0.0 is not in the range x>0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    from semlat.data.events import make_event_corpus
    from semlat.errors import DataError

    with pytest.raises(DataError, match="--minutes must be positive"):  # the Python entry point checks too
        make_event_corpus(tmp_path / "x", 0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert main(["data", "demo-events", "--out", str(tmp_path / "busy"), "--minutes", "0.1"]) == 1
    assert "not a semlat event corpus" in capsys.readouterr().err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
