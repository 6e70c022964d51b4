"""Masked-autoencoder pre-training of a Dasheng encoder (how Dasheng itself was trained), for offline use.

No pretrained Dasheng can be downloaded here, so the demo trains a small one on its own corpora with the
objective of the Dasheng paper (MAE on 64 x 4 mel patches):

1. the encoder's front-end, BatchNorm and patch embedding give ``P`` patch tokens ``[B, P, D]`` (positions
   added), and the target is each patch's dB mel values ``[B, P, 256]`` normalised per patch (MAE's
   ``norm_pix_loss``);
2. a random ``mask_ratio`` of the patches is dropped per item (the same number for every item); the
   encoder's blocks and final norm see only the visible tokens;
3. a small decoder (:class:`~semlat.semantic.dasheng.Block` layers of ``decoder_dim``) sees the visible tokens
   projected, a learned mask token at every dropped position and its own position embedding, and predicts
   each patch's 256 values; the loss is the mean squared error over the **dropped** patches.

Crops must fit one encoder chunk (``target_length`` mel frames). :class:`DashengMAE` holds ``encoder`` (a
:class:`~semlat.semantic.dasheng.Dasheng`, the part that is exported) and the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from semlat.errors import ConfigError
from semlat.nn.linear import Linear
from semlat.semantic.dasheng import Block, Dasheng, DashengConfig

PATCH_VALUES = 64 * 4


@dataclass
class MAEConfig:
    """The decoder's sizes and the masking."""

    decoder_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75

    def validate(self, where: str = "mae config") -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"{where}.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.decoder_dim % self.decoder_heads:
            raise ConfigError(f"{where}.decoder_dim must be a multiple of decoder_heads")


class DashengMAE(nn.Module):
    """Encoder + MAE decoder. ``forward(audio [B, N], generator) -> (loss, details)``."""

    def __init__(self, encoder: DashengConfig, mae: MAEConfig):
        super().__init__()
        mae.validate()
        self.mae = mae
        self.encoder = Dasheng(encoder)
        decoder = DashengConfig(embed_dim=mae.decoder_dim, depth=mae.decoder_depth, num_heads=mae.decoder_heads,
                                target_length=encoder.target_length)
        self.decoder_embed = Linear(encoder.embed_dim, mae.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, mae.decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.randn(1, encoder.chunk_patches, mae.decoder_dim) * 0.02)
        self.decoder_blocks = nn.ModuleList(Block(decoder) for _ in range(mae.decoder_depth))
        self.decoder_norm = nn.LayerNorm(mae.decoder_dim, eps=1e-6)
        self.decoder_pred = Linear(mae.decoder_dim, PATCH_VALUES)

    def targets(self, audio: Tensor) -> Tensor:
        """``[B, P, 256]``: every patch's dB mel values (band-major), normalised per patch."""
        mel = self.encoder.front_end(audio)  # [B, 64, frames]
        patches = mel.shape[-1] // 4
        values = rearrange(mel[..., : patches * 4], "b m (p k) -> b p (m k)", k=4)
        mean, var = values.mean(-1, keepdim=True), values.var(-1, keepdim=True)
        return (values - mean) / (var + 1e-6).sqrt()

    def tokens(self, audio: Tensor) -> Tensor:
        """``[B, P, D]`` patch tokens with the encoder's positions (one chunk)."""
        patches = self.encoder.patches(audio)
        if patches.shape[-1] > self.encoder.config.chunk_patches:
            raise ConfigError(f"MAE crops must fit one chunk ({self.encoder.config.chunk_patches} patches), "
                              f"got {patches.shape[-1]}")
        x = patches + self.encoder.time_pos_embed[..., : patches.shape[-1]] + self.encoder.freq_pos_embed
        return rearrange(x, "b d f t -> b (f t) d")

    def forward(self, audio: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        tokens = self.tokens(audio)
        b, p, _ = tokens.shape
        keep = max(1, round(p * (1 - self.mae.mask_ratio)))
        order = torch.rand(b, p, generator=generator).argsort(dim=1).to(tokens.device)
        visible_idx = order[:, :keep]
        x = torch.gather(tokens, 1, repeat(visible_idx, "b k -> b k d", d=tokens.shape[-1]))
        for block in self.encoder.blocks:
            x = block(x)
        x = self.decoder_embed(self.encoder.norm(x))
        full = self.mask_token.expand(b, p, -1).clone()
        full.scatter_(1, repeat(visible_idx, "b k -> b k d", d=full.shape[-1]), x)
        y = full + self.decoder_pos_embed[:, :p]
        for block in self.decoder_blocks:
            y = block(y)
        pred = self.decoder_pred(self.decoder_norm(y))
        target = self.targets(audio)[:, :p]
        masked = torch.ones(b, p, dtype=torch.bool, device=tokens.device)
        masked[torch.arange(b, device=tokens.device)[:, None], visible_idx] = False
        error = (pred.float() - target).square().mean(-1)
        loss = error[masked].mean()
        return loss, {"pred": pred, "target": target, "masked": masked}
