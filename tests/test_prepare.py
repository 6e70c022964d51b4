"""``data prepare``: scanning, transcripts, probing, resampling, splits, rejects, determinism."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from conftest import tone, write_audio
from semlat.audio import probe_audio
from semlat.data.manifest import Manifest
from semlat.data.prepare import PrepareOptions, prepare_manifest, rejects_path
from semlat.data.splits import assign_split
from semlat.errors import DataError


@pytest.fixture
def corpus(tmp_path):
    """Two speakers' folders with sidecars, a LibriSpeech trans file, and three bad files."""
    root = tmp_path / "corpus"
    for spk in ("spk1", "spk2"):
        for i in range(6):
            write_audio(root / spk / "chap" / f"{spk}_{i}.wav", tone(0.3 + 0.1 * i, 22050, 200 + 50 * i), 22050)
    (root / "spk1/chap/spk1_0.txt").write_text("plain  sidecar\n")
    (root / "spk1/chap/spk1_1.txt").write_text("loses")
    (root / "spk1/chap/spk1_1.normalized.txt").write_text("normalized wins")
    (root / "spk1/chap/spk1_2.lab").write_text("a lab file")
    (root / "spk2/chap/chap.trans.txt").write_text("spk2_0 FROM THE TRANS FILE\nspk2_1 SECOND LINE\n")
    write_audio(root / "spk2/chap/stereo.flac", tone(0.5, 16000, channels=2), 16000)
    (root / "bad").mkdir()
    (root / "bad/empty.wav").write_bytes(b"")
    (root / "bad/corrupt.wav").write_bytes(b"RIFF1234WAVEfmt garbage" * 10)
    nan = tone(0.2, 16000)
    nan[10] = np.nan
    write_audio(root / "bad/nan.wav", nan, 16000, "FLOAT")
    return root


def _options(corpus, out, **kw):
    return PrepareOptions(inputs=[str(corpus)], manifest=str(out), workers=1, progress=False,
                          speaker_depth=2, **kw)


def test_scan_reads_headers_sidecars_and_rejects(corpus, tmp_path):
    manifest, rejects = prepare_manifest(_options(corpus, tmp_path / "out/m.jsonl", verify=True))
    assert len(manifest) == 13
    by_name = {u.audio.rsplit("/", 1)[-1]: u for u in manifest}
    assert by_name["spk1_0.wav"].text == "plain sidecar"
    assert by_name["spk1_1.wav"].text == "normalized wins"
    assert by_name["spk1_2.wav"].text == "a lab file"
    assert by_name["spk2_0.wav"].text == "FROM THE TRANS FILE"
    assert by_name["spk1_3.wav"].text is None
    assert by_name["spk1_4.wav"].speaker == "spk1" and by_name["spk1_4.wav"].sample_rate == 22050
    assert by_name["spk1_4.wav"].duration == pytest.approx(0.7, abs=1e-4)
    assert by_name["stereo.flac"].sample_rate == 16000
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in rejects}
    assert set(reasons) == {"empty.wav", "corrupt.wav", "nan.wav"}
    assert "empty" in reasons["empty.wav"] and "NaN" in reasons["nan.wav"]
    listed = rejects_path(tmp_path / "out/m.jsonl").read_text().splitlines()
    assert len(listed) == 3 and all("\t" in line for line in listed)
    back = Manifest.read(tmp_path / "out/m.jsonl")
    assert probe_audio(back.audio_path(0)).frames > 0  # paths resolve relative to the manifest
    config = json.loads((tmp_path / "out/m.config.json").read_text())
    assert config["inputs"] == [str(corpus)] and config["verify"] is True


def test_header_probe_does_not_need_verify_for_nan(corpus, tmp_path):
    _, rejects = prepare_manifest(_options(corpus, tmp_path / "m.jsonl"))
    assert {p.rsplit("/", 1)[-1] for p, _ in rejects} == {"empty.wav", "corrupt.wav"}  # nan.wav has a valid header


def test_rerun_and_parallel_are_byte_identical(corpus, tmp_path):
    a = tmp_path / "a/m.jsonl"
    prepare_manifest(_options(corpus, a))
    first = a.read_bytes()
    prepare_manifest(_options(corpus, a))
    assert a.read_bytes() == first
    b = tmp_path / "b/m.jsonl"
    opts = _options(corpus, b)
    opts.workers = 2
    prepare_manifest(opts)
    assert b.read_bytes() == first


