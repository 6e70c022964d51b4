"""Per-utterance reconstruction metrics: one estimate against its reference.

Every function takes ``estimate`` and ``reference`` as 1-D float signals (numpy or torch; ``[N]``,
``[1, N]`` and ``[1, 1, N]`` are accepted) at the same ``sample_rate``, trims both to the shorter
length, resamples to the rate the metric is defined at (soxr "HQ", like :func:`semlat.audio.resample`)
and returns a :class:`Score`: a ``float`` that, when it is NaN, says why in ``score.reason``.
A metric that is undefined for an input (too short, a silent reference, non-finite samples, PESQ
finding no utterance, ...) returns NaN with a reason; it never raises for such audio. Wrong argument
types raise :class:`TypeError`, wrong shapes or rates :class:`ValueError`, with a one-line message.

=====================  =================================================  ======================  =========
column                 what                                               range                   better
=====================  =================================================  ======================  =========
pesq_wb                PESQ wideband (ITU-T P.862.2) at 16 kHz            1.04 .. 4.64            higher
pesq_nb                PESQ narrowband (P.862 + P.862.1 map) at 8 kHz     1.02 .. 4.55            higher
stoi                   STOI (Taal et al. 2011), pystoi at 10 kHz          ~0 .. 1                 higher
estoi                  extended STOI (Jensen & Taal 2016)                 ~-0.1 .. 1              higher
mel_distance           multi-scale log-mel L1 (Semantic-VAE, 7 scales)    0 .. inf                lower
stft_distance          multi-resolution STFT: SC + log-magnitude L1       0 .. inf                lower
si_sdr                 scale-invariant SDR, dB                            -inf .. inf             higher
f0_rmse_cents          F0 RMSE over frames voiced in both (WORLD dio)     0 .. inf (cents)        lower
voicing_precision      frames voiced in the estimate that are voiced      0 .. 1                  higher
voicing_recall         frames voiced in the reference found voiced        0 .. 1                  higher
voicing_f1             harmonic mean of the two                           0 .. 1                  higher
speaker_similarity     cosine of resemblyzer d-vectors                    0 .. 1 (non-negative)   higher
=====================  =================================================  ======================  =========

Metric *groups* (what ``--metrics`` selects): ``pesq`` (wb, nb), ``stoi`` (stoi, estoi), ``mel``,
``stft``, ``sisdr``, ``f0`` (rmse and voicing precision / recall / F1) and ``speaker``.
:class:`MetricSuite` runs a selection and keeps the loaded judges (the speaker encoder).

The reference packages are optional (``pip install 'semlat[eval]'``): ``pesq``, ``pystoi``,
``pyworld`` and ``resemblyzer``. pyworld and resemblyzer's webrtcvad import ``pkg_resources``, which
setuptools 81 removed, hence the ``setuptools<81`` pin in that extra.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np
import soxr
import torch

from semlat.errors import ConfigError, ToolMissingError

#: Samples with a peak below this (-100 dBFS, under one 16-bit step) count as silence.
SILENCE_PEAK = 1e-5

#: Parallel WaveGAN's STFT resolutions ``(n_fft, hop, window)``, defined at 24 kHz.
PWG_RESOLUTIONS = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))
PWG_RATE = 24000

#: F0 analysis: WORLD at 16 kHz, 10 ms frames, pyworld's default search range.
F0_RATE = 16000
F0_FRAME_MS = 10.0
F0_FLOOR = 71.0
F0_CEIL = 800.0

#: STOI's shortest input: 30 frames of 256 samples, hop 128, at 10 kHz.
STOI_MIN_SECONDS = (29 * 128 + 256) / 10000

#: The mel distance's largest analysis window (samples); shorter inputs are undefined.
MEL_MAX_WINDOW = 2048


class Score(float):
    """A metric value. NaN scores carry ``reason``, a short phrase saying why it is undefined."""

    __slots__ = ("reason",)

    def __new__(cls, value: float, reason: str | None = None) -> Score:  # noqa: PYI034
        obj = super().__new__(cls, value)
        obj.reason = reason
        return obj

    def __repr__(self) -> str:
        return f"Score(nan, {self.reason!r})" if math.isnan(self) else f"Score({float(self)!r})"


def undefined(reason: str) -> Score:
    """A NaN :class:`Score` with ``reason``."""
    return Score(math.nan, reason)


@dataclass(frozen=True)
class MetricInfo:
    """What one output column means: its group, label, unit, range and which direction is better."""

    name: str
    group: str
    label: str
    unit: str
    range: str
    higher_is_better: bool
    description: str

    @property
    def better(self) -> str:
        return "higher" if self.higher_is_better else "lower"


COLUMNS = MappingProxyType({info.name: info for info in (
    MetricInfo("pesq_wb", "pesq", "PESQ wb", "MOS-LQO", "1.04..4.64", True, "ITU-T P.862.2 wideband at 16 kHz"),
    MetricInfo("pesq_nb", "pesq", "PESQ nb", "MOS-LQO", "1.02..4.55", True, "ITU-T P.862 narrowband at 8 kHz"),
    MetricInfo("stoi", "stoi", "STOI", "", "0..1", True, "short-time objective intelligibility"),
    MetricInfo("estoi", "stoi", "eSTOI", "", "-1..1", True, "extended STOI"),
    MetricInfo("mel_distance", "mel", "mel distance", "", "0..inf", False,
               "multi-scale log10-mel L1 summed over 7 scales (Semantic-VAE)"),
    MetricInfo("stft_distance", "stft", "MR-STFT distance", "", "0..inf", False,
               "spectral convergence + log-magnitude L1, mean over 3 resolutions (Parallel WaveGAN)"),
    MetricInfo("si_sdr", "sisdr", "SI-SDR", "dB", "-inf..inf", True, "scale-invariant SDR"),
    MetricInfo("f0_rmse_cents", "f0", "F0 RMSE", "cents", "0..inf", False,
               "F0 error over frames voiced in both signals"),
    MetricInfo("voicing_precision", "f0", "voicing precision", "", "0..1", True,
               "share of the estimate's voiced frames voiced in the reference"),
    MetricInfo("voicing_recall", "f0", "voicing recall", "", "0..1", True,
               "share of the reference's voiced frames voiced in the estimate"),
    MetricInfo("voicing_f1", "f0", "voicing F1", "", "0..1", True, "F1 of the voicing decisions"),
    MetricInfo("speaker_similarity", "speaker", "speaker similarity", "cosine", "0..1", True,
               "cosine of resemblyzer d-vectors of estimate and reference"),
)})

#: Metric groups in report order; ``ALL`` selects every one.
GROUPS = ("pesq", "stoi", "mel", "stft", "sisdr", "f0", "speaker")
ALL = GROUPS

_PACKAGES = MappingProxyType({"pesq": "pesq", "stoi": "pystoi", "f0": "pyworld", "speaker": "resemblyzer"})


# --- inputs ---------------------------------------------------------------------------------

def as_signal(x: Any, name: str = "signal") -> np.ndarray:
    """A 1-D float64 numpy copy of ``x`` (numpy or torch, ``[N]``, ``[1, N]`` or ``[1, 1, N]``)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim > 1 and all(s == 1 for s in x.shape[:-1]):
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one channel), got shape {tuple(x.shape)}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    return np.array(x, dtype=np.float64)


