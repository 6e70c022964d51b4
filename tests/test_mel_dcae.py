"""DC-Speech-VAE mel DCAE: config parsing, parity with the reference fixture, σ-VAE replay, released keys,
checkpoint import, shape errors and a tiny training run."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.autoencoders.mel_dcae import MelDCAE, MelDCAEConfig, import_dcae_state_dict
from semlat.autoencoders.regularizers import dispersive_loss
from semlat.errors import CheckpointError, ConfigError
from semlat.nn.weight_norm import has_weight_norm, parametrized_to_legacy, remove_weight_norm

#: DC-Speech-VAE's models/default_config.json (commit c8f9fc6), verbatim.
RELEASED_CONFIG = {
    "_class_name": "AutoencoderDC", "_diffusers_version": "0.32.2", "attention_head_dim": 32,
    "decoder_act_fns": "silu", "decoder_block_out_channels": [128, 256, 512, 512, 1024],
    "decoder_block_types": ["ResBlock"] * 6, "decoder_layers_per_block": [3, 3, 3, 3, 3],
    "decoder_norm_types": "rms_norm", "decoder_qkv_multiscales": [[], [], [], [], []],
    "downsample_block_type": "Conv", "encoder_block_out_channels": [128, 256, 512, 512, 1024],
    "encoder_block_types": ["ResBlock"] * 5, "encoder_layers_per_block": [2, 2, 2, 3, 3],
    "encoder_qkv_multiscales": [[], [], [], [], []], "in_channels": 1, "latent_channels": 16,
    "scaling_factor": None, "upsample_block_type": "interpolate",
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_json(fixtures):
    return json.loads(fixture_file(fixtures, "dc_speech_vae/dcae_tiny_config.json").read_text())


@pytest.fixture(scope="module")
def tiny_state(fixtures):
    return load_file(fixture_file(fixtures, "dc_speech_vae/dcae_tiny.safetensors"))


@pytest.fixture(scope="module")
def io(fixtures):
    return load_file(fixture_file(fixtures, "dc_speech_vae/dcae_tiny_io.safetensors"))


def build_tiny(tiny_json, tiny_state) -> MelDCAE:
    model = MelDCAE.from_config(tiny_json).eval()
    model.load_state_dict(tiny_state, strict=True)
    return model


def check_against_io(model: MelDCAE, io, suffix: str = "") -> None:
    tol = {"atol": 1e-5, "rtol": 1e-5}
    with torch.inference_mode():
        torch.testing.assert_close(model.encode_raw(io["mel_in"]), io["latent_raw"], **tol)
        latent_2d = model.encode_2d(io["mel_in"])
        torch.testing.assert_close(latent_2d, io["latent" + (suffix or "")], **tol)
        latent = model.encode(io["mel_in"][:, 0])  # [B, 80, T] input too
        assert latent.shape == (2, 80, 4)
        torch.testing.assert_close(latent, io["latent_1d"], **tol)
        recon = model.decode(latent)
        assert recon.shape == (2, 80, 64)
        torch.testing.assert_close(recon, io["mel_recon" + suffix], **tol)
        torch.testing.assert_close(model.decode(latent_2d), recon, atol=0, rtol=0)


def test_config_from_reference_json(tiny_json):
    config = MelDCAEConfig.from_reference_json(tiny_json)
    assert config.encoder_block_out_channels == (8, 16, 16, 32, 32)
    assert config.encoder_layers_per_block == (1, 1, 2, 1, 2) and config.decoder_layers_per_block == (2, 1, 1, 1, 2)
    assert (config.latent_dim, config.compression, config.latent_rows) == (80, 16, 5)
    released = MelDCAEConfig.from_reference_json(RELEASED_CONFIG)
    assert released == MelDCAEConfig.paper() == MelDCAEConfig()
    assert released.decoder_block_types == ("ResBlock",) * 5  # the 6th entry is dropped
    assert released.decoder_norm_types == ("rms_norm",) * 5 and released.decoder_conv_act_fn == "relu"
    # semlat's own config.json form round-trips
    assert MelDCAEConfig.from_dict(dataclasses.asdict(config)) == config
    assert MelDCAEConfig.from_reference_json(tiny_json, n_mels=96).latent_dim == 96
    with pytest.raises(ConfigError, match=r"^DCAE config: unknown key\(s\) bogus$"):
        MelDCAEConfig.from_reference_json({**tiny_json, "bogus": 1})
    with pytest.raises(ConfigError, match="_class_name is 'AutoencoderKL'"):
        MelDCAEConfig.from_reference_json({**tiny_json, "_class_name": "AutoencoderKL"})
    with pytest.raises(ConfigError, match="n_mels=72 must be a positive multiple of the compression 16"):
        MelDCAEConfig(n_mels=72)
    with pytest.raises(ConfigError, match="decoder_layers_per_block has 4 entries"):
        MelDCAEConfig(decoder_layers_per_block=(3, 3, 3, 3))
    with pytest.raises(ConfigError, match="unknown block type 'Transformer'"):
        MelDCAEConfig(encoder_block_types="Transformer")
    with pytest.raises(ConfigError, match="latent_channels=24"):
        MelDCAEConfig(latent_channels=24)
    three_stage = MelDCAEConfig.from_reference_json({"encoder_block_out_channels": [8, 16, 32],
                                                     "decoder_block_out_channels": [8, 16, 32],
                                                     "encoder_layers_per_block": [1, 1, 1],
                                                     "decoder_layers_per_block": [1, 1, 1]})
    assert three_stage.compression == 4 and three_stage.decoder_block_types == ("ResBlock",) * 3


def test_tiny_matches_reference(tiny_json, tiny_state, io):
    model = build_tiny(tiny_json, tiny_state)
    assert (model.n_mels, model.latent_dim, model.compression) == (80, 80, 16)
    assert set(model.state_dict()) == set(tiny_state) and len(tiny_state) == 136
    check_against_io(model, io)


def test_weight_norm_removal_matches_reference(tiny_json, tiny_state, io):
    model = build_tiny(tiny_json, tiny_state)
    assert model.remove_weight_norm() is model
    assert not has_weight_norm(model) and not model.config.weight_norm
    assert not any("parametrizations" in key for key in model.state_dict())
    check_against_io(model, io, "_wn_removed")
    # the generic helper works on it too, and the folded config rebuilds the folded layout
    other = remove_weight_norm(build_tiny(tiny_json, tiny_state))
    assert not has_weight_norm(other)
    rebuilt = MelDCAE.from_config(dataclasses.asdict(model.config))
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_sigma_vae_training_forward_replays_reference(fixtures, tiny_json, tiny_state, io):
    losses = load_file(fixture_file(fixtures, "dc_speech_vae/losses_io.safetensors"))
    model = build_tiny(tiny_json, tiny_state).train()
    torch.manual_seed(777)
    with torch.no_grad():
        out = model(io["mel_in"])
    torch.testing.assert_close(out["noise_std"], losses["sigma_std"], atol=0, rtol=0)
    torch.testing.assert_close(model.to_2d(out["latent"]), losses["sigma_latent_clean"], atol=1e-6, rtol=0)
    torch.testing.assert_close(model.to_2d(out["latent_noisy"]), losses["sigma_latent_noisy"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["mel"], losses["sigma_mel_recon_train"], atol=1e-6, rtol=0)
    torch.testing.assert_close(dispersive_loss(out["latent"]), losses["disp_loss_tiny_latent"], rtol=1e-5, atol=0)
    # eval mode: no noise unless asked for
    model.eval()
    with torch.no_grad():
        clean = model(io["mel_in"])
        noisy = model(io["mel_in"], noise=True)
    assert clean["noise_std"] is None and torch.equal(clean["latent_noisy"], clean["latent"])
    torch.testing.assert_close(clean["mel"], io["mel_recon"], atol=1e-5, rtol=1e-5)
    assert noisy["noise_std"].shape == (2, 1, 1, 1) and not torch.equal(noisy["latent_noisy"], noisy["latent"])


def test_released_keys_fit_paper_config(fixtures):
    keys = json.loads(fixture_file(fixtures, "dc_speech_vae/keys_default_config.json").read_text())
    with torch.device("meta"):
        model = MelDCAE(MelDCAEConfig.paper())
    state = model.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == keys
    assert len(keys) == 227 and sum(p.numel() for p in model.parameters()) == 190_004_130
    assert sum(k.endswith(".original0") for k in keys) == 66
    released = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    imported = import_dcae_state_dict(released)
    assert set(imported) == set(keys)
    compiled = import_dcae_state_dict({"_orig_mod." + k: v for k, v in released.items()})
    assert set(compiled) == set(keys)
    legacy = import_dcae_state_dict({"generator": parametrized_to_legacy(released)})
    assert set(legacy) == set(keys)
    missing = dict(released)
    del missing["model.decoder.norm_out.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): model\.decoder\.norm_out\.bias") as err:
        import_dcae_state_dict(missing)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): model\.extra"):
        import_dcae_state_dict({**released, "model.extra": torch.empty(1, device="meta")})


def test_import_folded_and_prefixed_weights(tiny_json, tiny_state, io):
    config = MelDCAEConfig.from_reference_json(tiny_json)
    folded = build_tiny(tiny_json, tiny_state).remove_weight_norm().state_dict()
    model = MelDCAE(config).eval()
    model.load_state_dict(import_dcae_state_dict(folded, config), strict=True)
    check_against_io(model, io)
    as_is = import_dcae_state_dict({"model._orig_mod." + k[len("model."):]: v for k, v in tiny_state.items()},
                                   config)
    assert all(torch.equal(as_is[k], v) for k, v in tiny_state.items())
    with pytest.raises(CheckpointError, match="shape mismatch"):
        import_dcae_state_dict(tiny_state)  # paper config: shapes differ


def test_bad_shapes_give_one_line_errors(tiny_json, tiny_state):
    model = build_tiny(tiny_json, tiny_state)
    with pytest.raises(ValueError, match=r"T=63 \(shape \(1, 80, 63\)\) must be a positive multiple of 16"):
        model.encode(torch.zeros(1, 80, 63))
    with pytest.raises(ValueError, match=r"expects a mel \[B, 80, T\].*got shape \(1, 81, 64\)"):
        model.encode(torch.zeros(1, 81, 64))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 80, 64\)"):
        model.encode_2d(torch.zeros(1, 2, 80, 64))
    with pytest.raises(ValueError, match=r"latent \[B, 80, T'\], got shape \(1, 64, 4\)"):
        model.decode(torch.zeros(1, 64, 4))
    with pytest.raises(ValueError, match=r"got shape \(1, 16, 4, 4\)"):
        model.decode(torch.zeros(1, 16, 4, 4))


def test_tiny_config_trains():
    torch.manual_seed(0)
    model = MelDCAE(MelDCAEConfig.tiny()).train()
    assert sum(p.numel() for p in model.parameters()) < 500_000
    mel = torch.randn(2, 80, 32) * 0.5 - 4.0
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(8):
        out = model(mel)
        loss = (out["mel"] - mel).abs().mean() + 0.25 * dispersive_loss(out["latent"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(loss.item())
        assert out["latent"].shape == (2, 80, 2) and out["mel"].shape == mel.shape
    assert history[-1] < 0.7 * history[0], history
