"""Snake activations, the anti-aliased activation (literal and polyphase forms) and the VAE bottleneck blocks."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.autoencoders.bottlenecks import AttnProjection, CausalAttention, gaussian_kl, reparameterize
from semlat.nn.activations import Snake, Snake1d, SnakeBeta, make_snake, snake
from semlat.nn.antialias import Activation1d, DownSample1d, UpSample1d, kaiser_sinc_filter


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return module


# --- Snake family ----------------------------------------------------------------------------------------------------

def test_snake1d_formula():
    act = _randomise(Snake1d(3))
    x = torch.randn(2, 3, 50)
    alpha = act.alpha
    expected = x + 1.0 / (alpha + 1e-9) * torch.sin(alpha * x) ** 2
    assert act.alpha.shape == (1, 3, 1)
    torch.testing.assert_close(act(x), expected)


@pytest.mark.parametrize("logscale", [True, False])
def test_snakebeta_and_snake_formulas(logscale):
    x = torch.randn(2, 4, 40)
    sb = _randomise(SnakeBeta(4, logscale=logscale))
    a, b = (sb.alpha.exp(), sb.beta.exp()) if logscale else (sb.alpha, sb.beta)
    expected = x + 1.0 / (b[:, None] + 1e-9) * torch.sin(a[:, None] * x) ** 2
    torch.testing.assert_close(sb(x), expected)
    assert sorted(dict(sb.named_parameters())) == ["alpha", "beta"] and sb.alpha.shape == (4,)
    s = _randomise(Snake(4, logscale=logscale))
    a = s.alpha.exp() if logscale else s.alpha
    torch.testing.assert_close(s(x), x + 1.0 / (a[:, None] + 1e-9) * torch.sin(a[:, None] * x) ** 2)
    assert list(s.state_dict()) == ["alpha"]
    assert isinstance(make_snake("snake", 2), Snake) and isinstance(make_snake("snakebeta", 2), SnakeBeta)
    with pytest.raises(ValueError, match="unknown activation"):
        make_snake("relu", 2)


def test_snake_fast_path_matches_autograd_path():
    x = torch.randn(2, 3, 30)
    freq, inv = torch.rand(3, 1) + 0.5, torch.rand(3, 1) + 0.5
    expected = x + inv * torch.sin(freq * x) ** 2
    with torch.no_grad():
        torch.testing.assert_close(snake(x.clone(), freq, inv), expected)
        y = x.clone()
        assert snake(y, freq, inv, inplace=True) is y
        torch.testing.assert_close(y, expected)
    xg = x.clone().requires_grad_()
    out = snake(xg, freq, inv, inplace=True)  # in-place is ignored while recording gradients
    out.sum().backward()
    torch.testing.assert_close(xg.grad, 1 + inv * torch.sin(2 * freq * x) * freq)


# --- anti-aliasing ---------------------------------------------------------------------------------------------------

def test_kaiser_filter_matches_reference_buffers(fixtures):
    state = load_file(fixture_file(fixtures, "bigvgan/generator_tiny.safetensors"))
    f = kaiser_sinc_filter()
    assert f.shape == (1, 1, 12) and f.dtype == torch.float32
    assert torch.equal(f, state["activation_post.upsample.filter"])
    assert torch.equal(f, state["activation_post.downsample.lowpass.filter"])
    assert math.isclose(float(f.sum()), 1.0, rel_tol=1e-6) and torch.equal(f, f.flip(-1))
    assert torch.equal(UpSample1d().filter, f) and torch.equal(DownSample1d().lowpass.filter, f)


def _upsample_by_definition(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2 * transposed conv of the 5-replicate-padded signal, cropped by 15 (float64 loops)."""
    x, f = x.double(), f.double().reshape(-1)
    pad = torch.cat([x[..., :1].expand(*x.shape[:-1], 5), x, x[..., -1:].expand(*x.shape[:-1], 5)], dim=-1)
    full = torch.zeros(*x.shape[:-1], 2 * (pad.shape[-1] - 1) + 12, dtype=torch.float64)
    for m in range(pad.shape[-1]):
        full[..., 2 * m: 2 * m + 12] += pad[..., m: m + 1] * f
    return 2 * full[..., 15: full.shape[-1] - 15]


