"""``semlat import bigvgan``: released generator files -> a ``bigvgan`` model folder that reproduces the
reference fixtures (mel front-end and generator), through the function and the CLI; every released
config's key listing fits; bad inputs are one-line errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from types import MappingProxyType

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import assert_tiered_close, fixture_file, tone, write_audio
from semlat.audio import probe_audio
from semlat.checkpoints import read_model_folder
from semlat.cli import main
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import load_codec
from semlat.latent_space import LatentSpace, encode_chunked
from semlat.models import run_importer
from semlat.nn.weight_norm import has_weight_norm, legacy_to_parametrized
from semlat.vocoders.import_bigvgan import check_generator_state, import_bigvgan, read_bigvgan_config
from semlat.vocoders.mel_vocoder import MelVocoder, MelVocoderConfig
from test_spectral import BIGVGAN_MEL_TIERS

_JSON_22K = MappingProxyType({
    "resblock": "1", "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "activation": "snakebeta", "snake_logscale": True, "batch_size": 32, "segment_size": 8192,
    "sampling_rate": 22050, "num_mels": 80, "n_fft": 1024, "hop_size": 256, "win_size": 1024, "fmin": 0})
_JSON_24K = MappingProxyType({**_JSON_22K, "sampling_rate": 24000, "num_mels": 100})
_JSON_44K = MappingProxyType({**_JSON_22K, "sampling_rate": 44100, "num_mels": 128})
_FULL = MappingProxyType({"upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
                          "upsample_initial_channel": 1536})
_BASE = MappingProxyType({"upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
                          "upsample_initial_channel": 512})
_V2 = MappingProxyType({"use_tanh_at_final": False, "use_bias_at_final": False, "use_cqtd_instead_of_mrd": True})

#: The model-relevant part of each released config.json (BigVGAN v2.4 configs/); v1 files lack use_*_at_final.
RELEASED_CONFIGS = MappingProxyType({
    "bigvgan_v2_22khz_80band_256x": {**_JSON_22K, "fmax": None, **_FULL, **_V2},
    "bigvgan_v2_22khz_80band_fmax8k_256x": {**_JSON_22K, "fmax": 8000, **_FULL, **_V2},
    "bigvgan_v2_24khz_100band_256x": {**_JSON_24K, "fmax": None, **_FULL, **_V2},
    "bigvgan_v2_44khz_128band_256x": {**_JSON_44K, "fmax": None, **_FULL, **_V2},
    "bigvgan_v2_44khz_128band_512x": {**_JSON_44K, "n_fft": 2048, "hop_size": 512, "win_size": 2048, "fmax": None,
                                      **_FULL, "upsample_rates": [8, 4, 2, 2, 2, 2],
                                      "upsample_kernel_sizes": [16, 8, 4, 4, 4, 4], **_V2},
    "bigvgan_22khz_80band": {**_JSON_22K, "fmax": 8000, **_FULL},
    "bigvgan_24khz_100band": {**_JSON_24K, "fmax": 12000, **_FULL},
    "bigvgan_base_22khz_80band": {**_JSON_22K, "fmax": 8000, **_BASE},
    "bigvgan_base_24khz_100band": {**_JSON_24K, "fmax": 12000, **_BASE},
})


@pytest.fixture(scope="module")
def release(fixtures, tmp_path_factory):
    """A fake HF release folder: ``bigvgan_generator.pt`` ({"generator": weight-normed legacy state}) and
    ``config.json``, plus the weight-norm-free safetensors file of the fixtures."""
    folder = tmp_path_factory.mktemp("release")
    state = load_file(fixture_file(fixtures, "bigvgan/generator_tiny.safetensors"))
    torch.save({"generator": state}, folder / "bigvgan_generator.pt")
    shutil.copy(fixture_file(fixtures, "bigvgan/generator_tiny_config.json"), folder / "config.json")
    return {"pt": folder / "bigvgan_generator.pt", "config": folder / "config.json",
            "removed": fixture_file(fixtures, "bigvgan/generator_tiny_wn_removed.safetensors"),
            "io": load_file(fixture_file(fixtures, "bigvgan/generator_tiny_io.safetensors")),
            "mel_io": load_file(fixture_file(fixtures, "bigvgan/mel_22k_io.safetensors"))}


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    return import_bigvgan(release["pt"], tmp_path_factory.mktemp("models") / "bigvgan", config=release["config"])


def _assert_reproduces_fixtures(folder, release):
    codec = load_codec(folder, device="cpu")
    assert isinstance(codec.model, MelVocoder) and isinstance(codec.model, LatentSpace)
    assert not has_weight_norm(codec.model)
    io = release["io"]
    torch.testing.assert_close(codec.decode(io["mel_in"]), io["audio_out"], atol=2e-5, rtol=1e-4)
    # encode: 22050 samples are padded to 87 hops; the 84 frames whose windows end before the
    # padding are the reference's (the last two see zeros instead of the reference's reflection).
    mel_io = release["mel_io"]
    mel = codec.encode(mel_io["audio_in"][:, None])
    assert mel.shape == (2, 80, 87)
    assert_tiered_close(mel[..., :84], mel_io["mel_out"][..., :84], BIGVGAN_MEL_TIERS, "encoded log-mel")
    # the reference front-end itself, all 86 frames
    with torch.inference_mode():
        reference = codec.model.mel(mel_io["audio_in"][:, None])
    assert_tiered_close(reference, mel_io["mel_out"], BIGVGAN_MEL_TIERS, "reference front-end")


def test_import_released_pt_reproduces_reference(imported, release):
    state, meta = read_model_folder(imported)
    assert meta["model_type"] == "bigvgan" and meta["frame_rate"] == 22050 / 256 and meta["latent_dim"] == 80
    assert meta["config"]["upsample_initial_channel"] == 64 and meta["config"]["use_tanh_at_final"] is False
    assert len(state) == 783 and all(key.startswith("generator.") for key in state)
    assert "generator.conv_pre.parametrizations.weight.original0" in state
    _assert_reproduces_fixtures(imported, release)


def test_import_without_weight_norm_and_default_config(release, tmp_path):
    beside = tmp_path / "release"
    beside.mkdir()
    shutil.copy(release["removed"], beside / "generator.safetensors")
    shutil.copy(release["config"], beside / "config.json")
    folder = run_importer("bigvgan", beside / "generator.safetensors", tmp_path / "out")  # config.json beside
    state, _ = read_model_folder(folder)
    assert len(state) == 783  # stored weight-normed again
    _assert_reproduces_fixtures(folder, release)
    audio = load_codec(folder, device="cpu").decode(release["io"]["mel_in"])
    torch.testing.assert_close(audio, release["io"]["audio_out_wn_removed"], atol=2e-5, rtol=1e-4)


def test_import_bare_state_dict_with_parametrized_keys(release, tmp_path):
    state = legacy_to_parametrized(torch.load(release["pt"], weights_only=True)["generator"])
    save_file(state, str(tmp_path / "bare.safetensors"))
    folder = import_bigvgan(tmp_path / "bare.safetensors", tmp_path / "out", config=release["config"])
    _assert_reproduces_fixtures(folder, release)


def test_cli_import_encode_decode_and_reconstruct(release, tmp_path, capsys):
    out = tmp_path / "vocoder"
    assert main(["import", "bigvgan", str(release["pt"]), str(out), "--config", str(release["config"])]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    _assert_reproduces_fixtures(out, release)
    wav = write_audio(tmp_path / "in.wav", tone(0.5, 22050, 330.0), 22050)
    assert main(["reconstruct", str(out), str(wav), str(tmp_path / "out.wav")]) == 0
    info = probe_audio(tmp_path / "out.wav")
    assert info.sample_rate == 22050 and info.frames == round(0.5 * 22050)
    assert main(["encode", str(out), str(wav), str(tmp_path / "mels")]) == 0
    assert "(80 x 86.1328 Hz)" in capsys.readouterr().out
    assert main(["decode", str(out), str(tmp_path / "mels"), str(tmp_path / "decoded")]) == 0
    assert probe_audio(tmp_path / "decoded" / "in.wav").frames == round(0.5 * 22050)


def test_chunked_encode_and_decode_match_whole(imported):
    codec = load_codec(imported, device="cpu")
    model = codec.model
    audio = torch.randn(1, 1, 3 * 22050 + 100) * 0.1
    with torch.inference_mode():
        whole = model.encode(audio)
        chunked = encode_chunked(model, audio, chunk_seconds=0.5, context_seconds=0.1)
        assert whole.shape == chunked.shape == (1, 80, 259)
        torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)
    short = load_codec(imported, device="cpu", chunk_seconds=0.5, context_seconds=0.2)
    assert short.decode(whole[..., :200]).shape == (1, 1, 200 * 256)  # in chunks
    assert model.encode(torch.zeros(1, 1, 100)).shape == (1, 80, 1)  # shorter than the reflect padding


@pytest.mark.parametrize("name", sorted(RELEASED_CONFIGS))
def test_every_released_config_fits_its_key_listing(fixtures, tmp_path, name):
    (tmp_path / "config.json").write_text(json.dumps(RELEASED_CONFIGS[name]))
    config = read_bigvgan_config(tmp_path)
    listing = json.loads(fixture_file(fixtures, f"bigvgan/keys_{name}.json").read_text())
    normed = {k: torch.empty(shape, device="meta") for k, shape in legacy_to_parametrized(listing).items()}
    assert check_generator_state(config, normed, name) is True
    removed = {k.removesuffix("_v"): v for k, v in listing.items() if not k.endswith(".weight_g")}
    removed = {k: torch.empty(shape, device="meta") for k, shape in removed.items()}
    assert check_generator_state(config, removed, name) is False
    assert MelVocoderConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config  # JSON round trip


def _one_line(err: Exception) -> str:
    message = str(err)
    assert "\n" not in message
    return message


def test_wrong_config_or_weights_are_one_line_errors(release, tmp_path):
    config = json.loads(release["config"].read_text())
    (tmp_path / "wide.json").write_text(json.dumps({**config, "upsample_initial_channel": 128}))
    with pytest.raises(CheckpointError) as err:
        import_bigvgan(release["pt"], tmp_path / "a", config=tmp_path / "wide.json")
    assert "shape mismatch" in _one_line(err.value) and "conv_pre" in str(err.value)
    (tmp_path / "v1.json").write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("use_")}))
    with pytest.raises(CheckpointError, match="missing key.*conv_post.bias"):
        import_bigvgan(release["pt"], tmp_path / "b", config=tmp_path / "v1.json")
    (tmp_path / "nomel.json").write_text(json.dumps({k: v for k, v in config.items() if k != "hop_size"}))
    with pytest.raises(ConfigError, match="missing key\\(s\\) hop_size"):
        import_bigvgan(release["pt"], tmp_path / "c", config=tmp_path / "nomel.json")
    (tmp_path / "hop.json").write_text(json.dumps({**config, "hop_size": 300}))
    with pytest.raises(ConfigError, match="prod\\(upsample_rates\\) = 256, but hop_size is 300"):
        import_bigvgan(release["pt"], tmp_path / "d", config=tmp_path / "hop.json")

    state = torch.load(release["pt"], weights_only=True)["generator"]
    del state["conv_pre.bias"]
    torch.save({"generator": state}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError) as err:
        import_bigvgan(tmp_path / "missing.pt", tmp_path / "e", config=release["config"])
    assert "1 missing key(s): conv_pre.bias" in _one_line(err.value)
    torch.save({"mpd": {}, "mrd": {}, "optim_g": {}, "steps": 1}, tmp_path / "do.pt")
    with pytest.raises(CheckpointError, match="discriminator/optimizer checkpoint"):
        import_bigvgan(tmp_path / "do.pt", tmp_path / "f", config=release["config"])
    with pytest.raises(ConfigError, match="needs the release's config.json"):
        import_bigvgan(tmp_path / "missing.pt", tmp_path / "g")
    assert not any((tmp_path / name).exists() for name in "abcdefg")  # nothing half-written


def test_cli_errors_are_one_line(release, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["import", "bigvgan", str(release["pt"]), str(tmp_path / "o"), "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "semlat: error:" in err and "invalid JSON" in err and err.strip().count("\n") == 0
    assert main(["import", "bigvgan", str(release["pt"]), str(tmp_path / "o"), "--config", str(release["config"]),
                 "--vocoder", str(tmp_path)]) == 1
    assert "takes no option(s) vocoder" in capsys.readouterr().err
