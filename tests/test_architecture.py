"""The package's layers and the absence of import cycles, as import-linter contracts (pyproject.toml).

The contracts run over the installed source; a copy of the package with one upward import, and one
with a cycle, must each break them (so the contracts really guard what docs/architecture.md says)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SOURCE = REPO / "src"


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", command, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300)


def _lint_cli_available() -> bool:
    try:
        import importlinter.cli  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def _needs_import_linter():
    if not _lint_cli_available():
        pytest.fail("import-linter is not installed (bash install.sh installs the dev extra)")


def test_contracts_hold():
    result = _lint(SOURCE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "semlat layers KEPT" in result.stdout and "no import cycles KEPT" in result.stdout


def _copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(SOURCE / "semlat", src / "semlat", ignore=shutil.ignore_patterns("__pycache__", "configs"))
    return src


def test_an_import_cycle_breaks_the_contract(tmp_path):
    src = _copy(tmp_path)
    judges = src / "semlat" / "evaluation" / "judges.py"
    judges.write_text(judges.read_text() + "\n\ndef _cycle():\n    from semlat.evaluation import ctc_judge  # noqa\n")
    result = _lint(src)
    assert result.returncode != 0 and "no import cycles BROKEN" in result.stdout
    assert ".judges -> .ctc_judge" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    src = _copy(tmp_path)
    store = src / "semlat" / "data" / "store.py"
    store.write_text(store.read_text() + "\n\ndef _upward():\n    from semlat.training import trainer  # noqa\n")
    result = _lint(src)
    assert result.returncode != 0 and "semlat layers BROKEN" in result.stdout
    assert "semlat.data is not allowed to import semlat.training" in result.stdout
