"""Models loaded once and shared by every user of the app.

:class:`ModelCache` loads a latent space, TTS model, text-to-audio model or judge the first time it
is asked for and hands the same object to every later request (models run in inference mode, which
is safe to share between threads). A lock per model means two users asking for the same model at
once load it once; different models load in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class ModelCache:
    """``get(kind, folder)`` -> the loaded model; every loader runs at most once per folder."""

    def __init__(self, device: str | torch.device = "auto"):
        self.device = device
        self._models: dict[tuple[str, str], Any] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self.loads = 0  # how many models were actually loaded (a test checks sharing)

    def _loader(self, kind: str) -> Callable[[str], Any]:
        device = self.device
        if kind in ("space", "tts", "tta"):
            from semlat.models import load

            return lambda folder: load(folder, device, expect=kind)
        if kind == "asr":
            from semlat.evaluation.judges import load_asr_judge

            return lambda spec: load_asr_judge(spec, device="cpu")
        if kind == "speaker":
            from semlat.evaluation.judges import load_speaker_judge

            return lambda spec: load_speaker_judge(spec, device="cpu")
        if kind == "mos":
            from semlat.evaluation.dnsmos import load_mos_judge

            return load_mos_judge
        if kind == "metrics":
            from semlat.evaluation.metrics import MetricSuite

            return lambda groups: MetricSuite(groups.split(","), device="cpu")
        raise ValueError(f"unknown model kind {kind!r}")

    def get(self, kind: str, key: str | Path) -> Any:
        """The model of ``kind`` for ``key`` (a folder, or a judge spec), loading it on first use."""
        ident = (kind, str(key))
        with self._guard:
            if ident in self._models:
                return self._models[ident]
            lock = self._locks.setdefault(ident, threading.Lock())
        with lock:
            if ident not in self._models:  # another request may have loaded it while we waited
                model = self._loader(kind)(str(key))
                with self._guard:
                    self._models[ident] = model
                    self.loads += 1
        return self._models[ident]