def _check_rate(sample_rate: Any) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


def prepare(estimate: Any, reference: Any, sample_rate: Any,
            min_samples: int = 2) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    """Validate and trim a pair: ``(estimate, reference, rate, reason)``.

    ``reason`` is None when the pair can be scored, else why not: non-finite samples, fewer than
    ``min_samples`` samples (after trimming to the shorter signal) or a silent reference.
    """
    rate = _check_rate(sample_rate)
    est, ref = as_signal(estimate, "estimate"), as_signal(reference, "reference")
    n = min(len(est), len(ref))
    est, ref = est[:n], ref[:n]
    if not np.isfinite(est).all():
        return est, ref, rate, "estimate has NaN or infinite samples"
    if not np.isfinite(ref).all():
        return est, ref, rate, "reference has NaN or infinite samples"
    if n < min_samples:
        return est, ref, rate, f"too short ({n} samples, needs {min_samples})"
    if np.abs(ref).max() < SILENCE_PEAK:
        return est, ref, rate, "silent reference"
    return est, ref, rate, None


def resample_to(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``x`` (1-D) from ``rate`` to ``target`` Hz with soxr "HQ" (float64 out)."""
    if rate == target:
        return x
    return np.asarray(soxr.resample(x, rate, target, quality="HQ"), dtype=np.float64)


def _import(group: str) -> ModuleType:
    """Import the reference package of ``group`` quietly (their imports emit deprecation warnings)."""
    package = _PACKAGES[group]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(package)
    except ModuleNotFoundError as err:
        hint = " (it imports pkg_resources: pip install 'setuptools<81')" if err.name == "pkg_resources" else ""
        raise ToolMissingError(f"metric {group!r} needs the {package} package{hint}: "
                               f"pip install 'semlat[eval]'") from None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --- PESQ -----------------------------------------------------------------------------------

def _pesq(estimate: Any, reference: Any, sample_rate: int, rate: int, mode: str) -> Score:
    est, ref, sr, reason = prepare(estimate, reference, sample_rate)
    if reason:
        return undefined(reason)
    pesq = _import("pesq")
    est, ref = resample_to(est, sr, rate), resample_to(ref, sr, rate)
    if np.abs(est).max() < SILENCE_PEAK:
        # The P.862 C code fails on an all-zero signal; -100 dBFS of seeded noise scores as silence does.
        est = SILENCE_PEAK * np.random.default_rng(0).standard_normal(len(est))
    try:
        return Score(pesq.pesq(rate, ref, est, mode))
    except pesq.NoUtterancesError:
        return undefined("PESQ detected no utterance")
    except pesq.BufferTooShortError:
        return undefined("too short for PESQ")
    except (pesq.PesqError, ValueError) as err:
        return undefined(f"PESQ failed ({type(err).__name__}: {err})")


def pesq_wb(estimate: Any, reference: Any, sample_rate: int) -> Score:
    """Wideband PESQ (ITU-T P.862.2, MOS-LQO) of ``estimate`` against ``reference``, both resampled to 16 kHz.

    Range about 1.04 (bad) to 4.64 (identical); higher is better. Calls ``pesq.pesq(16000, ref, deg, "wb")``.
    NaN when PESQ finds no utterance in the reference, or it is too short or silent. A silent estimate
    is scored (as -100 dBFS noise, since the C code fails on all-zero input).
    """
    return _pesq(estimate, reference, sample_rate, 16000, "wb")


def pesq_nb(estimate: Any, reference: Any, sample_rate: int) -> Score:
    """Narrowband PESQ (ITU-T P.862 with the P.862.1 MOS-LQO map), both resampled to 8 kHz.

    Range about 1.02 to 4.55 (identical); higher is better. Calls ``pesq.pesq(8000, ref, deg, "nb")``.
    """
    return _pesq(estimate, reference, sample_rate, 8000, "nb")


# --- STOI -----------------------------------------------------------------------------------

def _stoi(estimate: Any, reference: Any, sample_rate: int, extended: bool) -> Score:
    # pystoi needs 30 frames of 256 samples (hop 128) at 10 kHz: 0.3968 s.
    est, ref, sr, reason = prepare(estimate, reference, sample_rate,
                                   min_samples=math.ceil(STOI_MIN_SECONDS * _check_rate(sample_rate)))
    if reason:
        return undefined(reason)
    pystoi = _import("stoi")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = pystoi.stoi(ref, est, sr, extended=extended)
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return undefined("too short for STOI (fewer than 30 non-silent 25.6 ms frames)")
    return Score(value)


def stoi(estimate: Any, reference: Any, sample_rate: int) -> Score:
    """STOI (Taal et al. 2011) with pystoi, which resamples to 10 kHz itself.

    Range about 0 to 1 (identical); higher is better. Equals ``pystoi.stoi(ref, deg, sample_rate)``.
    NaN when fewer than 30 non-silent frames (~0.4 s of speech) remain.
    """
    return _stoi(estimate, reference, sample_rate, extended=False)


def estoi(estimate: Any, reference: Any, sample_rate: int) -> Score:
    """Extended STOI (Jensen & Taal 2016), ``pystoi.stoi(..., extended=True)``; up to 1, higher is better."""
    return _stoi(estimate, reference, sample_rate, extended=True)


# --- spectral distances ---------------------------------------------------------------------

def mel_distance(estimate: Any, reference: Any, sample_rate: int) -> Score:
    """Multi-scale log10-mel L1 distance at the signals' own rate (Semantic-VAE's 7 scales, summed).

    Range 0 (identical) upwards; lower is better. The same figure as
    :func:`semlat.evaluation.reconstruction.mel_distance`. NaN under 2048 samples.
    """
    from semlat.evaluation.reconstruction import mel_distance as batch_mel_distance

    est, ref, sr, reason = prepare(estimate, reference, sample_rate, min_samples=MEL_MAX_WINDOW)
    if reason:
        return undefined(reason)
    est_t, ref_t = (torch.from_numpy(x).float()[None, None] for x in (est, ref))
    return Score(float(batch_mel_distance(est_t, ref_t, sr)[0]))


def stft_resolutions(sample_rate: int) -> list[tuple[int, int, int]]:
    """Parallel WaveGAN's ``(n_fft, hop, window)`` resolutions scaled from 24 kHz to ``sample_rate``.

    Window and hop keep their durations (scaled by ``sample_rate / 24000``); the FFT size is the
    power of two nearest the scaled one, and at least the window. At 24 kHz they are unchanged.
    """
    scale = sample_rate / PWG_RATE
    out = []
    for n_fft, hop, win in PWG_RESOLUTIONS:
        win_s, hop_s = max(2, round(win * scale)), max(1, round(hop * scale))
        fft_s = 2 ** round(math.log2(n_fft * scale))
        while fft_s < win_s:
            fft_s *= 2
        out.append((fft_s, hop_s, win_s))
    return out


def _stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """``sqrt(max(|STFT(x)|^2, 1e-7))``, ``[n_fft // 2 + 1, frames]`` (Hann window, centred, reflect)."""
    window = torch.hann_window(win, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, win, window=window, center=True, pad_mode="reflect", return_complex=True)
    return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-7))


