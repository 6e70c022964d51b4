"""The offline sound-event corpus (``semlat data demo-events``): labelled, captioned clips made procedurally.

Twelve classes of synthetic sound events, each drawn with random parameters (pitch, rate, length, envelope,
level) and, for a third of the clips, mixed over a background (pink noise, a low hum, or babble-like
modulated noise) at 5-20 dB SNR. Each clip has a ``label`` (the class), a ``caption`` (one of several
phrasings of its class, filled in with its parameters: "a high-pitched steady tone", "a siren wailing over
a low hum"), a split (train / valid / test: 80 / 10 / 10 by a hash of the clip's index and the seed) and its
parameters in ``extra``. Clips are 1.5-4 s of 16 kHz mono at 0.05-0.5 peak. ``test_minutes`` appends further
clips, all in the test split, after the first ``minutes`` (so the train split is the same with or without them):
a held-out set large enough to resolve small differences without training on more. The corpus is a pure
function of ``(minutes, test_minutes, sample_rate, seed)``: the same arguments give the same files, byte for
byte.

Shapes: every generator returns float64 samples ``[N]``; the writer peak-normalises to the drawn level.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm import tqdm

from semlat.data.manifest import Manifest, Utterance
from semlat.data.splits import assign_split
from semlat.errors import DataError
from semlat.utils.files import atomic_dir

CONFIG_NAME = "events_config.json"
BACKGROUND_PROBABILITY = 1 / 3


@dataclass(frozen=True)
class EventClass:
    """A class: its label, how to make one clip, and caption templates (``{pitch}``, ``{speed}`` filled in)."""

    label: str
    make: Callable[[np.random.Generator, int, float], tuple[np.ndarray, dict[str, Any]]]
    captions: tuple[str, ...]


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _envelope(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    env = np.ones(n)
    a, r = max(1, int(attack * sr)), max(1, int(release * sr))
    env[:a] = np.linspace(0, 1, a)
    env[-r:] *= np.linspace(1, 0, r)
    return env


def _pitch_word(freq: float) -> str:
    return "low" if freq < 300 else "high" if freq > 1200 else "mid"


def _lowpass(x: np.ndarray, alpha: float) -> np.ndarray:
    """One-pole low-pass ``y[n] = y[n-1] + alpha (x[n] - y[n-1])``, ``alpha`` in (0, 1]: smaller is darker."""
    return lfilter([alpha], [1.0, alpha - 1.0], x)


def _tone(rng, sr, seconds):
    freq = float(rng.uniform(150, 2000))
    n = int(seconds * sr)
    x = np.sin(2 * np.pi * freq * _t(n, sr)) * _envelope(n, sr, 0.02, 0.1)
    return x, {"freq": round(freq, 1), "pitch": _pitch_word(freq)}


def _harmonic(rng, sr, seconds):
    freq = float(rng.uniform(100, 800))
    n = int(seconds * sr)
    t = _t(n, sr)
    x = sum(np.sin(2 * np.pi * freq * k * t) / k ** float(rng.uniform(1, 2)) for k in range(1, 7))
    return x * _envelope(n, sr, 0.01, 0.6) * np.exp(-t * float(rng.uniform(0.3, 1.5))), \
        {"freq": round(freq, 1), "pitch": _pitch_word(freq)}


def _bell(rng, sr, seconds):
    freq = float(rng.uniform(300, 1500))
    n = int(seconds * sr)
    t = _t(n, sr)
    ratios = (1.0, 2.76, 5.40, 8.93)
    x = sum(np.sin(2 * np.pi * freq * r * t) * np.exp(-t * (2 + 3 * i)) for i, r in enumerate(ratios))
    return x * _envelope(n, sr, 0.002, 0.05), {"freq": round(freq, 1), "pitch": _pitch_word(freq)}


def _noise_burst(rng, sr, seconds):
    n = int(seconds * sr)
    x = rng.standard_normal(n) * _envelope(n, sr, 0.05, 0.3)
    return x, {"pitch": "broadband"}


def _rumble(rng, sr, seconds):
    n = int(seconds * sr)
    x = _lowpass(rng.standard_normal(n), float(rng.uniform(0.01, 0.04)))
    return x * _envelope(n, sr, 0.3, 0.3), {"pitch": "low"}


def _hiss(rng, sr, seconds):
    n = int(seconds * sr)
    white = rng.standard_normal(n)
    x = white - _lowpass(white, 0.3)
    return x * _envelope(n, sr, 0.1, 0.2), {"pitch": "high"}


def _drums(rng, sr, seconds):
    n = int(seconds * sr)
    rate = float(rng.uniform(2, 6))
    x = np.zeros(n)
    hit = int(0.12 * sr)
    decay = np.exp(-np.arange(hit) / (0.02 * sr))
    body = np.sin(2 * np.pi * float(rng.uniform(60, 140)) * np.arange(hit) / sr)
    for start in np.arange(0, seconds, 1 / rate):
        i = int(start * sr)
        seg = (0.6 * body + 0.4 * rng.standard_normal(hit)) * decay
        x[i:i + hit] += seg[: max(0, min(hit, n - i))]
    return x, {"rate": round(rate, 2), "speed": "fast" if rate > 4 else "slow"}


def _chirp(rng, sr, seconds, up: bool):
    lo, hi = float(rng.uniform(100, 500)), float(rng.uniform(1500, 5000))
    f0, f1 = (lo, hi) if up else (hi, lo)
    n = int(seconds * sr)
    t = _t(n, sr)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    return np.sin(phase) * _envelope(n, sr, 0.02, 0.05), {"from": round(f0), "to": round(f1),
                                                         "speed": "fast" if seconds < 2.5 else "slow"}


def _beeps(rng, sr, seconds):
    freq = float(rng.uniform(600, 2500))
    rate = float(rng.uniform(2, 8))
    n = int(seconds * sr)
    t = _t(n, sr)
    gate = (np.mod(t * rate, 1.0) < 0.5).astype(float)
    gate = _lowpass(gate, 0.05)
    return np.sin(2 * np.pi * freq * t) * gate, {"freq": round(freq, 1), "pitch": _pitch_word(freq),
                                                  "rate": round(rate, 2), "speed": "fast" if rate > 5 else "slow"}


def _siren(rng, sr, seconds):
    centre, depth, rate = float(rng.uniform(500, 1200)), float(rng.uniform(100, 400)), float(rng.uniform(0.3, 2))
    n = int(seconds * sr)
    t = _t(n, sr)
    freq = centre + depth * np.sin(2 * np.pi * rate * t)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) * _envelope(n, sr, 0.1, 0.1), {"rate": round(rate, 2),
                                                        "speed": "fast" if rate > 1 else "slow"}


def _crackle(rng, sr, seconds):
    n = int(seconds * sr)
    density = float(rng.uniform(20, 120))
    x = np.zeros(n)
    clicks = rng.random(n) < density / sr
    x[clicks] = rng.uniform(-1, 1, int(clicks.sum()))
    return _lowpass(x, 0.5), {"rate": round(density, 1), "speed": "dense" if density > 70 else "sparse"}


EVENT_CLASSES: tuple[EventClass, ...] = (
    EventClass("tone", _tone, ("a {pitch}-pitched steady tone", "a pure {pitch} tone", "a constant beep at a {pitch} pitch")),
    EventClass("harmonic", _harmonic, ("a {pitch} musical note fading out", "an instrument plays a {pitch} note",
                                       "a plucked {pitch} note")),
    EventClass("bell", _bell, ("a bell rings", "a {pitch} bell struck once", "the ring of a metal bell")),
    EventClass("noise_burst", _noise_burst, ("a burst of white noise", "a short blast of static", "a noisy whoosh")),
    EventClass("rumble", _rumble, ("a deep rumble", "low rumbling like distant thunder", "a heavy low rumble")),
    EventClass("hiss", _hiss, ("a high hiss", "steam hissing", "a sharp hissing sound")),
    EventClass("drums", _drums, ("{speed} drum hits", "a drum beating at a {speed} pace", "knocking in a {speed} rhythm")),
    EventClass("chirp_up", lambda r, s, d: _chirp(r, s, d, True),
               ("a rising sweep", "a tone sliding upwards", "a {speed} upward chirp")),
    EventClass("chirp_down", lambda r, s, d: _chirp(r, s, d, False),
               ("a falling sweep", "a tone sliding downwards", "a {speed} downward chirp")),
    EventClass("beeps", _beeps, ("{speed} {pitch} beeps", "an alarm beeping {speed}", "repeated {pitch}-pitched beeping")),
    EventClass("siren", _siren, ("a siren wailing", "a {speed} siren", "a wailing alarm rising and falling")),
    EventClass("crackle", _crackle, ("{speed} crackling", "fire crackling", "crackles and pops")),
)

BACKGROUNDS = {"pink noise": "over soft noise", "hum": "over a low hum", "babble": "over a murmur"}


def _background(kind: str, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    if kind == "pink noise":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum /= np.sqrt(np.maximum(1.0, np.arange(spectrum.size)))
        return np.fft.irfft(spectrum, n)
    if kind == "hum":
        t = _t(n, sr)
        return np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 100 * t) + 0.2 * np.sin(2 * np.pi * 150 * t)
    envelope = _lowpass(np.abs(rng.standard_normal(n)), 0.002)
    return _lowpass(rng.standard_normal(n), 0.2) * envelope


def make_event(index: int, seed: int, sample_rate: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Clip ``index`` of the corpus with ``seed``: ``(float32 samples [N], metadata)``."""
    rng = np.random.default_rng([seed, index])
    cls = EVENT_CLASSES[index % len(EVENT_CLASSES)]
    seconds = float(rng.uniform(1.5, 4.0))
    x, params = cls.make(rng, sample_rate, seconds)
    caption = cls.captions[int(rng.integers(len(cls.captions)))]
    background = None
    if rng.random() < BACKGROUND_PROBABILITY:
        background = str(rng.choice(list(BACKGROUNDS)))
        noise = _background(background, rng, x.size, sample_rate)
        snr = float(rng.uniform(5, 20))
        gain = np.sqrt(np.mean(x ** 2) / max(np.mean(noise ** 2), 1e-12) / 10 ** (snr / 10))
        x = x + gain * noise
        caption = f"{caption} {BACKGROUNDS[background]}"
        params = {**params, "background": background, "snr_db": round(snr, 1)}
    peak = float(rng.uniform(0.05, 0.5))
    x = x / max(np.abs(x).max(), 1e-9) * peak
    caption = caption.format(pitch=params.get("pitch", ""), speed=params.get("speed", "")).replace("  ", " ")
    return x.astype(np.float32), {"label": cls.label, "caption": caption[0].upper() + caption[1:] + ".",
                                  "params": params}


