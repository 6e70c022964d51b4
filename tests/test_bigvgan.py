"""BigVGAN generator: parity with the reference fixture, weight-norm removal, and every released config's keys."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.errors import ConfigError
from semlat.nn.weight_norm import has_weight_norm, legacy_to_parametrized
from semlat.vocoders.bigvgan import BigVGAN, BigVGANConfig

_V2 = {"use_tanh_at_final": False, "use_bias_at_final": False}
_FULL = {"upsample_rates": (4, 4, 2, 2, 2, 2), "upsample_kernel_sizes": (8, 8, 4, 4, 4, 4),
         "upsample_initial_channel": 1536}
_BASE = {"upsample_rates": (8, 8, 2, 2), "upsample_kernel_sizes": (16, 16, 4, 4), "upsample_initial_channel": 512}

#: config name -> (architecture, trainable parameter count with weight norm) from BigVGAN v2.4's configs/.
RELEASED = {
    "bigvgan_v2_22khz_80band_256x": ({"num_mels": 80, **_FULL, **_V2}, 112_231_249),
    "bigvgan_v2_22khz_80band_fmax8k_256x": ({"num_mels": 80, **_FULL, **_V2}, 112_231_249),
    "bigvgan_v2_24khz_100band_256x": ({"num_mels": 100, **_FULL, **_V2}, 112_446_289),
    "bigvgan_v2_44khz_128band_256x": ({"num_mels": 128, **_FULL, **_V2}, 112_747_345),
    "bigvgan_v2_44khz_128band_512x": ({"num_mels": 128, **_FULL, **_V2, "upsample_rates": (8, 4, 2, 2, 2, 2),
                                       "upsample_kernel_sizes": (16, 8, 4, 4, 4, 4)}, 122_184_529),
    "bigvgan_22khz_80band": ({"num_mels": 80, **_FULL}, 112_231_250),
    "bigvgan_24khz_100band": ({"num_mels": 100, **_FULL}, 112_446_290),
    "bigvgan_base_22khz_80band": ({"num_mels": 80, **_BASE}, 13_953_474),
    "bigvgan_base_24khz_100band": ({"num_mels": 100, **_BASE}, 14_025_154),
}


@pytest.fixture(scope="module")
def tiny(fixtures):
    config = json.loads(fixture_file(fixtures, "bigvgan/generator_tiny_config.json").read_text())
    state = legacy_to_parametrized(load_file(fixture_file(fixtures, "bigvgan/generator_tiny.safetensors")))
    io = load_file(fixture_file(fixtures, "bigvgan/generator_tiny_io.safetensors"))
    model = BigVGAN.from_config(config).eval()
    model.load_state_dict(state, strict=True)
    return model, io


def test_config_from_json_ignores_training_keys(fixtures):
    data = json.loads(fixture_file(fixtures, "bigvgan/generator_tiny_config.json").read_text())
    config = BigVGANConfig.from_json_dict(data)
    assert config.upsample_rates == (4, 4, 2, 2, 2, 2) and config.upsample_initial_channel == 64
    assert config.sampling_rate == 22050 and config.hop_size == 256 and config.hop_length == 256
    assert not config.use_tanh_at_final and not config.use_bias_at_final
    v1 = {k: v for k, v in data.items() if not k.startswith("use_")}
    assert BigVGANConfig.from_json_dict(v1).use_tanh_at_final  # v1 files: tanh and a final bias
    with pytest.raises(ConfigError, match="missing key\\(s\\) num_mels"):
        BigVGANConfig.from_json_dict({k: v for k, v in data.items() if k != "num_mels"})
    with pytest.raises(ConfigError, match="attn_proj"):
        BigVGANConfig.from_json_dict({**data, "attn_proj": True})
    with pytest.raises(ConfigError, match="resblock"):
        BigVGANConfig(resblock="3")
    with pytest.raises(ConfigError, match="too small"):
        BigVGANConfig(upsample_initial_channel=32)


def test_tiny_generator_reproduces_reference(tiny):
    model, io = tiny
    with torch.inference_mode():
        preclamp = model.forward_unbounded(io["mel_in"])
        audio = model(io["mel_in"])
    assert audio.shape == (2, 1, 5120)
    torch.testing.assert_close(preclamp, io["audio_out_preclamp"], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(audio, io["audio_out"], atol=2e-5, rtol=1e-4)


def test_weight_norm_removal_matches_reference_file(fixtures, tiny):
    model, io = tiny
    removed_state = load_file(fixture_file(fixtures, "bigvgan/generator_tiny_wn_removed.safetensors"))
    plain = BigVGAN(model.config).eval()
    plain.load_state_dict(model.state_dict())
    plain.remove_weight_norm()
    assert not has_weight_norm(plain)
    ours = plain.state_dict()
    assert sorted(ours) == sorted(removed_state)
    for key, value in removed_state.items():
        torch.testing.assert_close(ours[key], value, atol=1e-6, rtol=1e-5)
    plain.load_state_dict(removed_state, strict=True)
    with torch.inference_mode():
        torch.testing.assert_close(plain(io["mel_in"]), io["audio_out_wn_removed"], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_config_keys_and_shapes(fixtures, name):
    listing = json.loads(fixture_file(fixtures, f"bigvgan/keys_{name}.json").read_text())
    expected = {k: list(v) for k, v in legacy_to_parametrized(listing).items()}
    arch, params = RELEASED[name]
    with torch.device("meta"):
        model = BigVGAN(BigVGANConfig(**arch))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == expected
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("overrides", [
    {"use_tanh_at_final": True, "use_bias_at_final": True},
    {"resblock": "2"},
    {"activation": "snake", "snake_logscale": False},
])
def test_variants_run_and_train(overrides):
    config = BigVGANConfig(num_mels=6, upsample_rates=(2, 2), upsample_kernel_sizes=(4, 4), upsample_initial_channel=8,
                           resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),), **overrides)
    model = BigVGAN(config)
    mel = torch.randn(2, 6, 9)
    audio = model(mel)
    assert audio.shape == (2, 1, 36) and audio.abs().max() <= 1
    audio.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    if config.resblock == "2":
        assert "resblocks.0.convs.1.bias" in model.state_dict()
