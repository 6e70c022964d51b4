"""Audio I/O (soundfile), resampling (soxr), level normalisation and spectral front-ends."""

from semlat.audio.filterbanks import hz_to_mel, mel_filterbank, mel_to_hz
from semlat.audio.io import DEFAULT_MAX_DURATION, AudioInfo, load_audio, probe_audio, save_audio
from semlat.audio.processing import loudness_normalize, peak_normalize, resample, to_mono
from semlat.audio.spectral import (
    MEL_PRESETS,
    MelConfig,
    MelSpectrogram,
    Spectrogram,
    SpectrogramConfig,
    mel_preset,
)

__all__ = [
    "DEFAULT_MAX_DURATION", "MEL_PRESETS", "AudioInfo", "MelConfig", "MelSpectrogram", "Spectrogram",
    "SpectrogramConfig", "hz_to_mel", "load_audio", "loudness_normalize", "mel_filterbank", "mel_preset",
    "mel_to_hz", "peak_normalize", "probe_audio", "resample", "save_audio", "to_mono",
]
