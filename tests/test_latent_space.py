"""Chunked encode/decode: exact for finite receptive fields, within a stated tolerance for the VAE."""

from __future__ import annotations

import torch
from torch import nn

from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
from semlat.latent_space import LatentSpace, decode_chunked, encode_chunked, hop_length
from semlat.nn.weight_norm import remove_weight_norm


class ConvSpace(nn.Module):
    """A latent space with a finite receptive field (a few frames): chunking must be exact."""

    sample_rate, latent_dim, frame_rate = 1000, 3, 100.0

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv1d(1, 8, 9, padding=4), nn.Tanh(), nn.Conv1d(8, 3, 10, stride=10))
        self.dec = nn.Sequential(nn.ConvTranspose1d(3, 8, 10, stride=10), nn.Tanh(), nn.Conv1d(8, 1, 9, padding=4))

    def encode(self, audio):
        return self.enc(audio)

    def decode(self, latents):
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
