"""PANNs Cnn14 clip embeddings (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks
for Audio Pattern Recognition") for Fréchet audio distance, loaded from the released checkpoints.

Released checkpoints (Zenodo record 3987831, read from a local file, never downloaded):

=============================  ===========  =====  =====  ====  ====  =====
file                           sample rate  n_fft  hop    mels  fmin  fmax
=============================  ===========  =====  =====  ====  ====  =====
``Cnn14_mAP=0.431.pth``        32000        1024   320    64    50    14000
``Cnn14_16k_mAP=0.438.pth``    16000        512    160    64    50    8000
``Cnn14_8k_mAP=0.416.pth``     8000         256    80     64    50    4000
=============================  ===========  =====  =====  ====  ====  =====

The variant is recognised from the checkpoint itself (the size of its DFT kernels).

Front end (as in the reference, torchlibrosa ``Spectrogram`` + ``LogmelFilterBank``): periodic Hann
window of ``n_fft`` samples, centred frames with reflect padding, power spectrogram, mel projection
by the checkpoint's own ``logmel_extractor.melW`` (librosa's slaney filterbank, ``[n_fft/2+1, 64]``),
then ``10 log10(max(mel, 1e-10))`` (ref 1.0, no top_db).

How the checkpoint's front-end tensors are used:

- ``spectrogram_extractor.stft.conv_real/conv_imag.weight`` (the reference computes the STFT as a
  convolution with these windowed-DFT kernels): kept as buffers so the state dict has exactly the
  reference keys, checked at load time against the Hann-windowed DFT we compute (a checkpoint whose
  kernels differ is refused), and otherwise unused: the STFT is computed with :func:`torch.stft`.
- ``logmel_extractor.melW``: used as stored. This matters: the 32 kHz model was trained with
  ``fmax=14000``; some wrappers build it with ``fmax=16000`` but then load the stored ``melW`` over it.

Architecture: ``bn0`` (BatchNorm over the 64 mel bands), six conv blocks (two 3x3 conv + BN + ReLU,
then 2x2 average pooling; the last block pools 1x1) with 64..2048 channels, mean over mel, max + mean
over time, ``fc1`` + ReLU -> the 2048-d ``embedding`` (the output the FAD implementations use),
``fc_audioset`` -> 527 AudioSet logits (kept for the keys; :meth:`Cnn14.tag` uses it).

Released ``.pth`` files also hold the training sampler's state as pickled numpy arrays; they are read
with ``torch.load(weights_only=True)`` and only numpy's array/scalar constructors allowlisted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semlat.audio.filterbanks import mel_filterbank
from semlat.checkpoints import check_state_dict, read_foreign_weights, unwrap_state_dict
from semlat.errors import CheckpointError, ConfigError
from semlat.evaluation.metrics import as_signal, resample_to
from semlat.utils.files import sha256_file

AUDIOSET_CLASSES = 527
EMBEDDING_DIM = 2048
CHANNELS = (64, 128, 256, 512, 1024, 2048)
#: Largest tolerated difference between a checkpoint's DFT kernels and the windowed DFT we compute.
DFT_TOLERANCE = 1e-3
#: Each of the five 2x2 poolings halves time; fewer than 32 frames would pool to nothing.
MIN_FRAMES = 32


@dataclass(frozen=True)
class FrontEnd:
    """STFT and log-mel constants of one released Cnn14."""

    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def min_samples(self) -> int:
        """Shortest input giving :data:`MIN_FRAMES` centred frames."""
        return (MIN_FRAMES - 1) * self.hop


#: sample rate -> front end of the released Cnn14 for that rate.
VARIANTS: Mapping[int, FrontEnd] = {
    32000: FrontEnd(32000, 1024, 320, fmax=14000.0),
    16000: FrontEnd(16000, 512, 160, fmax=8000.0),
    8000: FrontEnd(8000, 256, 80, fmax=4000.0),
}


def windowed_dft(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's STFT kernels: real and imaginary parts of ``exp(-2 pi i k n / N) * hann[n]``,
    each ``[n_fft // 2 + 1, 1, n_fft]`` float32 (periodic Hann, as ``librosa.filters.get_window``)."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    phase = 2.0 * math.pi * torch.remainder(k[:, None] * n[None, :], n_fft) / n_fft
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    real = torch.cos(phase) * window
    imag = -torch.sin(phase) * window
    return real[:, None, :].float(), imag[:, None, :].float()


class _Kernel(nn.Module):
    """Holds one tensor under the key ``weight`` (the reference's frozen ``Conv1d`` weight)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)


class _DFTKernels(nn.Module):
    """``stft.conv_real`` / ``stft.conv_imag``: the reference's DFT kernels ``[n_fft/2+1, 1, n_fft]``."""

    def __init__(self, n_fft: int):
        super().__init__()
        real, imag = windowed_dft(n_fft)
        self.conv_real = _Kernel(real)
        self.conv_imag = _Kernel(imag)


class PowerSpectrogram(nn.Module):
    """Waveform ``[B, N]`` -> power spectrogram ``[B, 1, T, n_fft/2+1]``, ``T = 1 + N // hop``.

    Centred frames with reflect padding and a periodic Hann window, computed with :func:`torch.stft`.
    ``stft`` only carries the reference's DFT kernels (see the module doc).
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.stft = _DFTKernels(n_fft)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window.to(wave.dtype), center=True,
                          pad_mode="reflect", return_complex=True)          # [B, F, T]
        power = spec.real.square() + spec.imag.square()
        return rearrange(power, "b f t -> b 1 t f")


class LogMel(nn.Module):
    """Power spectrogram ``[B, 1, T, F]`` -> ``10 log10(max(power @ melW, 1e-10))`` ``[B, 1, T, n_mels]``.

    ``melW`` ``[F, n_mels]`` starts as librosa's slaney filterbank and is replaced by the checkpoint's.
    """

    def __init__(self, front: FrontEnd):
        super().__init__()
        with torch.device("cpu"):                                            # also when built on "meta"
            fbank = mel_filterbank(front.sample_rate, front.n_fft, front.n_mels, front.fmin, front.fmax,
                                   scale="slaney", norm="slaney", convention="librosa")
        self.register_buffer("melW", fbank.T.contiguous())

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=1e-10))


class ConvBlock(nn.Module):
    """``[B, C_in, T, M]`` -> ``[B, C_out, T / p, M / p]``: two (3x3 conv, BN, ReLU), ``p x p`` average pool."""

    def __init__(self, c_in: int, c_out: int, pool: int = 2):
        super().__init__()
        self.pool = pool
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, self.pool) if self.pool > 1 else x


class Cnn14(nn.Module):
    """PANNs Cnn14 (inference only; dropout and SpecAugment are training-time and absent).

    :meth:`forward`: waveform ``[B, N]`` at ``front.sample_rate`` (``N >= front.min_samples``)
    -> clip embedding ``[B, 2048]``. The state dict has exactly the reference's keys.
    ``channels``: widths of the six conv blocks (default :data:`CHANNELS`, the released model's).
    """

    def __init__(self, front: FrontEnd, channels: tuple[int, ...] | None = None, classes: int = AUDIOSET_CLASSES):
        super().__init__()
        channels = CHANNELS if channels is None else tuple(channels)
        self.front = front
        self.spectrogram_extractor = PowerSpectrogram(front.n_fft, front.hop)
        self.logmel_extractor = LogMel(front)
        self.bn0 = nn.BatchNorm2d(front.n_mels)
        widths = (1, *channels)
        for i in range(len(channels)):
            pool = 2 if i < len(channels) - 1 else 1
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1], pool))
        self.n_blocks = len(channels)
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.fc_audioset = nn.Linear(channels[-1], classes)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> normalised log-mel ``[B, 1, T, n_mels]`` (after ``bn0``)."""
        x = self.logmel_extractor(self.spectrogram_extractor(wave))
        x = rearrange(x, "b 1 t m -> b m t 1")                               # BN over mel bands
        return rearrange(self.bn0(x), "b m t 1 -> b 1 t m")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.log_mel(wave)
        for i in range(self.n_blocks):
            x = getattr(self, f"conv_block{i + 1}")(x)                      # [B, C, T', M']
        x = x.mean(dim=3)                                                    # [B, C, T']
        x = x.amax(dim=2) + x.mean(dim=2)                                    # [B, C]
        return F.relu(self.fc1(x))

    def tag(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> AudioSet class probabilities ``[B, 527]``."""
        return torch.sigmoid(self.fc_audioset(self(wave)))


# --- checkpoint files -------------------------------------------------------------------------

def _variant_of(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> FrontEnd:
    key = "spectrogram_extractor.stft.conv_real.weight"
    if key not in state:
        raise CheckpointError(f"{path}: does not fit the model: missing key {key} (not a PANNs Cnn14 checkpoint?)")
    n_fft = state[key].shape[-1]
    for front in VARIANTS.values():
        if front.n_fft == n_fft:
            return front
    raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)}; no released Cnn14 uses n_fft={n_fft} "
                          f"(known: {', '.join(f'{f.n_fft} at {f.sample_rate} Hz' for f in VARIANTS.values())})")


def from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    sample_rate: int | None = None) -> Cnn14:
    """Build the released Cnn14 a checkpoint file holds (variant read from its DFT kernels), load it
    strictly and return it in eval mode on ``device``.

    Args:
        path: ``.pth``/``.pt`` (bare state dict or ``{"model": ...}`` / ``{"state_dict": ...}``) or
            ``.safetensors`` in the reference key format.
        sample_rate: if given, the checkpoint must be the variant for this rate (ConfigError otherwise).
    """
    state = unwrap_state_dict(read_foreign_weights(path), ("model", "state_dict"), where=str(path))
    front = _variant_of(state, path)
    if sample_rate is not None and sample_rate != front.sample_rate:
        raise ConfigError(f"{path}: this Cnn14 is the {front.sample_rate} Hz variant (n_fft={front.n_fft}), "
                          f"not {sample_rate} Hz")
    model = Cnn14(front)
    check_state_dict(model.state_dict(), state, str(path))
    for part in ("real", "imag"):
        key = f"spectrogram_extractor.stft.conv_{part}.weight"
        want = dict(zip(("real", "imag"), windowed_dft(front.n_fft)))[part]
        diff = (state[key].float() - want).abs().max().item()
        if not diff <= DFT_TOLERANCE:
            raise CheckpointError(f"{path}: {key} is not the Hann-windowed DFT this model computes "
                                  f"(max difference {diff:.3g} > {DFT_TOLERANCE})")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.to(device).eval()


# --- embedder ---------------------------------------------------------------------------------

class PannsEmbedder:
    """Cnn14 clip embeddings for Fréchet audio distance: one ``[1, 2048]`` row per signal.

    The embedding is the reference's ``embedding`` output (``fc1`` + ReLU, before ``fc_audioset``), as
    used by the FAD implementations (gudgud96/frechet-audio-distance, microsoft/fadtk).
    Input of any rate is resampled (soxr HQ) to the checkpoint's rate; signals shorter than
    ``0.31 s`` (:data:`MIN_FRAMES` frames) are zero-padded at the end, since the network cannot pool less.
    """

    #: One embedding per clip: Fréchet distance rows are clips (AudioLDM's FD convention).
    pooling = "clip"

    def __init__(self, checkpoint: str | Path, *, device: str | torch.device = "cpu", sample_rate: int | None = None):
        path = Path(checkpoint)
        self.model = from_checkpoint(path, device, sample_rate=sample_rate)
        self.device = torch.device(device)
        self.sample_rate: int = self.model.front.sample_rate
        self.dim: int = self.model.fc1.out_features                          # EMBEDDING_DIM
        self.label: str = f"panns-cnn14 ({path.name}, sha256 {sha256_file(path)[:8]}…, {self.sample_rate} Hz)"

    @torch.inference_mode()
    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor:
        """One signal (``[N]`` or ``[1, N]``, numpy or torch, any rate) -> float32 ``[1, 2048]`` on CPU."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        x = resample_to(as_signal(audio, "audio"), int(sample_rate), self.sample_rate)
        if not np.isfinite(x).all():
            raise ValueError("audio has NaN or infinite samples")
        short = self.model.front.min_samples - len(x)
        if short > 0:
            x = np.pad(x, (0, short))
        wave = torch.from_numpy(x).to(self.device, torch.float32)[None]
        return self.model(wave).float().cpu()
