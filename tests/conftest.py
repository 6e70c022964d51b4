"""Shared test helpers.

Reference fixtures are read from ``../shared/fixtures`` (or ``$SEMLAT_FIXTURES``). Outside CI a
missing fixture or synthesis tool skips the tests that need it, with the reason; with
``SEMLAT_CI=1`` (set by ``.ci/run``) it fails them instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("SEMLAT_CI") == "1"

torch.set_num_threads(2)


def fixtures_root() -> Path:
    return Path(os.environ.get("SEMLAT_FIXTURES", REPO.parent / "shared" / "fixtures"))


def missing(reason: str) -> None:
    """Skip the current test, or fail it under ``SEMLAT_CI=1``."""
    if STRICT:
        pytest.fail(f"{reason} (SEMLAT_CI=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    root = fixtures_root()
    if not root.is_dir():
        missing(f"reference fixtures not found at {root}")
    return root


def fixture_file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        missing(f"reference fixture {path} not found")
    return path


@pytest.fixture(scope="session")
def synth_tools() -> None:
    absent = [t for t in ("flite", "espeak-ng") if shutil.which(t) is None]
    if absent:
        missing(f"{' and '.join(absent)} not installed (sudo apt-get install flite espeak-ng)")


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amplitude: float = 0.5,
         channels: int = 1) -> np.ndarray:
    """A sine of ``seconds`` as ``[N, channels]`` float32 (channel c has frequency freq·(c+1))."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    cols = [amplitude * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write_audio(path: Path, data: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory, synth_tools) -> Path:
    """A 1-minute demo corpus (22.05 kHz) shared by the tests that need real speech."""
    from semlat.data.demo import make_demo_corpus

    out = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(out, minutes=1.0, progress=False)
    return out
