"""Audio file I/O with soundfile: probe, load (mono, resampled, normalised) and atomic save.

Every format libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis, Opus, MP3 with libsndfile >= 1.1,
AIFF, ...). Problems with a file raise :class:`~semlat.errors.AudioError` with a one-line message
that starts with the file's path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from semlat.audio.processing import loudness_normalize, peak_normalize, resample, to_mono
from semlat.errors import AudioError
from semlat.utils.files import atomic_path

#: Files longer than this (seconds) are refused unless the caller raises the limit: one hour of
#: 48 kHz stereo float audio is already 1.4 GB in memory.
DEFAULT_MAX_DURATION = 3600.0

#: Subtype written when the caller gives none, per container.
DEFAULT_SUBTYPES = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "AIFF": "PCM_16"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples."""

    path: str
    sample_rate: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")


def _libsndfile_message(err: Exception) -> str:
    text = getattr(err, "error_string", None) or str(err)
    return text.strip().rstrip(".") or type(err).__name__


def probe_audio(path: str | os.PathLike, max_duration: float | None = DEFAULT_MAX_DURATION) -> AudioInfo:
    """Read a file's header: sample rate, length, channels, container and encoding.

    Raises AudioError for a missing, empty, unreadable, zero-length or over-long file.
    """
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(f"{path}: unreadable or corrupt audio ({_libsndfile_message(err)})") from None
    result = AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels),
                       str(info.format), str(info.subtype))
    if result.sample_rate <= 0 or result.channels <= 0:
        raise AudioError(f"{path}: header has no valid sample rate or channel count")
    if result.frames <= 0:
        raise AudioError(f"{path}: contains no audio samples (zero length)")
    if max_duration is not None and result.duration > max_duration:
        raise AudioError(
            f"{path}: {result.duration:.1f} s is longer than the limit of {max_duration:.0f} s "
            "(split the file, or raise max_duration)"
        )
    return result


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    normalize: str | None = None,
    target_db: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Read an audio file as a float32 tensor.

    Args:
        path: any file libsndfile can decode.
        sample_rate: resample to this rate (soxr, "HQ"); ``None`` keeps the file's rate.
        mono: mix all channels down by their equal-weight mean (see :func:`to_mono`).
        offset, duration: read only this excerpt, in seconds of the file (no full decode).
        max_duration: refuse files longer than this many seconds (``None``: no limit).
        normalize: ``None``, ``"peak"`` (to ``target_db`` dBFS, default -1) or ``"loudness"``
            (to ``target_db`` LUFS, default -23, peak-limited to -1 dBFS).

    Returns:
        ``(audio, sample_rate)`` with audio shaped ``[C, N]`` (``C == 1`` when ``mono``).
    """
    info = probe_audio(path, max_duration=max_duration)
    start = max(0, round(offset * info.sample_rate))
    stop = None if duration is None else start + max(0, round(duration * info.sample_rate))
    try:
        data, _ = sf.read(info.path, start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(f"{path}: unreadable or corrupt audio ({_libsndfile_message(err)})") from None
    if data.shape[0] == 0:
        if start > 0:
            raise AudioError(f"{path}: offset {offset:.3f} s is past the end ({info.duration:.3f} s)")
        raise AudioError(f"{path}: contains no audio samples (zero length)")
    bad = int(data.size - np.isfinite(data).sum())
    if bad:
        raise AudioError(f"{path}: {bad} of {data.size} samples are NaN or infinite")
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono and audio.shape[0] > 1:
        audio = to_mono(audio)
    sr = info.sample_rate
    if sample_rate is not None and sample_rate != sr:
        audio, sr = resample(audio, sr, sample_rate), sample_rate
    if normalize == "peak":
        audio = peak_normalize(audio, -1.0 if target_db is None else target_db)
    elif normalize == "loudness":
        try:
            audio = loudness_normalize(audio, sr, -23.0 if target_db is None else target_db)
        except AudioError as err:
            raise AudioError(f"{path}: {err}") from None
    elif normalize is not None:
        raise ValueError(f"normalize must be None, 'peak' or 'loudness', got {normalize!r}")
    return audio, sr


def _as_frames_channels(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim == 3 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.ndim != 2:
        raise ValueError(f"audio must be [N], [C, N] or [1, C, N], got shape {audio.shape}")
    return np.ascontiguousarray(audio.T)


def save_audio(
    path: str | os.PathLike,
    audio: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
) -> Path:
    """Write ``audio`` ([N] or [C, N], floats in [-1, 1]) atomically; the suffix picks the format.

    Integer encodings (the default 16-bit PCM for .wav/.flac) clip samples to [-1, 1]. Non-finite
    samples are refused: nothing is written and AudioError is raised.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper()
    if fmt == "AIF":
        fmt = "AIFF"
    if fmt not in sf.available_formats():
        raise AudioError(f"{path}: unknown audio format {path.suffix!r} (use .wav or .flac)")
    data = _as_frames_channels(audio)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: refusing to write zero-length audio")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: refusing to write audio with NaN or infinite samples")
    subtype = subtype or DEFAULT_SUBTYPES.get(fmt)
    if subtype and (subtype.startswith("PCM") or subtype in ("ALAC_16", "ALAC_24")):
        data = np.clip(data, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, int(sample_rate), subtype=subtype, format=fmt)
    return path


