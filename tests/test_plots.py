"""Evaluation figures: spectrogram comparisons, probe bars and dimension bars are real PNGs."""

from __future__ import annotations

import numpy as np
import pytest

from semlat.evaluation.plots import (
    dimension_bars,
    latent_image,
    log_mel_db,
    probe_bars,
    spectrogram,
    spectrogram_comparison,
)


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_log_mel_sees_a_tone_in_the_right_band():
    sr = 16000
    t = np.arange(sr) / sr
    low, high = log_mel_db(np.sin(2 * np.pi * 300 * t), sr), log_mel_db(np.sin(2 * np.pi * 5000 * t), sr)
    assert low.shape == high.shape and low.shape[0] == 80
    assert low.mean(axis=1).argmax() < high.mean(axis=1).argmax()


def test_spectrogram_comparison_has_one_row_per_item(tmp_path):
    rng = np.random.default_rng(0)
    items = [(f"u{i}", rng.standard_normal(8000), rng.standard_normal(8000)) for i in range(3)]
    one = spectrogram_comparison(items[:1], 16000, tmp_path / "one.png")
    three = spectrogram_comparison(items, 16000, tmp_path / "three.png")
    (w1, h1), (w3, h3) = _png_size(one), _png_size(three)
    assert h3 > 2 * h1 and abs(w3 - w1) < 0.1 * w1
    with pytest.raises(ValueError, match="no items"):
        spectrogram_comparison([], 16000, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_probe_and_dimension_bars(tmp_path):
    probes = {"speaker": {"accuracy": 0.9, "chance": 0.2, "balanced_chance": 0.1, "classes": 10},
              "phoneme": {"accuracy": 0.4, "chance": 0.1, "balanced_chance": 0.02, "classes": 50},
              "event": {"skipped": "no labels"}}
    path = probe_bars(probes, tmp_path / "probes.png")
    assert _png_size(path)[0] > 100
    with pytest.raises(ValueError, match="no probe"):
        probe_bars({"event": {"skipped": "x"}}, tmp_path / "p2.png")
    dims = [{"dim": d, "variance": float(d), "kl": 0.1 * d, "dead": d == 0} for d in range(8)]
    assert _png_size(dimension_bars(dims, tmp_path / "dims.png"))[1] > 100


def test_single_spectrogram_and_latent_image(tmp_path):
    import matplotlib.image

    rate = 16000
    audio = np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    assert spectrogram(audio, rate, tmp_path / "s.png", "tone").stat().st_size > 5000
    latents = np.stack([np.linspace(0, 1, 40) * scale for scale in (1e-3, 1.0, 1e3)])  # channels of very different scales
    path = latent_image(latents, 40.0, tmp_path / "z.png", "latents")
    assert matplotlib.image.imread(path).shape[:2] == (240, 800)  # 8 x 2.4 inches at 100 dpi
    with pytest.raises(ValueError, match=r"\[D, T\]"):
        latent_image(latents[0], 40.0, tmp_path / "bad.png")
