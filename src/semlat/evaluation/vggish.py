"""VGGish embeddings (Hershey et al. 2017, "CNN Architectures for Large-Scale Audio Classification")
for Fréchet audio distance, loaded from the torchvggish port's released checkpoints.

Files (harritaylor/torchvggish release v0.1, read from a local file, never downloaded):
``vggish-10086976.pth`` (the network, a bare state dict) and, optionally,
``vggish_pca_params-970ea276.pth`` (``pca_eigen_vectors`` ``[128, 128]`` and ``pca_means`` ``[128]``,
stored as numpy arrays; Google's original ``vggish_pca_params.npz`` is read as well).

Front end (the reference's ``mel_features.log_mel_spectrogram`` at ``vggish_params``' constants),
computed in float64 like the reference and cast to float32 before the network:

- 16 kHz input; frames of 400 samples (25 ms) every 160 samples (10 ms), no centring or padding
  (only whole frames); periodic Hann window of 400 samples; ``|rfft|`` with a 512-point FFT
  (the frame zero-padded at its end) -> magnitude ``[frames, 257]``.
- 64 mel bands from 125 to 7500 Hz on the HTK mel scale ``1127 ln(1 + f / 700)``; the triangles are
  linear in *mel* (not in Hz, unlike librosa's htk filterbank), unnormalised, and the DC bin gets no
  weight; ``log(mel + 0.01)``.
- Non-overlapping examples of 96 frames (0.96 s): ``[T, 96, 64]``; an incomplete last example is
  dropped, as in the reference.

Network: VGG-like ``features`` (conv 64, pool, conv 128, pool, 2 x conv 256, pool, 2 x conv 512,
pool; 3x3 convs with ReLU, 2x2 max pools) -> ``[T, 512, 6, 4]`` flattened in (time, mel, channel)
order (the TensorFlow layout) -> ``embeddings``: 12288 -> 4096 -> 4096 -> 128 with ReLU between.

Which output FAD uses: the FAD implementations built on torchvggish (gudgud96/frechet-audio-distance
and microsoft/fadtk, both defaults ``use_pca=False, use_activation=False``) take the **raw 128-d
output of the last linear layer**: no PCA / quantisation and no ReLU after it (torchvggish's port
keeps a final ReLU; the current TensorFlow VGGish has none there, ``fc2`` with ``activation_fn=None``).
That is this module's default; ``final_relu=True`` restores torchvggish's ReLU and ``postprocess=True``
(with a PCA file) applies the AudioSet-release PCA whitening, clipping to [-2, 2] and 8-bit
quantisation (values 0..255 as floats).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semlat.checkpoints import check_state_dict, read_foreign_weights, unwrap_state_dict
from semlat.errors import CheckpointError, ConfigError
from semlat.evaluation.metrics import as_signal, resample_to
from semlat.utils.files import sha256_file

SAMPLE_RATE = 16000
WINDOW = 400            # 25 ms
HOP = 160               # 10 ms
N_FFT = 512             # next power of two above WINDOW
N_MELS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96     # 0.96 s, also the hop between examples
EMBEDDING_DIM = 128
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0
#: Shortest signal giving one example: 96 frames of 400 samples every 160.
MIN_SAMPLES = WINDOW + (EXAMPLE_FRAMES - 1) * HOP
#: ``features`` layout: output channels of each 3x3 conv, "M" for a 2x2 max pool.
LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


def htk_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale ``1127 ln(1 + f / 700)``."""
    return 1127.0 * torch.log1p(hz / 700.0)


def vggish_mel_matrix(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                      f_min: float = MEL_MIN_HZ, f_max: float = MEL_MAX_HZ) -> torch.Tensor:
    """VGGish's mel weights, float64 ``[n_fft // 2 + 1, n_mels]``: triangles linear in HTK mel between
    ``n_mels + 2`` equally spaced mel edges, peak 1, zero weight on the DC bin."""
    bins_mel = htk_mel(torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64))
    edges = torch.linspace(math.log1p(f_min / 700.0) * 1127.0, math.log1p(f_max / 700.0) * 1127.0,
                           n_mels + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0
    return weights


class VGGishFrontEnd(nn.Module):
    """16 kHz waveform ``[N]`` (``N >= MIN_SAMPLES``) -> log-mel examples ``[T, 96, 64]`` float64,
    ``T = floor((1 + (N - 400) // 160) / 96)``. No parameters; see the module doc for the constants."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(WINDOW, periodic=True, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("mel", vggish_mel_matrix(), persistent=False)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``[N]`` -> ``log(mel magnitude + 0.01)`` ``[frames, 64]``."""
        frames = wave.to(torch.float64).unfold(0, WINDOW, HOP) * self.window      # [F, 400]
        magnitude = torch.fft.rfft(frames, n=N_FFT).abs()                          # [F, 257]
        return torch.log(magnitude @ self.mel + LOG_OFFSET)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.ndim != 1 or wave.shape[0] < MIN_SAMPLES:
            raise ValueError(f"VGGish needs a 1-D signal of at least {MIN_SAMPLES} samples, got shape "
                             f"{tuple(wave.shape)}")
        log_mel = self.log_mel(wave)
        return rearrange(log_mel.unfold(0, EXAMPLE_FRAMES, EXAMPLE_FRAMES), "t m f -> t f m")


class VGGish(nn.Module):
    """The VGGish network: log-mel examples ``[T, 96, 64]`` -> embeddings ``[T, 128]``.

    ``final_relu`` applies torchvggish's ReLU after the last linear layer (off by default, see the
    module doc). The state dict has exactly torchvggish's keys (``features.{0,3,6,8,11,13}.*``,
    ``embeddings.{0,2,4}.*``).
    """

    def __init__(self, final_relu: bool = False):
        super().__init__()
        self.final_relu = final_relu
        layers: list[nn.Module] = []
        width = 1
        for item in LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(width, int(item), 3, padding=1), nn.ReLU()]
                width = int(item)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 6 * 4, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                                        nn.Linear(4096, EMBEDDING_DIM))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(rearrange(examples, "t f m -> t 1 f m"))                 # [T, 512, 6, 4]
        x = self.embeddings(rearrange(x, "t c f m -> t (f m c)"))
        return F.relu(x) if self.final_relu else x


