"""Dasheng: the masked-autoencoder audio encoder (XiaoMi) that SemanticVocoder's latents come from.

``Dasheng(config)(audio [B, N] at 16 kHz) -> frames [B, T', D]`` at 25 Hz, as the ``dasheng`` package
0.0.8/0.0.9 computes it (what SemanticVocoder runs):

1. **Mel**: torch.stft (n_fft 512, periodic Hann 512, hop 160, centred, reflect) -> power -> 64 HTK
   triangular filters over 0-8 kHz (buffers ``front_end.0.spectrogram.window`` and
   ``front_end.0.mel_scale.fb``, as the released files hold them) -> dB (floor 1e-10) with a 120 dB range
   whose maximum is taken over the **whole batch** (``top_db_over_batch``, the reference's behaviour: an
   item's features then depend on the loudest item beside it; ``False`` gives each item its own range).
2. **init_bn**: BatchNorm over the 64 bands (running statistics).
3. **patch_embed**: Conv2d 1 -> D with 64 x 4 kernels and strides: ``[B, D, 1, P]``, ``P = (frames - 4) // 4 + 1``
   (trailing frames that do not fill a patch are dropped).
4. **Chunks** of ``target_length / 4`` patches (252 in the releases, ~10 s), each on its own: add
   ``time_pos_embed[..., :t]`` (positions restart in every chunk) and ``freq_pos_embed``, ``depth`` pre-LN ViT
   blocks (multi-head attention with a ``qkv`` projection, exact-GELU MLP), final LayerNorm; the last chunk is
   simply shorter. Chunk outputs are concatenated in time.
5. Optional ``lengths`` (samples): keys at patches ``>= lengths // 640`` are masked (filled with the float
   minimum before the softmax, as the reference does; queries are not masked).

Sizes (:meth:`DashengConfig.base`, ``.b06``, ``.b12``): 768/12/12 (85 M), 1280/32/16 (630 M), 1536/40/24
(1.1 B). A Dasheng model folder is also a teacher (``semlat:DIR``: the last layer's 25 Hz frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.audio.filterbanks import mel_filterbank
from semlat.audio.spectral import apply_log, mel_preset
from semlat.config import FromConfig
from semlat.errors import ConfigError
from semlat.nn.buffers import NamedBuffer
from semlat.nn.linear import Linear
from semlat.semantic.teachers import Teacher, TeacherSpec

SAMPLE_RATE = 16000
HOP = 160
PATCH_SAMPLES = 640  # 4 mel frames of 160 samples: one 25 Hz output frame


@dataclass
class DashengConfig:
    """Sizes of a Dasheng encoder (``dasheng`` package vocabulary)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    target_length: int = 1008  # mel frames per chunk; target_length / 4 patches
    n_mels: int = 64
    patch_time: int = 4
    top_db_over_batch: bool = True

    def validate(self, where: str = "dasheng config") -> None:
        if self.embed_dim < 1 or self.depth < 1 or self.num_heads < 1 or self.embed_dim % self.num_heads:
            raise ConfigError(f"{where}: embed_dim must be a positive multiple of num_heads")
        if self.target_length < self.patch_time or self.target_length % self.patch_time:
            raise ConfigError(f"{where}: target_length must be a positive multiple of {self.patch_time}")
        if self.n_mels != 64 or self.patch_time != 4:
            raise ConfigError(f"{where}: Dasheng's patches are 64 bands x 4 frames")

    @property
    def chunk_patches(self) -> int:
        return self.target_length // self.patch_time

    @classmethod
    def base(cls, **overrides: Any) -> DashengConfig:
        return cls(**overrides)

    @classmethod
    def b06(cls, **overrides: Any) -> DashengConfig:
        return cls(**{"embed_dim": 1280, "depth": 32, "num_heads": 16, **overrides})

    @classmethod
    def b12(cls, **overrides: Any) -> DashengConfig:
        return cls(**{"embed_dim": 1536, "depth": 40, "num_heads": 24, **overrides})


class MelFrontEnd(nn.Module):
    """``audio [B, N]`` -> dB power mel ``[B, 64, N // 160 + 1]`` (module docstring, step 1); keys
    ``spectrogram.window`` and ``mel_scale.fb``."""

    def __init__(self, top_db_over_batch: bool = True):
        super().__init__()
        self.config = mel_preset("dasheng_16k_64", top_db_over_batch=top_db_over_batch)
        c = self.config
        self.spectrogram = NamedBuffer("window", torch.hann_window(c.n_fft, periodic=True))
        with torch.device("cpu"):  # a constant, computed on CPU even where the model is built on "meta"
            fb = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min, c.f_max, c.mel_scale, c.norm, c.filterbank)
        self.mel_scale = NamedBuffer("fb", fb.T.contiguous())

    def power_mel(self, audio: Tensor) -> Tensor:
        c = self.config
        spec = torch.stft(audio.float(), c.n_fft, hop_length=c.hop_length, win_length=c.n_fft,
                          window=self.spectrogram.window, center=True, pad_mode="reflect", normalized=False,
                          onesided=True, return_complex=True).abs().pow(2.0)
        return rearrange(torch.matmul(rearrange(spec, "b f t -> b t f"), self.mel_scale.fb), "b t m -> b m t")

    def forward(self, audio: Tensor) -> Tensor:
        return apply_log(self.power_mel(audio), self.config)


