"""SemanticVocoder's flow-matching generator against the reference fixture: each branch, the x1 estimate,
the velocity, the 4-step Euler run (injected and seeded noise), the loss, and the released key listing."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.vocoders.flow_vocoder import FlowVocoder, FlowVocoderConfig

TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def io(fixtures):
    return load_file(fixture_file(fixtures, "semantic_vocoder/generator_tiny_io.safetensors"))


@pytest.fixture(scope="module")
def model(fixtures):
    kwargs = json.loads(fixture_file(fixtures, "semantic_vocoder/generator_tiny_config.json").read_text())["kwargs"]
    vocoder = FlowVocoder(FlowVocoderConfig(**kwargs)).eval()
    state = load_file(str(fixture_file(fixtures, "semantic_vocoder/generator_tiny.safetensors")))
    vocoder.load_state_dict(state, strict=True)
    return vocoder


def test_network_matches_the_reference(model, io):
    with torch.inference_mode():
        cond = model.cond_encoder(io["latent"])
        torch.testing.assert_close(cond, io["cond_enc"], **TOL)
        t = io["fwd_t"]
        for i, branch in enumerate(model.estimators):
            torch.testing.assert_close(branch(io["fwd_x_t"], cond, t.reshape(-1)), io[f"fwd_branch{i}_out"], **TOL)
        torch.testing.assert_close(model.predict(io["fwd_x_t"], cond, t), io["fwd_pred_x1"], **TOL)
        torch.testing.assert_close(model.velocity(io["fwd_x_t"], cond, t), io["fwd_velocity"], atol=5e-4, rtol=1e-4)


def test_euler_sampling_matches_the_reference(model, io):
    with torch.inference_mode():
        out = model.generate(io["latent"], steps=4, noise=io["euler_noise_unit"])
        torch.testing.assert_close(out, io["euler_audio_out"], **TOL)
        seeded = model.generate(io["latent"], steps=4, seed=2024)  # the reference draws under manual_seed(2024)
        torch.testing.assert_close(seeded, io["decode_out_seed2024"][:, 0], **TOL)


def test_loss_matches_the_reference(model, io):
    lengths = io["loss_audio_lens"]
    with torch.no_grad():
        spec = model.loss_spec(io["loss_x1"])
        torch.testing.assert_close(spec, io["loss_gt_spec"], rtol=1e-4, atol=1e-2)
        loss = model.loss(io["latent"], io["loss_x1"], lengths, x0=io["loss_x0"], t=io["loss_t"])
        torch.testing.assert_close(loss.reshape(1), io["loss_value"], rtol=1e-4, atol=0)
        plain = FlowVocoder(FlowVocoderConfig(**{**model.config.__dict__, "spec_scaling_loss": False})).eval()
        plain.load_state_dict(model.state_dict())
        mse = plain.loss(io["latent"], io["loss_x1"], lengths, x0=io["loss_x0"], t=io["loss_t"])
        torch.testing.assert_close(mse.reshape(1), io["loss_value_plain_mse"], rtol=1e-4, atol=0)
        torch.manual_seed(99)  # the reference draws x0, then t
        seeded = model.loss(io["latent"], io["loss_x1"], lengths)
        torch.testing.assert_close(seeded.reshape(1), io["forward_loss_seed99"], rtol=1e-4, atol=0)


def test_full_size_generator_accepts_the_released_key_listing(fixtures):
    listing = json.loads(fixture_file(fixtures, "semantic_vocoder/keys_generator_dasheng_base.json").read_text())
    meta = listing["_meta"]
    with torch.device("meta"):
        model = FlowVocoder(FlowVocoderConfig())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == listing["keys"], meta.get("status")


def test_time_grids():
    from semlat.errors import ConfigError
    from semlat.vocoders.flow_vocoder import decode_grid as time_grid

    assert torch.allclose(time_grid(4), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    sine = time_grid(4, "sine")
    assert sine[0] == 0 and sine[-1] == 1 and torch.all(sine[1:] > sine[:-1])
    assert sine[-2] > 0.9 and torch.allclose(sine[1], torch.tensor(0.38268343))  # dense near the audio end
    with pytest.raises(ConfigError, match="schedule must be one of"):
        time_grid(4, "cubic")


def test_time_referenced_phase_makes_a_steady_tone_constant_across_frames():
    import math

    from semlat.errors import ConfigError
    from semlat.vocoders.flow_vocoder import phase_rotation

    n_fft, hop = 512, 240
    tone = torch.cos(2 * math.pi * 20 * torch.arange(24000) / n_fft + 0.3)  # the centre of bin 20
    window = torch.hann_window(n_fft)
    spec = torch.stft(tone, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)
    frames = spec[20, 2:-2]
    assert (frames - frames[0]).abs().max() > 100  # torch.stft's frame-referenced phase turns every frame
    rotation = phase_rotation(n_fft, hop, spec.shape[-1])
    rotated = (spec * rotation)[20, 2:-2]
    assert (rotated - rotated[0]).abs().max() < 1e-2 * rotated[0].abs()
    back = torch.istft(spec * rotation * rotation.conj(), n_fft, hop, window=window, center=True)
    assert torch.allclose(back, tone[:back.shape[0]], atol=1e-4)
    # the option changes the network (same weights, another STFT convention) and names bad values
    torch.manual_seed(0)
    frame = FlowVocoder(FlowVocoderConfig.tiny()).eval()
    time = FlowVocoder(FlowVocoderConfig.tiny(phase_reference="time")).eval()
    time.load_state_dict(frame.state_dict(), strict=True)
    x, latents, t = torch.randn(1, 1920) * 0.1, torch.randn(1, 16, 2), torch.full((1, 1), 0.5)
    a = frame.predict(x, frame.cond_encoder(latents), t)
    b = time.predict(x, time.cond_encoder(latents), t)
    assert a.shape == b.shape == x.shape and not torch.allclose(a, b, atol=1e-3)
    with pytest.raises(ConfigError, match="phase_reference must be one of"):
        FlowVocoder(FlowVocoderConfig.tiny(phase_reference="absolute"))


def test_input_gain_starts_as_the_reference_network_and_then_filters_the_noisy_input():
    torch.manual_seed(0)
    gain = FlowVocoder(FlowVocoderConfig.tiny(input_gain=True)).eval()
    base = FlowVocoder(FlowVocoderConfig.tiny()).eval()
    extra = {k: v for k, v in gain.state_dict().items() if ".input_gain." in k}
    assert sorted(extra) == sorted(f"estimators.{i}.decoder.input_gain.{p}" for i in range(3) for p in ("weight", "bias"))
    base.load_state_dict({k: v for k, v in gain.state_dict().items() if k not in extra}, strict=True)
    x, latents, t = torch.randn(2, 1920) * 0.1, torch.randn(2, 16, 2), torch.full((2, 1), 0.3)
    assert torch.allclose(gain.predict(x, gain.cond_encoder(latents), t),
                          base.predict(x, base.cond_encoder(latents), t), atol=1e-6)  # zero-initialised
    with torch.no_grad():
        for branch in gain.estimators:
            branch.decoder.input_gain.bias.fill_(1.0)
    moved = gain.predict(x, gain.cond_encoder(latents), t) - base.predict(x, base.cond_encoder(latents), t)
    # a unit gain in every bin adds each branch's noisy input back: the mean over branches, x itself
    assert torch.allclose(moved, x, atol=1e-4)
