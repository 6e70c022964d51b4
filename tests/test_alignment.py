"""Alignment losses: the Semantic-VAE fixture, the L1/MSE/VF variants, masks, adaptive weighting."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.config import build_config
from semlat.errors import ConfigError
from semlat.semantic.alignment import (
    AlignmentConfig,
    LatentToTeacher,
    TeacherPCA,
    adaptive_weight,
    distance_matrix_loss,
    frame_loss,
    frame_mask,
    interpolate_features,
    latent_valid_frames,
    mean_cosine,
)
from semlat.semantic.regulator import InterpolateRegulator


def test_cosine_alignment_matches_semantic_vae(fixtures):
    io = load_file(fixture_file(fixtures, "semantic_vae/regulator_tiny_io.safetensors"))
    weights = load_file(fixture_file(fixtures, "semantic_vae/regulator_tiny.safetensors"))
    loss = frame_loss(io["align_z"], io["align_proj"], io["align_mask"], "cosine")
    torch.testing.assert_close(loss, io["align_loss"], rtol=1e-5, atol=1e-7)
    short = frame_loss(io["align_z"], io["align_proj_short"], io["align_mask_short"], "cosine")
    torch.testing.assert_close(short, io["align_loss_short"], rtol=1e-5, atol=1e-7)
    # the projection itself: the regulator on the guidance, at the latent length (20 frames)
    regulator = InterpolateRegulator(32, 16, 8, num_blocks=2)
    regulator.load_state_dict(weights)
    proj, _ = regulator(io["reg_ssl_in"], torch.tensor([25, 25]), torch.tensor([20, 20]))
    torch.testing.assert_close(proj, io["align_proj"], atol=1e-5, rtol=1e-4)


def test_frame_losses_respect_masks_and_definitions():
    torch.manual_seed(0)
    a, b = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    mask = frame_mask(torch.tensor([6, 3]), 6)
    b_noisy = b.clone()
    b_noisy[1, 3:] = 1e3  # masked frames must not matter
    for kind in ("cosine", "l1", "mse", "margin_cosine"):
        torch.testing.assert_close(frame_loss(a, b, mask, kind), frame_loss(a, b_noisy, mask, kind))
    l1 = frame_loss(a, b, mask, "l1")
    manual = torch.stack([(a[0] - b[0]).abs().mean(-1).mean(), (a[1, :3] - b[1, :3]).abs().mean(-1).mean()]).mean()
    torch.testing.assert_close(l1, manual)
    assert float(frame_loss(a, a, mask, "cosine")) == pytest.approx(-1.0)
    assert float(mean_cosine(a, 2 * a, mask)) == pytest.approx(1.0)
    assert float(frame_loss(a, a, mask, "margin_cosine", margin=0.5)) == 0.0  # cos 1 is past the margin
    assert float(frame_loss(a, -a, mask, "margin_cosine", margin=0.5)) == pytest.approx(1.5)


def test_distance_matrix_loss():
    torch.manual_seed(0)
    a = torch.randn(2, 8, 5)
    mask = frame_mask(torch.tensor([8, 5]), 8)
    assert float(distance_matrix_loss(a, a, mask)) == 0.0
    projected = a @ torch.linalg.qr(torch.randn(5, 5))[0]  # a rotation keeps every cosine
    assert float(distance_matrix_loss(a, projected, mask)) < 1e-6
    unrelated = torch.randn(2, 8, 5)
    assert float(distance_matrix_loss(a, unrelated, mask, margin=0.0)) > float(distance_matrix_loss(a, unrelated, mask))


def test_interpolation_and_valid_frames():
    features = torch.arange(10.0).reshape(1, 10, 1).expand(1, 10, 3)
    out = interpolate_features(features, 8)
    assert out.shape == (1, 8, 3) and torch.all(out[0, 1:, 0] > out[0, :-1, 0])
    valid = latent_valid_frames(torch.tensor([50, 25, 3]), 50.0, 40.0, 40)
    assert valid.tolist() == [40, 20, 2]
    assert latent_valid_frames(torch.tensor([100]), 50.0, 40.0, 40).tolist() == [40]


def test_adaptive_weight_is_the_gradient_norm_ratio():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(3, 4)
    y = layer(x)
    rec, align = y.square().mean(), 10 * y.sum()
    weight = adaptive_weight(rec, align, layer.weight)
    g_rec = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    g_align = torch.autograd.grad(align, layer.weight, retain_graph=True)[0]
    torch.testing.assert_close(weight, g_rec.norm() / (g_align.norm() + 1e-6))
    assert not weight.requires_grad


def test_projector_and_config_errors():
    assert LatentToTeacher(16, 32, hidden=8)(torch.randn(2, 5, 16)).shape == (2, 5, 32)
    linear = LatentToTeacher(16, 32, hidden=0)  # a linear read-out: the teacher must be linearly in the latent
    z = torch.randn(2, 5, 16)
    assert len(linear.net) == 1 and torch.allclose(linear(2 * z) - linear(z), linear(z) - linear(0 * z), atol=1e-5)
    assert not AlignmentConfig().enabled and not AlignmentConfig(teacher="hf:/x", weight=0).enabled
    for override, pattern in [("loss=cos", "loss must be one of"), ("direction=up", "direction must be one of"),
                              ("weight=-1", "weight must be >= 0"), ("cache=/c", "cache is set but"),
                              ("projector_hidden=-1", "projector_hidden must be >= 0"),
                              ("pca_channels=0", "pca_channels and"),
                              ("direction=teacher_pca,loss=vf", "takes cosine, l1 or mse")]:
        with pytest.raises(ConfigError, match=pattern):
            build_config(AlignmentConfig, [], override.split(","))


def test_teacher_pca_finds_the_principal_directions_and_whitens_them():
    """Frames with variances 9, 4, 1, 0.01 along a random orthonormal basis: the top two components are the
    first two basis vectors (up to sign, fixed by the largest entry), their outputs uncorrelated with unit
    variance, and the explained fractions 9 / 14.01 and 4 / 14.01."""
    torch.manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    scores = torch.randn(20000, 4, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0, 0.1], dtype=torch.float64)
    frames = (scores @ basis.T + torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)).float()
    pca = TeacherPCA(4, 2)
    explained = pca.fit(frames)
    for k in range(2):
        assert abs(float(pca.components[k].double() @ basis[:, k])) == pytest.approx(1.0, abs=2e-3)
        assert float(pca.components[k, pca.components[k].abs().argmax()]) > 0
    torch.testing.assert_close(explained, torch.tensor([9 / 14.01, 4 / 14.01]), atol=1e-2, rtol=0)
    out = pca(frames[None])[0]
    assert out.shape == (20000, 2)
    torch.testing.assert_close(torch.cov(out.T), torch.eye(2), atol=2e-3, rtol=0)
    assert TeacherPCA(4, 2).state_dict().keys() == {"mean", "components", "scale"}  # buffers only: never trained
    with pytest.raises(ConfigError, match="5 components of 4-dim"):
        TeacherPCA(4, 5)
    with pytest.raises(ConfigError, match="cannot fit"):
        pca.fit(torch.randn(10, 3))
