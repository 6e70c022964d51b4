"""The phase-aware reconstruction losses (semlat.losses.phase) and their wave_vae recipe options."""

from __future__ import annotations

import math

import pytest
import torch

from semlat.configs import builtin_config
from semlat.losses.phase import ComplexSTFTLoss, PhaseLoss, anti_wrap
from semlat.training.recipes import load_recipe

SR = 16000


def _harmonic(f0: float, seconds: float = 0.5, phase: float = 0.0) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    x = sum(0.3 / k * torch.sin(2 * math.pi * k * f0 * t + k * phase) for k in range(1, 6))
    return x[None, None]


def test_anti_wrap():
    x = torch.tensor([0.0, math.pi / 2, -math.pi / 2, 2 * math.pi, 2 * math.pi + 0.3, -0.3 - 4 * math.pi, 3.0])
    expected = torch.tensor([0.0, math.pi / 2, math.pi / 2, 0.0, 0.3, 0.3, 3.0])
    torch.testing.assert_close(anti_wrap(x), expected, atol=1e-5, rtol=0)
    assert anti_wrap(torch.linspace(-20, 20, 101)).max() <= math.pi + 1e-6


def test_losses_vanish_on_identical_audio():
    y = _harmonic(140.0)
    for name, value in PhaseLoss().terms(y, y).items():
        assert float(value) < 1e-3, name
    assert float(ComplexSTFTLoss()(y, y)) == 0.0


def test_phase_loss_separates_pitch_and_noise():
    """The right pitch scores better than a wrong one, which scores better than noise of the same level."""
    torch.manual_seed(0)
    reference = _harmonic(140.0)
    right, wrong = _harmonic(140.0, phase=0.7), _harmonic(160.0)
    noise = torch.randn_like(reference) * reference.std()
    loss = PhaseLoss()
    iaf = [float(loss.terms(x, reference)["iaf"]) for x in (right, wrong, noise)]
    assert iaf[0] < 0.5 * iaf[1] and iaf[1] < iaf[2]
    assert float(loss(right, reference)) < float(loss(wrong, reference)) < float(loss(noise, reference))
    # the magnitude is not what it measures: a louder copy costs nothing
    assert float(loss(3 * reference, reference)) < 1e-3


def test_phase_loss_ip_weight():
    reference, shifted = _harmonic(140.0), _harmonic(140.0, phase=1.0)
    full, no_ip = PhaseLoss(ip_weight=1.0), PhaseLoss(ip_weight=0.0)
    terms = full.terms(shifted, reference)
    assert float(terms["ip"]) > 0.5
    torch.testing.assert_close(full(shifted, reference), terms["ip"] + terms["gd"] + terms["iaf"])
    torch.testing.assert_close(no_ip(shifted, reference), terms["gd"] + terms["iaf"])


def test_complex_stft_loss_sees_phase():
    """Same magnitude spectrum, different phase: the complex loss is far from 0 (a magnitude loss would not be)."""
    reference, shifted = _harmonic(140.0), _harmonic(140.0, phase=math.pi / 2)
    loss = ComplexSTFTLoss(compress=1.0)
    assert float(loss(shifted, reference)) > 0.3 * float(loss(torch.zeros_like(reference), reference))


@pytest.mark.parametrize("make", [PhaseLoss, ComplexSTFTLoss])
def test_gradients_are_finite_even_from_silence(make):
    reference = _harmonic(140.0)
    for start in (torch.zeros_like(reference), 0.1 * torch.randn_like(reference)):
        x = start.clone().requires_grad_()
        make()(x, reference).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_phase_loss_training_reduces_the_loss():
    """A few Adam steps on a free waveform lower the phase loss (the gradient points the right way)."""
    torch.manual_seed(0)
    reference = _harmonic(140.0, seconds=0.25)
    x = (0.1 * torch.randn_like(reference)).requires_grad_()
    loss = PhaseLoss(windows=(256,))
    opt = torch.optim.Adam([x], lr=3e-3)
    first = float(loss(x, reference).detach())
    for _ in range(30):
        opt.zero_grad()
        value = loss(x, reference)
        value.backward()
        opt.step()
    assert float(loss(x, reference).detach()) < 0.8 * first


def test_bad_windows():
    with pytest.raises(ValueError, match="multiples of 4"):
        PhaseLoss(windows=(255,))
    with pytest.raises(ValueError, match="at least one"):
        ComplexSTFTLoss(windows=())
    with pytest.raises(ValueError, match="compress"):
        ComplexSTFTLoss(compress=0.0)


def test_recipe_terms_follow_the_config(tmp_path):
    """Off in the paper config; each weight > 0 adds its term, weighted, to the generator loss."""
    _, paper = load_recipe(builtin_config("wave_vae/paper"), [])
    assert paper.loss.phase == paper.loss.complex_stft == paper.loss.waveform == 0.0

    recipe_cls, config = load_recipe(builtin_config("wave_vae/tiny"), [
        f"run_dir={tmp_path}", "loss.phase=2.0", "loss.complex_stft=3.0", "loss.waveform=4.0",
        "loss.stft_windows=[256]"])

    class _Trainer:
        device = torch.device("cpu")

    recipe = recipe_cls(config, _Trainer())
    real = _harmonic(140.0)
    fake = _harmonic(150.0)
    out = {"kl": torch.tensor(0.5)}
    terms = {name: (value, weight) for name, value, weight in recipe.reconstruction_terms({}, out, fake, real)}
    assert set(terms) == {"mel", "kl", "phase", "complex_stft", "waveform"}
    assert terms["phase"][1] == 2.0 and terms["complex_stft"][1] == 3.0 and terms["waveform"][1] == 4.0
    torch.testing.assert_close(terms["phase"][0], PhaseLoss(windows=(256,))(fake, real))
    torch.testing.assert_close(terms["waveform"][0], (fake - real).abs().mean())
    assert float(terms["complex_stft"][0]) > 0
