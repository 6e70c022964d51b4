"""Chunked encode/decode: exact for finite receptive fields, within a stated tolerance for the VAE."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
from semlat.chunking import chunk_seed, run_chunked
from semlat.errors import ConfigError
from semlat.latent_space import (
    LatentSpace,
    OneRateSpace,
    decode_chunked,
    encode_chunked,
    hop_length,
    input_hop,
    output_hop,
    space_info,
)
from semlat.nn.weight_norm import remove_weight_norm


class ConvSpace(nn.Module):
    """A latent space with a finite receptive field (a few frames): chunking must be exact."""

    input_rate, output_rate, latent_dim, frame_rate = 1000, 1000, 3, 100.0

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv1d(1, 8, 9, padding=4), nn.Tanh(), nn.Conv1d(8, 3, 10, stride=10))
        self.dec = nn.Sequential(nn.ConvTranspose1d(3, 8, 10, stride=10), nn.Tanh(), nn.Conv1d(8, 1, 9, padding=4))

    def encode(self, audio):
        return self.enc(audio)

    def decode(self, latents, **options):
        return self.dec(latents)


def test_chunking_is_exact_when_context_covers_the_receptive_field():
    torch.manual_seed(0)
    space = ConvSpace()
    assert isinstance(space, LatentSpace) and hop_length(space) == 10
    audio = torch.randn(2, 1, 10_005)
    with torch.no_grad():
        padded = torch.nn.functional.pad(audio, (0, 5))
        full = space.encode(padded)
        chunked = encode_chunked(space, audio, chunk_seconds=0.7, context_seconds=0.05)
        assert chunked.shape == full.shape == (2, 3, 1001)
        torch.testing.assert_close(chunked, full, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(decode_chunked(space, full, 0.7, 0.05), space.decode(full), atol=1e-6, rtol=1e-6)
        seen = []  # the progress callback hears every window, in order (a progress bar for long files)
        encode_chunked(space, audio, chunk_seconds=0.7, context_seconds=0.05, progress=lambda *p: seen.append(p))
        assert seen == [(k, 15) for k in range(1, 16)]  # ceil(1001 frames / 70)
        seen.clear()
        decode_chunked(space, full[..., :50], 0.7, 0.05, progress=lambda *p: seen.append(p))
        assert seen == [(1, 1)]  # one window


def test_wave_vae_chunking_matches_unchunked_within_tolerance():
    """Stated tolerance for Semantic-VAE's architecture (random tiny weights, 1 s context): the
    decoder is convolutional and matches to float rounding; the encoder's causal attention sees the
    whole past, so chunked latents differ slightly (here < 2 % of the latents' scale)."""
    torch.manual_seed(0)
    model = remove_weight_norm(WaveVAE(WaveVAEConfig.tiny())).eval()
    audio = 0.3 * torch.randn(1, 1, 16000 * 6)
    with torch.no_grad():
        full = model.encode(audio)
        chunked = encode_chunked(model, audio, chunk_seconds=1.0, context_seconds=1.0)
        assert chunked.shape == full.shape
        scale = full.abs().max()
        assert (chunked - full).abs().max() / scale < 0.02
        wave = model.decode(full)
        wave_chunked = decode_chunked(model, full, chunk_seconds=1.0, context_seconds=1.0)
        assert wave_chunked.shape == wave.shape
        torch.testing.assert_close(wave_chunked, wave, atol=1e-4, rtol=1e-3)


class UpsamplingSampler(nn.Module):
    """A toy sampling decoder that reads 100 Hz latents and writes 3 samples per frame (different
    input and output rates), adding seeded noise: not bit-exact across chunks."""

    input_rate, output_rate, latent_dim, frame_rate = 200, 300, 2, 100.0
    decode_options = ("steps",)

    def encode(self, audio):
        return audio.reshape(audio.shape[0], 1, -1, 2).mean(-1).repeat(1, 2, 1)

    def decode(self, latents, seed=None, steps=1):
        gen = torch.Generator().manual_seed(seed if seed is not None else 0)
        wave = latents.mean(1, keepdim=True).repeat_interleave(3, dim=-1)
        return wave + 0.01 * steps * torch.randn(wave.shape, generator=gen)


def test_rates_and_hops_of_a_space_with_two_rates():
    space = UpsamplingSampler()
    assert isinstance(space, LatentSpace)
    assert (input_hop(space), output_hop(space)) == (2, 3)
    with pytest.raises(ValueError, match="input_hop or output_hop"):
        hop_length(space)
    assert space_info(space) == {"input_rate": 200, "output_rate": 300, "latent_dim": 2, "frame_rate": 100.0}
    assert space_info(ConvSpace())["sample_rate"] == 1000


def test_sampling_decode_gets_one_seed_per_chunk_and_is_reproducible():
    space = UpsamplingSampler()
    latents = torch.zeros(1, 2, 250)
    a = decode_chunked(space, latents, chunk_seconds=1.0, context_seconds=0.1, seed=7, steps=2)
    b = decode_chunked(space, latents, chunk_seconds=1.0, context_seconds=0.1, seed=7, steps=2)
    c = decode_chunked(space, latents, chunk_seconds=1.0, context_seconds=0.1, seed=8, steps=2)
    assert a.shape == (1, 1, 750)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    # chunk 0 and chunk 1 used different seeds: their noise differs
    assert not torch.allclose(a[..., :300], a[..., 300:600])
    assert chunk_seed(7, 0) != chunk_seed(7, 1) != chunk_seed(8, 1)


def test_crossfade_blends_overlapping_chunks_linearly():
    # a function whose output is constant per window (the window's index): the crossfade must ramp
    # from one constant to the next across the overlap and keep each chunk's own frames elsewhere
    calls = []

    def fn(piece, seed):
        calls.append(seed)
        return torch.full_like(piece, float(len(calls)))

    source = torch.zeros(1, 30)
    out = run_chunked(fn, source, frames=30, chunk=10, context=0, overlap=4, seed=0)
    assert out.shape == (1, 30) and len(calls) == 3
    torch.testing.assert_close(out[0, :10], torch.ones(10))
    ramp = out[0, 10:14]
    assert torch.all(ramp[1:] > ramp[:-1]) and 1 < float(ramp[0]) < float(ramp[-1]) < 2
    torch.testing.assert_close(out[0, 14:20], torch.full((6,), 2.0))
    torch.testing.assert_close(out[0, 24:], torch.full((6,), 3.0))


def test_deterministic_spaces_accept_a_seed_and_refuse_other_options():
    torch.manual_seed(0)
    model = remove_weight_norm(WaveVAE(WaveVAEConfig.tiny())).eval()
    assert isinstance(model, OneRateSpace) and model.input_rate == model.output_rate == 16000
    z = torch.randn(1, model.latent_dim, 20)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z, seed=3), model.decode(z))
        with pytest.raises(ConfigError, match="decode option 'steps'"):
            model.decode(z, steps=4)
