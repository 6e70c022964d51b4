"""Autoregressive latent TTS on continuous latents: a causal transformer and a per-frame flow-matching head.

The shape of VibeVoice / DiTAR / MELLE / MAR's diffusion loss, on any latent space::

    text ids [B, Nt] --Embedding (+1: 0 is the null/pad token) -> ConvNeXt x C (within the text)--+
    latents [B, T, D] --normalise -> patches of k frames [B, P, k D] --(+ sigma noise)-> Linear ----+
                      (shifted right by one: a learned BOS first)                                  |
        [text | BOS, patch_1 .. patch_{P-1}] -> depth x (pre-LN rotary attention, GELU MLP) -> LN -> z [B, P, dim]
    z_p --> head: flow matching of patch p (x_t, t, z_p) -> velocity [k D]   (AdaLN MLP, MAR's SimpleMLPAdaLN)
        --> stop: logits over k + 1 classes (0: speech goes on; j: it ends after frame j of this patch)

**Attention.** A prefix LM: text positions see the whole text, latent positions the text and the latents up
to their own. Rows of a batch are laid out with their text **left**-padded (so every row's latents start at
the same index) and their latents right-padded; padded keys are masked. Rotary positions are relative, so
the padding does not change what a row computes. Generation keeps a key/value cache per layer
(:class:`KVCache`): the prefix (text, BOS, prompt patches) in one pass, then one position per patch.

**Training** (:meth:`ARTTSModel.forward`): teacher forcing on normalised latents. The context patches get
Gaussian noise of a per-item scale ``U(0, context_noise)`` (the exposure-bias argument of DC-Speech-VAE's
sigma-VAE noise: at generation the context is the model's own imperfect output); the targets stay clean.
The head's loss is the flow-matching MSE on valid frames, with ``head_repeats`` noise/time draws per patch
(cheap: the head is small); the stop loss is cross-entropy with the end classes weighted ``stop_weight``.
Classifier-free guidance: the text of an item is replaced by null tokens (same length) with probability
``text_drop``.

**Generation** (:meth:`ARTTSModel.generate`): zero-shot continuation. The text is the prompt's transcript
and the text to speak; the prompt's latents (cut at the start to whole patches) follow the BOS. Each step
samples the next patch with :mod:`semlat.sampling`'s sampler in ``steps`` head steps, guided
``v = u + w (c - u)`` by a second row whose text is null (both rows share one cache batch), and stops when
the stop classifier's end classes outweigh "go on", or at ``max_frames`` (reported: ``stopped`` False).

**Conditioning** (``conditioning``): ``f5`` (default) is the text prefix above, the alignment left to attention
(learned late, like F5-TTS's). ``durations`` gives the alignment instead, as the DiT's ``durations`` conditioning
does (:mod:`.aligned`): there is no text prefix; the bounded token sequence goes through the same embedding and
ConvNeXt blocks, each token's features are repeated over its positions (forced alignments in training, the
model's own duration predictor at generation; ``frame_split`` positions a frame), and the positions of patch
``p`` (``k · frame_split`` of them, concatenated, :class:`~semlat.nn.linear.Linear` to ``dim``) are added to the
input that predicts it::

    [BOS + a_1, patch_1 + a_2, ..., patch_{P-1} + a_P] -> causal transformer -> z_p -> head, stop

The prompt's patches carry no text (the null features: zeros through that Linear); in training so do the first
``U(0, prompt_fraction)`` of each item's patches, and every patch of an item whose text is dropped. Generation
runs for the planned length (the stop classifier is trained but not heard: ``stopped`` is None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.config import FromConfig
from semlat.errors import ConfigError
from semlat.generation.aligned import expand
from semlat.generation.dit import ConvNeXtV2Block, FeedForward, RotaryEmbedding, TimestepEmbedding, apply_rotary
from semlat.generation.latent_text import CONDITIONINGS, LatentTextModel
from semlat.nn.linear import Linear
from semlat.sampling import guide, time_grid
from semlat.sampling import sample as flow_sample
from semlat.text.frontend import UNITS


@dataclass
class ARArch:
    """The transformer's and head's sizes and the training objective's settings (the ``ar_tts`` recipe's
    ``model:``). ``max_positions``: the context, text tokens + 1 + patches."""

    patch: int = 1
    dim: int = 256
    depth: int = 6
    heads: int = 4
    dim_head: int = 64
    ff_mult: int = 4
    dropout: float = 0.0
    text_conv_layers: int = 2
    head_dim: int = 256
    head_depth: int = 3
    max_positions: int = 4096
    text_drop: float = 0.1
    context_noise: float = 0.2
    head_repeats: int = 4
    stop_weight: float = 10.0
    prompt_fraction: float = 0.3  # durations conditioning: the most of an item's first patches left without text

    def validate(self, where: str = "ar_tts config") -> None:
        for name in ("max_positions", "patch", "dim", "depth", "heads", "dim_head", "ff_mult", "head_dim",
                     "head_depth", "head_repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.dim_head % 2:
            raise ConfigError(f"{where}: dim_head must be even, got {self.dim_head}")
        for name in ("text_drop", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be within [0, 1), got {getattr(self, name)}")
        if self.context_noise < 0 or self.stop_weight <= 0:
            raise ConfigError(f"{where}: context_noise must be >= 0 and stop_weight > 0")
        if not 0 <= self.prompt_fraction < 1:
            raise ConfigError(f"{where}: prompt_fraction must be within [0, 1), got {self.prompt_fraction}")


@dataclass
class ARTTSConfig(ARArch):
    """What an AR TTS model folder's ``config`` holds: :class:`ARArch` and the latent space it was trained on
    (path, size, rate) and the text front-end (units, vocabulary, language)."""

    units: str = "phonemes"
    vocab: list[str] = field(default_factory=lambda: [" "])
    language: str = "en-us"
    space: str = ""
    latent_dim: int = 64
    frame_rate: float = 40.0
    conditioning: str = "f5"
    frame_split: int = 1  # durations conditioning: alignment positions a latent frame
    duration: dict[str, Any] = field(default_factory=dict)  # DurationPredictor sizes ("durations" conditioning)
    duration_weight: float = 1.0

    def validate(self, where: str = "ar_tts config") -> None:
        super().validate(where)
        if self.units not in UNITS:
            raise ConfigError(f"{where}: units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if self.latent_dim < 1 or self.frame_rate <= 0:
            raise ConfigError(f"{where}: latent_dim and frame_rate must be positive")
        if self.conditioning not in CONDITIONINGS:
            raise ConfigError(f"{where}: conditioning must be one of {', '.join(CONDITIONINGS)}, "
                              f"got {self.conditioning!r}")
        if self.frame_split < 1:
            raise ConfigError(f"{where}: frame_split must be >= 1, got {self.frame_split}")

    @property
    def position_rate(self) -> float:
        """Alignment positions a second (``durations`` conditioning): latent frames a second times ``frame_split``."""
        return self.frame_rate * self.frame_split

    @property
    def patch_rate(self) -> float:
        """Patches (autoregressive steps) a second."""
        return self.frame_rate / self.patch


# ------------------------------------------------------------------------------------------------ the transformer
class KVCache:
    """Per-layer keys and values ``[B, H, N, d]`` (rotated) and which of the ``N`` cached positions are real
    (``valid [B, N]``: padding is not)."""

    def __init__(self, depth: int):
        self.keys: list[Tensor | None] = [None] * depth
        self.values: list[Tensor | None] = [None] * depth
        self.valid: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.valid is None else int(self.valid.shape[1])

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.keys[layer] is not None:
            k, v = torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def select(self, rows: Tensor) -> None:
        """Keep the cache of ``rows`` only (rows that finished leave the batch)."""
        self.keys = [None if k is None else k[rows] for k in self.keys]
        self.values = [None if v is None else v[rows] for v in self.values]
        self.valid = None if self.valid is None else self.valid[rows]


class CausalAttention(nn.Module):
    """Multi-head self-attention with rotary positions over ``x [B, N, dim]``, given a boolean mask
    ``[B, 1, N, N_keys]`` (True: may attend); with a cache, ``x``'s keys and values are appended to it."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = Linear(dim, 3 * inner)
        self.to_out = nn.Sequential(Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor, cache: KVCache | None, layer: int) -> Tensor:
        q, k, v = rearrange(self.to_qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x += Attn(LN(x))``, ``x += MLP(LN(x))``."""

    def __init__(self, config: ARTTSConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.attn = CausalAttention(config.dim, config.heads, config.dim_head, config.dropout)
        self.ff_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.ff = FeedForward(config.dim, config.ff_mult, config.dropout)

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope, mask, cache, layer)
        return x + self.ff(self.ff_norm(x))


# ------------------------------------------------------------------------------------------------ the head
class HeadBlock(nn.Module):
    """Residual MLP block modulated by the condition: ``x += gate · MLP(LN(x) · (1 + scale) + shift)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(Linear(dim, dim), nn.SiLU(), Linear(dim, dim))
        self.modulation = nn.Sequential(nn.SiLU(), Linear(dim, 3 * dim))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class FlowHead(nn.Module):
    """The per-patch velocity: ``(x_t [M, C], t [M], z [M, dim]) -> [M, C]`` (MAR's SimpleMLPAdaLN shape)."""

    def __init__(self, channels: int, cond_dim: int, dim: int, depth: int):
        super().__init__()
        self.time_embed = TimestepEmbedding(dim)
        self.cond_proj = Linear(cond_dim, dim)
        self.proj_in = Linear(channels, dim)
        self.blocks = nn.ModuleList(HeadBlock(dim) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Sequential(nn.SiLU(), Linear(dim, 2 * dim))
        self.proj_out = Linear(dim, channels)
        for block in self.blocks:  # adaLN-zero: every block starts as the identity
            nn.init.zeros_(block.modulation[1].weight)
            nn.init.zeros_(block.modulation[1].bias)

    def forward(self, x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        cond = self.time_embed(t) + self.cond_proj(z)
        h = self.proj_in(x)
        for block in self.blocks:
            h = block(h, cond)
        shift, scale = self.modulation_out(cond).chunk(2, dim=-1)
        return self.proj_out(self.norm_out(h) * (1 + scale) + shift)


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class Generated:
    """What :meth:`ARTTSModel.generate` returns: raw latents ``[1, T, D]`` (the prompt's frames first), how many
    of them are the prompt's, and whether the stop classifier ended it (False: ``max_frames`` did; None: the
    planned length of ``durations`` conditioning did)."""

    out: Tensor
    prompt_frames: int
    stopped: bool | None
    steps: int


def left_pad(text: Tensor) -> tuple[Tensor, Tensor]:
    """Right-padded ids ``[B, Nt]`` (``-1`` pads) -> left-padded ids and their validity ``[B, Nt]``."""
    counts = (text >= 0).sum(-1)
    width = text.shape[1]
    index = torch.arange(width, device=text.device)[None] - (width - counts)[:, None]
    valid = index >= 0
    ids = text.gather(1, index.clamp(min=0)).masked_fill(~valid, -1)
    return ids, valid


def prefix_mask(valid: Tensor, text_length: int) -> Tensor:
    """The training / prefill attention mask ``[B, 1, N, N]``: query ``i`` may see key ``j`` when ``j`` is valid
    and either both are text (the first ``text_length`` positions) or ``j <= i``. A query with nothing to see
    (a padded text position of a row whose text is all padding) sees itself, so no row is all False."""
    n = valid.shape[1]
    positions = torch.arange(n, device=valid.device)
    causal = positions[None, :] <= positions[:, None]
    text = positions < text_length
    allowed = (causal | (text[:, None] & text[None, :]))[None] & valid[:, None, :]
    allowed = allowed | torch.eye(n, dtype=torch.bool, device=valid.device)[None]
    return allowed[:, None]


class ARTTSModel(FromConfig, LatentTextModel):
    """See the module docstring. Shapes are time-major: latents ``[B, T, D]``."""

    config_class = ARTTSConfig
    config_where = "ar_tts config"

    def __init__(self, config: ARTTSConfig):
        super().__init__()
        config.validate()
        self.config = config
        channels = config.latent_dim * config.patch
        self.text_embed = nn.Embedding(len(config.vocab) + 1, config.dim)
        self.text_blocks = nn.ModuleList(ConvNeXtV2Block(config.dim, 2 * config.dim)
                                         for _ in range(config.text_conv_layers))
        self.audio_in = Linear(channels, config.dim)
        self.bos = nn.Parameter(torch.randn(config.dim) * 0.02)
        self.rotary = RotaryEmbedding(config.dim_head)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(config.dim, eps=1e-6)
        self.head = FlowHead(channels, config.dim, config.head_dim, config.head_depth)
        self.stop = Linear(config.dim, config.patch + 1)
        if config.conditioning == "durations":
            self.aligned_in = Linear(config.patch * config.frame_split * config.dim, config.dim)
        self.init_stats(config.latent_dim)
        self.init_duration()

    # ------------------------------------------------------------------ helpers
    def patches(self, latents: Tensor) -> Tensor:
        """``[B, T, D]`` -> ``[B, ceil(T / k), k D]`` (zero-padded to whole patches)."""
        k = self.config.patch
        latents = F.pad(latents, (0, 0, 0, -latents.shape[1] % k))
        return rearrange(latents, "b (p k) d -> b p (k d)", k=k)

    def frames(self, patches: Tensor) -> Tensor:
        """``[B, P, k D]`` -> ``[B, P k, D]``."""
        return rearrange(patches, "b p (k d) -> b (p k) d", k=self.config.patch)

    def embed_text(self, text: Tensor, drop: Tensor | None = None, left: bool = True) -> tuple[Tensor, Tensor]:
        """Right-padded ids ``[B, Nt]`` -> left-padded (``left``; else as given) embeddings ``[B, Nt, dim]`` and
        validity ``[B, Nt]``; rows where ``drop [B]`` is True get null tokens (same length)."""
        ids, valid = left_pad(text) if left else (text, text >= 0)
        ids = ids + 1  # 0: the null token (padding, and dropped text)
        ids = ids.masked_fill(~valid, 0)
        if drop is not None:
            ids = ids.masked_fill(drop[:, None], 0)
        x = self.text_embed(ids)
        pad = ~valid[..., None]
        x = x.masked_fill(pad, 0.0)
        for block in self.text_blocks:
            x = block(x).masked_fill(pad, 0.0)
        return x, valid

    def aligned_text(self, features: Tensor, index: Tensor, patches: int) -> Tensor:
        """``durations`` conditioning: right-padded text ``features [B, Nt, dim]`` and the token index of each
        alignment position ``index [B, L]`` (``-1``: no text there) -> ``[B, patches, dim]``, patch ``p`` from
        its ``k · frame_split`` positions (``index`` is cut or ``-1``-padded to them)."""
        s = self.config.patch * self.config.frame_split
        index = F.pad(index, (0, max(0, patches * s - index.shape[1])), value=-1)[:, : patches * s]
        gathered = features.gather(1, index.clamp(min=0)[..., None].expand(-1, -1, features.shape[-1]))
        gathered = gathered * (index >= 0)[..., None].to(gathered.dtype)
        return self.aligned_in(rearrange(gathered, "b (p s) c -> b p (s c)", s=s))

    def token_index(self, text: Tensor, token_durations: Tensor, length: int) -> Tensor:
        """Bounded ids ``[B, Nt]`` (``-1`` padded) and their positions ``[B, Nt]`` -> the index of the token at each
        of ``length`` alignment positions ``[B, length]`` (``-1`` past the last)."""
        index = torch.arange(text.shape[1], device=text.device).expand_as(text).masked_fill(text < 0, -1)
        return expand(index, token_durations, length=length)

    def run(self, h: Tensor, valid: Tensor, text_length: int, cache: KVCache | None = None) -> Tensor:
        """The transformer over ``h [B, N, dim]`` (new positions after ``cache``'s): ``[B, N, dim]`` after the
        final LayerNorm. Without a cache (or an empty one) ``h`` is a whole prefix (``text_length`` text
        positions first); with a filled cache each new position sees every cached valid position and the new
        ones up to itself."""
        start = cache.length if cache is not None else 0
        n = h.shape[1]
        if start + n > self.config.max_positions:
            raise ConfigError(f"{start + n} positions: more than this model's context ({self.config.max_positions})")
        if start == 0:
            mask = prefix_mask(valid, text_length)
        else:
            old = cache.valid
            causal = torch.ones(n, n, dtype=torch.bool, device=h.device).tril()
            mask = torch.cat([old[:, None, :].expand(-1, n, -1), causal[None].expand(h.shape[0], -1, -1)], dim=2)
            mask = (mask & torch.cat([old, valid], dim=1)[:, None, :])[:, None]
        if cache is not None:
            cache.valid = valid if cache.valid is None else torch.cat([cache.valid, valid], dim=1)
        rope = self.rotary(start + n, h.device)[start:]
        for layer, block in enumerate(self.blocks):
            h = block(h, rope, mask, cache, layer)
        return self.norm_out(h)

    # ------------------------------------------------------------------ training
    def forward(self, latents: Tensor, text: Tensor, lens: Tensor, draws: dict[str, Tensor] | None = None,
                token_durations: Tensor | None = None) -> tuple[Tensor, dict[str, Any]]:
        """Teacher-forced loss on normalised ``latents [B, T, D]`` (``lens [B]`` valid frames) and text ids
        ``[B, Nt]`` (``-1`` padded): ``(loss, details)`` with ``flow_loss`` and ``stop_loss``. ``draws``
        fixes the randomness (``drop [B]``, ``sigma [B]``, ``noise`` of the patches' shape, ``t [R, M]`` and
        ``x0 [R, M, k D]`` for the ``M`` valid patches, ``prompt [B]`` in [0, 1): the share of
        ``prompt_fraction`` left without text; validation passes them). With ``durations`` conditioning ``text``
        is the bounded sequence and ``token_durations [B, Nt]`` its positions; the loss adds the duration
        predictor's (``duration_weight`` times its log-seconds error, ``duration_loss`` in the details)."""
        cfg = self.config
        k = cfg.patch
        batch, device = latents.shape[0], latents.device
        target = self.patches(latents)  # [B, P, kD]
        count = torch.div(lens + k - 1, k, rounding_mode="floor")  # valid patches
        p = target.shape[1]
        patch_valid = torch.arange(p, device=device)[None] < count[:, None]
        frame_valid = rearrange(torch.arange(p * k, device=device)[None] < lens[:, None], "b (p k) -> b p k", k=k)
        draws = dict(draws or {})
        drop = draws.get("drop", torch.rand(batch, device=device) < cfg.text_drop)
        sigma = draws.get("sigma", torch.rand(batch, device=device) * cfg.context_noise)
        noise = draws.get("noise", torch.randn_like(target))
        context = target + sigma[:, None, None].to(target.dtype) * noise
        h_audio = torch.cat([self.bos.expand(batch, 1, -1).to(target.dtype), self.audio_in(context[:, :-1])], dim=1)
        if self.duration is not None:
            if token_durations is None:
                raise ConfigError("an ar_tts model with durations conditioning trains on per-token durations")
            s = k * cfg.frame_split
            index = self.token_index(text, token_durations, p * s)
            prompt = draws.get("prompt", torch.rand(batch, device=device))
            cut = (prompt * cfg.prompt_fraction * count).long()  # the first patches, as a prompt's: no text
            index = index.masked_fill(torch.arange(p * s, device=device)[None] // s < cut[:, None], -1)
            features, _ = self.embed_text(text, drop, left=False)
            h = h_audio + self.aligned_text(features, index, p)
            z = self.run(h, patch_valid, 0)
        else:
            h_text, text_valid = self.embed_text(text, drop)
            h = torch.cat([h_text, h_audio], dim=1)
            z = self.run(h, torch.cat([text_valid, patch_valid], dim=1), text.shape[1])[:, text.shape[1]:]
        zv, x1, fmask = z[patch_valid], target[patch_valid], frame_valid[patch_valid]  # [M, ...]
        repeats = cfg.head_repeats
        t = draws.get("t", torch.rand(repeats, x1.shape[0], device=device))
        x0 = draws.get("x0", torch.randn(repeats, *x1.shape, device=device, dtype=x1.dtype))
        xt = (1 - t[..., None]) * x0 + t[..., None] * x1
        velocity = self.head(rearrange(xt, "r m c -> (r m) c"), t.flatten(), zv.repeat(t.shape[0], 1))
        error = rearrange((velocity.float() - (x1 - x0).flatten(0, 1).float()).square(), "(r m) (k d) -> r m k d",
                          r=t.shape[0], k=k)
        flow_loss = error.mean(-1)[:, fmask].mean()
        last = (lens - (count - 1) * k).clamp(min=1)  # frames of the last patch, 1..k
        classes = torch.zeros(batch, p, dtype=torch.long, device=device)
        classes[torch.arange(batch, device=device), (count - 1).clamp(min=0)] = last
        weight = torch.full((k + 1,), cfg.stop_weight, device=device)
        weight[0] = 1.0
        stop_loss = F.cross_entropy(self.stop(zv).float(), classes[patch_valid], weight=weight)
        details = {"flow_loss": flow_loss.detach(), "stop_loss": stop_loss.detach(), "patches": int(patch_valid.sum())}
        loss = flow_loss + stop_loss
        if self.duration is not None:
            duration_loss = self.duration_loss(text, token_durations)
            details["duration_loss"] = duration_loss.detach()
            loss = loss + cfg.duration_weight * duration_loss
        return loss, details

    loss = forward

    # ------------------------------------------------------------------ generation
    def prompt_frames(self, frames: int) -> int:
        """How many of a ``frames``-frame prompt's frames are kept (whole patches, cut at the start)."""
        return frames - frames % self.config.patch

    @torch.no_grad()
    def generate(self, prompt: Tensor, text: Tensor, *, max_frames: int | None = None, min_frames: int = 1,
                 steps: int = 8, guidance: float = 2.0, schedule: str = "uniform", method: str = "euler",
                 seed: int | None = None, temperature: float = 1.0, on_frames: Callable[[Tensor], None] | None = None,
                 token_durations: Tensor | None = None) -> Generated:
        """Continue raw ``prompt [1, Tp, D]`` latents (``Tp`` may be 0) speaking ``text [1, Nt]`` ids (the prompt's
        transcript and the text to speak). ``max_frames``: the most frames to generate (default: what the context
        leaves); the stop classifier is not heard before ``min_frames``. ``steps`` head steps on the sampler's
        ``schedule`` grid; ``guidance`` in semlat's CFG convention (1: none, one row); ``temperature`` scales the head's
        initial noise; ``seed`` fixes the noise. ``on_frames(frames [1, n, D])`` sees each new patch's raw frames as
        they come (streaming). With ``durations`` conditioning ``text`` is the bounded sequence of the text to speak
        only and ``token_durations [1, Nt]`` its planned positions (:meth:`plan_durations`): the model speaks exactly
        their length (cut to ``max_frames``)."""
        cfg = self.config
        k, device = cfg.patch, self.latent_mean.device
        if prompt.shape[0] != 1 or text.shape[0] != 1:
            raise ConfigError("ar_tts generates one utterance at a time (batch 1)")
        kept = self.prompt_frames(prompt.shape[1])
        prompt = prompt[:, prompt.shape[1] - kept:]
        prefix = (0 if self.duration is not None else text.shape[1]) + 1 + kept // k  # (aligned text: no prefix)
        room = cfg.max_positions - prefix
        if room < 1:
            raise ConfigError(f"the prompt and text take {prefix} positions, the whole "
                              f"context of this model ({cfg.max_positions}); give a shorter prompt or text")
        limit = room * k if max_frames is None else min(int(max_frames), room * k)
        guided = abs(guidance - 1.0) > 1e-5
        rows = 2 if guided else 1
        text = text.to(device).expand(rows, -1)
        drop = torch.tensor([False, True][:rows], device=device)
        context = self.patches(self.normalize(prompt.to(device))).expand(rows, -1, -1)
        h_audio = torch.cat([self.bos.expand(rows, 1, -1), self.audio_in(context)], dim=1)
        aligned = None
        if self.duration is not None:  # the aligned text of each patch to generate; the prompt's patches: none
            if token_durations is None:
                raise ConfigError("an ar_tts model with durations conditioning generates from per-token durations")
            s = k * cfg.frame_split
            planned = -(-int(token_durations.sum()) // cfg.frame_split)  # frames
            if planned > room * k:
                raise ConfigError(f"the text needs {planned} frames, more than the {room * k} this model's context "
                                  f"leaves after the prompt; give a shorter text or prompt")
            limit = min(limit, planned)
            if limit < 1:
                raise ConfigError("nothing to generate: the text was given no time")
            patches = -(-limit // k)
            features, _ = self.embed_text(text, drop, left=False)
            index = self.token_index(text, token_durations.to(device).expand(rows, -1), patches * s)
            none = torch.full((rows, context.shape[1] * s), -1, dtype=torch.long, device=device)
            aligned = self.aligned_text(features, torch.cat([none, index], dim=1), context.shape[1] + patches)
            h = h_audio + aligned[:, : 1 + context.shape[1]]
            text_length = 0
            valid = torch.ones(rows, h.shape[1], dtype=torch.bool, device=device)
        else:
            h_text, text_valid = self.embed_text(text, drop)
            h = torch.cat([h_text, h_audio], dim=1)
            text_length = text.shape[1]
            valid = torch.cat([text_valid, torch.ones(rows, h_audio.shape[1], dtype=torch.bool, device=device)], 1)
        cache = KVCache(cfg.depth)
        z = self.run(h, valid, text_length, cache)[:, -1]
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(int(seed))
        else:
            generator.seed()
        grid = time_grid(steps, schedule, device=device)
        out: list[Tensor] = []
        produced, stopped, step_count = 0, False, 0
        while produced < limit:
            x = torch.randn(1, k * cfg.latent_dim, generator=generator).to(device) * temperature

            def velocity(x_t: Tensor, t: Tensor, z: Tensor = z) -> Tensor:
                v = self.head(x_t.expand(rows, -1), t.expand(rows), z)
                return guide(v[:1], v[1:], guidance) if guided else v

            patch = flow_sample(velocity, x, grid, method=method)  # [1, kD]
            step_count += 1
            keep = k
            if aligned is None:
                end = self.stop(z[:1]).float().softmax(-1)[0]
                if float(end[1:].sum()) > float(end[0]) and produced + k >= min_frames:
                    keep, stopped = int(end[1:].argmax()) + 1, True
            keep = min(keep, limit - produced)
            frames = self.frames(patch[:, None])[:, :keep]
            out.append(frames)
            produced += keep
            if on_frames is not None:
                on_frames(self.denormalize(frames))
            if stopped or produced >= limit:
                break
            h = self.audio_in(patch[:, None].expand(rows, -1, -1))
            if aligned is not None:
                h = h + aligned[:, context.shape[1] + step_count: context.shape[1] + step_count + 1]
            z = self.run(h, torch.ones(rows, 1, dtype=torch.bool, device=device), text_length, cache)[:, -1]
        generated = torch.cat(out, dim=1) if out else prompt.new_zeros(1, 0, cfg.latent_dim)
        full = torch.cat([prompt.to(device), self.denormalize(generated)], dim=1)
        return Generated(full, kept, None if aligned is not None else stopped, step_count)

    def info(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