class AudioStreamWriter:
    """Audio written as it comes (streaming TTS): ``write(samples [N])`` appends and flushes, :meth:`close` makes the
    file final. A path grows in a temporary file beside it, renamed onto it when closed (an error or an
    interruption leaves no half-written ``path``); ``"-"`` writes raw 16-bit little-endian PCM to stdout for a
    player (``| aplay -f S16_LE -c 1 -r RATE``). Non-finite samples are an AudioError; samples are clipped to
    [-1, 1]."""

    def __init__(self, path: str | os.PathLike, sample_rate: int):
        import contextlib
        import sys

        self.path, self.sample_rate, self.samples = str(path), int(sample_rate), 0
        self._stack = contextlib.ExitStack()
        if self.path == "-":
            self._file = self._stack.enter_context(sf.SoundFile(sys.stdout.buffer, "w", self.sample_rate, 1,
                                                                subtype="PCM_16", format="RAW", endian="LITTLE"))
            return
        target = Path(self.path)
        fmt = target.suffix.lstrip(".").upper()
        fmt = "AIFF" if fmt == "AIF" else fmt
        if fmt not in sf.available_formats():
            raise AudioError(f"{target}: unknown audio format {target.suffix!r} (use .wav or .flac)")
        tmp = self._stack.enter_context(atomic_path(target))
        self._file = self._stack.enter_context(sf.SoundFile(str(tmp), "w", self.sample_rate, 1,
                                                            subtype=DEFAULT_SUBTYPES.get(fmt), format=fmt))

    def write(self, audio: torch.Tensor | np.ndarray) -> None:
        data = _as_frames_channels(audio)
        if not np.isfinite(data).all():
            raise AudioError(f"{self.path}: refusing to write audio with NaN or infinite samples")
        self._file.write(np.clip(data, -1.0, 1.0))
        self._file.flush()
        self.samples += data.shape[0]

    def close(self, comment: str | None = None) -> Path | str:
        """Finish the file (renamed onto its path); zero samples is an AudioError and nothing is written.
        ``comment`` goes in the file's metadata where the format takes it after the samples (WAV's INFO chunk,
        AIFF; FLAC's comments must precede the audio, so a streamed FLAC has none)."""
        if not self.samples:
            self.abort(AudioError(f"{self.path}: refusing to write zero-length audio"))
        if comment is not None and self._file.format in ("WAV", "AIFF"):
            self._file.comment = comment
        self._stack.close()
        return self.path if self.path == "-" else Path(self.path)

    def abort(self, error: BaseException) -> None:
        """Drop what was written (the temporary file) and raise ``error``."""
        try:
            raise error
        finally:
            self._stack.__exit__(type(error), error, error.__traceback__)