def _downsample_by_definition(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """conv1d with stride 2 of the signal replicate-padded 5 left / 6 right (float64 loops)."""
    x, f = x.double(), f.double().reshape(-1)
    n = x.shape[-1]
    out = []
    for i in range(n // 2):
        idx = torch.tensor([min(max(2 * i + k - 5, 0), n - 1) for k in range(12)])
        out.append((x[..., idx] * f).sum(-1))
    return torch.stack(out, dim=-1)


@pytest.mark.parametrize("length", [1, 2, 5, 16])
def test_resamplers_follow_the_reference_padding(length):
    x = torch.randn(2, 3, length)
    up, down = UpSample1d(), DownSample1d()
    y = up(x)
    assert y.shape == (2, 3, 2 * length)
    torch.testing.assert_close(y.double(), _upsample_by_definition(x, up.filter), atol=1e-6, rtol=1e-5)
    z = down(y)
    assert z.shape == x.shape
    torch.testing.assert_close(z.double(), _downsample_by_definition(y, down.lowpass.filter), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("act_cls", [SnakeBeta, Snake, Snake1d])
@pytest.mark.parametrize("length", [1, 2, 3, 7, 64])
def test_polyphase_activation_matches_literal_form(act_cls, length):
    act = Activation1d(_randomise(act_cls(5), seed=length))
    assert act.fused
    x = 2 * torch.randn(2, 5, length)
    with torch.no_grad():
        fused, literal = act(x), act.forward_reference(x)
    assert fused.shape == x.shape
    torch.testing.assert_close(fused, literal, atol=1e-5, rtol=1e-5)


def test_polyphase_activation_gradients_match_literal_form():
    act = Activation1d(_randomise(SnakeBeta(4)))
    x = torch.randn(2, 4, 33, requires_grad=True)
    grads = []
    for forward in (act.forward, act.forward_reference):
        act.zero_grad()
        x.grad = None
        (forward(x) * torch.linspace(-1, 1, 33)).sum().backward()
        grads.append([x.grad.clone(), act.act.alpha.grad.clone(), act.act.beta.grad.clone()])
    for fused, literal in zip(*grads):
        torch.testing.assert_close(fused, literal, atol=1e-5, rtol=1e-4)


def test_chunked_activation_matches_literal_form(monkeypatch):
    from semlat.nn import antialias

    monkeypatch.setattr(antialias, "_CHUNK_SAMPLES", 100)  # a few rows per chunk, an uneven last chunk
    act = Activation1d(_randomise(SnakeBeta(7)))
    x = torch.randn(3, 7, 29)
    with torch.inference_mode():
        torch.testing.assert_close(act(x), act.forward_reference(x), atol=1e-5, rtol=1e-5)


def _nan_new_empty(self: torch.Tensor, *size, **kwargs) -> torch.Tensor:
    shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
    return torch.full(shape, float("nan"), dtype=kwargs.get("dtype") or self.dtype, device=self.device)


def test_activation_never_reads_uninitialised_memory(monkeypatch):
    """Every buffer the fused path allocates is NaN-poisoned: outputs and gradients must stay finite."""
    act = Activation1d(_randomise(SnakeBeta(3)))
    x = torch.randn(2, 3, 21, requires_grad=True)
    expected = act.forward_reference(x)
    expected.square().sum().backward()
    grads = [x.grad.clone(), act.act.alpha.grad.clone()]
    x.grad = None
    act.zero_grad()
    monkeypatch.setattr(torch.Tensor, "new_empty", _nan_new_empty)
    out = act(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, grads[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(act.act.alpha.grad, grads[1], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(act(x), expected, atol=1e-5, rtol=1e-5)


def test_activation_state_dict_keys():
    keys = sorted(Activation1d(SnakeBeta(2)).state_dict())
    assert keys == ["act.alpha", "act.beta", "downsample.lowpass.filter", "upsample.filter"]


# --- bottleneck blocks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_dim,out_dim", [(64, 8), (64, 16), (16, 64), (32, 32)])
def test_attn_projection_shapes_and_causality(in_dim, out_dim):
    torch.manual_seed(0)
    block = _randomise(AttnProjection(in_dim, out_dim, num_heads=8), scale=0.05).eval()
    assert block.attn.zero_k_bias.shape == (max(in_dim, out_dim),) and "attn.zero_k_bias" in block.state_dict()
    x = torch.randn(2, 10, in_dim)
    y = block(x)
    assert y.shape == (2, 10, out_dim)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, in_dim)
    torch.testing.assert_close(block.attn(block.norm1(x2))[:, :6], block.attn(block.norm1(x))[:, :6])
    channels_first = AttnProjection(in_dim, out_dim, num_heads=8, channels_first=True)
    channels_first.load_state_dict(block.state_dict())
    torch.testing.assert_close(channels_first(x.transpose(1, 2)), y.transpose(1, 2))


def test_causal_attention_narrowing_averages_heads():
    attn = CausalAttention(16, 1, num_heads=2).eval()
    with torch.no_grad():
        attn.proj.weight.fill_(1.0)
        attn.proj.bias.zero_()
        attn.qkv.weight.zero_()  # q = k = 0 (uniform causal weights), v = v_bias
        attn.v_bias.copy_(torch.arange(16.0))
    y = attn(torch.randn(1, 3, 16))
    torch.testing.assert_close(y, torch.full((1, 3, 1), 7.5))  # mean of all 16 values


def test_reparameterize_and_kl():
    mu, logvar = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    eps = torch.randn(2, 5, 3)
    torch.testing.assert_close(reparameterize(mu, logvar, eps), eps * torch.exp(0.5 * logvar) + mu)
    assert reparameterize(mu, logvar).shape == mu.shape
    with pytest.raises(ValueError, match="eps has shape"):
        reparameterize(mu, logvar, eps[:, :2])
    expected = (-0.5 * (1 + logvar - mu**2 - logvar.exp() - 1e-6).sum(-1)).mean()
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    zeros = torch.zeros(2, 4, 3)
    torch.testing.assert_close(gaussian_kl(zeros, zeros), torch.tensor(0.5e-6 * 3))
    torch.testing.assert_close(gaussian_kl(mu.transpose(1, 2), logvar.transpose(1, 2), dim=1), expected)


def test_activation_built_under_inference_mode_runs():
    """Filters created inside torch.inference_mode() have no version counter; the weight cache copes."""
    from semlat.nn.activations import make_snake
    from semlat.nn.antialias import Activation1d

    x = torch.randn(1, 4, 50)
    reference = Activation1d(make_snake("snakebeta", 4, logscale=True))
    with torch.inference_mode():
        built = Activation1d(make_snake("snakebeta", 4, logscale=True))
        built.load_state_dict(reference.state_dict())
        torch.testing.assert_close(built(x), reference(x))
