"""Spectral front-ends: every preset against its reference fixture, plus shapes and gradients."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_tiered_close, fixture_file

#: BigVGAN's log-mel against its fixture, by the README's measured float32 tiers (natural log; floor -11.51)
BIGVGAN_MEL_TIERS = [(None, 4e-3), (-10.0, 1.5e-3), (-8.0, 2.5e-4), (-6.0, 2.5e-5)]
#: Dasheng's dB mel: <= 0.12 dB near the -80 dB floor (0.123 measured on another CPU), tight above -40 dB (its README)
DASHENG_DB_TIERS = [(None, 0.15), (-60.0, 1e-2), (-40.0, 1e-3)]
from semlat.audio import MEL_PRESETS, MelConfig, MelSpectrogram, mel_filterbank, mel_preset
from semlat.losses import MultiScaleMelLoss


@pytest.mark.parametrize("preset,name", [("bigvgan_22k_80", "mel_22k"), ("bigvgan_24k_100", "mel_24k")])
def test_bigvgan_mel_matches_reference(fixtures, preset, name):
    io = load_file(fixture_file(fixtures, f"bigvgan/{name}_io.safetensors"))
    cfg = json.loads(fixture_file(fixtures, f"bigvgan/{name}_config.json").read_text())
    config = MelConfig.from_bigvgan(cfg)
    assert config == mel_preset(preset)
    mel = MelSpectrogram(config)
    torch.testing.assert_close(mel.filterbank, io["mel_basis"], atol=1e-7, rtol=0)
    out = mel(io["audio_in"])
    assert out.shape == io["mel_out"].shape and config.frames(io["audio_in"].shape[-1]) == out.shape[-1]
    # torch.stft exactly as the reference; the error left is float32 rounding in near-silent bins
    assert_tiered_close(out, io["mel_out"], BIGVGAN_MEL_TIERS, "log-mel")
    assert float((out - io["mel_out"]).abs().median()) <= 1e-6


def test_f5_tts_vocos_mel_matches_reference(fixtures):
    io = load_file(fixture_file(fixtures, "f5_tts/mel_vocos_io.safetensors"))
    buffers = load_file(fixture_file(fixtures, "f5_tts/mel_vocos.safetensors"))
    mel = MelSpectrogram(mel_preset("f5_tts_vocos"))
    torch.testing.assert_close(mel.filterbank.T, buffers["mel_spec.mel_stft.mel_scale.fb"], atol=0, rtol=0)
    torch.testing.assert_close(mel.spectrogram.window, buffers["mel_spec.mel_stft.spectrogram.window"])
    torch.testing.assert_close(mel.spectrogram(io["audio_in"]), io["spec_mag"], atol=3e-5, rtol=1e-5)
    torch.testing.assert_close(mel(io["audio_in"]), io["mel"], atol=1e-5, rtol=1e-5)
    # Vocos' own extractor is the same mel with a 1e-7 floor: identical wherever F5's is above 1e-5.
    vocos = MelSpectrogram(mel_preset("vocos_24k_100"))(io["audio_in"])
    torch.testing.assert_close(vocos.clamp(min=torch.log(torch.tensor(1e-5))), io["mel"], atol=1e-5, rtol=1e-5)
    assert vocos.min() < io["mel"].min()  # the silent frames reach the lower floor


def test_dasheng_db_mel_matches_reference(fixtures):
    io = load_file(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny_io.safetensors"))
    weights = load_file(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny.safetensors"))
    config = mel_preset("dasheng_16k_64")
    assert torch.equal(MelSpectrogram(config).filterbank.T, weights["front_end.0.mel_scale.fb"])
    power = MelSpectrogram(config.replace(log=None))(io["audio_1s"])
    torch.testing.assert_close(power, io["mel_power"], rtol=1e-4, atol=1e-6)
    db = MelSpectrogram(config)
    assert_tiered_close(db(io["audio_1s"]), io["mel_db"], DASHENG_DB_TIERS, "dB mel")
    # the top_db floor is taken over the whole batch, so an item alone gets a different floor
    assert_tiered_close(db(io["audio_1s"][1:]), io["mel_db_item1_alone"], DASHENG_DB_TIERS, "dB mel, item alone")
    per_item = MelSpectrogram(config.replace(top_db_over_batch=False))
    assert_tiered_close(per_item(io["audio_1s"])[1:], io["mel_db_item1_alone"], DASHENG_DB_TIERS, "dB mel, per item")


def test_semantic_vae_multiscale_mel_loss_matches_reference(fixtures):
    io = load_file(fixture_file(fixtures, "semantic_vae/mel_loss_io.safetensors"))
    loss = MultiScaleMelLoss()
    for key in [k for k in io if k.startswith("melfb_")]:
        _, n_mels, window = key.split("_")
        fb = mel_filterbank(16000, int(window), int(n_mels))
        torch.testing.assert_close(fb, io[key], atol=1e-7, rtol=0)
    torch.testing.assert_close(loss.mels[4](io["mel_x"]), io["mel80_w512_x"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss.per_scale(io["mel_x"], io["mel_y"]), io["mel_loss_per_scale"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss(io["mel_x"], io["mel_y"]), io["mel_loss"], atol=1e-5, rtol=1e-5)
    with_mag = MultiScaleMelLoss(mag_weight=1.0)(io["mel_x"], io["mel_y"])
    torch.testing.assert_close(with_mag, io["mel_loss_magw1"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", sorted(MEL_PRESETS))
def test_presets_batch_shapes_and_frames(preset):
    config = mel_preset(preset)
    mel = MelSpectrogram(config)
    x = torch.randn(3, 1, 5000) * 0.1
    out = mel(x)
    assert out.shape == (3, 1, config.n_mels, config.frames(5000))
    if not config.top_db_over_batch:  # items are independent of their batch
        torch.testing.assert_close(out[1, 0], mel(x[1, 0]), atol=1e-4, rtol=1e-5)
    assert torch.isfinite(out).all()


def test_mel_is_differentiable_and_device_follows_module():
    mel = MelSpectrogram(mel_preset("bigvgan_22k_80"))
    x = (torch.randn(2, 4096) * 0.1).requires_grad_()
    mel(x).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    loss_x = (torch.randn(1, 1, 4000) * 0.1).requires_grad_()
    MultiScaleMelLoss()(loss_x, torch.randn(1, 1, 4000) * 0.1).backward()
    assert torch.isfinite(loss_x.grad).all() and loss_x.grad.abs().sum() > 0
    assert mel(x.detach().half()).dtype == torch.float32  # low precision input is upcast
    single = mel(x.detach())
    as_double = mel.to(torch.float64)
    assert as_double.filterbank.dtype == torch.float64  # buffers move with the module
    double = as_double(x.detach())
    assert double.dtype == torch.float64  # and a float64 module computes in float64
    torch.testing.assert_close(double.float(), single, atol=1e-3, rtol=1e-4)


def test_explicit_parameters():
    x = torch.randn(2, 8000) * 0.1
    base = MelConfig(n_fft=512, hop_length=128, sample_rate=16000, n_mels=40, log=None)
    linear = MelSpectrogram(base)(x)
    power = MelSpectrogram(base.replace(power=2.0))(x)
    torch.testing.assert_close(power, MelSpectrogram(base.replace(power=2.0, log=None))(x))
    assert not torch.allclose(power, linear)
    torch.testing.assert_close(MelSpectrogram(base.replace(log="log10", clamp_min=1e-5))(x),
                               torch.log10(linear.clamp(min=1e-5)))
    htk = MelSpectrogram(base.replace(mel_scale="htk", norm=None))(x)
    assert not torch.allclose(htk, linear)
    no_center = MelSpectrogram(base.replace(center=False))(x)
    assert no_center.shape[-1] == base.replace(center=False).frames(8000) == (8000 - 512) // 128 + 1
    zero_pad = MelSpectrogram(base.replace(padding=192, pad_mode="constant", center=False))(x)
    assert zero_pad.shape[-1] == (8000 + 384 - 512) // 128 + 1
    with pytest.raises(ValueError, match="too short"):
        MelSpectrogram(base)(torch.zeros(1, 100))
    with pytest.raises(KeyError, match="unknown mel preset"):
        mel_preset("nope")
    with pytest.raises(ValueError):
        mel_filterbank(16000, 512, 40, convention="other")
