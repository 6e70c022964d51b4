"""SemanticVocoder as a latent space: the reference's encoder path (torchaudio's sinc resampler, Dasheng)
and decoder path (seeded 4-step Euler), the importer, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.audio.processing import resample, sinc_resample
from semlat.autoencoders.semantic_vocoder import SemanticVocoder, SemanticVocoderConfig
from semlat.checkpoints import save_model
from semlat.cli import main
from semlat.inference import load
from semlat.semantic.dasheng import Dasheng, DashengConfig
from semlat.vocoders.flow_vocoder import FlowVocoderConfig

TOL = {"atol": 2e-3, "rtol": 1e-3}


@pytest.fixture(scope="module")
def dasheng_io(fixtures):
    return load_file(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny_io.safetensors"))


def test_encoder_path_matches_the_reference_wrapper(fixtures, dasheng_io):
    kwargs = json.loads(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny_config.json").read_text())["kwargs"]
    encoder = DashengConfig(**{k: kwargs[k] for k in ("embed_dim", "depth", "num_heads", "target_length")})
    space = SemanticVocoder(SemanticVocoderConfig(encoder=encoder, generator=FlowVocoderConfig.tiny(latent_dim=32)))
    space.encoder.load_state_dict(load_file(str(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny.safetensors"))))
    space.eval()
    audio = dasheng_io["wrapper_audio_24k"]
    reference_16k = dasheng_io["wrapper_audio_16k"]
    resampled = sinc_resample(audio, 24000, 16000)  # the reference wrapper's torchaudio kernel
    torch.testing.assert_close(resampled.mean(dim=1), reference_16k, atol=1e-6, rtol=0)
    torch.testing.assert_close(space.encode(resampled), dasheng_io["wrapper_latent"], **TOL)
    assert space.frame_rate == 25.0 and (space.input_rate, space.output_rate) == (16000, 24000)
    # semlat's file path resamples with soxr: close to the reference's kernel, not equal (README figures)
    soxr = resample(audio, 24000, 16000)
    assert soxr.shape == resampled.shape
    rms = (soxr[:, 0] - reference_16k).square().mean(-1).sqrt()
    assert float(rms[1]) < 0.01 < float(rms[0])  # a chirp below 6 kHz: -43 dB; white noise: its top band differs
    assert float((space.encode(soxr) - dasheng_io["wrapper_latent"]).abs().max()) < 0.5


def test_import_and_decode_match_the_reference(fixtures, tmp_path, capsys):
    io = load_file(fixture_file(fixtures, "semantic_vocoder/generator_tiny_io.safetensors"))
    torch.manual_seed(0)
    dasheng = save_model(tmp_path / "dasheng", Dasheng(DashengConfig(embed_dim=16, depth=1, num_heads=2,
                                                                     target_length=64)),
                         model_type="dasheng", config=DashengConfig(embed_dim=16, depth=1, num_heads=2,
                                                                    target_length=64))
    weights = fixture_file(fixtures, "semantic_vocoder/generator_tiny.safetensors")
    config = fixture_file(fixtures, "semantic_vocoder/generator_tiny_config.json")
    out = tmp_path / "sv"
    assert main(["import", "semantic-vocoder", str(weights), str(out), "--config", str(config),
                 "--encoder", str(dasheng)]) == 0
    space = load(out, device="cpu")
    # the model itself: the reference's manual_seed(2024) then decode(latent, 4)
    audio = space.model.decode(io["latent"], steps=4, seed=2024, schedule="uniform")  # the reference's grid
    torch.testing.assert_close(audio, io["decode_out_seed2024"], atol=1e-4, rtol=1e-4)
    chunked = space.decode(io["latent"], steps=4, seed=2024)  # the chunk loop derives the chunk's seed
    assert chunked.shape == audio.shape and torch.equal(space.decode(io["latent"], steps=4, seed=2024), chunked)
    assert not torch.equal(space.model.decode(io["latent"], steps=4, seed=2024), audio)  # default: the sine grid
    assert space.encode(torch.zeros(1, 1, 16000) + 0.01).shape == (1, 16, 25)
    from semlat.errors import ConfigError

    with pytest.raises(ConfigError, match=r"decodes \[B, 16, T\] latents, got \[1, 32, 5\]"):
        space.model.decode(torch.zeros(1, 32, 5))
    assert main(["import", "semantic-vocoder", str(weights), str(tmp_path / "x"), "--config", str(config)]) == 1
    assert "needs --config" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["import", "semantic-vocoder", str(weights), str(tmp_path / "y"), "--config", str(config),
                 "--encoder", str(out)]) == 1
    assert "not a Dasheng encoder" in capsys.readouterr().err