def test_resample_writes_files_at_target_rate_and_reuses_them(corpus, tmp_path):
    out = tmp_path / "r/m.jsonl"
    manifest, _ = prepare_manifest(_options(corpus, out, resample_to=16000, audio_format="wav"))
    assert {u.sample_rate for u in manifest} == {16000}
    for i, u in enumerate(manifest):
        info = probe_audio(manifest.audio_path(i))
        assert info.sample_rate == 16000 and info.channels == 1 and u.audio.startswith("audio/corpus/")
        assert u.duration == pytest.approx(info.duration)
    target = manifest.audio_path(0)
    stamp = target.stat().st_mtime_ns
    first = out.read_bytes()
    prepare_manifest(_options(corpus, out, resample_to=16000, audio_format="wav"))
    assert target.stat().st_mtime_ns == stamp and out.read_bytes() == first  # reused, not rewritten


def test_splits_are_deterministic_and_can_follow_speakers(corpus, tmp_path):
    manifest, _ = prepare_manifest(_options(corpus, tmp_path / "u.jsonl", valid_fraction=0.3, test_fraction=0.3))
    counts = Counter(u.split for u in manifest)
    assert set(counts) <= {"train", "valid", "test"} and len(counts) >= 2
    for u in manifest:
        assert u.split == assign_split(f"corpus/{u.audio.split('corpus/', 1)[-1]}", 0.3, 0.3)
    by_speaker, _ = prepare_manifest(_options(corpus, tmp_path / "s.jsonl", split_by="speaker",
                                              valid_fraction=0.3, test_fraction=0.3))
    splits_of = {}
    for u in by_speaker:
        splits_of.setdefault(u.speaker, set()).add(u.split)
    assert all(len(s) == 1 for s in splits_of.values())


def test_list_files_csv_tsv_and_ids_without_extension(tmp_path):
    wavs = tmp_path / "wavs"
    for i in range(3):
        write_audio(wavs / f"LJ{i}.wav", tone(0.2, 22050), 22050)
    (tmp_path / "list.csv").write_text(
        'audio,text,speaker,split,lang\nwavs/LJ0.wav,"Hello, world",a,test,en\nwavs/LJ1.wav,Second,b,,\n')
    (tmp_path / "list.tsv").write_text("path\ttranscript\nwavs/LJ2\tThird one\n")
    manifest, rejects = prepare_manifest(PrepareOptions(
        inputs=[str(tmp_path / "list.csv"), str(tmp_path / "list.tsv")], manifest=str(tmp_path / "m.jsonl"),
        workers=1, progress=False))
    assert not rejects and len(manifest) == 3
    first = next(u for u in manifest if u.audio.endswith("LJ0.wav"))
    assert (first.text, first.speaker, first.split, first.extra) == ("Hello, world", "a", "test", {"lang": "en"})
    assert next(u for u in manifest if u.audio.endswith("LJ2.wav")).text == "Third one"
    (tmp_path / "bad.csv").write_text("name,text\nx.wav,hi\n")
    with pytest.raises(DataError, match="bad.csv: needs a header row with a path column"):
        prepare_manifest(PrepareOptions(inputs=[str(tmp_path / "bad.csv")], manifest=str(tmp_path / "x.jsonl")))


def test_duration_limits_and_errors(corpus, tmp_path):
    manifest, rejects = prepare_manifest(_options(corpus, tmp_path / "m.jsonl", min_duration=0.5, max_duration=0.75))
    assert all(0.5 <= u.duration <= 0.75 for u in manifest)
    assert any("shorter than" in r for _, r in rejects) and any("longer than" in r for _, r in rejects)
    with pytest.raises(DataError, match="no audio files found"):
        prepare_manifest(PrepareOptions(inputs=[str(corpus / "bad" / "..")], manifest=str(tmp_path / "n.jsonl"),
                                        extensions=[".xyz"]))
    with pytest.raises(DataError, match="must be a .jsonl"):
        prepare_manifest(_options(corpus, tmp_path / "m.json"))
    with pytest.raises(DataError, match="every one of the 3 files was rejected"):
        prepare_manifest(PrepareOptions(inputs=[str(corpus / "bad")], manifest=str(tmp_path / "b.jsonl"),
                                        workers=1, progress=False, verify=True))
