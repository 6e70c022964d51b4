"""A *supervised* phonetic teacher: the encoder of a CTC phoneme recognizer (``semlat judge train``) as
the target of the semantic VAE's alignment.

``ctc:PATH[@layers]`` names it (:mod:`semlat.semantic.teachers`): PATH is a ``ctc_judge`` model folder
or its training run. Without ``@layers`` the features are the encoder's layer-normed output before the
classifier (``[T, C]`` at 50 Hz, C = 256 by default); ``@k`` is residual block ``k``'s output (0: the
input conv), ``@i,j`` their mean, ``@all`` the mean of every one.

Unlike HuBERT's masked prediction this teacher learned from transcripts, so it is labelled as supervised
wherever it is reported, and it must be trained on voices and sentences disjoint from the judge that
scores PER (the judge is never the teacher): ``semlat.experiments.phonetic_teacher`` does that.
"""

from __future__ import annotations

import torch

from semlat.errors import ConfigError
from semlat.evaluation.ctc_judge import CTCJudge, load_judge
from semlat.semantic.teachers import Teacher, TeacherSpec


class CTCTeacher(Teacher):
    """The frozen encoder of a CTC judge: ``audio [B, N]`` at 16 kHz -> ``features [B, T, C]`` at 50 Hz."""

    def __init__(self, spec: TeacherSpec, judge: CTCJudge):
        super().__init__()
        depth = judge.model.config.layers
        layers = tuple(range(depth + 1)) if spec.layers == "all" else spec.layers
        if layers is not None:
            if not all(-depth - 1 <= k <= depth for k in layers):
                raise ConfigError(f"teacher {spec}: the recognizer has layers 0..{depth}")
            layers = tuple(k % (depth + 1) for k in layers)
        self.layers = layers
        self.spec = spec
        self.label = f"{judge.label}, supervised phonetic teacher"
        self.model = judge.model
        self.front = judge.features
        self.sample_rate = judge.front.sample_rate
        self.frame_rate = judge.front.sample_rate / (judge.front.hop_length * judge.model.config.stride)
        self.dim = judge.model.config.channels

    def features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, frames = self.front(audio, lengths)
        return self.model.hidden(mel, frames, self.layers)

    def num_frames(self, num_samples: int) -> int:
        frames = self.front.front.frames(num_samples)
        return int(self.model.output_lengths(torch.tensor([frames]))[0])


def load_ctc_teacher(spec: TeacherSpec) -> Teacher:
    """The teacher a ``ctc:`` spec names (a one-line ConfigError when PATH holds no CTC judge)."""
    return CTCTeacher(spec, load_judge(spec.path))
