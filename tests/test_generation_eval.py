"""Generation metrics: Fréchet distance, embedders, `semlat eval tts` and `semlat eval audio`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import write_audio
from semlat.cli import main
from semlat.data.manifest import Manifest
from semlat.errors import ConfigError, DataError
from semlat.evaluation.embedders import JudgeEmbedder, embed_set, load_audio_embedder, pool
from semlat.evaluation.frechet import EmbeddingStats, frechet_distance, frechet_distance_of
from semlat.evaluation.generation_eval import (
    collect_audio,
    evaluate_audio,
    evaluate_tts,
    read_audio_list,
    score_transcript,
)

# --- Fréchet distance -----------------------------------------------------------------------


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 3))
    assert frechet_distance_of(x, x) == pytest.approx(0.0, abs=1e-6)
    # same covariance, mean shifted by d: FD = |d|^2
    assert frechet_distance_of(x, x + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-9)
    # diagonal covariances: FD = sum (s_a - s_b)^2 over standard deviations
    a = EmbeddingStats(np.zeros(2), np.diag([1.0, 4.0]), 10)
    b = EmbeddingStats(np.zeros(2), np.diag([4.0, 1.0]), 10)
    assert frechet_distance(a, b) == pytest.approx((1 - 2) ** 2 + (2 - 1) ** 2, rel=1e-9)


def test_frechet_distance_grows_with_noise_and_handles_singular_sets():
    rng = np.random.default_rng(1)
    clean = rng.standard_normal((500, 8))
    distances = [frechet_distance_of(clean, clean + level * rng.standard_normal(clean.shape))
                 for level in (0.1, 0.5, 1.0, 2.0)]
    assert distances == sorted(distances) and distances[0] > 0
    few = rng.standard_normal((3, 16))  # fewer rows than dimensions: singular covariance
    assert math.isfinite(frechet_distance_of(few, few + 0.1)) and frechet_distance_of(few, few) < 1e-3
    with pytest.raises(ValueError, match="at least 2"):
        EmbeddingStats.from_embeddings(np.zeros((1, 4)))


def test_embedding_stats_round_trip_and_refuse_other_embedders(tmp_path):
    rng = np.random.default_rng(2)
    stats = EmbeddingStats.from_embeddings(rng.standard_normal((50, 4)), "model A")
    stats.save(tmp_path / "s.npz")
    back = EmbeddingStats.load(tmp_path / "s.npz")
    assert back.embedder == "model A" and back.n == 50
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    other = EmbeddingStats.from_embeddings(rng.standard_normal((50, 4)), "model B")
    with pytest.raises(ConfigError, match="two embedders"):
        frechet_distance(back, other)
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(ConfigError, match="bad.npz: not embedding statistics"):
        EmbeddingStats.load(tmp_path / "bad.npz")


# --- embedders ------------------------------------------------------------------------------


def test_judge_embedder_gives_encoder_frames(tiny_ctc_judge):
    embedder = load_audio_embedder(f"ctc:{tiny_ctc_judge}")
    assert isinstance(embedder, JudgeEmbedder) and embedder.dim == 32 and embedder.sample_rate == 16000
    assert embedder.label.startswith("ctc-phonemes (offline") and "encoder frames" in embedder.label
    rng = np.random.default_rng(0)
    frames = embedder.embed(0.1 * rng.standard_normal(32000), 32000)  # 1 s at 32 kHz -> 50 frames
    assert frames.shape == (51, 32) and frames.dtype == torch.float32
    assert pool(frames, "clip").shape == (1, 32) and pool(frames, "frames").shape == (51, 32)
    rows, used = embed_set(embedder, [("a", np.zeros(8000), 16000), ("b", np.ones(4000) * 0.1, 16000)],
                           pooling="clip", progress=False)
    assert rows.shape == (2, 32) and used == ["a", "b"]


def test_embedder_specs_are_one_line_errors(tmp_path):
    for spec, match in (("clap:/x", "unknown embedding model"), ("panns", "unknown embedding model"),
                        (f"panns:{tmp_path / 'missing.pth'}", "is not a file"),
                        (f"ctc:{tmp_path}", "is not a CTC judge")):
        with pytest.raises(ConfigError, match=match) as err:
            load_audio_embedder(spec)
        assert "\n" not in str(err.value)


# --- lists ----------------------------------------------------------------------------------


def test_audio_lists_and_folders(tmp_path):
    write_audio(tmp_path / "gen" / "b.wav", np.zeros(1600, np.float32), 16000)
    write_audio(tmp_path / "gen" / "sub" / "a.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "gen" / "notes.txt").write_text("not audio")
    assert [i.id for i in collect_audio(tmp_path / "gen")] == ["b.wav", "sub/a.wav"]
    listing = tmp_path / "list.jsonl"
    listing.write_text(json.dumps({"audio": "gen/b.wav", "text": "Hi.", "prompt": "gen/sub/a.wav"}) + "\n\n")
    (item,) = read_audio_list(listing)
    assert item.id == "gen/b.wav" and item.prompt == tmp_path / "gen" / "sub" / "a.wav" and item.text == "Hi."
    for text, match in (('{"text": "x"}', "'audio' must be"), ("[1]", "JSON object"), ("{", "not JSON"),
                        ('{"audio": "a.wav"}\n{"audio": "a.wav"}', "duplicate id"), ("", "lists no clip")):
        listing.write_text(text)
        with pytest.raises(DataError, match=match) as err:
            read_audio_list(listing)
        assert str(listing) in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        collect_audio(tmp_path / "empty")


def test_score_transcript_known_cases():
    assert score_transcript("the cat sat", "The cat sat.", "wer") == (0.0, 0, 3)
    assert score_transcript("the cat", "the cat sat", "wer") == (pytest.approx(1 / 3), 1, 3)
    rate, edits, n = score_transcript("ab", "abc", "cer")
    assert (edits, n) == (1, 3)
    assert score_transcript("h ɛ l o ʊ", "hɛloʊ", "per") == (0.0, 0, 5)
    rate, _, n = score_transcript("x", "", "wer")
    assert math.isnan(rate) and n == 0


# --- eval tts / eval audio ------------------------------------------------------------------


def _tts_listing(demo_corpus, tmp_path, count: int = 4):
    """Clips of the demo corpus as 'generated' speech, each prompted by itself or another clip."""
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    rows = []
    for i in range(count):
        u = manifest[i]
        rows.append({"audio": str(manifest.audio_path(i)), "text": u.text, "phonemes": u.phonemes,
                     "prompt": str(manifest.audio_path(i if i % 2 == 0 else 0))})
    listing = tmp_path / "generated.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return listing, manifest


def test_eval_tts_with_the_offline_judges(demo_corpus, tiny_ctc_judge, tmp_path):
    pytest.importorskip("resemblyzer")
    listing, _ = _tts_listing(demo_corpus, tmp_path)
    out = tmp_path / "tts"
    report = evaluate_tts(listing, out, asr=f"ctc:{tiny_ctc_judge}", speaker="resemblyzer", reference=listing,
                          progress=False)
    assert report["kind"] == "tts" and set(report["metrics"]) == {"per", "sim"}
    rows = report["utterances"]
    assert len(rows) == 4 and all(r["hypothesis"] is not None for r in rows)
    per = report["metrics"]["per"]
    edits = sum(r["counts"]["per"][0] for r in rows)
    total = sum(r["counts"]["per"][1] for r in rows)
    assert per["corpus"] == pytest.approx(edits / total) and per["judge"].startswith("ctc-phonemes (offline")
    assert rows[0]["scores"]["sim"] == pytest.approx(1.0, abs=1e-5)  # prompted by itself
    assert report["metrics"]["sim"]["judge"].startswith("resemblyzer")
    # the generated set against itself: FD 0 with the judge's encoder as the default embedding
    assert report["frechet"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert report["frechet"]["pooling"] == "frames" and (out / "generated_stats.npz").is_file()
    text = (out / "report.md").read_text()
    assert "ctc-phonemes (offline" in text and "whisper" not in text.lower() and "PER" in text

    again = evaluate_tts(listing, out, asr=f"ctc:{tiny_ctc_judge}", speaker="resemblyzer", progress=False)
    assert again["run"] == {"computed": 0, "resumed": 4, "rows": "utterances.jsonl"}
    assert again["metrics"]["per"]["corpus"] == per["corpus"]
    with pytest.raises(ConfigError, match="different speaker"):
        evaluate_tts(listing, out, asr=f"ctc:{tiny_ctc_judge}", progress=False)


def test_dnsmos_prefers_clean_speech_and_is_labelled_dnsmos(demo_corpus, tmp_path):
    pytest.importorskip("speechmos")
    from semlat.audio.io import load_audio
    from semlat.evaluation.dnsmos import DNSMOSJudge

    listing, manifest = _tts_listing(demo_corpus, tmp_path, count=2)
    clean, _ = load_audio(manifest.audio_path(0), 16000)
    noisy = (clean + 0.3 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    write_audio(tmp_path / "noisy.wav", noisy[0].numpy(), 16000)
    write_audio(tmp_path / "short.wav", clean[0, :1000].numpy(), 16000)
    rows = [{"audio": str(manifest.audio_path(0)), "id": "clean"}, {"audio": "noisy.wav"}, {"audio": "short.wav"}]
    noisy_list = tmp_path / "noisy.jsonl"
    noisy_list.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate_tts(noisy_list, tmp_path / "mos", mos="dnsmos", progress=False)
    by_id = {r["id"]: r for r in report["utterances"]}
    assert set(report["metrics"]) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
    assert by_id["clean"]["scores"]["dnsmos_bak"] > by_id["noisy.wav"]["scores"]["dnsmos_bak"] + 0.5
    assert by_id["clean"]["scores"]["dnsmos_ovrl"] > by_id["noisy.wav"]["scores"]["dnsmos_ovrl"]
    assert all(1.0 <= by_id["clean"]["scores"][k] <= 5.0 for k in report["metrics"])
    assert by_id["short.wav"]["scores"]["dnsmos_ovrl"] is None
    assert by_id["short.wav"]["undefined"]["dnsmos_ovrl"].startswith("shorter than")
    judge = report["judges"]["mos"]
    assert judge.startswith("DNSMOS P.835") and "not UTMOS" in judge
    assert report["metrics"]["dnsmos_ovrl"]["judge"] == judge and report["metrics"]["dnsmos_ovrl"]["n"] == 2
    text = (tmp_path / "mos" / "report.md").read_text()
    assert "DNSMOS OVRL" in text and "UTMOS |" not in text
    assert DNSMOSJudge().score(np.zeros(16000, dtype=np.float32))[1] is None  # silence is scored, not refused


def test_eval_tts_with_whisper_reports_wer_and_cer(demo_corpus, tiny_whisper, tmp_path):
    listing, _ = _tts_listing(demo_corpus, tmp_path, count=2)
    report = evaluate_tts(listing, tmp_path / "w", asr=f"whisper:{tiny_whisper}", batch_size=2, progress=False)
    assert set(report["metrics"]) == {"wer", "cer"} and report["frechet"] is None
    for name in ("wer", "cer"):
        m = report["metrics"][name]
        assert m["judge"].startswith("whisper (tiny-whisper") and m["corpus"] is not None and m["corpus"] >= 0
    assert all(isinstance(r["hypothesis"], str) for r in report["utterances"])
    with pytest.raises(ConfigError, match="nothing to measure"):
        evaluate_tts(listing, tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="FD needs an embedding model"):
        evaluate_tts(listing, tmp_path / "y", asr=f"whisper:{tiny_whisper}", reference=listing, progress=False)


def test_eval_audio_fd_grows_with_degradation(demo_corpus, tiny_ctc_judge, tmp_path):
    import soundfile as sf

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    rng = np.random.default_rng(0)
    folders = {}
    for level in (0.0, 0.05, 0.3):
        folder = tmp_path / f"noise{level}"
        for i in range(6):
            audio, sr = sf.read(manifest.audio_path(i), dtype="float32")
            write_audio(folder / f"{i}.wav", audio + level * rng.standard_normal(len(audio)).astype(np.float32), sr)
        folders[level] = folder
    spec = f"ctc:{tiny_ctc_judge}"
    values = [evaluate_audio(folders[level], folders[0.0], tmp_path / f"fd{level}", embedding=spec,
                             progress=False)["frechet"]["value"] for level in folders]
    assert values[0] == pytest.approx(0.0, abs=1e-6) and values[0] < values[1] < values[2]
    # reference statistics saved once, reused from the .npz
    reused = evaluate_audio(folders[0.3], tmp_path / "fd0.0" / "reference_stats.npz", tmp_path / "fd_npz",
                            embedding=spec, progress=False)
    assert reused["frechet"]["value"] == pytest.approx(values[2], rel=1e-9)
    assert reused["frechet"]["reference"]["clips"] is None


def test_cli_eval_tts_and_audio(demo_corpus, tiny_ctc_judge, tmp_path, capsys):
    listing, _ = _tts_listing(demo_corpus, tmp_path, count=2)
    assert main(["eval", "tts", str(listing), "--out", str(tmp_path / "t"), "--asr", f"ctc:{tiny_ctc_judge}"]) == 0
    out = capsys.readouterr().out
    assert "| PER |" in out and "(corpus)" in out and "scored 2 of 2 clip(s)" in out
    assert main(["eval", "audio", str(listing), str(listing), "--out", str(tmp_path / "a"),
                 "--embedding", f"ctc:{tiny_ctc_judge}", "--pooling", "clip"]) == 0
    out = capsys.readouterr().out
    assert "| FD (clip) | 0.000 |" in out
    assert main(["eval", "tts", str(listing), "--out", str(tmp_path / "u"), "--asr", "google:x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("semlat: error: unknown ASR judge") and err.count("\n") == 1
    # some files missing: the rest is scored and the skipped ones are counted; all missing: an error
    rows = [json.loads(line) for line in listing.read_text().splitlines()]
    partly = tmp_path / "partly.jsonl"
    partly.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "audio": str(tmp_path / "gone.wav")}) + "\n")
    assert main(["eval", "tts", str(partly), "--out", str(tmp_path / "p"), "--asr", f"ctc:{tiny_ctc_judge}"]) == 0
    out = capsys.readouterr().out
    assert "scored 1 of 2 clip(s)" in out and "skipped 1 unreadable clip(s); first: " in out and "gone.wav" in out
    missing = tmp_path / "missing.jsonl"
    missing.write_text("".join(json.dumps({**r, "audio": str(tmp_path / f"gone{i}.wav")}) + "\n"
                               for i, r in enumerate(rows)))
    assert main(["eval", "tts", str(missing), "--out", str(tmp_path / "m"), "--asr", f"ctc:{tiny_ctc_judge}"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar, one line
    assert last.startswith("semlat: error: ") and "scored none of its 2 clip(s) (2 unreadable; first: " in last
    assert "gone0.wav: no such file" in last and "Traceback" not in err
    assert not (tmp_path / "m" / "report.json").exists()
    # a run that scored nothing does not block the corrected listing in the same folder
    assert main(["eval", "tts", str(listing), "--out", str(tmp_path / "m"), "--asr", f"ctc:{tiny_ctc_judge}"]) == 0
    assert "scored 2 of 2 clip(s)" in capsys.readouterr().out


def test_compare_puts_generation_reports_side_by_side(demo_corpus, tiny_ctc_judge, tmp_path):
    from semlat.evaluation.compare import compare_reports

    listing, _ = _tts_listing(demo_corpus, tmp_path, count=2)
    spec = f"ctc:{tiny_ctc_judge}"
    evaluate_tts(listing, tmp_path / "a", asr=spec, reference=listing, progress=False)
    evaluate_tts(listing, tmp_path / "b", asr=spec, progress=False)
    text = compare_reports([tmp_path / "a", tmp_path / "b"])
    assert "## Speech judged" in text and "| figure | a | b | judge |" in text
    per_row = next(line for line in text.splitlines() if line.startswith("| PER"))
    assert per_row.count("**") == 4 and "ctc-phonemes (offline" in per_row  # a tie: both best, same judge
    fd_row = next(line for line in text.splitlines() if line.startswith("| FD"))
    assert "0.000 (frames)" in fd_row and "—" in fd_row
