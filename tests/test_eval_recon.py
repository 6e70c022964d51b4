"""Reconstruction metrics (semlat.evaluation.metrics) and ``semlat eval recon``: perfect scores for
identical signals, monotonic degradation with noise, agreement with the reference packages, NaN
(never a crash) for silent or short input, and an end-to-end run with resume."""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np
import pesq
import pystoi
import pytest
import soundfile as sf
import torch

from conftest import write_audio
from semlat.cli import main
from semlat.data.manifest import Manifest, Utterance
from semlat.evaluation import metrics as M
from semlat.evaluation.recon_eval import evaluate_reconstruction, mean_ci

SR = 16000


def voice(seconds: float = 2.0, sample_rate: int = SR, f0: float = 120.0) -> np.ndarray:
    """A speech-like test signal: a glottal-like harmonic series with a gliding F0 (f0 ± 30 %),
    shaped into syllables of 0.35 s separated by 0.15 s pauses. ``[N]`` float64, peak 0.5."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1.0 + 0.3 * np.sin(2 * np.pi * 0.8 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    x = np.zeros_like(t)
    for k in range(1, 40):
        x += np.where(k * pitch < 0.45 * sample_rate, np.sin(k * phase) / k ** 1.2, 0.0)
    envelope = np.zeros_like(t)
    for start in np.arange(0.1, seconds - 0.35, 0.5):
        inside = (t >= start) & (t < start + 0.35)
        envelope[inside] = np.sin(np.pi * (t[inside] - start) / 0.35) ** 0.5
    x *= envelope
    return 0.5 * x / np.abs(x).max()


def noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    return x + noise * np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def suite():
    return M.MetricSuite(M.ALL, device="cpu")


@pytest.fixture(scope="module")
def ref():
    return voice()


def test_identical_signals_score_perfectly(suite, ref):
    s = suite(ref, ref, SR)
    assert list(s) == suite.columns and all(isinstance(v, M.Score) for v in s.values())
    assert s["pesq_wb"] == pytest.approx(4.644, abs=0.01) and s["pesq_nb"] == pytest.approx(4.549, abs=0.01)
    assert s["stoi"] == pytest.approx(1.0, abs=1e-4) and s["estoi"] == pytest.approx(1.0, abs=1e-4)
    assert s["mel_distance"] == pytest.approx(0.0, abs=1e-6) and s["stft_distance"] == pytest.approx(0.0, abs=1e-9)
    assert s["si_sdr"] > 80
    assert s["f0_rmse_cents"] == 0.0
    assert s["voicing_precision"] == s["voicing_recall"] == s["voicing_f1"] == 1.0
    assert s["speaker_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert M.si_sdr(torch.from_numpy(ref)[None].float(), ref) > 60  # torch input, [1, N]


def _assert_degrades(table, names):
    for name in names:
        values = [float(row[name]) for row in table]
        assert all(math.isfinite(v) for v in values), (name, values)
        if not M.COLUMNS[name].higher_is_better:
            values = [-v for v in values]
        assert all(a >= b for a, b in itertools.pairwise(values)), (name, values)
        assert values[0] > values[-1], (name, values)


VOICING = ("voicing_precision", "voicing_recall", "voicing_f1")


def test_noise_degrades_every_metric_monotonically(suite, ref):
    table = [suite(noisy(ref, snr), ref, SR) for snr in (50, 35, 20, 10)]
    _assert_degrades(table, [c for c in suite.columns if c not in VOICING])
    assert [float(row["si_sdr"]) for row in table] == pytest.approx([50, 35, 20, 10], abs=0.2)
    # White noise only breaks voicing decisions when it is about as loud as the voice.
    _assert_degrades([M.f0_metrics(noisy(ref, snr), ref, SR) for snr in (10, -5, -10, -15)],
                     ["voicing_recall", "voicing_f1"])


def test_periodic_interference_degrades_f0_and_voicing(ref):
    t = np.arange(len(ref)) / SR
    hum = sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6))  # voiced-looking, also in pauses
    gain = np.sqrt(np.mean(ref ** 2) / np.mean(hum ** 2))
    table = [M.f0_metrics(ref + hum * gain * 10 ** (-snr / 20), ref, SR) for snr in (40, 30, 20, 10, 0)]
    _assert_degrades(table, ["f0_rmse_cents", *VOICING])


def test_pesq_and_stoi_agree_with_their_packages(ref):
    deg = noisy(ref, 10)
    same = lambda value: pytest.approx(value, rel=1e-9, abs=1e-12)  # equal up to BLAS rounding
    assert M.pesq_wb(deg, ref, 16000) == same(pesq.pesq(16000, ref, deg, "wb"))
    ref8, deg8 = ref[::2].copy(), deg[::2].copy()
    assert M.pesq_nb(deg8, ref8, 8000) == same(pesq.pesq(8000, ref8, deg8, "nb"))
    assert M.stoi(deg, ref, 16000) == same(pystoi.stoi(ref, deg, 16000))
    assert M.estoi(deg, ref, 16000) == same(pystoi.stoi(ref, deg, 16000, extended=True))
    assert M.stft_resolutions(24000) == [(512, 50, 240), (1024, 120, 600), (2048, 240, 1200)]
    assert M.stft_resolutions(16000) == [(256, 33, 160), (512, 80, 400), (1024, 160, 800)]


@pytest.mark.parametrize("case", ["silent reference", "short", "nan estimate", "empty"])
def test_silent_or_short_input_gives_nan_with_a_reason(suite, ref, case):
    est, reference = {
        "silent reference": (ref, np.zeros_like(ref)),
        "short": (ref[4800:4900], ref[4800:4900]),
        "nan estimate": (np.full_like(ref, np.nan), ref),
        "empty": (np.zeros(0), np.zeros(0)),
    }[case]
    scores = suite(est, reference, SR)
    assert set(scores) == set(suite.columns)
    for name, value in scores.items():
        if case == "short" and name == "si_sdr":
            assert math.isfinite(value)  # defined for any length
            continue
        assert math.isnan(value) and value.reason, (name, value)


def test_silent_estimate_is_scored_not_refused(suite, ref):
    s = suite(np.zeros_like(ref), ref, SR)
    assert s["pesq_wb"] < 2 and s["stoi"] < 0.5 and s["voicing_recall"] == 0.0 and s["voicing_f1"] == 0.0
    assert math.isnan(s["voicing_precision"]) and "estimate" in s["voicing_precision"].reason


def test_bad_arguments_raise_one_line_errors(ref):
    with pytest.raises(ValueError, match="must be 1-D"):
        M.stoi(np.zeros((2, 100)), ref, SR)
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        M.pesq_wb(ref, ref, 0)
    with pytest.raises(M.ConfigError, match="unknown metric 'nope'"):
        M.parse_metrics("pesq,nope")
    assert M.parse_metrics("speaker, pesq") == ("pesq", "speaker") and M.parse_metrics("all") == M.ALL


def test_mean_ci():
    mean, low, high = mean_ci([2.0, 2.0, float("nan"), 2.0])
    assert (mean, low, high) == (2.0, 2.0, 2.0)
    values = np.random.default_rng(1).normal(3.0, 1.0, 200)
    mean, low, high = mean_ci(values)
    assert low < mean < high and high - low == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.2)
    assert mean_ci(values) == (mean, low, high)  # seeded: reproducible
    assert math.isnan(mean_ci([1.0])[1]) and math.isnan(mean_ci([])[0])


@pytest.fixture
def corpus(tmp_path):
    utts = []
    for i, seconds in enumerate([1.0, 1.2, 1.5]):
        write_audio(tmp_path / "wavs" / f"u{i}.wav", voice(seconds, 22050, 110 + 30 * i).astype(np.float32), 22050)
        utts.append(Utterance(f"wavs/u{i}.wav", seconds, 22050, speaker="s", split="test"))
    (tmp_path / "wavs" / "bad.wav").write_bytes(b"not audio")
    utts.append(Utterance("wavs/bad.wav", 1.0, 22050, split="test"))
    utts.append(Utterance("wavs/u0.wav", 1.0, 22050, split="train"))
    return Manifest(utts, tmp_path).write(tmp_path / "m.jsonl")


def test_eval_recon_end_to_end_and_resume(model_dir, corpus, tmp_path, capsys, one_thread):
    out = tmp_path / "eval"
    argv = ["eval", "recon", str(model_dir), str(corpus), "--out", str(out), "--split", "test", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| PESQ wb (MOS-LQO) |" in printed and "scored 3 of 4 utterance(s) (0 resumed)" in printed
    assert "rejected 1 unreadable file(s)" in printed and "bad.wav" in printed

    report = json.loads((out / "report.json").read_text())
    sha = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert report["model"]["weights_sha256"] == sha
    assert report["data"]["split"] == "test" and report["data"]["scored"] == 3 and report["data"]["rejected"] == 1
    assert report["rejects"][0]["id"] == "wavs/bad.wav"
    assert report["judges"]["speaker"].startswith("resemblyzer (offline)")
    assert set(report["metrics"]) == set(M.COLUMNS) and report["run"] == {"computed": 3, "resumed": 0,
                                                                           "rows": "utterances.jsonl"}
    si = report["metrics"]["si_sdr"]
    assert si["n"] + si["undefined"] == 3 and si["better"] == "higher"
    assert [u["id"] for u in report["utterances"]] == ["wavs/u0.wav", "wavs/u1.wav", "wavs/u2.wav"]
    row = report["utterances"][2]
    assert row["duration"] == pytest.approx(1.5) and (out / row["reconstruction"]).is_file()
    info = sf.info(str(out / row["reconstruction"]))
    assert info.samplerate == 16000 and info.frames == 24000 and info.subtype == "FLOAT"
    md = (out / "report.md").read_text()
    assert "| metric | mean | 95 % CI |" in md and "Rejected inputs (1)" in md and "resemblyzer" in md
    assert report["figures"] == {"spectrograms": "spectrograms.png"} and "](spectrograms.png)" in md
    assert (out / "spectrograms.png").read_bytes()[:4] == b"\x89PNG"

    # A rerun resumes: nothing is recomputed and the rows stay as they were.
    rows_before = (out / "utterances.jsonl").read_text()
    again = evaluate_reconstruction(model_dir, corpus, out, split="test", progress=False)
    assert again["run"]["computed"] == 0 and again["run"]["resumed"] == 3
    assert (out / "utterances.jsonl").read_text() == rows_before
    assert again["metrics"] == report["metrics"]

    # A crash mid-write (a truncated last line) costs only that utterance.
    lines = rows_before.splitlines(keepends=True)
    (out / "utterances.jsonl").write_text("".join(lines[:2]) + lines[2][:40])
    third = evaluate_reconstruction(model_dir, corpus, out, split="test", progress=False)
    assert third["run"] == {"computed": 1, "resumed": 2, "rows": "utterances.jsonl"}
    assert third["metrics"]["mel_distance"]["mean"] == pytest.approx(report["metrics"]["mel_distance"]["mean"])


def test_eval_recon_errors_are_one_line(model_dir, corpus, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "recon", str(model_dir), str(corpus), "--out", str(out), "--metrics", "pesq,bogus"]) == 1
    assert "semlat: error: unknown metric 'bogus'" in capsys.readouterr().err
    assert main(["eval", "recon", str(model_dir), str(corpus), "--out", str(out), "--split", "valid"]) == 1
    assert "no utterances in split 'valid'" in capsys.readouterr().err
    assert main(["eval", "recon", str(model_dir), str(corpus), "--out", str(out), "--split", "test",
                 "--metrics", "sisdr", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["eval", "recon", str(model_dir), str(corpus), "--out", str(out), "--split", "test",
                 "--metrics", "mel", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "semlat: error:" in err and "different metrics" in err and err.count("\n") == 1
