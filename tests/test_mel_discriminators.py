"""DC-Speech-VAE mel discriminators (band ``DiscriminatorR`` + PatchGAN) and their LSGAN losses
against the reference fixtures (``dc_speech_vae/disc_tiny*``)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.checkpoints import check_state_dict, load_state_dict_strict
from semlat.errors import CheckpointError
from semlat.losses.adversarial import (
    discriminate_pair,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semlat.losses.mel_discriminators import (
    DISPERSIVE_WEIGHT,
    FEATURE_MATCHING_WEIGHT,
    RECON_L1_WEIGHT,
    MelBandDiscriminator,
    MelDiscriminator,
    MelDiscriminatorConfig,
    PatchGANDiscriminator,
    mel_band_edges,
    patchgan_output_length,
)

FIXTURE = "dc_speech_vae/disc_tiny"
ATOL = 5e-5  # discriminator outputs (README: f64 vs f32 up to 6.6e-6 on values up to ~8)
LOSS_RTOL = 1e-5
SMALL = {"n_mels": 16, "bands": 4, "band_channels": 3, "patchgan_channels": (4, 6, 8)}  # PatchGAN min 16


def small_discriminator(seed: int = 0, **overrides) -> MelDiscriminator:
    torch.manual_seed(seed)
    return MelDiscriminator(**{**SMALL, **overrides})


@pytest.fixture(scope="module")
def reference(fixtures):
    """(tiny discriminator with the fixture weights, io tensors, fixture config, our outputs)."""
    cfg = json.loads(fixture_file(fixtures, f"{FIXTURE}_config.json").read_text())
    band_cfg = cfg["discriminators.0 (DiscriminatorR)"]
    patch_cfg = cfg["discriminators.1 (DiscriminatorPatchGAN)"]
    assert (patch_cfg["kernel"], patch_cfg["stride"], patch_cfg["padding"]) == (4, 2, 1)
    assert (patch_cfg["post_kernel"], patch_cfg["post_stride"], patch_cfg["post_padding"]) == (4, 1, 1)
    config = MelDiscriminatorConfig.from_dict({
        "n_mels": cfg["AEDiscriminator"]["n_mel_bins"], "bands": len(band_cfg["bands"]),
        "band_channels": band_cfg["channels"], "patchgan_channels": patch_cfg["conv_channels"],
    })
    assert tuple(patch_cfg["reference_conv_channels"]) == MelDiscriminatorConfig().patchgan_channels
    disc = MelDiscriminator.from_config(config).eval()
    assert disc.discriminators[0].bands == [tuple(b) for b in band_cfg["bands"]]
    load_state_dict_strict(disc, load_file(fixture_file(fixtures, f"{FIXTURE}.safetensors")), FIXTURE)
    io = load_file(fixture_file(fixtures, f"{FIXTURE}_io.safetensors"))
    with torch.no_grad():
        outputs = {"real": disc(io["y"]), "fake": disc(io["y_hat"])}
    return disc, io, cfg, outputs


def test_output_structure(reference):
    disc, io, _, outputs = reference
    assert disc.names == ["band", "patchgan"]
    band, patch = outputs["real"]
    assert len(band) == 41 + 1 and len(patch) == 5 + 1  # reference maps, then the score repeated
    assert band[-1] is band[-2] and patch[-1] is patch[-2]
    assert [tuple(m.shape) for m in band[:4]] == [(2, 32, 128, 8)] * 4
    assert band[-1].shape == (2, 1, 128, 80)
    assert [tuple(m.shape) for m in patch[:-1]] == [
        (2, 8, 32, 20), (2, 16, 16, 10), (2, 32, 8, 5), (2, 64, 4, 2), (2, 1, 3, 1)]
    assert io["y"].shape == (2, 80, 128)


@pytest.mark.parametrize("kind", ["real", "fake"])
def test_scores_and_feature_maps_match_reference(reference, kind):
    _, io, _, outputs = reference
    for d, maps in enumerate(outputs[kind]):
        torch.testing.assert_close(maps[-1], io[f"d_{kind}_{d}"], atol=ATOL, rtol=0)
        absmeans = torch.stack([m.abs().mean() for m in maps[:-1]])
        torch.testing.assert_close(absmeans, io[f"fmap_{kind}_absmean_{d}"], atol=ATOL, rtol=1e-5)
    if kind == "real":
        for i, fmap in enumerate(outputs["real"][1][:-1]):
            torch.testing.assert_close(fmap, io[f"patchgan_fmap_real_{i}"], atol=ATOL, rtol=0)


def test_feature_matching_terms_match_reference(reference):
    _, io, _, outputs = reference
    terms = torch.stack([
        (r - g).abs().mean()
        for maps_r, maps_g in zip(outputs["real"], outputs["fake"], strict=True)
        for r, g in zip(maps_r[:-1], maps_g[:-1], strict=True)
    ])
    assert terms.shape == io["fm_terms"].shape == (46,)
    torch.testing.assert_close(terms, io["fm_terms"], atol=ATOL, rtol=1e-5)


def test_gan_losses_match_reference(reference):
    """The generic LSGAN losses reproduce the reference with feature matching weighted by 2."""
    _, io, _, outputs = reference
    fake, real = outputs["fake"], outputs["real"]

    def close(value, name):
        torch.testing.assert_close(value, io[name], atol=0, rtol=LOSS_RTOL, msg=name)

    close(discriminator_loss(fake, real), "loss_disc")
    close(torch.stack([(1 - r[-1]).square().mean() for r in real]), "loss_disc_real_terms")
    close(torch.stack([f[-1].square().mean() for f in fake]), "loss_disc_fake_terms")
    close(generator_adversarial_loss(fake), "loss_gen")
    close(torch.stack([generator_adversarial_loss([f]) for f in fake]), "loss_gen_terms")
    fm = FEATURE_MATCHING_WEIGHT * feature_matching_loss(fake, real)
    close(fm, "loss_fm")

    recon = F.l1_loss(io["y_hat"], io["y"])
    close(recon, "loss_recon_l1")
    total = generator_adversarial_loss(fake) + fm + RECON_L1_WEIGHT * recon + DISPERSIVE_WEIGHT * io["loss_disp"]
    close(total, "loss_gen_all")


def test_discriminate_pair_equals_separate_calls():
    disc = small_discriminator()
    torch.manual_seed(2)
    fake, real = torch.randn(2, 16, 24), torch.randn(3, 16, 24)
    with torch.no_grad():
        batched = discriminate_pair(disc, fake, real)
        separate = (disc(fake), disc(real))
    for maps_b, maps_s in zip(batched, separate, strict=True):
        for d_b, d_s in zip(maps_b, maps_s, strict=True):
            for b, s in zip(d_b, d_s, strict=True):
                torch.testing.assert_close(b, s, atol=1e-6, rtol=1e-5)


def test_full_size_keys_and_shapes(fixtures):
    listing = json.loads(fixture_file(fixtures, "dc_speech_vae/keys_discriminator_n_mel_bins80.json").read_text())
    with torch.device("meta"):
        disc = MelDiscriminator()
    assert disc.config == MelDiscriminatorConfig()
    shapes = {k: list(v.shape) for k, v in disc.state_dict().items()}
    assert shapes == listing
    assert sum(p.numel() for p in disc.parameters()) == 3_170_980
    state = {k: torch.empty(shape, device="meta") for k, shape in listing.items()}
    check_state_dict(disc.state_dict(), state, "keys_discriminator_n_mel_bins80")  # accepted


def test_missing_key_is_a_one_line_error(reference):
    disc, _, _, _ = reference
    state = dict(disc.state_dict())
    gone = "discriminators.1.convs.2.parametrizations.weight.original0"
    del state[gone]
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(disc, state, "discriminator_700000.pt")
    message = str(err.value)
    assert "\n" not in message and gone in message and "1 missing key" in message


def test_band_edges():
    assert mel_band_edges(80, 10) == [(8 * k, 8 * k + 8) for k in range(10)]
    assert mel_band_edges(16, 3) == [(0, 5), (5, 10), (10, 16)]
    with pytest.raises(ValueError, match="bands"):
        mel_band_edges(8, 9)


def test_gradients_flow():
    disc = small_discriminator()
    torch.manual_seed(1)
    real = torch.randn(2, 16, 20)
    fake = (0.5 * torch.randn(2, 16, 20)).requires_grad_()

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
    loss = generator_adversarial_loss(fake_maps) + FEATURE_MATCHING_WEIGHT * feature_matching_loss(fake_maps, real_maps)
    loss.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [
    lambda: MelBandDiscriminator(n_mels=8, bands=2, channels=2),
    lambda: PatchGANDiscriminator(channels=(2, 3)),
])
def test_input_gradient_is_exact(make):
    """The in-place activations give the true gradient (float64 gradcheck)."""
    torch.manual_seed(0)
    module = make().double()
    mel = torch.randn(1, 8, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tuple(module(x)), (mel,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_feature_maps_are_post_activation():
    """Hidden maps are LeakyReLU outputs (negative values are scaled by 0.1, not raw conv outputs)."""
    torch.manual_seed(0)
    band = MelBandDiscriminator(n_mels=8, bands=2, channels=2)
    mel = torch.randn(1, 8, 9)
    with torch.no_grad():
        maps = band(mel)
        stack = band.band_convs[0]
        x = F.leaky_relu(stack[0](rearrange(mel, "b m t -> b 1 t m")[..., 0:4]), 0.1)
        expected = F.leaky_relu(stack[1](x), 0.1)
    torch.testing.assert_close(maps[0], expected)


def test_rejects_bad_input():
    disc = small_discriminator()
    for bad, pattern in ((torch.zeros(2, 1, 16, 20), "4-D"), (torch.zeros(2, 15, 20), r"\[B, 16, T\]")):
        with pytest.raises(ValueError, match=pattern) as err:
            disc(bad)
        assert "\n" not in str(err.value)


def test_short_and_odd_lengths():
    """Band discriminator: any T keeps [B, 1, T, n_mels]. PatchGAN: T >= 2^(n+1), floor per stride."""
    disc = small_discriminator()  # PatchGAN with 3 strided convs: minimum 16 frames
    with torch.no_grad():
        band_only = MelDiscriminator(**{**SMALL, "discriminators": ["band"]})
        assert band_only(torch.randn(1, 16, 1))[0][-1].shape == (1, 1, 1, 16)
        assert disc(torch.randn(1, 16, 16))[1][-1].shape == (1, 1, 1, 1)
        with pytest.raises(ValueError, match="at least 16 frames") as err:
            disc(torch.randn(1, 16, 15))
        assert "\n" not in str(err.value)
        for length in (33, 34, 35):
            band, patch = disc(torch.randn(1, 16, length))
            assert band[-1].shape == (1, 1, length, 16)
            assert patch[-1].shape == (1, 1, patchgan_output_length(length, 3), 1) == (1, 1, 3, 1)
    assert patchgan_output_length(129, 5) == patchgan_output_length(128, 5) == 3


def test_odd_length_every_frame_reaches_the_score(reference):
    """With an odd T the PatchGAN's right padding goes unused, but no frame is dropped."""
    disc, io, _, _ = reference
    patch = disc.discriminators[1]
    mel = torch.cat([io["y"], io["y"][..., :1]], dim=-1).requires_grad_()  # T = 129
    score = patch(mel)[-1]
    assert score.shape == (2, 1, 3, 1)
    score.sum().backward()
    assert (mel.grad.abs().sum(dim=(0, 1)) > 0).all()


def test_config_round_trip_and_validation():
    disc = small_discriminator()
    text = json.dumps(dataclasses.asdict(disc.config))
    again = MelDiscriminator.from_config(json.loads(text))
    assert again.config == disc.config
    assert again.state_dict().keys() == disc.state_dict().keys()

    patch_only = MelDiscriminator.from_config({**SMALL, "discriminators": ["patchgan"]})
    assert patch_only.names == ["patchgan"]
    assert {k.split(".")[2] for k in patch_only.state_dict()} == {"convs", "conv_post"}
    assert all(k.startswith("discriminators.0.") for k in patch_only.state_dict())

    with pytest.raises(ValueError, match="unknown"):
        MelDiscriminatorConfig.from_dict({"n_mels": 80, "n_mel_bins": 80})
    with pytest.raises(ValueError, match="discriminators"):
        MelDiscriminatorConfig(discriminators=("band", "band"))
    with pytest.raises(ValueError, match="discriminators"):
        MelDiscriminatorConfig(discriminators=("msd",))
    with pytest.raises(ValueError, match="n_mels >= 64"):
        MelDiscriminatorConfig(n_mels=40)
    MelDiscriminatorConfig(n_mels=40, discriminators=("band",))  # fine without the PatchGAN
