"""Exceptions that carry a one-line message meant for the user.

The command line prints ``semlat: error: <message>`` for any :class:`SemlatError` and exits with
status 1; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SemlatError(Exception):
    """Base class: an error whose message is complete and fits on one line."""


class AudioError(SemlatError):
    """An audio file is missing, unreadable, empty, non-finite or otherwise unusable."""


class DataError(SemlatError):
    """A manifest, corpus or dataset is malformed."""


class ConfigError(SemlatError, ValueError):
    """A configuration key, value or type is wrong (also a ValueError)."""


class CheckpointError(SemlatError):
    """A model folder is missing, incomplete or does not fit the model."""


class ToolMissingError(SemlatError):
    """An external program (flite, espeak-ng, ...) is not installed."""


def first_line(error: BaseException | str) -> str:
    """The first line of an exception's message (or its type name when it has none), for messages
    that must fit on one line."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""
