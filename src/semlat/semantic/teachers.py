"""Teachers: frozen pretrained models that map audio to frame features, the targets of alignment.

A teacher is named by a spec string::

    hf:/models/wavlm-large@23          layer 23 of a Hugging Face model in a local folder
    hf:/models/hubert-base@6,9,12      the mean of layers 6, 9 and 12
    hf:/models/wav2vec2-base@all       the mean of every layer
    hf:/models/whisper-small           no layer: the last one
    semlat:/runs/demo_teacher@4        a teacher trained by ``semlat teacher train``
    ctc:/runs/phonetic_teacher         a CTC phoneme recognizer's encoder (``semlat judge train``): a
                                       *supervised* teacher (:mod:`semlat.evaluation.ctc_teacher`)

:func:`semlat.models.load_teacher` loads a spec (it sits above every teacher's module).

Layer ``k`` is ``hidden_states[k]`` of the model: 0 is the input to the first transformer layer,
``k`` the output of layer ``k``; negative indices count from the end (-1 is the last layer).
Paths are resolved to absolute paths, so a spec names one model wherever it is used (feature caches
record it and training refuses a cache made with another teacher).

Every teacher runs frozen: eval mode, no gradients, in its own precision. Its ``extract`` takes
audio at any sample rate, resamples it to the teacher's rate, and returns time-major features
``[B, T, dim]`` at ``frame_rate`` with the number of valid frames of each item.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from semlat.audio.processing import resample
from semlat.errors import ConfigError

SCHEMES = ("hf", "semlat", "ctc")  # loaded by semlat.models.load_teacher, above every teacher's module


@dataclass(frozen=True)
class TeacherSpec:
    """A parsed teacher spec: ``scheme:path[@layers]``.

    ``layers`` is ``None`` for the last layer, ``"all"`` for the mean of all layers, or a tuple of
    layer indices whose outputs are averaged.
    """

    scheme: str
    path: str
    layers: tuple[int, ...] | str | None = None

    @classmethod
    def parse(cls, text: str | TeacherSpec) -> TeacherSpec:
        """Parse ``scheme:path[@layers]``; the path becomes absolute."""
        if isinstance(text, TeacherSpec):
            return text
        scheme, sep, rest = str(text).partition(":")
        if not sep or scheme not in SCHEMES or not rest:
            raise ConfigError(f"teacher {text!r} must look like hf:/path/to/model[@layer], semlat:/path[@layer] "
                              "or ctc:/path[@layer]")
        path, _, layer_text = rest.rpartition("@") if "@" in rest else (rest, "", "")
        layers: tuple[int, ...] | str | None = None
        if layer_text == "all":
            layers = "all"
        elif layer_text:
            try:
                layers = tuple(int(part) for part in layer_text.split(","))
            except ValueError:
                raise ConfigError(f"teacher {text!r}: layers must be an integer, a comma list, or 'all'") from None
        return cls(scheme, str(Path(path).expanduser().resolve()), layers)

    def __str__(self) -> str:
        if self.layers is None:
            suffix = ""
        elif self.layers == "all":
            suffix = "@all"
        else:
            suffix = "@" + ",".join(str(k) for k in self.layers)
        return f"{self.scheme}:{self.path}{suffix}"


class Teacher(nn.Module, ABC):
    """A frozen feature extractor. Subclasses set ``spec``, ``sample_rate``, ``frame_rate``, ``dim``
    and implement :meth:`features`."""

    spec: TeacherSpec
    sample_rate: int
    frame_rate: float
    dim: int

    @abstractmethod
    def features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio [B, N]`` at ``sample_rate`` with valid ``lengths [B]`` (samples) ->
        ``(features [B, T, dim] float32, frame_lengths [B])``. Called under ``torch.no_grad``."""

    @abstractmethod
    def num_frames(self, num_samples: int) -> int:
        """Frames the teacher produces for ``num_samples`` samples at its rate."""

    def train(self, mode: bool = True) -> Teacher:
        """Teachers stay in eval mode whatever the caller asks."""
        return super().train(False)

    def freeze(self) -> Teacher:
        """Eval mode and ``requires_grad=False`` on every parameter; returns ``self``."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.train(False)

    @torch.no_grad()
    def extract(self, audio: torch.Tensor, sample_rate: int,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of ``audio`` (``[B, N]`` or ``[B, 1, N]`` at ``sample_rate``), valid ``lengths`` in
        samples (default: all). Returns ``(features [B, T, dim] float32, frame_lengths [B] long)``."""
        if audio.dim() == 3:
            audio = audio[:, 0]
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[-1], dtype=torch.long)
        lengths = lengths.to(torch.long).cpu()
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
            lengths = torch.div(lengths * self.sample_rate + sample_rate - 1, sample_rate, rounding_mode="floor")
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        features, frame_lengths = self.features(audio.to(device), lengths.to(device))
        return features.float(), frame_lengths.to(torch.long).cpu()


def teacher_path(spec: str | TeacherSpec) -> os.PathLike:
    """The local folder of a teacher spec."""
    return Path(TeacherSpec.parse(spec).path)
