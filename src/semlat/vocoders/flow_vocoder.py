"""SemanticVocoder's flow-matching waveform generator (Flow2GAN's ``MaeAudioGenerator``, released key layout).

``latents [B, D, F]`` (25 Hz semantic frames) -> waveform ``[B, F · hop]`` at 24 kHz by flow matching **on the
waveform**: ``x_t = (1 - t) x0 + t x1`` with ``x0 = 0.1 · N(0, I)`` (t = 0 noise, t = 1 audio), the network
predicting the clean waveform ``x1``; the ODE velocity is ``(pred - x_t) / (1 - t)``.

The network (:meth:`FlowVocoder.predict`) averages three **branches**, each in its own STFT domain
(``n_ffts`` 512/256/128 with ``hop_lengths``): the noisy waveform's STFT as real channels (all real parts,
then all imaginary parts: ``[B, 2 (n/2 + 1), frames]``) -> 1x1 ``in_proj`` -> BiasNorm -> ConvNeXt blocks
conditioned on the latents (a ``cond_proj`` added after the norm) and on time (a ``time_embed_proj`` scale)
-> 1x1 ``out_proj`` -> inverse STFT -> ``T`` samples. The latents go once through a **cond encoder** (k3 conv,
BiasNorm, ConvNeXt blocks); each branch repeats every latent frame ``hop / hop_i`` times, zero-pads to its
frame count (so its last frame is conditioned on ``cond_mlp(0)``) and applies its ``cond_mlp``.

* **BiasNorm** (``log_scale`` 0-dim, ``bias [C]``): ``x · mean_c((x - bias)²)^(-1/2) · exp(log_scale)``.
* **ConvNeXt block**: ``r = x``; ``x *= mask``; depthwise conv; BiasNorm; ``+ cond_proj(cond)``;
  ``· (1 + time_embed_proj(temb))``; 1x1 -> PReLU -> 1x1; ``+ scale · r`` (``residual_scale.scale [C, 1]``).
* **Time**: ``sin|cos`` of ``1000 t · exp(-k ln(1e4) / (half - 1))`` -> ``time_mlp`` (Linear, SiLU, Linear).
* **Sampler** (:meth:`FlowVocoder.generate`): Euler on ``t_k = k / N`` (``schedule="uniform"``, the
  reference's) or ``t_k = sin(π k / 2N)`` (``"sine"``: denser near the data end, where the x1 estimate is
  sharpest; the last step returns the estimate at ``t_{N-1}``); the final state is clamped to [-1, 1] and
  divided by ``max(|w|, 1)`` per item (SemanticVocoder's ``decode``).
* **Options not in the release** (defaults off): ``phase_reference="time"`` rotates each branch's bins to a phase
  relative to sample 0 (:func:`phase_rotation`) and back before the inverse STFT; ``input_gain`` adds, per
  branch, a per-bin real gain computed from the last hidden state (a zero-initialised 1x1 conv) times the
  noisy input's own STFT to ``out_proj``'s output: the shape of a Wiener filter, so that the branch can pass
  the noisy input's energy in the bands its conditioning names instead of writing every bin from scratch.
* **Loss** (:meth:`FlowVocoder.loss`): ``x0`` then ``t ~ U(0, 1)`` drawn, and the error ``pred - x1`` measured
  by its power spectrogram through a 256-band linear filterbank (n_fft 1024, hop 256) weighted by the
  clean audio's ``clamp((S(x1) + 1e-7)^(-0.5), 0.01, 100)`` over valid frames (``spec_scaling_loss``), or
  the MSE over the batch's valid samples. In training, each item drops one random branch with probability ``branch_dropout``.

Shapes: latents ``[B, D, F]``, audio ``[B, T]`` with ``T = F · hop``; ``t [B, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from semlat import sampling
from semlat.audio.filterbanks import linear_filterbank
from semlat.config import FromConfig
from semlat.errors import ConfigError
from semlat.nn.buffers import NamedBuffer
from semlat.nn.linear import Linear, PointwiseConv1d

PHASE_REFERENCES = ("frame", "time")


@dataclass
class FlowVocoderConfig:
    """Constructor arguments (Flow2GAN's names; ``latent_dim``/``hop_length`` are ``n_mels``/``mel_hop_length``)."""

    latent_dim: int = 768
    hop_length: int = 960
    sampling_rate: int = 24000
    n_ffts: tuple[int, ...] = (512, 256, 128)
    hop_lengths: tuple[int, ...] = (240, 120, 60)
    channels: tuple[int, ...] = (768, 512, 384)
    time_embed_channels: int = 512
    hidden_factor: int = 3
    conv_kernel_sizes: tuple[int, ...] = (7, 7, 7)
    num_layers: tuple[int, ...] = (8, 8, 8)
    use_cond_encoder: bool = True
    cond_enc_channels: int = 512
    cond_enc_hidden_factor: int = 3
    cond_enc_conv_kernel_size: int = 7
    cond_enc_num_layers: int = 4
    residual_scale: float = 1.0
    init_noise_scale: float = 0.1
    pred_x1: bool = True
    branch_reduction: str = "mean"
    spec_scaling_loss: bool = True
    loss_n_filters: int = 256
    loss_n_fft: int = 1024
    loss_hop_length: int = 256
    loss_power: float = 0.5
    loss_eps: float = 1e-7
    loss_scale_min: float = 0.01
    loss_scale_max: float = 100.0
    branch_dropout: float = 0.05
    max_add_noise_scale: float = 0.0
    phase_reference: str = "frame"
    input_gain: bool = False

    def __post_init__(self) -> None:
        for name in ("n_ffts", "hop_lengths", "channels", "conv_kernel_sizes", "num_layers"):
            setattr(self, name, tuple(getattr(self, name)))

    def validate(self, where: str = "flow vocoder config") -> None:
        sizes = {len(self.n_ffts), len(self.hop_lengths), len(self.channels), len(self.conv_kernel_sizes),
                 len(self.num_layers)}
        if len(sizes) != 1:
            raise ConfigError(f"{where}: n_ffts, hop_lengths, channels, conv_kernel_sizes and num_layers need one "
                              "entry per branch")
        for hop in self.hop_lengths:
            if self.hop_length % hop:
                raise ConfigError(f"{where}: every branch hop must divide the latent hop {self.hop_length}, got {hop}")
        if self.phase_reference not in PHASE_REFERENCES:
            raise ConfigError(f"{where}: phase_reference must be one of {', '.join(PHASE_REFERENCES)}, "
                              f"got {self.phase_reference!r}")
        if not self.use_cond_encoder or not self.pred_x1 or self.branch_reduction != "mean":
            raise ConfigError(f"{where}: only the released variant is supported (cond encoder, x1 prediction, "
                              "mean over branches)")

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length

    @classmethod
    def tiny(cls, **overrides: Any) -> FlowVocoderConfig:
        """A CPU-sized generator for tests and the demo (the fixture's sizes)."""
        return cls(**{"latent_dim": 16, "channels": (24, 16, 12), "time_embed_channels": 16,
                      "conv_kernel_sizes": (7, 5, 3), "num_layers": (2, 1, 2), "cond_enc_channels": 20,
                      "cond_enc_hidden_factor": 2, "cond_enc_conv_kernel_size": 5, "cond_enc_num_layers": 2,
                      **overrides})


class BiasNorm(nn.Module):
    """``[B, C, T]`` -> ``x · mean_c((x - bias)²)^(-1/2) · exp(log_scale)`` (no epsilon, as the reference)."""

    def __init__(self, channels: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(0.0))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        rms = (x - self.bias[:, None]).square().mean(dim=1, keepdim=True).rsqrt()
        return x * rms * self.log_scale.exp()


class ChannelScale(nn.Module):
    def __init__(self, channels: int, value: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels, 1), float(value)))


