"""DC-Speech-VAE as a latent space: import of the released files, end-to-end parity, Griffin-Lim stand-in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.autoencoders.import_dc_speech_vae import import_dc_speech_vae
from semlat.autoencoders.mel_dcae import MelDCAE, MelDCAEConfig
from semlat.autoencoders.mel_space import MelDCAESpace
from semlat.checkpoints import read_model_folder
from semlat.cli import cli
from semlat.errors import SemlatError
from semlat.inference import load_codec
from semlat.latent_space import LatentSpace
from semlat.vocoders.griffin_lim import GriffinLimVocoder


@pytest.fixture(scope="module")
def released(fixtures: Path, tmp_path_factory) -> dict[str, Path]:
    """The tiny reference files laid out as released: DCAE .pt + config json, BigVGAN release folder."""
    root = tmp_path_factory.mktemp("released")
    dcae = load_file(str(fixture_file(fixtures, "dc_speech_vae/dcae_tiny.safetensors")))
    torch.save(dcae, root / "generator_700000.pt")
    shutil.copy(fixture_file(fixtures, "dc_speech_vae/dcae_tiny_config.json"), root / "default_config.json")
    vocoder = root / "bigvgan_v2_22khz_80band_256x"
    vocoder.mkdir()
    generator = load_file(str(fixture_file(fixtures, "bigvgan/generator_tiny.safetensors")))
    torch.save({"generator": generator}, vocoder / "bigvgan_generator.pt")
    shutil.copy(fixture_file(fixtures, "bigvgan/generator_tiny_config.json"), vocoder / "config.json")
    return {"weights": root / "generator_700000.pt", "config": root / "default_config.json", "vocoder": vocoder}


@pytest.fixture(scope="module")
def imported(released, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "dc_speech_vae"
    return import_dc_speech_vae(released["weights"], out, config=released["config"], vocoder=released["vocoder"])


def test_imported_folder_reproduces_the_reference_pipeline(imported: Path, fixtures: Path):
    io = load_file(str(fixture_file(fixtures, "dc_speech_vae/inference_tiny_io.safetensors")))
    codec = load_codec(imported, device="cpu")
    space = codec.space
    assert isinstance(space, LatentSpace)
    assert space.sample_rate == 22050 and space.latent_dim == 80
    assert space.frame_rate == pytest.approx(22050 / 4096)
    audio = io["audio_in"][:, None, :]
    with torch.inference_mode():
        mel = space.mel(audio)
        torch.testing.assert_close(mel, io["mel_padded"], atol=5e-3, rtol=0)
        latent = space.autoencoder.encode(io["mel_padded"])
        torch.testing.assert_close(latent, io["latent_1d"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(space.decode_mel(io["latent_1d"]), io["mel_recon"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(space.decode(io["latent_1d"])[:, 0], io["audio_out"], atol=2e-5, rtol=0)
    # the codec path (chunking, eval, weight norm folded) gives the same latents from audio
    torch.testing.assert_close(codec.encode(audio), io["latent_1d"], atol=2e-4, rtol=0)
    assert codec.decode(io["latent_1d"]).shape == (2, 1, 24576)


def test_import_through_the_cli_and_reconstruct(released, tmp_path: Path, fixtures: Path):
    out = tmp_path / "dcvae"
    runner = CliRunner()
    result = runner.invoke(cli, ["import", "dc-speech-vae", str(released["weights"]), str(out),
                                 "--config", str(released["config"]), "--vocoder", str(released["vocoder"])])
    assert result.exit_code == 0, result.output
    state, meta = read_model_folder(out)
    assert meta["model_type"] == "mel_dcae" and meta["config"]["vocoder"]["type"] == "bigvgan"
    assert any(k.startswith("autoencoder.model.") for k in state) and any(k.startswith("vocoder.generator.")
                                                                          for k in state)
    import soundfile as sf

    io = load_file(str(fixture_file(fixtures, "dc_speech_vae/inference_tiny_io.safetensors")))
    sf.write(str(tmp_path / "in.wav"), io["audio_in"][0].numpy(), 22050)
    result = runner.invoke(cli, ["reconstruct", str(out), str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(str(tmp_path / "out.wav"))
    assert rate == 22050 and len(audio) >= 22050


def test_import_errors_are_one_line(released, tmp_path: Path):
    with pytest.raises(SemlatError, match="--vocoder"):
        import_dc_speech_vae(released["weights"], tmp_path / "a", config=released["config"])
    state = torch.load(released["weights"], weights_only=True)
    state.pop(min(state))
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(SemlatError, match="missing") as err:
        import_dc_speech_vae(tmp_path / "broken.pt", tmp_path / "b", config=released["config"],
                             vocoder=released["vocoder"])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "b").exists()
    (tmp_path / "bad.json").write_text(json.dumps({"latent_channels": 16, "nonsense": 1}))
    with pytest.raises(SemlatError, match="nonsense"):
        import_dc_speech_vae(released["weights"], tmp_path / "c", config=tmp_path / "bad.json",
                             vocoder=released["vocoder"])


def test_griffin_lim_space_round_trip_and_vocoder_mismatch():
    torch.manual_seed(0)
    space = MelDCAESpace(MelDCAE(MelDCAEConfig.tiny()), GriffinLimVocoder()).eval()
    t = torch.arange(22050) / 22050
    audio = (0.5 * torch.sin(2 * torch.pi * 440 * t))[None, None]
    with torch.inference_mode():
        latents = space.encode(audio)
        assert latents.shape == (1, 80, 6)  # 22050 samples -> padded to 24576 = 6 x 4096
        assert space.decode(latents).shape == (1, 1, 6 * 4096)
    rebuilt = MelDCAESpace.from_config(space.config)
    assert rebuilt.config == space.config
    with pytest.raises(SemlatError, match="mel bands"):
        MelDCAESpace(MelDCAE(MelDCAEConfig.tiny()), GriffinLimVocoder.from_config(
            {"mel": {**GriffinLimVocoder().config.mel, "n_mels": 64}}))


def test_griffin_lim_inverts_a_mel_closely():
    vocoder = GriffinLimVocoder()
    t = torch.arange(22050) / 22050
    audio = (0.3 * torch.sin(2 * torch.pi * (200 + 300 * t) * t) + 0.1 * torch.sin(2 * torch.pi * 1500 * t))
    mel = vocoder.encode(audio[None, None])
    again = vocoder.encode(vocoder.decode(mel))
    error = (again - mel).abs()[..., 4:-4].mean()
    assert error < 0.25  # log-mel units; a silent or random output is > 3
    assert vocoder.decode(mel).abs().max() < 1.5


def test_chunked_encode_and_decode_match_whole():
    """Bounded-memory chunks (2 s with 2 s of context) give the whole-input latents, and decoded audio
    with the same mel (Griffin-Lim's phase is global, so the waveform itself may differ)."""
    from semlat.latent_space import decode_chunked, encode_chunked

    torch.manual_seed(0)
    space = MelDCAESpace(MelDCAE(MelDCAEConfig.tiny()), GriffinLimVocoder()).eval()
    audio = 0.1 * torch.randn(1, 1, 22050 * 12)
    with torch.inference_mode():
        whole = space.encode(audio)
        chunked = encode_chunked(space, audio, chunk_seconds=2.0, context_seconds=2.0)
        assert chunked.shape == whole.shape == (1, 80, 65)
        assert float((chunked - whole).abs().max() / whole.abs().max()) < 1e-5
        decoded = decode_chunked(space, whole, chunk_seconds=2.0, context_seconds=2.0)
        reference = space.decode(whole)
        assert decoded.shape == reference.shape == (1, 1, 65 * 4096)
        mel_error = (space.vocoder.encode(decoded) - space.vocoder.encode(reference)).abs().mean()
        assert mel_error < 0.02