class Attention(nn.Module):
    """Multi-head self-attention ``[B, N, D]`` with a fused ``qkv`` projection and optional key mask."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (s h d) -> s b h n d", s=3, h=self.heads)
        if key_mask is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:  # the reference's masked path: fill with the float minimum, softmax, nan_to_num
            scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
            out = scores.softmax(-1).nan_to_num() @ v
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(norm1 x)``, ``x + mlp(norm2 x)`` (LayerNorm eps 1e-6)."""

    def __init__(self, config: DashengConfig):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, n_mels: int, patch_time: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=(n_mels, patch_time), stride=(n_mels, patch_time))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Dasheng(FromConfig, nn.Module):
    """See the module docstring. ``forward(audio [B, N], lengths [B] | None) -> [B, T', D]``."""

    def __init__(self, config: DashengConfig):
        super().__init__()
        config.validate()
        self.config = config
        dim = config.embed_dim
        self.front_end = nn.Sequential(MelFrontEnd(config.top_db_over_batch))
        self.init_bn = nn.Sequential(nn.Identity(), nn.BatchNorm2d(config.n_mels))
        self.patch_embed = PatchEmbed(dim, config.n_mels, config.patch_time)
        self.time_pos_embed = nn.Parameter(torch.randn(1, dim, 1, config.chunk_patches) * 0.02)
        self.freq_pos_embed = nn.Parameter(torch.randn(1, dim, 1, 1) * 0.02)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    config_class = DashengConfig
    config_where = "dasheng config"

    @staticmethod
    def num_frames(num_samples: int) -> int:
        """25 Hz output frames for ``num_samples`` at 16 kHz."""
        return max(0, (num_samples // HOP + 1 - 4) // 4 + 1)

    def patches(self, audio: Tensor) -> Tensor:
        """``audio [B, N]`` -> patch embeddings ``[B, D, 1, P]`` (before positions)."""
        mel = self.front_end(audio)  # [B, 64, frames]
        x = rearrange(mel, "b m t -> b m 1 t")
        with torch.autocast(x.device.type, enabled=False):
            x = self.init_bn[1](x.float())  # BatchNorm over the bands: channels = bands
        return self.patch_embed(rearrange(x, "b m 1 t -> b 1 m t"))

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        patches = self.patches(audio)
        total = patches.shape[-1]
        key_mask = None
        if lengths is not None:
            valid = torch.div(lengths.to(patches.device), PATCH_SAMPLES, rounding_mode="floor")
            key_mask = torch.arange(total, device=patches.device)[None] < valid[:, None]
        outputs = []
        step = self.config.chunk_patches
        for start in range(0, total, step):
            chunk = patches[..., start:start + step]
            x = chunk + self.time_pos_embed[..., :chunk.shape[-1]] + self.freq_pos_embed
            x = rearrange(x, "b d f t -> b (f t) d")
            mask = None if key_mask is None else key_mask[:, start:start + step]
            for block in self.blocks:
                x = block(x, mask)
            outputs.append(self.norm(x))
        return torch.cat(outputs, dim=1)

    def as_teacher(self, spec: TeacherSpec, folder: Path) -> Teacher:
        """This encoder as a frozen teacher named ``spec`` (the last layer; no ``@layers``)."""
        if spec.layers is not None:
            raise ConfigError(f"teacher {spec}: a Dasheng teacher gives its last layer only (drop the @...)")
        return DashengTeacher(self, spec)


class DashengTeacher(Teacher):
    """A Dasheng encoder as a teacher: 16 kHz in, 25 Hz frames of ``embed_dim`` out."""

    sample_rate = SAMPLE_RATE
    frame_rate = SAMPLE_RATE / PATCH_SAMPLES

    def __init__(self, model: Dasheng, spec: TeacherSpec):
        super().__init__()
        self.model = model
        self.spec = spec
        self.dim = model.config.embed_dim

    def features(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        frames = self.model(audio, lengths if bool((lengths < audio.shape[-1]).any()) else None)
        frame_lengths = torch.clamp(torch.div(lengths, PATCH_SAMPLES, rounding_mode="floor"), max=frames.shape[1])
        return frames.float(), frame_lengths

    def num_frames(self, num_samples: int) -> int:
        return Dasheng.num_frames(num_samples)


def config_from_state(state: dict[str, Tensor], where: str) -> DashengConfig:
    """The sizes of a Dasheng state dict (the head count from the released sizes' table)."""
    try:
        dim = int(state["patch_embed.proj.weight"].shape[0])
        chunk = int(state["time_pos_embed"].shape[-1])
    except KeyError as err:
        raise ConfigError(f"{where}: not a Dasheng checkpoint (no {err.args[0]})") from None
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    heads = {768: 12, 1280: 16, 1536: 24}.get(dim)
    if heads is None:
        raise ConfigError(f"{where}: embed_dim {dim} is not a released Dasheng size; give --config with num_heads")
    mlp = state.get("blocks.0.mlp.fc1.weight")
    ratio = float(mlp.shape[0]) / dim if mlp is not None else 4.0
    return DashengConfig(embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=ratio,
                         target_length=chunk * 4, qkv_bias="blocks.0.attn.qkv.bias" in state)