def stft_distance(estimate: Any, reference: Any, sample_rate: int) -> Score:
    """Multi-resolution STFT distance (Parallel WaveGAN's auxiliary loss) at the signals' rate.

    For each resolution of :func:`stft_resolutions`, with ``|X| = sqrt(max(|STFT|^2, 1e-7))``
    (Hann window, centred): spectral convergence ``||  |R| - |E|  ||_F / || |R| ||_F`` plus the mean
    absolute difference of ``log |E|`` and ``log |R|``; the figure is the mean over resolutions of
    both, summed. Range 0 (identical) upwards; lower is better. NaN when shorter than the largest FFT.
    """
    resolutions = stft_resolutions(_check_rate(sample_rate))
    longest = max(r[0] for r in resolutions)
    est, ref, _, reason = prepare(estimate, reference, sample_rate, min_samples=longest)
    if reason:
        return undefined(reason)
    e, r = torch.from_numpy(est), torch.from_numpy(ref)
    sc, mag = 0.0, 0.0
    for resolution in resolutions:
        me, mr = _stft_magnitude(e, *resolution), _stft_magnitude(r, *resolution)
        sc += float(torch.linalg.norm(mr - me) / torch.linalg.norm(mr))
        mag += float((torch.log(mr) - torch.log(me)).abs().mean())
    return Score((sc + mag) / len(resolutions))


