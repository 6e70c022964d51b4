"""Waveform processing: mono mixdown, resampling (soxr) and level normalisation.

All functions take and return float tensors shaped ``[..., N]`` (``[C, N]`` for a file's channels)
and leave their device and dtype unchanged. Resampling runs soxr on the CPU and is not
differentiable; use it on data, not inside a model.
"""

from __future__ import annotations

import math

import numpy as np
import soxr
import torch

from semlat.errors import AudioError

#: Loudness meters need at least one 400 ms gating block (ITU-R BS.1770).
MIN_LOUDNESS_SECONDS = 0.4


def to_mono(audio: torch.Tensor) -> torch.Tensor:
    """Mix ``[C, N]`` down to ``[1, N]`` by the equal-weight mean of the channels.

    The mean keeps the level of a file whose channels are identical (a "dual mono" file reads back
    unchanged) and never clips; content in opposite phase across channels cancels, as in any
    passive downmix.
    """
    if audio.dim() != 2:
        raise ValueError(f"to_mono expects [C, N], got shape {tuple(audio.shape)}")
    return audio.mean(dim=0, keepdim=True)


def resample(audio: torch.Tensor, orig_sr: int, target_sr: int, quality: str = "HQ") -> torch.Tensor:
    """Resample ``[..., N]`` from ``orig_sr`` to ``target_sr`` with soxr.

    Output length is ``ceil(N * target_sr / orig_sr)`` (soxr's rule). ``quality`` is a soxr
    preset: "QQ", "LQ", "MQ", "HQ" (default) or "VHQ".
    """
    if orig_sr == target_sr:
        return audio
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    lead = audio.shape[:-1]
    flat = audio.detach().reshape(-1, audio.shape[-1]).to("cpu", torch.float32).numpy()
    # soxr wants [frames, channels]; every row of `flat` is one channel.
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_sr, target_sr, quality=quality)
    out = torch.from_numpy(np.ascontiguousarray(out.T))
    return out.reshape(*lead, out.shape[-1]).to(audio.device, audio.dtype)


def sinc_resample(audio: torch.Tensor, orig_sr: int, target_sr: int, lowpass_filter_width: int = 6,
                  rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling with a Hann-windowed sinc, numerically torchaudio's default
    ``functional.resample`` (which models such as SemanticVocoder's Dasheng wrapper ran): ``[..., N]`` ->
    ``[..., ceil(N · target / orig)]``, on the input's device, differentiable. Prefer :func:`resample` (soxr)
    for data; use this where a model's numbers depend on that kernel.

    With ``g = gcd``, ``o = orig / g``, ``n = target / g``, ``base = min(o, n) · rolloff`` and
    ``w = ceil(width · o / base)``: output phase ``j`` of every block of ``n`` samples is a strided
    convolution of the input (padded ``w`` left, ``w + o`` right) with ``k(i) = sinc(π u) · cos²(π u / (2 ·
    width)) · base / o`` for ``i = -w .. w + o - 1`` and ``u = clamp((i / o - j / n) · base, -width, width)``."""
    if orig_sr == target_sr:
        return audio
    g = math.gcd(int(orig_sr), int(target_sr))
    orig, new = int(orig_sr) // g, int(target_sr) // g
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    dtype = audio.dtype if audio.is_floating_point() else torch.float32
    idx = torch.arange(-width, width + orig, dtype=dtype, device=audio.device)[None] / orig
    t = (torch.arange(0, -new, -1, dtype=dtype, device=audio.device)[:, None] / new + idx) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernels = torch.where(t == 0, torch.tensor(1.0, dtype=dtype, device=audio.device), t.sin() / t)
    kernels = (kernels * (window * (base / orig)))[:, None]
    lead, length = audio.shape[:-1], audio.shape[-1]
    x = torch.nn.functional.pad(audio.reshape(-1, 1, length).to(dtype), (width, width + orig))
    out = torch.nn.functional.conv1d(x, kernels, stride=orig)  # [B, new, blocks]
    out = out.transpose(1, 2).reshape(out.shape[0], -1)[:, :math.ceil(new * length / orig)]
    return out.reshape(*lead, out.shape[-1])


def resampled_length(num_samples: int, orig_sr: int, target_sr: int) -> int:
    """Number of samples :func:`resample` returns for ``num_samples`` input samples."""
    if orig_sr == target_sr:
        return num_samples
    return math.ceil(num_samples * target_sr / orig_sr)


def db_to_gain(db: float) -> float:
    """Amplitude gain for a level in dB."""
    return 10.0 ** (db / 20.0)


def peak_normalize(audio: torch.Tensor, peak_db: float = -1.0) -> torch.Tensor:
    """Scale so the largest absolute sample is ``peak_db`` dBFS. Silence is returned unchanged."""
    peak = audio.abs().max()
    if peak <= 0:
        return audio
    return audio * (db_to_gain(peak_db) / peak)


def loudness_normalize(
    audio: torch.Tensor, sample_rate: int, target_lufs: float = -23.0, max_peak_db: float = -1.0
) -> torch.Tensor:
    """Scale ``[C, N]`` to an integrated loudness of ``target_lufs`` (ITU-R BS.1770, pyloudnorm).

    If reaching the target would push a sample above ``max_peak_db`` dBFS, the gain is reduced
    so the peak sits exactly there (the result is then quieter than the target, never clipped).
    Silence (loudness of -inf) is returned unchanged.
    """
    import pyloudnorm

    if audio.shape[-1] < MIN_LOUDNESS_SECONDS * sample_rate:
        raise AudioError(
            f"audio of {audio.shape[-1] / sample_rate:.3f} s is too short for loudness "
            f"normalisation (needs at least {MIN_LOUDNESS_SECONDS} s); use peak normalisation"
        )
    data = audio.detach().to("cpu", torch.float64).numpy().T
    loudness = pyloudnorm.Meter(sample_rate).integrated_loudness(data)
    if not math.isfinite(loudness):
        return audio
    gain = db_to_gain(target_lufs - loudness)
    peak = float(audio.abs().max()) * gain
    limit = db_to_gain(max_peak_db)
    if peak > limit:
        gain *= limit / peak
    return audio * gain