class ConvNeXtBlock(nn.Module):
    """``x [B, C, T]`` (module docstring); ``cond [B, Cc, T]`` and ``temb [B, Ct]`` when built with them."""

    def __init__(self, channels: int, hidden_factor: int, kernel: int, residual_scale: float,
                 cond_channels: int | None = None, time_channels: int | None = None):
        super().__init__()
        hidden = int(channels * hidden_factor)
        self.dwconv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = BiasNorm(channels)
        self.cond_proj = PointwiseConv1d(cond_channels, channels) if cond_channels else None
        self.time_embed_proj = Linear(time_channels, channels) if time_channels else None
        self.pwconv1 = PointwiseConv1d(channels, hidden)
        self.act = nn.PReLU(hidden)
        self.pwconv2 = PointwiseConv1d(hidden, channels)
        self.residual_scale = ChannelScale(channels, residual_scale)

    def forward(self, x: Tensor, cond: Tensor | None = None, temb: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        residual = x
        if mask is not None:
            x = x * mask
        x = self.norm(self.dwconv(x))
        if self.cond_proj is not None:
            x = x + self.cond_proj(cond)
        if self.time_embed_proj is not None:
            x = x * (1 + self.time_embed_proj(temb)[..., None])
        x = self.pwconv2(self.act(self.pwconv1(x)))
        return x + self.residual_scale.scale * residual


class CondEncoder(nn.Module):
    """Latents ``[B, D, F]`` -> ``[B, Cc, F]``: k3 conv, BiasNorm, ConvNeXt blocks."""

    def __init__(self, config: FlowVocoderConfig):
        super().__init__()
        c = config.cond_enc_channels
        self.in_proj = nn.Conv1d(config.latent_dim, c, 3, padding=1)
        self.in_norm = BiasNorm(c)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(c, config.cond_enc_hidden_factor, config.cond_enc_conv_kernel_size, config.residual_scale)
            for _ in range(config.cond_enc_num_layers))

    def forward(self, latents: Tensor) -> Tensor:
        x = self.in_norm(self.in_proj(latents))
        for block in self.blocks:
            x = block(x)
        return x


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """``t [B]`` in [0, 1] -> ``[B, dim]``: ``cat(sin, cos)`` of ``1000 t · exp(-k ln(1e4) / (half - 1))``."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=t.dtype) * (-math.log(10000.0) / (half - 1)))
    angles = (1000.0 * t)[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def phase_rotation(n_fft: int, hop: int, frames: int, device: torch.device | None = None) -> Tensor:
    """``[n_fft / 2 + 1, frames]`` unit phasors ``exp(-2πi · k · n · hop / n_fft)`` that turn frame-referenced STFT
    bins (``torch.stft``: phase relative to each frame's start) into time-referenced ones (relative to sample 0),
    so that a steady sinusoid at a bin's centre has the same value in every frame (``phase_reference="time"``).
    The phase is reduced modulo ``n_fft`` in integers, so that long inputs keep it exact."""
    k = torch.arange(n_fft // 2 + 1, device=device)[:, None]
    n = torch.arange(frames, device=device)[None]
    turns = (k * n * hop) % n_fft
    angle = turns.double() * (-2 * math.pi / n_fft)
    return torch.polar(torch.ones_like(angle), angle).to(torch.complex64)


def _window(n_fft: int) -> NamedBuffer:
    return NamedBuffer("window", torch.hann_window(n_fft, periodic=True))


class Decoder(nn.Module):
    """One branch's network on STFT channels ``[B, n_fft + 2, frames]``."""

    def __init__(self, config: FlowVocoderConfig, index: int):
        super().__init__()
        channels, bins = config.channels[index], config.n_ffts[index] + 2
        cond, temb = config.cond_enc_channels, config.time_embed_channels
        self.time_embed_channels = temb
        self.in_proj = PointwiseConv1d(bins, channels)
        self.in_norm = BiasNorm(channels)
        self.time_mlp = nn.Sequential(Linear(temb, temb * config.hidden_factor), nn.SiLU(),
                                      Linear(temb * config.hidden_factor, temb))
        self.cond_mlp = nn.Sequential(PointwiseConv1d(cond, cond * config.hidden_factor),
                                      nn.PReLU(cond * config.hidden_factor),
                                      PointwiseConv1d(cond * config.hidden_factor, cond))
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(channels, config.hidden_factor, config.conv_kernel_sizes[index], config.residual_scale,
                          cond_channels=cond, time_channels=temb) for _ in range(config.num_layers[index]))
        self.out_proj = PointwiseConv1d(channels, bins)
        self.input_gain = PointwiseConv1d(channels, bins // 2) if config.input_gain else None
        if self.input_gain is not None:  # zero at initialisation: the reference's network
            nn.init.zeros_(self.input_gain.weight)
            nn.init.zeros_(self.input_gain.bias)

    def forward(self, spec: Tensor, cond: Tensor, t: Tensor, mask: Tensor | None) -> Tensor:
        temb = self.time_mlp(time_embedding(t, self.time_embed_channels))
        cond = self.cond_mlp(cond)
        x = self.in_norm(self.in_proj(spec))
        for block in self.blocks:
            x = block(x, cond, temb, mask)
        out = self.out_proj(x)
        if self.input_gain is not None:
            out = out + repeat(self.input_gain(x), "b f t -> b (c f) t", c=2) * spec
        return out if mask is None else out * mask


class Branch(nn.Module):
    """Waveform ``[B, T]`` -> this branch's estimate ``[B, T]`` through its STFT domain."""

    def __init__(self, config: FlowVocoderConfig, index: int):
        super().__init__()
        self.n_fft, self.hop = config.n_ffts[index], config.hop_lengths[index]
        self.upsample = config.hop_length // self.hop
        self.time_referenced = config.phase_reference == "time"
        self.fft = _window(self.n_fft)
        self.ifft = _window(self.n_fft)
        self.decoder = Decoder(config, index)

    def forward(self, x: Tensor, cond: Tensor, t: Tensor, lengths: Tensor | None = None) -> Tensor:
        samples = x.shape[-1]
        spec = torch.stft(x, self.n_fft, self.hop, window=self.fft.window, center=True, pad_mode="reflect",
                          normalized=False, onesided=True, return_complex=True)
        frames = spec.shape[-1]
        rotation = phase_rotation(self.n_fft, self.hop, frames, x.device) if self.time_referenced else None
        if rotation is not None:
            spec = spec * rotation.to(spec.dtype)
        channels = rearrange(torch.view_as_real(spec), "b f t c -> b (c f) t")
        cond = repeat(cond, "b c f -> b c (f r)", r=self.upsample)
        cond = F.pad(cond, (0, frames - cond.shape[-1])) if cond.shape[-1] < frames else cond[..., :frames]
        mask = None
        if lengths is not None:
            valid = torch.div(lengths, self.hop, rounding_mode="floor") + 1
            mask = (torch.arange(frames, device=x.device)[None] < valid[:, None])[:, None].to(x.dtype)
        out = self.decoder(channels, cond, t, mask)
        complex_spec = torch.view_as_complex(rearrange(out, "b (c f) t -> b f t c", c=2).contiguous())
        if rotation is not None:
            complex_spec = complex_spec * rotation.conj().to(complex_spec.dtype)
        audio = torch.istft(complex_spec, self.n_fft, self.hop, window=self.ifft.window, center=True)
        return F.pad(audio, (0, samples - audio.shape[-1])) if audio.shape[-1] < samples else audio[..., :samples]


class LossSpectrogram(nn.Module):
    """``[B, T]`` -> power spectrogram through the linear filterbank ``[B, n_filters, frames]``."""

    def __init__(self, config: FlowVocoderConfig):
        super().__init__()
        self.n_fft, self.hop = config.loss_n_fft, config.loss_hop_length
        self.spectrogram = _window(config.loss_n_fft)
        with torch.device("cpu"):
            fb = linear_filterbank(config.sampling_rate, config.loss_n_fft, config.loss_n_filters)
        self.register_buffer("fb", fb.T.contiguous())

    def forward(self, audio: Tensor) -> Tensor:
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.spectrogram.window, center=True,
                          pad_mode="reflect", normalized=False, onesided=True, return_complex=True).abs().square()
        return rearrange(rearrange(spec, "b f t -> b t f") @ self.fb, "b t m -> b m t")


