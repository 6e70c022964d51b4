"""DNSMOS: Microsoft's non-intrusive speech-quality predictor, offline, through the ``speechmos`` package.

``speechmos`` ships the DNS Challenge's ONNX models (run with onnxruntime), so no download is needed.
Per clip (16 kHz mono, values in [-1, 1]) DNSMOS P.835 gives three MOS-like figures on 1..5 — ``SIG``
(speech signal quality), ``BAK`` (background noise), ``OVRL`` (overall) — from 9.01 s windows hopped by
1 s (shorter clips are repeated up to 9.01 s, as the reference script does), and the P.808 model one
more overall figure. These are DNSMOS figures, trained on noise-suppression listening tests: they are
*not* UTMOS (the naturalness predictor TTS papers report) and should never be labelled as such.
"""

from __future__ import annotations

import math
from importlib import metadata
from pathlib import Path

import numpy as np

from semlat.errors import ConfigError, ToolMissingError

SAMPLE_RATE = 16000
#: the judge's figures (column name -> the key in speechmos's result)
FIGURES = {"dnsmos_ovrl": "ovrl_mos", "dnsmos_sig": "sig_mos", "dnsmos_bak": "bak_mos", "dnsmos_p808": "p808_mos"}
#: shortest clip scored (DNSMOS tiles a clip up to 9.01 s; a near-empty one tells nothing)
MIN_SECONDS = 0.25


class DNSMOSJudge:
    """DNSMOS P.835 (SIG, BAK, OVRL) and P.808 of 16 kHz clips; ``personalized`` picks the
    personalised P.835 model (which penalises interfering talkers)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, personalized: bool = False):
        try:
            from speechmos import dnsmos
        except ImportError as err:
            raise ToolMissingError(f"DNSMOS needs the speechmos and onnxruntime packages "
                                   f"(pip install 'semlat[eval]'): {err}") from None
        models = Path(dnsmos.__file__).parent
        primary = models / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
        self._model = dnsmos.DNSMOS(str(primary), str(models / "dnsmos_models" / "model_v8.onnx"))
        self.personalized = personalized
        kind = "personalized P.835" if personalized else "P.835"
        self.label = f"DNSMOS {kind} + P.808 (speechmos {metadata.version('speechmos')}, offline; not UTMOS)"

    def score(self, audio: np.ndarray) -> tuple[dict[str, float], str | None]:
        """``({column: value}, None)`` for a 16 kHz clip ``[N]``, or NaNs and the reason it is not scored."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < MIN_SECONDS * SAMPLE_RATE:
            return {name: math.nan for name in FIGURES}, f"shorter than {MIN_SECONDS} s"
        if not np.isfinite(audio).all():
            return {name: math.nan for name in FIGURES}, "non-finite samples"
        result = self._model(np.clip(audio, -1.0, 1.0), SAMPLE_RATE, self.personalized)
        return {name: float(result[key]) for name, key in FIGURES.items()}, None


def load_mos_judge(spec: str) -> DNSMOSJudge:
    """A naturalness judge from its spec: ``dnsmos`` or ``dnsmos-personalized``."""
    kinds = {"dnsmos": False, "dnsmos-personalized": True}
    key = spec.strip().lower()
    if key not in kinds:
        raise ConfigError(f"unknown quality judge {spec!r}; known: {', '.join(kinds)}")
    return DNSMOSJudge(personalized=kinds[key])
