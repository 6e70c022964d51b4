"""The multi-resolution (STFT magnitude) discriminator of UnivNet / BigVGAN (``MultiResolutionDiscriminator``).

One :class:`ResolutionDiscriminator` per ``(n_fft, hop, win)`` resolution looks at the linear
magnitude spectrogram of the waveform through a stack of weight-normalised 2-D convolutions
(BigVGAN's ``DiscriminatorR`` with ``discriminator_channel_mult``)::

    |STFT|  [B, 1, n_fft/2+1, frames]     (frequency on dim 2, time on dim 3, as in the reference)
    convs.0 Conv2d(1 -> C, (3, 9), pad (1, 4))               + LeakyReLU(0.1)
    convs.1-3 Conv2d(C -> C, (3, 9), stride (1, 2), pad (1, 4)) + LeakyReLU(0.1)
    convs.4 Conv2d(C -> C, (3, 3), pad (1, 1))               + LeakyReLU(0.1)
    conv_post Conv2d(C -> 1, (3, 3), pad (1, 1))             logits

with ``C = int(32 * channel_mult)``. The module keys are BigVGAN's (``discriminators.{r}.convs.{i}.*``,
``discriminators.{r}.conv_post.*``) in torch's parametrization weight-norm form; a released
``bigvgan_discriminator_optimizer.pt`` ``mrd`` entry (legacy ``weight_g``/``weight_v``) loads with
:meth:`MultiResolutionDiscriminator.load_reference_state_dict`.

``forward(audio [B, 1, T])`` returns one list of feature maps per resolution (six maps: five after
their activations, then the logits), the format :mod:`semlat.losses.adversarial` consumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semlat.checkpoints import load_state_dict_strict
from semlat.nn.weight_norm import WNConv2d, legacy_to_parametrized

#: ``(n_fft, hop_length, win_length)`` of BigVGAN's / UnivNet's MRD.
DEFAULT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
LEAKY_SLOPE = 0.1

FeatureMaps = list[torch.Tensor]


class ResolutionDiscriminator(nn.Module):
    """One resolution: ``[B, 1, T] -> 6 feature maps [B, C_i, n_fft // 2 + 1, L_i]`` (the last has one channel).

    ``L_0 = (T + 2 * ((n_fft - hop) // 2) - n_fft) // hop + 1`` frames, halved (rounding up) by each of the
    three strided layers: the kernels are 3 bins by 9 frames and the strides act on time, as in the reference.
    """

    def __init__(self, resolution: Sequence[int], channel_mult: float = 1.0):
        super().__init__()
        if len(resolution) != 3:
            raise ValueError(f"a resolution is (n_fft, hop_length, win_length), got {tuple(resolution)}")
        n_fft, hop, win = (int(v) for v in resolution)
        if not 0 < hop <= n_fft or not 0 < win <= n_fft:
            raise ValueError(f"resolution {tuple(resolution)}: need 0 < hop <= n_fft and 0 < win <= n_fft")
        self.resolution = (n_fft, hop, win)
        ch = int(32 * channel_mult)
        if ch < 1:
            raise ValueError(f"channel_mult {channel_mult} leaves no channels (32 * mult < 1)")
        self.convs = nn.ModuleList([
            WNConv2d(1, ch, (3, 9), padding=(1, 4)),
            WNConv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4)),
            WNConv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4)),
            WNConv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4)),
            WNConv2d(ch, ch, (3, 3), padding=(1, 1)),
        ])
        self.conv_post = WNConv2d(ch, 1, (3, 3), padding=(1, 1))

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, 1, n_fft // 2 + 1, frames]`` STFT magnitude, in float32 even under autocast.

        As the reference: reflect-pad ``(n_fft - hop) // 2`` on both sides, ``torch.stft`` with
        ``center=False`` and no window argument, i.e. a rectangular ``win_length`` window (zero-padded
        to ``n_fft`` on both sides), magnitude ``sqrt(re^2 + im^2)``. The gradient at an exactly-zero bin is 0.
        """
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, T], got {tuple(audio.shape)}")
        n_fft, hop, win = self.resolution
        pad = (n_fft - hop) // 2
        if audio.shape[-1] <= pad:
            raise ValueError(f"audio of {audio.shape[-1]} samples is too short for the {n_fft}-point MRD "
                             f"(reflect padding of {pad} needs more)")
        dtype = torch.float64 if audio.dtype == torch.float64 else torch.float32
        with torch.autocast(audio.device.type, enabled=False):
            x = F.pad(audio.to(dtype), (pad, pad), mode="reflect")
            window = torch.ones(win, dtype=dtype, device=audio.device)  # the reference passes no window
            spec = torch.stft(rearrange(x, "b 1 t -> b t"), n_fft=n_fft, hop_length=hop, win_length=win,
                              window=window, center=False, return_complex=True)
            mag = torch.linalg.vector_norm(torch.view_as_real(spec), ord=2, dim=-1)
        return rearrange(mag, "b f t -> b 1 f t")

    def forward(self, audio: torch.Tensor) -> FeatureMaps:
        """``[B, 1, T]`` -> the six feature maps (see the class docstring)."""
        x = self.spectrogram(audio)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            fmaps.append(x)
        fmaps.append(self.conv_post(x))
        return fmaps


class MultiResolutionDiscriminator(nn.Module):
    """A :class:`ResolutionDiscriminator` per resolution: ``[B, 1, T] -> list (per resolution) of 6 maps``.

    Args:
        resolutions: ``(n_fft, hop_length, win_length)`` triples (BigVGAN's ``resolutions``).
        channel_mult: width multiplier of the 32-channel stacks (``discriminator_channel_mult``).
    """

    def __init__(self, resolutions: Sequence[Sequence[int]] = DEFAULT_RESOLUTIONS, channel_mult: float = 1.0):
        super().__init__()
        if not resolutions:
            raise ValueError("MultiResolutionDiscriminator needs at least one resolution")
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(r, channel_mult) for r in resolutions)

    @property
    def names(self) -> list[str]:
        """``mrd{n_fft}`` per sub-discriminator, in order."""
        return [f"mrd{d.resolution[0]}" for d in self.discriminators]

    def forward(self, audio: torch.Tensor) -> list[FeatureMaps]:
        """``[B, 1, T]`` -> per resolution, its feature maps (the last one the logits)."""
        return [d(audio) for d in self.discriminators]

    def load_reference_state_dict(self, state: Mapping[str, torch.Tensor], where: str = "mrd") -> None:
        """Load BigVGAN's ``mrd`` state dict (legacy ``weight_g``/``weight_v`` keys), strictly."""
        load_state_dict_strict(self, legacy_to_parametrized(state), where)
