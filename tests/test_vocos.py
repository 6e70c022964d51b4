"""Vocos (F5-TTS's vocoder): fixture parity through the importer, both key listings, the EnCodec variant's
AdaLN, the ``same`` padding, and a Vocos folder as a LatentSpace of F5's mel."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.checkpoints import read_model_folder
from semlat.cli import main
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import load
from semlat.latent_space import LatentSpace, decode_chunked
from semlat.vocoders.import_vocos import convert_state, import_vocos, read_vocos_config
from semlat.vocoders.vocos import Vocos, VocosConfig

TOL = {"atol": 1e-4, "rtol": 1e-4}  # the fixture README's suggestion (measured: <= 5e-7)


@pytest.fixture(scope="module")
def release(fixtures, tmp_path_factory):
    """The tiny fixture laid out as a release: pytorch_model.bin + config.yaml."""
    folder = tmp_path_factory.mktemp("vocos_release")
    state = load_file(fixture_file(fixtures, "vocos/vocos_tiny.safetensors"))
    torch.save(state, folder / "pytorch_model.bin")
    config = json.loads(fixture_file(fixtures, "vocos/vocos_tiny_config.json").read_text())
    import yaml

    (folder / "config.yaml").write_text(yaml.safe_dump({k: config[k] for k in ("feature_extractor", "backbone",
                                                                               "head")}))
    return {"bin": folder / "pytorch_model.bin", "yaml": folder / "config.yaml",
            "io": load_file(fixture_file(fixtures, "vocos/vocos_tiny_io.safetensors"))}


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    return import_vocos(release["bin"], tmp_path_factory.mktemp("models") / "vocos", config=release["yaml"])


def test_import_reproduces_every_intermediate(imported, release):
    io = release["io"]
    space = load(imported, device="cpu")
    model = space.model
    assert isinstance(model, Vocos) and isinstance(space, LatentSpace)
    assert (space.input_rate, space.output_rate, space.latent_dim, space.frame_rate) == (24000, 24000, 100, 93.75)
    with torch.inference_mode():
        embed = model.backbone.embed(io["mel_in"])
        torch.testing.assert_close(embed, io["backbone_embed_out"], **TOL)
        features = model.features(io["mel_in"])
        torch.testing.assert_close(features, io["backbone_out"], **TOL)
        torch.testing.assert_close(model.head.spectrum(features), io["head_linear_out"], **TOL)
        torch.testing.assert_close(model.decode_reference(io["mel_in"]), io["audio_out"], **TOL)
        # Vocos.forward: its own mel front-end, then decode
        mel = model.encode(io["audio_in"][:, None])
        torch.testing.assert_close(mel, io["features"], atol=1e-4, rtol=0)
        torch.testing.assert_close(model.decode_reference(io["features"]), io["audio_out_from_audio"], **TOL)
    # as a LatentSpace: T frames -> T * 256 samples; the first (T - 1) * 256 are the reference's
    audio = space.decode(io["mel_in"])
    assert audio.shape == (2, 1, 40 * 256)
    torch.testing.assert_close(audio[:, 0, :9984], io["audio_out"], **TOL)
    meta = json.loads((imported / "config.json").read_text())
    assert meta["model_type"] == "vocos" and meta["frame_rate"] == 93.75 and meta["sample_rate"] == 24000


def test_same_padding_head_and_front_end(release):
    io = release["io"]
    config = read_vocos_config(release["yaml"])
    config.padding = config.mel_padding = "same"
    model = Vocos(config).eval()
    model.load_state_dict(convert_state(torch.load(release["bin"], weights_only=True), model, "fixture"))
    with torch.inference_mode():
        torch.testing.assert_close(model.decode_reference(io["mel_in"]), io["audio_out_same_padding"], **TOL)
        torch.testing.assert_close(model.encode(io["audio_in"][:, None]), io["features_same_padding"], atol=3e-4, rtol=0)


def test_adanorm_variant_selects_one_row_per_batch(fixtures, tmp_path):
    io = load_file(fixture_file(fixtures, "vocos/vocos_tiny_adanorm_io.safetensors"))
    folder = import_vocos(fixture_file(fixtures, "vocos/vocos_tiny_adanorm.safetensors"), tmp_path / "ada",
                          config=fixture_file(fixtures, "vocos/vocos_tiny_adanorm_config.json"))
    space = load(folder, device="cpu")
    model = space.model
    assert model.config.adanorm_num_embeddings == 4 and model.config.padding == "same"
    for k in io["bandwidth_ids"].tolist():
        with torch.inference_mode():
            torch.testing.assert_close(model.features(io["features_in"], torch.tensor([k])), io[f"backbone_out_bw{k}"],
                                       **TOL)
            torch.testing.assert_close(model.decode_reference(io["features_in"], bandwidth_id=k),
                                       io[f"audio_out_bw{k}"], **TOL)
        decoded = space.decode(io["features_in"], bandwidth_id=torch.tensor([k]))  # a decode option
        torch.testing.assert_close(decoded[:, 0], io[f"audio_out_bw{k}"], **TOL)
    with pytest.raises(ValueError, match="condition id"):
        model.features(io["features_in"])
    with pytest.raises(ConfigError, match="EnCodec features, not audio"):
        model.encode(torch.zeros(1, 1, 24000))


@pytest.mark.parametrize("listing,config", [("keys_vocos_mel_24khz.json", VocosConfig.mel_24khz),
                                            ("keys_vocos_encodec_24khz.json", VocosConfig.encodec_24khz)])
def test_full_size_models_accept_the_released_listings(fixtures, listing, config):
    keys = json.loads(fixture_file(fixtures, f"vocos/{listing}").read_text())
    model = Vocos(config())
    state = {k: torch.empty(shape) for k, shape in keys.items()}
    for key in ("head.istft.window", "feature_extractor.mel_spec.spectrogram.window",
                "feature_extractor.mel_spec.mel_scale.fb"):
        state.pop(key, None)  # buffers semlat computes itself (checked on real values by the importer)
    converted = convert_state(state, model, listing)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in converted.items()}
    parameters = sum(v.numel() for k, v in model.state_dict().items() if k != "codebook_weights")
    assert parameters == {"keys_vocos_mel_24khz.json": 13_531_650,
                          "keys_vocos_encodec_24khz.json": 7_984_258}[listing]


def test_chunked_decode_matches_whole(imported):
    """Vocos is convolutional: with a context wider than its receptive field (2 blocks x k7 + embed k7:
    9 frames each side) chunked decoding equals one pass."""
    space = load(imported, device="cpu")
    mel = torch.randn(1, 100, 300) - 4
    whole = space.decode(mel)
    chunked = decode_chunked(space.model, mel, chunk_seconds=64 / space.frame_rate, context_seconds=16 / space.frame_rate)
    assert chunked.shape == whole.shape == (1, 1, 300 * 256)
    # the iSTFT overlaps 4 frames: the seams differ only at float level
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=1e-4)


def test_cli_import_and_reconstruct(release, tmp_path):
    out = tmp_path / "v"
    assert main(["import", "vocos", str(release["bin"]), str(out), "--config", str(release["yaml"])]) == 0
    state, meta = read_model_folder(out)
    assert "head.out.weight" in state and "backbone.blocks.1.gamma" in state and meta["source"]["weights"]
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "a.wav", release["io"]["audio_in"][0].numpy(), 24000)
    assert main(["reconstruct", str(out), str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]) == 0
    back, rate = sf.read(tmp_path / "b.wav")
    assert rate == 24000 and len(back) == 24000 and np.isfinite(back).all()


def test_bad_imports_are_one_line_errors(release, fixtures, tmp_path):
    with pytest.raises(ConfigError, match="needs --config"):
        import_vocos(release["bin"], tmp_path / "x")
    bad = tmp_path / "config.yaml"
    bad.write_text("backbone: {class_path: vocos.models.VocosResNetBackbone, init_args: {}}\nhead: {}\n")
    with pytest.raises(ConfigError, match="no 'head' section"):
        import_vocos(release["bin"], tmp_path / "x", config=bad)
    # weights of another size than the config
    other = json.loads(fixture_file(fixtures, "vocos/vocos_tiny_config.json").read_text())
    other["backbone"]["init_args"]["dim"] = 48
    other["head"]["init_args"]["dim"] = 48
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(other))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        import_vocos(release["bin"], tmp_path / "x", config=wrong)
    # a filterbank that is not the front-end the config describes
    state = torch.load(release["bin"], weights_only=True)
    state["feature_extractor.mel_spec.mel_scale.fb"] = state["feature_extractor.mel_spec.mel_scale.fb"] * 2
    torch.save(state, tmp_path / "fb.bin")
    with pytest.raises(CheckpointError, match="mel_scale.fb differs"):
        import_vocos(tmp_path / "fb.bin", tmp_path / "x", config=release["yaml"])
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_mel_floor_1e5_gives_f5_tts_latents(fixtures, release):
    """F5-TTS's mel is Vocos' with a 1e-5 floor: with mel_floor=1e-5 a Vocos folder encodes F5's latents."""
    f5 = load_file(fixture_file(fixtures, "f5_tts/mel_vocos_io.safetensors"))
    config = read_vocos_config(release["yaml"])
    config.mel_floor = 1e-5
    with torch.inference_mode():
        mel = Vocos(config).eval().encode(f5["audio_in"][:, None])
    torch.testing.assert_close(mel, f5["mel"], atol=1e-4, rtol=0)