# --- SI-SDR ---------------------------------------------------------------------------------

def si_sdr(estimate: Any, reference: Any, sample_rate: int | None = None) -> Score:
    """Scale-invariant SDR in dB (zero-mean, torchmetrics via :mod:`semlat.evaluation.reconstruction`).

    Unbounded; higher is better (identical float32 signals give about 90-140 dB). ``sample_rate``
    is accepted for a uniform signature and unused. NaN for a silent reference.
    """
    from semlat.evaluation.reconstruction import si_sdr as batch_si_sdr

    est, ref, _, reason = prepare(estimate, reference, 1 if sample_rate is None else sample_rate)
    if reason:
        return undefined(reason)
    return Score(float(batch_si_sdr(torch.from_numpy(est)[None], torch.from_numpy(ref)[None])[0]))


# --- F0 and voicing -------------------------------------------------------------------------

def f0_track(signal: Any, sample_rate: int, method: str = "dio") -> np.ndarray:
    """F0 in Hz every 10 ms with WORLD (pyworld) at 16 kHz; 0 marks an unvoiced frame.

    ``method`` is "dio" (the default: DIO plus StoneMask refinement) or "harvest". On flite and
    espeak-ng speech and on synthetic glides with added noise, harvest made occasional octave
    errors that dominate an RMSE (50-250 cents between a clean signal and its 40 dB-SNR copy,
    against 7-16 for dio) and ran about 50 times slower, hence the default.
    Returns ``[frames]`` float64 with ``frames = floor(1000 * N_16k / 16000 / 10) + 1``.
    """
    if method not in ("harvest", "dio"):
        raise ValueError(f"f0 method must be 'harvest' or 'dio', got {method!r}")
    pyworld = _import("f0")
    x = np.ascontiguousarray(resample_to(as_signal(signal), _check_rate(sample_rate), F0_RATE))
    if method == "harvest":
        f0, _ = pyworld.harvest(x, F0_RATE, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=F0_FRAME_MS)
    else:
        f0, t = pyworld.dio(x, F0_RATE, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=F0_FRAME_MS)
        f0 = pyworld.stonemask(x, f0, t, F0_RATE)
    return np.asarray(f0, dtype=np.float64)


