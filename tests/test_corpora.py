"""``data prepare --corpus``: every corpus on a tiny fake tree in its released layout.

Each tree has the corpus's real file names, transcript or caption formats and metadata, plus one audio
file that no transcript names and (where the format allows) one transcript whose audio is missing: both
must be counted in the rejects, never dropped silently. A root in the wrong layout is a one-line error
that writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tone, write_audio
from semlat.cli import main
from semlat.data.corpora import corpora, prepare_corpus
from semlat.data.manifest import Manifest
from semlat.data.prepare import PrepareOptions, rejects_path
from semlat.errors import DataError

SR = 16000


def _wav(path: Path, seconds: float = 0.3, fmt: str | None = None) -> Path:
    return write_audio(path, tone(seconds, SR, 300.0), SR) if fmt is None else _sf_write(path, seconds, fmt)


def _sf_write(path: Path, seconds: float, fmt: str) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, SR, 300.0), SR, format=fmt)
    return path


def _prepare(name: str, root: Path, tmp_path: Path, **options):
    opts = PrepareOptions(inputs=[str(root)], manifest=str(tmp_path / "out" / f"{name}.jsonl"), workers=1,
                          progress=False)
    manifest, rejects = prepare_corpus(name, root, opts, **options)
    reread = Manifest.read(opts.manifest)
    assert [u.to_dict() for u in reread] == [u.to_dict() for u in manifest]
    listed = rejects_path(opts.manifest).read_text().splitlines()
    assert len(listed) == len(rejects)
    config = json.loads(Path(opts.manifest).with_name(f"{name}.config.json").read_text())
    assert config["corpus"] == name
    return {Path(u.audio).name: u for u in manifest}, {Path(p).name if "/" in p else p: r for p, r in rejects}


# --- speech (Lhotse's recipes) -------------------------------------------------------------------------------------

def _libritts_tree(root: Path) -> Path:
    for part, spk, chap in (("train-clean-100", "19", "198"), ("test-clean", "1089", "134686")):
        folder = root / part / spk / chap
        ids = [f"{spk}_{chap}_000000_00000{i}" for i in range(2)]
        for uid in ids:
            _wav(folder / f"{uid}.wav")
        lines = [f"{uid}\tHello, world {i}!\tHello, world {i}!" for i, uid in enumerate(ids)]
        lines.append(f"{spk}_{chap}_000009_000000\tGone.\tGone.")  # transcript, audio missing
        (folder / f"{spk}_{chap}.trans.tsv").write_text("\n".join(lines) + "\n")
        (folder / f"{spk}_{chap}.book.tsv").write_text(
            "".join(f"{uid}\tHello\tHello\t1\t2\t35.5\n" for uid in ids))
    _wav(root / "train-clean-100/19/198/19_198_000005_000000.wav")  # audio, no transcript
    return root


@pytest.mark.parametrize("name", ["libritts", "librittsr"])
def test_libritts(tmp_path, name):
    rows, rejects = _prepare(name, _libritts_tree(tmp_path / "LibriTTS"), tmp_path)
    assert sorted(rows) == ["1089_134686_000000_000000.wav", "1089_134686_000000_000001.wav",
                            "19_198_000000_000000.wav", "19_198_000000_000001.wav"]
    row = rows["19_198_000000_000001.wav"]
    assert row.text == "Hello, world 1!" and row.speaker == "19" and row.split == "train"
    assert row.extra["part"] == "train-clean-100" and row.sample_rate == SR
    assert rows["1089_134686_000000_000000.wav"].split == "test"
    assert rejects["19_198_000005_000000.wav"] == "no transcript"
    assert "missing" in rejects[f"{name} utterance 19_198_000009_000000"]


def test_libritts_parts_option_and_wrong_layout(tmp_path):
    root = _libritts_tree(tmp_path / "LibriTTS")
    rows, _ = _prepare("libritts", root, tmp_path, parts="test-clean")
    assert {r.split for r in rows.values()} == {"test"}
    with pytest.raises(DataError, match="part dev-clean"):
        _prepare("libritts", root, tmp_path, parts="dev-clean")
    (tmp_path / "flat").mkdir()
    _wav(tmp_path / "flat" / "a.wav")
    with pytest.raises(DataError, match="not a libritts root"):
        _prepare("libritts", tmp_path / "flat", tmp_path / "flat_out")
    assert not (tmp_path / "flat_out").exists()  # nothing written


def test_librispeech(tmp_path):
    root = tmp_path / "LibriSpeech"
    folder = root / "dev-clean" / "84" / "121123"
    for i in range(2):
        _sf_write(folder / f"84-121123-000{i}.flac", 0.3, "FLAC")
    _sf_write(folder / "84-121123-0007.flac", 0.3, "FLAC")  # no transcript
    (folder / "84-121123.trans.txt").write_text("84-121123-0000 HELLO WORLD\n84-121123-0001 GOOD DAY\n"
                                                "84-121123-0005 MISSING AUDIO\n")
    rows, rejects = _prepare("librispeech", root, tmp_path)
    assert rows["84-121123-0001.flac"].text == "GOOD DAY" and rows["84-121123-0001.flac"].split == "valid"
    assert rows["84-121123-0000.flac"].speaker == "84"
    assert rejects["84-121123-0007.flac"] == "no transcript"
    assert "missing" in rejects["84-121123-0005.flac"]


def test_librispeech_pc(tmp_path):
    root = tmp_path / "LibriSpeech"
    folder = root / "test-clean" / "1089" / "134686"
    for i in range(3):
        _sf_write(folder / f"1089-134686-000{i}.flac", 0.3, "FLAC")
    lines = [{"audio_filepath": f"test-clean/1089/134686/1089-134686-000{i}.flac", "duration": 0.3,
              "text": f"He hoped, {i}, there would be stew."} for i in range(2)]
    lines.append({"audio_filepath": "test-clean/1089/134686/1089-134686-0009.flac", "duration": 1.0, "text": "x"})
    (root / "manifests").mkdir()
    (root / "manifests" / "test-clean.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows, rejects = _prepare("librispeech_pc", root, tmp_path)
    row = rows["1089-134686-0001.flac"]
    assert row.text == "He hoped, 1, there would be stew." and row.split == "test" and row.speaker == "1089"
    assert "no transcript" in rejects["1089-134686-0002.flac"]
    assert "missing" in rejects["1089-134686-0009.flac"]
    (root / "manifests" / "test-clean.json").write_text("not json\n")
    with pytest.raises(DataError, match=r"test-clean.json:1: expected a JSON object"):
        _prepare("librispeech_pc", root, tmp_path)


def test_ljspeech(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    _wav(root / "wavs" / "LJ001-0001.wav")
    _wav(root / "wavs" / "LJ001-0002.wav")
    _wav(root / "wavs" / "LJ001-0003.wav")  # no transcript
    (root / "metadata.csv").write_text("LJ001-0001|Printing, in 1st sense.|Printing, in first sense.\n"
                                       "LJ001-0002|In being.|In being.\n"
                                       "LJ001-0009|Not here.|Not here.\n")
    rows, rejects = _prepare("ljspeech", root, tmp_path)
    assert rows["LJ001-0001.wav"].text == "Printing, in 1st sense."
    assert rows["LJ001-0001.wav"].extra["normalized_text"] == "Printing, in first sense."
    assert rows["LJ001-0001.wav"].speaker == "LJ" and rows["LJ001-0001.wav"].split in ("train", "valid", "test")
    assert rejects["LJ001-0003.wav"] == "no transcript" and "missing" in rejects["LJ001-0009.wav"]
    (root / "metadata.csv").write_text("LJ001-0001,comma separated\n")
    with pytest.raises(DataError, match=r"metadata.csv:1: expected 'id\|text\|normalized text'"):
        _prepare("ljspeech", root, tmp_path)


def test_vctk(tmp_path):
    root = tmp_path / "VCTK-Corpus-0.92"
    (root).mkdir()
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION  COMMENTS\n"
                                           "p225  23  F    English    Southern  England\n")
    for n in ("001", "002"):
        (root / "txt" / "p225").mkdir(parents=True, exist_ok=True)
        (root / "txt" / "p225" / f"p225_{n}.txt").write_text(f"Please call Stella {n}.\n")
        for mic in ("mic1", "mic2"):
            _sf_write(root / "wav48_silence_trimmed" / "p225" / f"p225_{n}_{mic}.flac", 0.3, "FLAC")
    _sf_write(root / "wav48_silence_trimmed" / "p225" / "p225_003_mic2.flac", 0.3, "FLAC")  # no text
    rows, rejects = _prepare("vctk", root, tmp_path)
    assert sorted(rows) == ["p225_001_mic2.flac", "p225_002_mic2.flac"]
    assert rows["p225_002_mic2.flac"].text == "Please call Stella 002." and rows["p225_002_mic2.flac"].speaker == "p225"
    assert rows["p225_001_mic2.flac"].extra["gender"] == "F"
    assert rejects == {"p225_003_mic2.flac": "no transcript"}
    rows, _ = _prepare("vctk", root, tmp_path, mic="mic1")
    assert sorted(rows) == ["p225_001_mic1.flac", "p225_002_mic1.flac"]
    with pytest.raises(DataError, match="mic must be mic1 or mic2"):
        _prepare("vctk", root, tmp_path, mic="mic3")


def test_hifitts(tmp_path):
    root = tmp_path / "hi_fi_tts_v0"
    lines = []
    for i, part in enumerate(("train", "test")):
        rel = f"audio/92_clean/10425/chapter_{i}.flac"
        _sf_write(root / rel, 0.3, "FLAC")
        lines.append((part, {"audio_filepath": rel, "text": f"text {i}", "text_normalized": f"Text {i}.",
                             "duration": 0.3}))
    for part, line in lines:
        (root / f"92_manifest_clean_{part}.json").write_text(json.dumps(line) + "\n")
    _sf_write(root / "audio/92_clean/10425/stray.flac", 0.3, "FLAC")
    rows, rejects = _prepare("hifitts", root, tmp_path)
    assert rows["chapter_0.flac"].split == "train" and rows["chapter_1.flac"].split == "test"
    assert rows["chapter_0.flac"].speaker == "Cori Samuel" and rows["chapter_0.flac"].text == "text 0"
    assert rejects == {"stray.flac": "no transcript"}


def test_emilia(tmp_path):
    root = tmp_path / "Emilia"
    folder = root / "raw" / "EN"
    lines = []
    for i in range(3):
        rel = f"EN_B00000/EN_B00000_S00000/mp3/EN_B00000_S00000_W00000{i}.mp3"
        if i < 2:
            _sf_write(folder / rel, 1.0, "MP3")
        lines.append({"id": Path(rel).stem, "wav": rel, "text": f" Sentence {i}.", "duration": 1.0,
                      "speaker": "EN_B00000_S00000", "language": "en", "dnsmos": 3.3})
    (folder / "EN_B00000.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows, rejects = _prepare("emilia", root, tmp_path, language="en")
    row = rows["EN_B00000_S00000_W000001.mp3"]
    assert row.text == "Sentence 1." and row.speaker == "EN_B00000_S00000" and row.extra["dnsmos"] == 3.3
    assert "missing" in rejects["EN_B00000_S00000_W000002.mp3"] and len(rejects) == 1
    with pytest.raises(DataError, match="raw/ZH is missing"):
        _prepare("emilia", root, tmp_path, language="zh")
    with pytest.raises(DataError, match="takes no option mic"):
        _prepare("emilia", root, tmp_path, mic="mic1")


def test_emilia_webdataset(tmp_path):
    """Emilia's WebDataset release: tars of mp3 + json pairs per language; the kept audio is unpacked beside the
    manifest, a json without audio / audio without json are rejects, a broken tar is a one-line error that leaves
    nothing behind."""
    import io
    import tarfile

    root = tmp_path / "Emilia-Dataset"
    mp3 = _sf_write(tmp_path / "src.mp3", 1.0, "MP3").read_bytes()

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    for source, batch in (("Emilia", "B000000"), ("Emilia-YODAS", "B000001")):
        (root / source / "EN").mkdir(parents=True)
        with tarfile.open(root / source / "EN" / f"EN-{batch}.tar", "w") as tar:
            for i in range(3):
                uid = f"EN_{batch}_S000000_W00000{i}"
                meta = {"id": uid, "wav": f"{uid}.mp3", "text": f" Sentence {i}. ", "duration": 1.0,
                        "speaker": f"EN_{batch}_S000000", "language": "en", "dnsmos": 3.3}
                if i < 2:
                    add(tar, f"{uid}.mp3", mp3)
                add(tar, f"{uid}.json", json.dumps(meta).encode())
            add(tar, f"EN_{batch}_S000009_W000000.mp3", mp3)  # audio without its json
    rows, rejects = _prepare("emilia_wds", root, tmp_path)
    assert sorted(rows) == ["EN_B000000_S000000_W000000.mp3", "EN_B000000_S000000_W000001.mp3"]
    row = rows["EN_B000000_S000000_W000001.mp3"]
    assert row.text == "Sentence 1." and row.speaker == "EN_B000000_S000000" and row.extra["dnsmos"] == 3.3
    assert row.extra["archive"] == "EN-B000000.tar" and row.duration == pytest.approx(1.0, abs=0.1)
    unpacked = tmp_path / "out" / "emilia_wds.audio" / "Emilia" / "EN" / "EN-B000000"
    assert (unpacked / "EN_B000000_S000000_W000001.mp3").is_file()
    assert "audio is missing" in rejects["EN-B000000.tar:EN_B000000_S000000_W000002"]
    assert "no transcript" in rejects["EN_B000000_S000009_W000000.mp3"] and len(rejects) == 2
    out = tmp_path / "both"
    both, _ = prepare_corpus("emilia_wds", root, PrepareOptions(inputs=[str(root)], manifest=str(out / "e.jsonl"),
                                                                workers=1, progress=False), source="both")
    assert len(both) == 4
    (root / "Emilia" / "EN" / "EN-B000002.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="EN-B000002.tar: truncated or unreadable tar"):
        _prepare("emilia_wds", root, tmp_path / "broken")
    broken = tmp_path / "broken" / "out"
    assert not (broken / "emilia_wds.audio").exists() and not (broken / "emilia_wds.jsonl").exists()
    with pytest.raises(DataError, match="source must be one of"):
        _prepare("emilia_wds", root, tmp_path / "x", source="all")
    with pytest.raises(DataError, match="Emilia/ZH is missing"):
        _prepare("emilia_wds", root, tmp_path / "x", language="zh")


def test_wenetspeech4tts(tmp_path):
    root = tmp_path / "WenetSpeech4TTS"
    names = ["X0000015306_83500032_S00110-S00112", "X0000015306_83500032_S00113-S00114"]
    (root / "filelists").mkdir(parents=True)
    (root / "DNSMOS_P808Scores").mkdir()
    base = "Premium/WenetSpeech4TTS_Premium_9"
    for name in names:
        _wav(root / base / "wavs" / f"{name}.wav")
    (root / base / "txts").mkdir(parents=True)
    (root / base / "txts" / f"{names[0]}.txt").write_text(f"{names[0]}\t今天天气很好\n0.0 1.0\n")
    (root / "filelists" / "Basic_filelist.lst").write_text(
        "".join(f"{n} ../{base}/wavs/{n}.wav\n" for n in names))
    for part in ("Basic", "Standard", "Premium"):
        (root / "DNSMOS_P808Scores" / f"{part}_DNSMOS.lst").write_text("".join(f"{n} 3.9\n" for n in names))
    rows, rejects = _prepare("wenetspeech4tts", root, tmp_path)
    assert rows[f"{names[0]}.wav"].text == "今天天气很好" and rows[f"{names[0]}.wav"].extra["dns_mos"] == 3.9
    assert rejects == {f"{names[1]}.wav": "no transcript"}
    (root / "DNSMOS_P808Scores" / "Premium_DNSMOS.lst").unlink()
    with pytest.raises(DataError, match="Premium_DNSMOS.lst is missing"):
        _prepare("wenetspeech4tts", root, tmp_path)


# --- captions and events --------------------------------------------------------------------------------------------

def test_audiocaps(tmp_path):
    root = tmp_path / "audiocaps"
    (root / "dataset").mkdir(parents=True)
    (root / "dataset" / "train.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "91139,r1nicOVtvkQ,130,A woman talks nearby as water pours\n"
        "58146,UDGBjjwyaqE,20,Multiple clanging and clanking sounds\n"
        "11111,missingclip,0,Never downloaded\n")
    (root / "dataset" / "test.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "103549,7fmOlUlwoNg,20,Constant rattling noise\n103548,7fmOlUlwoNg,20,A rattling sound\n")
    _wav(root / "audio" / "train" / "Yr1nicOVtvkQ.wav")             # Y<ytid>
    _wav(root / "audio" / "train" / "UDGBjjwyaqE_20.wav")           # <ytid>_<start>
    _wav(root / "audio" / "test" / "7fmOlUlwoNg.wav")               # <ytid>
    _wav(root / "audio" / "test" / "stray.wav")
    rows, rejects = _prepare("audiocaps", root, tmp_path)
    assert rows["Yr1nicOVtvkQ.wav"].caption == "A woman talks nearby as water pours"
    assert rows["Yr1nicOVtvkQ.wav"].split == "train" and rows["UDGBjjwyaqE_20.wav"].split == "train"
    test = rows["7fmOlUlwoNg.wav"]
    assert test.split == "test" and test.extra["captions"] == ["Constant rattling noise", "A rattling sound"]
    assert rejects["stray.wav"] == "no caption"
    assert any("missingclip" in k and v == "audio file missing" for k, v in rejects.items())
    (root / "dataset" / "test.csv").write_text("youtube_id,caption\nabc,x\n")
    with pytest.raises(DataError, match="column.*audiocap_id.*missing"):
        _prepare("audiocaps", root, tmp_path)


def test_clotho(tmp_path):
    root = tmp_path / "clotho"
    header = "file_name," + ",".join(f"caption_{i}" for i in range(1, 6)) + "\n"
    (root).mkdir()
    (root / "clotho_captions_development.csv").write_text(
        header + "Distorted AM Radio noise.wav," + ",".join(f"radio noise {i}" for i in range(5)) + "\n"
        "gone.wav," + ",".join("x" for _ in range(5)) + "\n")
    (root / "clotho_captions_evaluation.csv").write_text(
        header + '"rain, on roof.wav",' + ",".join(f"rain {i}" for i in range(5)) + "\n")
    _wav(root / "development" / "Distorted AM Radio noise.wav")
    _wav(root / "development" / "uncaptioned.wav")
    _wav(root / "evaluation" / "rain, on roof.wav")
    rows, rejects = _prepare("clotho", root, tmp_path)
    assert rows["Distorted AM Radio noise.wav"].caption == "radio noise 0"
    assert len(rows["Distorted AM Radio noise.wav"].extra["captions"]) == 5
    assert rows["rain, on roof.wav"].split == "test" and rows["Distorted AM Radio noise.wav"].split == "train"
    assert rejects["uncaptioned.wav"] == "no caption" and "missing" in rejects["gone.wav"]


def test_wavcaps(tmp_path):
    root = tmp_path / "WavCaps"
    (root / "json_files" / "FreeSound").mkdir(parents=True)
    (root / "json_files" / "AudioSet_SL").mkdir(parents=True)
    (root / "json_files" / "FreeSound" / "fsd_final.json").write_text(json.dumps({"data": [
        {"id": "180913", "file_name": "UK Mello.wav", "caption": "A bird chirps.", "duration": 1.0},
        {"id": "999999", "caption": "Not downloaded.", "duration": 1.0}]}))
    (root / "json_files" / "AudioSet_SL" / "as_final.json").write_text(json.dumps({"data": [
        {"id": "Yb0RFKhbpFJA.wav", "caption": "Wind blows and a man speaks.", "audio": "x", "duration": 10.0}]}))
    _sf_write(root / "FreeSound" / "180913.flac", 0.3, "FLAC")
    _sf_write(root / "AudioSet_SL" / "Yb0RFKhbpFJA.flac", 0.3, "FLAC")
    _sf_write(root / "FreeSound" / "extra.flac", 0.3, "FLAC")
    rows, rejects = _prepare("wavcaps", root, tmp_path)
    assert rows["180913.flac"].caption == "A bird chirps." and rows["180913.flac"].extra["source"] == "FreeSound"
    assert rows["Yb0RFKhbpFJA.flac"].extra["source"] == "AudioSet_SL"
    assert rejects["extra.flac"] == "no caption"
    assert any("999999" in k for k in rejects)


def test_esc50(tmp_path):
    root = tmp_path / "ESC-50-master"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
        "5-9032-A-0.wav,5,0,dog,True,9032,A\n"
        "2-1234-A-41.wav,2,41,chainsaw,False,1234,A\n")
    for name in ("1-100032-A-0.wav", "5-9032-A-0.wav", "3-0000-A-1.wav"):
        _wav(root / "audio" / name)
    rows, rejects = _prepare("esc50", root, tmp_path)
    assert rows["1-100032-A-0.wav"].label == "dog" and rows["1-100032-A-0.wav"].extra["fold"] == 1
    assert rows["5-9032-A-0.wav"].split == "test" and rows["1-100032-A-0.wav"].split in ("train", "valid")
    assert "split_key" not in rows["1-100032-A-0.wav"].extra
    assert "missing" in rejects["2-1234-A-41.wav"] and "no label" in rejects["3-0000-A-1.wav"]
    rows, _ = _prepare("esc50", root, tmp_path, test_fold=1)
    assert rows["1-100032-A-0.wav"].split == "test"
    with pytest.raises(DataError, match="test_fold must be 1..5"):
        _prepare("esc50", root, tmp_path, test_fold=7)


def test_audioset(tmp_path):
    root = tmp_path / "audioset"
    root.mkdir()
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n'
        '2,/m/0jbk,"Animal"\n')
    (root / "balanced_train_segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=2, num_segs=2, num_unique_labels=3\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/05zppz"\n'
        '--ZhevVpy1s, 50.000, 60.000, "/m/0jbk"\n')
    (root / "eval_segments.csv").write_text('# YTID, start_seconds, end_seconds, positive_labels\n'
                                            '-0RWZT-miFs, 420.000, 430.000, "/m/0jbk"\n')
    _wav(root / "audio" / "Y--PJHxphWEs_30.000_40.000.wav")
    _wav(root / "audio" / "--PJHxphWEs.wav")
    _wav(root / "audio" / "-0RWZT-miFs_420.wav")
    rows, rejects = _prepare("audioset", root, tmp_path)
    speech = rows["--PJHxphWEs.wav"]
    assert speech.label == "Speech; Male speech, man speaking" and speech.extra["labels"] == ["/m/09x0r", "/m/05zppz"]
    assert rows["-0RWZT-miFs_420.wav"].split == "test" and speech.split == "train"
    assert any("--ZhevVpy1s" in k and v == "audio file missing" for k, v in rejects.items())
    assert rejects["Y--PJHxphWEs_30.000_40.000.wav"] == "no label"
    (root / "eval_segments.csv").write_text('-0RWZT-miFs, 420.000, 430.000, "/m/unknown"\n')
    with pytest.raises(DataError, match="not in class_labels_indices.csv"):
        _prepare("audioset", root, tmp_path)


# --- the command -------------------------------------------------------------------------------------------------

def test_every_corpus_has_a_fake_tree_test():
    tested = {"libritts", "librittsr", "librispeech", "librispeech_pc", "ljspeech", "vctk", "hifitts", "emilia", "emilia_wds",
              "wenetspeech4tts", "audiocaps", "clotho", "wavcaps", "esc50", "audioset"}
    assert set(corpora()) == tested


def test_cli_prepare_corpus(tmp_path, capsys):
    root = _libritts_tree(tmp_path / "LibriTTS")
    out = tmp_path / "m" / "libritts.jsonl"
    assert main(["data", "prepare", "--corpus", "libritts", str(root), str(out),
                 "-O", "parts=train-clean-100,test-clean", "-j", "1"]) == 0
    printed = capsys.readouterr().out
    assert "4 utterances" in printed and "rejected 3 file(s)" in printed
    assert len(Manifest.read(out)) == 4
    assert main(["data", "prepare", "--corpus", "clotho", str(root), str(tmp_path / "c.jsonl")]) == 1
    assert "not a Clotho root" in capsys.readouterr().err
    assert not (tmp_path / "c.jsonl").exists()
    assert main(["data", "prepare", "--corpus", "timit", str(root), str(tmp_path / "t.jsonl")]) == 1
    assert "unknown corpus 'timit'" in capsys.readouterr().err
    assert main(["data", "prepare", "--corpus", "libritts", str(root)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["data", "prepare", "--corpus", "libritts", str(root), str(out), "-O", "parts"]) == 2
    assert "not KEY=VALUE" in capsys.readouterr().err
