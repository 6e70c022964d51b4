"""The app's safety checks: which paths a request may reach, and which uploads are accepted.

A :class:`PathGuard` holds the folders the app serves (``--models``) and its own output folder. Every
path that comes from a request (a typed report folder, a manifest, a chosen model) goes through
:meth:`PathGuard.check`, which resolves it (symbolic links and ``..`` included) and refuses anything
outside those folders. Uploads go through :func:`check_upload`: over the size limit, or not audio
that libsndfile can read, is refused with a one-line :class:`Refused` message naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from semlat.audio.io import AudioInfo, probe_audio
from semlat.errors import AudioError, SemlatError

#: default upload limit (MB); ``semlat app --max-upload-mb`` changes it
MAX_UPLOAD_MB = 50.0
#: longest upload or recording accepted (seconds)
MAX_UPLOAD_SECONDS = 600.0


class Refused(SemlatError):
    """A request the app does not serve: a path outside its folders, a bad or oversized upload."""


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class PathGuard:
    """Allows paths under ``roots`` (the served folders) and ``outputs`` (the app's own folder), nothing else."""

    def __init__(self, roots: Sequence[str | os.PathLike], outputs: str | os.PathLike):
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        self.outputs = Path(outputs).expanduser().resolve()

    @property
    def allowed(self) -> list[Path]:
        return [*self.roots, self.outputs]

    def check(self, path: str | os.PathLike, what: str = "path") -> Path:
        """``path`` resolved, if it lies under an allowed folder; else :class:`Refused` (one line).

        Relative paths are taken relative to the first served folder, never to the working directory."""
        text = str(path).strip()
        if not text:
            raise Refused(f"no {what} given")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate if self.roots else self.outputs / candidate
        resolved = candidate.resolve()
        if not any(_within(resolved, root) for root in self.allowed):
            raise Refused(f"refused: {text} is outside the folders this app serves")
        return resolved


def check_upload(path: str | os.PathLike, max_mb: float = MAX_UPLOAD_MB, name: str | None = None,
                 max_seconds: float = MAX_UPLOAD_SECONDS) -> AudioInfo:
    """The header of an uploaded audio file, or :class:`Refused` for a file over ``max_mb`` megabytes, longer
    than ``max_seconds`` or that is not audio; ``name`` is how the message names it (the user's file name)."""
    path = Path(path)
    shown = name or path.name
    try:
        size = path.stat().st_size
    except OSError:
        raise Refused(f"{shown}: the upload is missing") from None
    if size > max_mb * 1e6:
        raise Refused(f"{shown}: {size / 1e6:.1f} MB is over the upload limit of {max_mb:g} MB")
    try:
        return probe_audio(path, max_duration=max_seconds)
    except AudioError as err:
        reason = str(err).split(": ", 1)[-1]
        raise Refused(f"{shown}: not usable audio ({reason})") from None