class VGGishPCA(nn.Module):
    """AudioSet-release postprocessing: ``[T, 128]`` -> PCA-whitened, clipped to [-2, 2] and quantised
    to 0..255 (float) ``[T, 128]``. Buffers ``pca_eigen_vectors`` ``[128, 128]``, ``pca_means`` ``[128]``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pca_eigen_vectors", torch.eye(EMBEDDING_DIM))
        self.register_buffer("pca_means", torch.zeros(EMBEDDING_DIM))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        whitened = (embeddings - self.pca_means) @ self.pca_eigen_vectors.T
        clipped = whitened.clamp(QUANTIZE_MIN, QUANTIZE_MAX)
        return torch.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)))


def from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", final_relu: bool = False) -> VGGish:
    """Load ``vggish-10086976.pth`` (or the same state dict, bare or wrapped in ``model`` /
    ``state_dict``, as ``.pth`` or ``.safetensors``) strictly; eval mode on ``device``."""
    state = unwrap_state_dict(read_foreign_weights(path), ("model", "state_dict"), where=str(path))
    model = VGGish(final_relu)
    check_state_dict(model.state_dict(), state, str(path))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.to(device).eval()


def pca_from_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> VGGishPCA:
    """Load the PCA parameters (``vggish_pca_params-970ea276.pth``, Google's ``vggish_pca_params.npz``,
    or the same two arrays as ``.safetensors``); ``pca_means`` may be ``[128]`` or ``[128, 1]``."""
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise CheckpointError(f"{path}: no such PCA parameter file")
        try:
            with np.load(path, allow_pickle=False) as npz:
                data: Mapping[str, Any] = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: unreadable npz file ({str(err).splitlines()[0]})") from None
    else:
        data = read_foreign_weights(path, "PCA parameter")
    state: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: PCA entry {key!r} is a {type(value).__name__}, not an array")
        state[key] = value.to(torch.float32)
    if "pca_means" in state and state["pca_means"].ndim == 2 and state["pca_means"].shape[-1] == 1:
        state["pca_means"] = state["pca_means"][:, 0]
    pca = VGGishPCA()
    check_state_dict(pca.state_dict(), state, str(path))
    pca.load_state_dict(state, strict=True)
    return pca.to(device).eval()


class VGGishEmbedder:
    """VGGish embeddings for Fréchet audio distance: one 128-d row per 0.96 s example, ``[T, 128]``.

    Defaults give what the FAD implementations use (raw last-layer output, no ReLU, no PCA; see the
    module doc). Options: ``final_relu`` (torchvggish's ReLU), ``postprocess`` (needs ``pca``, the PCA
    parameter file). Input of any rate is resampled to 16 kHz with soxr HQ (torchvggish uses resampy);
    a signal shorter than one example (0.975 s, :data:`MIN_SAMPLES`) is zero-padded at the end.
    """

    def __init__(self, checkpoint: str | Path, *, device: str | torch.device = "cpu", pca: str | Path | None = None,
                 postprocess: bool = False, final_relu: bool = False):
        path = Path(checkpoint)
        if postprocess and pca is None:
            raise ConfigError(f"{path}: postprocess=True needs the PCA parameter file (pca=...)")
        self.device = torch.device(device)
        self.model = from_checkpoint(path, device, final_relu=final_relu)
        self.front = VGGishFrontEnd()                                        # float64, on the CPU
        self.pca = pca_from_file(pca, device) if postprocess and pca is not None else None
        self.sample_rate: int = SAMPLE_RATE
        self.dim: int = EMBEDDING_DIM
        extras = "".join([", final ReLU" if final_relu else "",
                          f", PCA+quantised ({Path(pca).name})" if self.pca is not None else ""])
        self.label: str = f"vggish ({path.name}, sha256 {sha256_file(path)[:8]}…, {SAMPLE_RATE} Hz{extras})"

    @torch.inference_mode()
    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor:
        """One signal (``[N]`` or ``[1, N]``, numpy or torch, any rate) -> float32 ``[T, 128]`` on CPU,
        ``T`` = number of whole 0.96 s examples (at least 1)."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        x = resample_to(as_signal(audio, "audio"), int(sample_rate), SAMPLE_RATE)
        if not np.isfinite(x).all():
            raise ValueError("audio has NaN or infinite samples")
        if len(x) < MIN_SAMPLES:
            x = np.pad(x, (0, MIN_SAMPLES - len(x)))
        examples = self.front(torch.from_numpy(x)).to(self.device, torch.float32)
        out = self.model(examples)
        if self.pca is not None:
            out = self.pca(out)
        return out.float().cpu()
