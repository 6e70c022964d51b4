"""What every latent TTS model shares (the F5 DiT's :class:`~semlat.generation.tts.TTSModel` and the
autoregressive :class:`~semlat.generation.ar_tts.ARTTSModel`): the per-channel statistics of the latents it was
trained on, kept as buffers in its weights (``latent_mean``, ``latent_std``: generation de-normalises without the
store), and the text front-end of its config's ``vocab``, ``units`` and ``language``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semlat.text.frontend import TextFrontEnd, Vocab


class LatentTextModel(nn.Module):
    """Base of the latent TTS models; subclasses set ``self.config`` and call :meth:`init_stats`."""

    def init_stats(self, latent_dim: int) -> None:
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    def front_end(self) -> TextFrontEnd:
        return TextFrontEnd(Vocab(self.config.vocab), self.config.units, self.config.language)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=1e-5))

    def normalize(self, latents: Tensor) -> Tensor:
        """Raw ``[B, T, D]`` -> zero mean, unit variance per channel (the training statistics)."""
        return (latents - self.latent_mean) / self.latent_std

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents * self.latent_std + self.latent_mean