SCHEDULES = ("uniform", "sine")


def decode_grid(steps: int, schedule: str = "uniform") -> Tensor:
    """``[steps + 1]`` float32 times from 0 (noise) to 1 (audio): ``k / N`` or ``sin(π k / 2N)`` (evaluated in
    float64: :func:`semlat.sampling.time_grid`)."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return sampling.time_grid(steps, schedule, dtype=torch.float64).float()


class FlowVocoder(FromConfig, nn.Module):
    """See the module docstring."""

    def __init__(self, config: FlowVocoderConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.cond_encoder = CondEncoder(config)
        self.estimators = nn.ModuleList(Branch(config, i) for i in range(len(config.n_ffts)))
        self.loss_spec = LossSpectrogram(config)

    config_class = FlowVocoderConfig
    config_where = "flow vocoder config"

    def predict(self, x: Tensor, cond: Tensor, t: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The clean-waveform estimate ``[B, T]`` from ``x_t [B, T]``, encoded latents ``cond [B, Cc, F]`` and
        ``t [B, 1]``: the mean of the branches (one dropped per item with ``branch_dropout`` in training)."""
        outputs = torch.stack([branch(x, cond, t.reshape(-1), lengths) for branch in self.estimators])
        if self.training and self.config.branch_dropout > 0:
            n, b = outputs.shape[:2]
            drop = torch.rand(b, device=x.device) < self.config.branch_dropout
            which = torch.randint(n, (b,), device=x.device)
            keep = torch.ones(n, b, device=x.device, dtype=x.dtype)
            keep[which[drop], torch.nonzero(drop).flatten()] = 0.0
            keep = torch.where(drop[None], keep * n / (n - 1), keep)
            outputs = outputs * keep[..., None]
        return outputs.mean(0)

    def velocity(self, x: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        return (self.predict(x, cond, t) - x) / (1 - t)

    def sample(self, latents: Tensor, steps: int = 4, noise: Tensor | None = None, seed: int | None = None,
               clamp: bool = True, schedule: str = "uniform") -> Tensor:
        """Latents ``[B, D, F]`` -> audio ``[B, F · hop]`` by ``steps`` Euler steps from ``noise`` (unit normal
        ``[B, F · hop]``; else drawn from ``seed``, or from the global generator when ``seed`` is None), scaled
        by ``init_noise_scale``. Differentiable (a GAN fine-tune trains through the unrolled steps); inference
        calls :meth:`generate`."""
        if steps < 1:
            raise ConfigError(f"the vocoder needs at least one step, got {steps}")
        batch, frames = latents.shape[0], latents.shape[-1]
        if noise is None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            noise = torch.randn(batch, frames * self.config.hop_length, generator=generator)
        x = noise.to(latents.device, latents.dtype) * self.config.init_noise_scale
        cond = self.cond_encoder(latents)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return self.velocity(x, cond, t.to(x.dtype).expand(batch, 1))

        x = sampling.sample(velocity, x, decode_grid(steps, schedule).to(x.device))
        if clamp:
            x = x.clamp(-1.0, 1.0)
        return x / x.abs().amax(dim=-1, keepdim=True).clamp(min=1.0)

    @torch.no_grad()
    def generate(self, latents: Tensor, steps: int = 4, noise: Tensor | None = None, seed: int | None = None,
                 clamp: bool = True, schedule: str = "uniform") -> Tensor:
        """:meth:`sample` without gradients (the decode path)."""
        return self.sample(latents, steps, noise, seed, clamp, schedule)

    def loss(self, latents: Tensor, audio: Tensor, lengths: Tensor | None = None, x0: Tensor | None = None,
             t: Tensor | None = None) -> Tensor:
        """The training loss (module docstring) of clean ``audio [B, T]`` given its latents; ``x0`` (already
        scaled noise) and ``t [B, 1]`` are drawn in that order when not given."""
        c = self.config
        if x0 is None:
            x0 = torch.randn_like(audio) * c.init_noise_scale
        if t is None:
            t = torch.rand(audio.shape[0], 1, device=audio.device, dtype=audio.dtype)
        x_t = (1 - t) * x0 + t * audio
        pred = self.predict(x_t, self.cond_encoder(latents), t, lengths)
        error = pred - audio
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[-1], device=audio.device, dtype=torch.long)
        if not c.spec_scaling_loss:
            valid = (torch.arange(audio.shape[-1], device=audio.device)[None] < lengths[:, None]).to(audio.dtype)
            return (error.square() * valid).sum() / valid.sum()  # over every valid sample of the batch
        target = self.loss_spec(audio)
        scale = (target + c.loss_eps).pow(-c.loss_power).clamp(c.loss_scale_min, c.loss_scale_max)
        frames = target.shape[-1]
        valid = torch.arange(frames, device=audio.device)[None] < (torch.div(lengths, c.loss_hop_length,
                                                                               rounding_mode="floor") + 1)[:, None]
        weight = scale * valid[:, None].to(audio.dtype)
        return (self.loss_spec(error) * weight).sum() / (valid.sum() * c.loss_n_filters)

    forward = loss  # training calls the loss as the forward pass, so that DDP syncs its gradients


class FewStepVocoder(nn.Module):
    """A :class:`FlowVocoder` run as a ``steps``-step generator (Flow2GAN's second stage): ``latents [B, D, F]``
    -> audio ``[B, 1, F · hop]`` through :meth:`FlowVocoder.sample` with gradients, fresh noise each call and no
    clamp (the GAN recipe trains through it; ``semlat.load`` decodes with the same steps and schedule). Its
    state is ``vocoder.*``."""

    def __init__(self, vocoder: FlowVocoder, steps: int, schedule: str = "uniform"):
        super().__init__()
        if steps < 1:
            raise ConfigError(f"the vocoder needs at least one step, got {steps}")
        decode_grid(steps, schedule)  # checks the schedule's name
        self.vocoder, self.steps, self.schedule = vocoder, steps, schedule

    def forward(self, latents: Tensor) -> Tensor:
        audio = self.vocoder.sample(latents, self.steps, clamp=False, schedule=self.schedule)
        return rearrange(audio, "b t -> b 1 t")