def f0_metrics(estimate: Any, reference: Any, sample_rate: int, method: str = "dio") -> dict[str, Score]:
    """F0 RMSE (cents) over frames voiced in both, and voicing precision / recall / F1.

    Voicing is judged frame by frame (10 ms) against the reference's decisions:
    precision = TP / frames voiced in the estimate, recall = TP / frames voiced in the reference,
    F1 = 2 TP / (2 TP + FP + FN). ``f0_rmse_cents`` = RMS of ``1200 log2(f0_est / f0_ref)``:
    0 is identical, lower is better; the voicing scores are 0..1, higher is better. Each is NaN when
    its denominator is empty (for example a reference with no voiced frame).
    """
    names = ("f0_rmse_cents", "voicing_precision", "voicing_recall", "voicing_f1")
    est, ref, sr, reason = prepare(estimate, reference, sample_rate, min_samples=_check_rate(sample_rate) // 20)
    if reason:
        return {name: undefined(reason) for name in names}
    f_est, f_ref = f0_track(est, sr, method), f0_track(ref, sr, method)
    n = min(len(f_est), len(f_ref))
    f_est, f_ref = f_est[:n], f_ref[:n]
    v_est, v_ref = f_est > 0, f_ref > 0
    tp = int((v_est & v_ref).sum())
    fp, fn = int((v_est & ~v_ref).sum()), int((~v_est & v_ref).sum())
    if tp:
        cents = 1200.0 * np.log2(f_est[v_est & v_ref] / f_ref[v_est & v_ref])
        rmse = Score(float(np.sqrt(np.mean(cents ** 2))))
    else:
        rmse = undefined("no frame voiced in both")
    return {
        "f0_rmse_cents": rmse,
        "voicing_precision": Score(tp / (tp + fp)) if tp + fp else undefined("no voiced frame in the estimate"),
        "voicing_recall": Score(tp / (tp + fn)) if tp + fn else undefined("no voiced frame in the reference"),
        "voicing_f1": Score(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else undefined("no voiced frame in either"),
    }


# --- speaker similarity ---------------------------------------------------------------------

class SpeakerEncoder:
    """resemblyzer's GE2E speaker encoder (its bundled ``pretrained.pt``; nothing is downloaded).

    Embeddings are 256-D, non-negative and unit-norm, so cosines lie in 0..1. Each signal is
    resampled to 16 kHz and its level raised to -30 dBFS if quieter (resemblyzer's normalisation);
    resemblyzer's VAD silence trimming is skipped so both signals are embedded over the same samples
    and a reconstruction the VAD would reject still gets a score.
    """

    sample_rate = 16000

    def __init__(self, device: str | torch.device = "cpu"):
        resemblyzer = _import("speaker")
        self._normalize = resemblyzer.normalize_volume
        self._target_dbfs = resemblyzer.hparams.audio_norm_target_dBFS
        self.model = resemblyzer.VoiceEncoder(device=torch.device(device), verbose=False)
        self.judge = f"resemblyzer (offline) {_version('resemblyzer')}"

    def embed(self, signal: Any, sample_rate: int) -> np.ndarray | str:
        """The ``[256]`` embedding of a 1-D signal, or a reason string when it has none."""
        x = resample_to(as_signal(signal), _check_rate(sample_rate), self.sample_rate)
        if not np.isfinite(x).all():
            return "NaN or infinite samples"
        if len(x) < self.sample_rate // 10:
            return "too short for a speaker embedding (under 0.1 s)"
        if np.abs(x).max() >= SILENCE_PEAK:
            x = self._normalize(x, self._target_dbfs, increase_only=True)
        embedding = np.asarray(self.model.embed_utterance(x.astype(np.float32)), dtype=np.float64)
        if not np.isfinite(embedding).all():
            return "the speaker encoder gave no embedding (silence)"
        return embedding

    def similarity(self, estimate: Any, reference: Any, sample_rate: int) -> Score:
        """Cosine of the embeddings of ``estimate`` and ``reference``: 0..1, 1 is the same voice."""
        est, ref, sr, reason = prepare(estimate, reference, sample_rate,
                                       min_samples=math.ceil(0.1 * _check_rate(sample_rate)))
        if reason:
            return undefined(reason)
        e, r = self.embed(est, sr), self.embed(ref, sr)
        for which, emb in (("reference", r), ("estimate", e)):
            if isinstance(emb, str):
                return undefined(f"{which}: {emb}")
        return Score(float(np.dot(e, r) / (np.linalg.norm(e) * np.linalg.norm(r))))


def speaker_similarity(estimate: Any, reference: Any, sample_rate: int,
                       encoder: SpeakerEncoder | None = None) -> Score:
    """Speaker similarity (cosine of resemblyzer d-vectors), 0..1, higher is better.

    Pass an ``encoder`` to reuse a loaded model; otherwise one is loaded for this call.
    """
    return (encoder or SpeakerEncoder()).similarity(estimate, reference, sample_rate)


# --- the suite ------------------------------------------------------------------------------

def parse_metrics(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Metric groups from ``"pesq,stoi"``, a list of names, ``"all"`` or None (all), in report order."""
    if spec is None:
        return ALL
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    names = [n for n in names if n]
    if not names or names == ["all"]:
        return ALL
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}; choose from {', '.join(GROUPS)} (or all)")
    return tuple(g for g in GROUPS if g in names)


class MetricSuite:
    """A selection of metric groups, ready to score pairs; judges are loaded once, here.

    ``suite(estimate, reference, sample_rate)`` returns ``{column: Score}`` in :data:`COLUMNS` order.
    Raises :class:`~semlat.errors.ToolMissingError` at construction when a package is missing.
    """

    def __init__(self, metrics: str | Sequence[str] | None = ALL, device: str | torch.device = "cpu",
                 f0_method: str = "dio"):
        self.groups = parse_metrics(metrics)
        if f0_method not in ("harvest", "dio"):
            raise ConfigError(f"f0 method must be 'harvest' or 'dio', got {f0_method!r}")
        self.f0_method = f0_method
        for group in self.groups:
            if group in _PACKAGES and group != "speaker":
                _import(group)
        self.speaker = SpeakerEncoder(device) if "speaker" in self.groups else None

    @property
    def columns(self) -> list[str]:
        """Output column names, in order."""
        return [name for name, info in COLUMNS.items() if info.group in self.groups]

    @property
    def judges(self) -> dict[str, str]:
        """Which implementation computes each group (package and version)."""
        semlat_judge = "semlat (this package)"
        names = {
            "pesq": f"pesq {_version('pesq')} (ITU-T P.862.2 wb at 16 kHz, P.862 nb at 8 kHz)",
            "stoi": f"pystoi {_version('pystoi')} (10 kHz internally)",
            "mel": f"{semlat_judge}: MultiScaleMelLoss, Semantic-VAE's 7 scales",
            "stft": f"{semlat_judge}: multi-resolution STFT, Parallel WaveGAN resolutions",
            "sisdr": f"torchmetrics {_version('torchmetrics')} scale_invariant_signal_distortion_ratio (zero-mean)",
            "f0": f"pyworld {_version('pyworld')} {self.f0_method} (WORLD), 10 ms frames at 16 kHz",
            "speaker": self.speaker.judge if self.speaker else "resemblyzer (offline)",
        }
        return {g: names[g] for g in self.groups}

    def __call__(self, estimate: Any, reference: Any, sample_rate: int) -> dict[str, Score]:
        scores: dict[str, Score] = {}
        for group in self.groups:
            if group == "pesq":
                scores.update(pesq_wb=pesq_wb(estimate, reference, sample_rate),
                              pesq_nb=pesq_nb(estimate, reference, sample_rate))
            elif group == "stoi":
                scores.update(stoi=stoi(estimate, reference, sample_rate),
                              estoi=estoi(estimate, reference, sample_rate))
            elif group == "mel":
                scores["mel_distance"] = mel_distance(estimate, reference, sample_rate)
            elif group == "stft":
                scores["stft_distance"] = stft_distance(estimate, reference, sample_rate)
            elif group == "sisdr":
                scores["si_sdr"] = si_sdr(estimate, reference, sample_rate)
            elif group == "f0":
                scores.update(f0_metrics(estimate, reference, sample_rate, self.f0_method))
            elif group == "speaker":
                scores["speaker_similarity"] = self.speaker.similarity(estimate, reference, sample_rate)
        return {name: scores[name] for name in self.columns}
