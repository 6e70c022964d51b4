"""The one espeak-ng wrapper: IPA phonemes of text (what the demo corpus stores, the TTS's phoneme input, the
judges' targets)."""

from __future__ import annotations

import shutil
import subprocess

from semlat.errors import SemlatError, ToolMissingError

INSTALL_HINT = "sudo apt-get install espeak-ng"


def phonemize(text: str, language: str = "en-us", *, needed_for: str = "phonemes") -> str:
    """espeak-ng IPA of ``text``, clauses joined by single spaces; without espeak-ng a one-line
    ToolMissingError that says what needed it (``needed_for``)."""
    if shutil.which("espeak-ng") is None:
        raise ToolMissingError(f"{needed_for} need espeak-ng ({INSTALL_HINT})")
    proc = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", language, text], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        raise SemlatError(f"espeak-ng failed (exit {proc.returncode}): {' '.join(proc.stderr.split())[:200]}")
    return " ".join(proc.stdout.split())