def make_event_corpus(out: str | Path, minutes: float = 10.0, *, test_minutes: float = 0.0, sample_rate: int = 16000,
                      seed: int = 0, progress: bool = True) -> Manifest:
    """Write at least ``minutes`` of event clips, split 80/10/10, then at least ``test_minutes`` more in the
    test split, into ``out`` (``wavs/``, ``manifest.jsonl``, the config), built aside and swapped in when
    complete; an existing ``out`` is replaced only if it is empty or an earlier event corpus."""
    if minutes <= 0:
        raise DataError(f"--minutes must be positive, got {minutes}")
    if test_minutes < 0:
        raise DataError(f"--test-minutes must be zero or positive, got {test_minutes}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CONFIG_NAME).exists())):
        raise DataError(f"{out}: exists and is not a semlat event corpus; choose a new or empty folder")
    target, extra = minutes * 60.0, test_minutes * 60.0
    utterances: list[Utterance] = []
    total = 0.0
    bar = tqdm(total=round(target + extra), desc="synthesising events", unit="s", disable=not progress,
               dynamic_ncols=True)
    with atomic_dir(out) as tmp:
        (tmp / "wavs").mkdir()
        index = 0
        while total < target + extra:
            audio, meta = make_event(index, seed, sample_rate)
            name = f"wavs/event_{index:05d}.wav"
            sf.write(str(tmp / name), audio, sample_rate, subtype="PCM_16")
            seconds = audio.size / sample_rate
            split = assign_split(f"{seed}:{index}", 0.1, 0.1, salt="semlat-events") if total < target else "test"
            utterances.append(Utterance(name, seconds, sample_rate, caption=meta["caption"], label=meta["label"],
                                        split=split, extra={"params": meta["params"]}))
            total += seconds
            index += 1
            bar.update(min(round(total), round(target + extra)) - bar.n)
        Manifest(utterances, tmp).write(tmp / "manifest.jsonl")
        config = {"minutes": minutes, "test_minutes": test_minutes, "sample_rate": sample_rate, "seed": seed,
                  "clips": len(utterances), "seconds": round(total, 3), "classes": [c.label for c in EVENT_CLASSES]}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    bar.close()
    return Manifest.read(out / "manifest.jsonl")
