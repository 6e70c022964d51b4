"""The JSONL manifest: round trips, deterministic bytes, path rewriting, errors with file:line."""

from __future__ import annotations

import json

import pytest

from semlat.data.manifest import Manifest, Utterance
from semlat.errors import DataError


def _manifest(root):
    return Manifest([
        Utterance("a/x.wav", 1.5, 16000, text="hello", speaker="s1", split="train", extra={"zz": 1, "lang": "en"}),
        Utterance("b/y.flac", 2.25, 22050, phonemes="hɛloʊ", caption="a dog", label="dog", split="test"),
    ], root)


def test_round_trip_keeps_every_field_and_key_order(tmp_path):
    path = _manifest(tmp_path).write(tmp_path / "m.jsonl")
    back = Manifest.read(path)
    assert back.utterances == _manifest(tmp_path).utterances
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["audio", "duration", "sample_rate", "text", "speaker", "split", "lang", "zz"]
    assert back.audio_path(0) == tmp_path / "a/x.wav"
    assert back.total_duration == 3.75 and back.speakers() == ["s1"]
    assert len(back.split("test")) == 1 and back.split("test")[0].label == "dog"
    assert Manifest.read(path, split="train")[0].audio == "a/x.wav"
    assert path.read_bytes() == _manifest(tmp_path).write(tmp_path / "again.jsonl").read_bytes()


def test_writing_elsewhere_rewrites_relative_paths(tmp_path):
    manifest = _manifest(tmp_path / "corpus")
    out = manifest.write(tmp_path / "lists" / "m.jsonl")
    back = Manifest.read(out)
    assert back[0].audio == "../corpus/a/x.wav"
    assert back.audio_path(0).resolve() == (tmp_path / "corpus/a/x.wav").resolve()


@pytest.mark.parametrize("line,pattern", [
    ("{not json", "m.jsonl:2: invalid JSON"),
    ('{"audio": "x.wav", "sample_rate": 16000}', "m.jsonl:2: missing required key 'duration'"),
    ('{"audio": "x.wav", "duration": -1, "sample_rate": 16000}', "positive number"),
    ('{"audio": "x.wav", "duration": 1, "sample_rate": 1.5}', "positive integer"),
    ('{"audio": "", "duration": 1, "sample_rate": 16000}', "non-empty path"),
    ('{"audio": "x.wav", "duration": 1, "sample_rate": 16000, "text": 5}', "'text' must be a string"),
    ('[1, 2]', "must be a JSON object"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, pattern):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "ok.wav", "duration": 1.0, "sample_rate": 16000}\n' + line + "\n")
    with pytest.raises(DataError, match=pattern.replace("(", r"\(")):
        Manifest.read(path)


def test_empty_missing_and_unknown_split(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no utterances"):
        Manifest.read(tmp_path / "e.jsonl")
    with pytest.raises(DataError, match="no such manifest"):
        Manifest.read(tmp_path / "none.jsonl")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        _manifest(tmp_path).split("dev")
