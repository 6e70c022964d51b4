"""The offline sound-event judge: which class a clip sounds like, and a clip embedding for Fréchet distance.

No pretrained audio tagger (PANNs, an AudioSet Dasheng) can be downloaded here, so generated event clips are
judged by a model that depends on neither latent space under comparison: **log-mel statistics** of the clip
(64 bands, 16 kHz, dB; per band the mean, standard deviation, 10th and 90th percentile over time, and the mean
absolute frame-to-frame change: 320 values) standardised and classified by a multinomial logistic regression
fitted on the real clips of a labelled manifest's train split. Its accuracy on real held-out clips is the
ceiling a generated set can reach; its class scores (the regression's decision function, one value per class)
are the Fréchet embedding, one row per clip (a low-dimensional embedding: the held-out sets here hold tens of
clips, too few for the covariance of a wide one).
Figures made with it are labelled ``offline log-mel-statistics event judge``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from semlat.audio.io import load_audio
from semlat.audio.spectral import MelSpectrogram, mel_preset
from semlat.data.manifest import Manifest
from semlat.errors import DataError

SAMPLE_RATE = 16000
LABEL = "offline log-mel-statistics event judge (logistic regression on the corpus' real train clips)"


class EventJudge:
    """Fit on a labelled manifest (:meth:`fit`), then :meth:`judge` clips (classes and class scores)."""

    label = LABEL

    def __init__(self) -> None:
        self.config = mel_preset("dasheng_16k_64", top_db_over_batch=False)
        self.mel = MelSpectrogram(self.config)
        self.scaler: Any = None
        self.classifier: Any = None
        self.classes: list[str] = []
        self.train_accuracy = float("nan")

    @torch.no_grad()
    def statistics(self, audio: Any) -> np.ndarray:
        """One clip ``[N]`` at 16 kHz -> ``[320]`` raw log-mel statistics."""
        signal = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
        mel = self.mel(signal[None])[0].numpy()  # [64, T] in dB
        flux = np.abs(np.diff(mel, axis=1)).mean(1) if mel.shape[1] > 1 else np.zeros(mel.shape[0])
        return np.concatenate([mel.mean(1), mel.std(1), np.percentile(mel, 10, axis=1),
                               np.percentile(mel, 90, axis=1), flux]).astype(np.float64)

    def fit(self, manifest_path: str | os.PathLike, split: str = "train") -> EventJudge:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        clips, labels, _ = labelled_clips(manifest_path, (split,))
        if len(set(labels)) < 2:
            raise DataError(f"{manifest_path}: the {split} split needs labelled clips of at least two classes")
        features = np.stack([self.statistics(c) for c in clips])
        self.scaler = StandardScaler().fit(features)
        x = self.scaler.transform(features)
        self.classifier = LogisticRegression(max_iter=2000, C=1.0).fit(x, labels)
        self.classes = [str(c) for c in self.classifier.classes_]
        self.train_accuracy = float(self.classifier.score(x, labels))
        return self

    def judge(self, clips: Sequence[Any]) -> tuple[list[str], np.ndarray]:
        """Clips ``[N]`` at 16 kHz -> the predicted classes and the class scores ``[n, classes]`` (the Fréchet
        embedding), from one pass of :meth:`statistics`."""
        x = self.scaler.transform(np.stack([self.statistics(c) for c in clips]))
        return [str(p) for p in self.classifier.predict(x)], self.classifier.decision_function(x)


def accuracy(predicted: Sequence[str], labels: Sequence[str]) -> float:
    """The share of ``predicted`` equal to ``labels``."""
    return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))


def labelled_clips(manifest_path: str | os.PathLike, splits: Sequence[str]
                   ) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The real clips (16 kHz, ``[N]``), labels and captions of a manifest's labelled utterances in ``splits``."""
    manifest = Manifest.read(manifest_path)
    clips, labels, captions = [], [], []
    for i, u in enumerate(manifest):
        if u.label is not None and u.split in splits:
            captions.append(u.caption or "")
            clips.append(load_audio(manifest.audio_path(i), SAMPLE_RATE)[0][0].numpy())
            labels.append(u.label)
    return clips, labels, captions
