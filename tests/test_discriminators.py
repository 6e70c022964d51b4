"""Waveform discriminators (MPD + multi-band STFT MRD) and the LSGAN losses against Semantic-VAE's."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.checkpoints import load_state_dict_strict
from semlat.losses import (
    MultiBandSTFTDiscriminator,
    PeriodDiscriminator,
    WaveDiscriminator,
    WaveDiscriminatorConfig,
    discriminate_pair,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semlat.losses.discriminators import band_edges

FIXTURE = "semantic_vae/discriminator_tiny"
TINY_WIDTHS = {"mpd_channels": (8, 16, 32, 64, 64), "mrd_channels": 8}


def tiny_discriminator(seed: int = 0) -> WaveDiscriminator:
    torch.manual_seed(seed)
    return WaveDiscriminator(**TINY_WIDTHS)


@pytest.fixture(scope="module")
def reference(fixtures):
    """(tiny discriminator with the fixture weights, io tensors, fixture config, our outputs)."""
    cfg = json.loads(fixture_file(fixtures, f"{FIXTURE}_config.json").read_text())
    widths = cfg["width_override_for_this_fixture"]
    config = WaveDiscriminatorConfig.from_reference(
        cfg["Discriminator"], mpd_channels=widths["MPD_conv_channels"]["tiny"][1:],
        mrd_channels=widths["MRD_ch"]["tiny"],
    )
    assert config == WaveDiscriminatorConfig(**TINY_WIDTHS)
    disc = WaveDiscriminator.from_config(config)
    load_state_dict_strict(disc, load_file(fixture_file(fixtures, f"{FIXTURE}.safetensors")), FIXTURE)
    io = load_file(fixture_file(fixtures, f"{FIXTURE}_io.safetensors"))
    assert disc.names == cfg["discriminator_order"]
    with torch.no_grad():
        outputs = {kind: disc(io[kind]) for kind in ("real", "fake")}
    return disc, io, cfg, outputs


def stats(fmaps: list[torch.Tensor]) -> torch.Tensor:
    """``[n_maps, 3]``: (sum, sum|x|, sum x^2) of every map, in float64."""
    return torch.stack([torch.stack([m.double().sum(), m.double().abs().sum(), m.double().square().sum()])
                        for m in fmaps])


def test_preprocess_matches_reference(reference):
    disc, io, _, _ = reference
    torch.testing.assert_close(disc.preprocess(io["real"]), io["preprocessed_real"], atol=1e-6, rtol=1e-5)
    fake = disc.preprocess(io["fake"])  # the +0.02 DC offset is removed, the peak is 0.8
    torch.testing.assert_close(fake.mean(-1), torch.zeros(2, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(fake.abs().amax(-1), torch.full((2, 1), 0.8), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["real", "fake"])
def test_feature_maps_match_reference(reference, kind):
    disc, io, cfg, outputs = reference
    for name, fmaps in zip(disc.names, outputs[kind], strict=True):
        if kind == "real":
            assert [list(m.shape) for m in fmaps] == cfg["fmap_shapes_for_real_input"][name], name
        torch.testing.assert_close(fmaps[-1], io[f"logits_{kind}.{name}"], atol=1e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(stats(fmaps), io[f"fmap_stats_{kind}.{name}"].double(), atol=0, rtol=1e-4,
                                   msg=name)
    if kind == "real":
        for j, fmap in enumerate(outputs["real"][0]):
            torch.testing.assert_close(fmap, io[f"fmaps_real.mpd2.{j}"], atol=1e-5, rtol=1e-4)


def test_band_spectrograms_match_reference(reference):
    disc, io, _, _ = reference
    mrd512 = disc.discriminators[disc.names.index("mrd512")]
    assert mrd512.bands == [(0, 25), (25, 64), (64, 128), (128, 192), (192, 257)]
    bands = mrd512.spectrogram(io["preprocessed_real"])
    assert len(bands) == 5
    for k, band in enumerate(bands):
        torch.testing.assert_close(band, io[f"mrd512_spec_band{k}"], atol=1e-4, rtol=1e-5)


def test_gan_losses_match_reference(reference):
    _, io, _, outputs = reference
    fake, real = outputs["fake"], outputs["real"]
    torch.testing.assert_close(discriminator_loss(fake, real), io["loss_d"], atol=0, rtol=1e-5)
    torch.testing.assert_close(generator_adversarial_loss(fake), io["loss_g_adv"], atol=0, rtol=1e-5)
    torch.testing.assert_close(feature_matching_loss(fake, real), io["loss_g_feat"], atol=0, rtol=1e-5)


def test_discriminate_pair_equals_separate_calls(reference):
    disc, io, _, outputs = reference
    with torch.no_grad():
        fake, real = discriminate_pair(disc, io["fake"], io["real"])
    for batched, separate in ((fake, outputs["fake"]), (real, outputs["real"])):
        for maps_b, maps_s in zip(batched, separate, strict=True):
            for b, s in zip(maps_b, maps_s, strict=True):
                torch.testing.assert_close(b, s, atol=1e-5, rtol=1e-4)


def test_full_size_keys_and_shapes(fixtures):
    listing = json.loads(fixture_file(fixtures, "semantic_vae/keys_discriminator.json").read_text())
    with torch.device("meta"):
        disc = WaveDiscriminator()
    shapes = {k: list(v.shape) for k, v in disc.state_dict().items()}
    assert len(shapes) == len(listing) == 324
    assert shapes == listing
    assert sum(p.numel() for p in disc.parameters()) == pytest.approx(42.52e6, rel=1e-3)


def test_config_round_trip():
    disc = tiny_discriminator()
    text = json.dumps(dataclasses.asdict(disc.config))
    again = WaveDiscriminator.from_config(json.loads(text))
    assert again.config == disc.config
    assert again.state_dict().keys() == disc.state_dict().keys()
    with torch.device("meta"):
        assert WaveDiscriminator().config == WaveDiscriminatorConfig()
    with pytest.raises(ValueError, match="unknown"):
        WaveDiscriminatorConfig.from_dict({"periods": [2], "rate": 3})
    with pytest.raises(ValueError, match="not implemented"):
        WaveDiscriminatorConfig.from_reference({"rates": [1]})


@pytest.mark.parametrize("length,rows", [(8000, 4001), (7999, 4000)])
def test_period_fold_pads_at_least_one_sample(length, rows):
    mpd = PeriodDiscriminator(2, channels=(2, 2))
    audio = torch.randn(1, 1, length)
    folded = mpd.fold(audio)
    assert folded.shape == (1, 1, rows, 2)
    torch.testing.assert_close(folded.flatten()[:length], audio.flatten())  # row t // p, column t % p
    assert folded.flatten()[length] == audio[0, 0, -2]  # reflection, not the repeated last sample


def test_band_edges():
    assert band_edges(2048, [(0.0, 0.1), (0.1, 0.25)]) == [(0, 102), (102, 256)]


def test_losses_on_hand_made_maps():
    fake = [[torch.tensor([1.0, 3.0]), torch.tensor([0.5])], [torch.tensor([2.0])]]
    real = [[torch.tensor([0.0, 1.0]), torch.tensor([2.0])], [torch.tensor([1.0])]]
    # D: (0.25 + (1-2)^2) + (4 + 0); G adv: (1-0.5)^2 + (1-2)^2; features: mean(|1|, |2|) only (D1 has no hidden map)
    assert discriminator_loss(fake, real).item() == pytest.approx(0.25 + 1.0 + 4.0 + 0.0)
    assert generator_adversarial_loss(fake).item() == pytest.approx(0.25 + 1.0)
    assert feature_matching_loss(fake, real).item() == pytest.approx(1.5)
    with pytest.raises(ValueError):
        discriminator_loss(fake, real[:1])


def test_gradients_flow():
    disc = tiny_discriminator()
    torch.manual_seed(1)
    real = torch.randn(2, 1, 2400)
    fake = (0.5 * torch.randn(2, 1, 2400)).requires_grad_()

    fake_maps, real_maps = discriminate_pair(disc, fake.detach(), real)
    discriminator_loss(fake_maps, real_maps).backward()
    for name, param in disc.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert fake.grad is None

    disc.zero_grad(set_to_none=True)
    fake_maps = disc(fake)
    with torch.no_grad():
        real_maps = disc(real)
    loss = generator_adversarial_loss(fake_maps) + feature_matching_loss(fake_maps, real_maps)
    loss.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [
    lambda: PeriodDiscriminator(3, channels=(2, 3)),
    lambda: MultiBandSTFTDiscriminator(64, bands=((0.0, 0.3), (0.3, 1.0)), channels=2),
])
def test_input_gradient_is_exact(make):
    """In-place activations and the STFT framing give the true gradient (float64 gradcheck)."""
    torch.manual_seed(0)
    module = make().double()
    audio = torch.randn(1, 1, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tuple(module(x)), (audio,), eps=1e-6, atol=1e-5)


def test_rejects_bad_input():
    disc = tiny_discriminator()
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        disc(torch.zeros(2, 2, 4000))
