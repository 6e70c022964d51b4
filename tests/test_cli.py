"""The ``semlat`` command: success paths and one-line errors for bad arguments and bad audio."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import tone, write_audio
from semlat.checkpoints import save_model
from semlat.cli import main


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "semlat" in capsys.readouterr().out
    assert main(["data", "--help"]) == 0
    assert "prepare" in capsys.readouterr().out


def test_prepare_stats_and_rejects(tmp_path, capsys):
    for i in range(3):
        write_audio(tmp_path / "in" / f"{i}.wav", tone(0.5, 16000), 16000)
    (tmp_path / "in" / "bad.wav").write_bytes(b"not audio at all")
    out = tmp_path / "m.jsonl"
    assert main(["data", "prepare", str(tmp_path / "in"), "--out", str(out), "-j", "1"]) == 0
    text = capsys.readouterr().out
    assert "3 utterances" in text and "rejected 1 file(s)" in text and "bad.wav" in text
    assert main(["data", "stats", str(out)]) == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("argv,code,pattern", [
    (["data", "prepare", "--out", "x.jsonl"], 2, "Missing argument"),
    (["data", "prepare", "/no/such/dir", "--out", "x.jsonl"], 2, "does not exist"),
    (["data", "stats", "/no/such.jsonl"], 1, "semlat: error: /no/such.jsonl: no such manifest"),
    (["import", "nope", "w.pt", "out"], 1, "semlat: error: unknown import kind 'nope'"),
    (["info", "/no/model"], 1, "semlat: error: /no/model: no such model folder"),
    (["data", "demo", "--out", "x", "--minutes", "-1"], 2, "Invalid value for '--minutes' / '-m': -1.0 is not in the range x>0"),
    (["tts", "m", "o.wav", "--seconds", "-2"], 2, "Invalid value for '--seconds': -2.0 is not in the range x>0"),
    (["tts", "m", "o.wav", "--speed", "0"], 2, "Invalid value for '--speed'"),
    (["tts", "m", "o.wav", "--guidance", "-1"], 2, "Invalid value for '--guidance'"),
    (["tts", "m", "o.wav", "--sway", "2"], 2, "Invalid value for '--sway'"),
    (["tta", "m", "o.wav", "--seconds", "0"], 2, "Invalid value for '--seconds'"),
    (["data", "demo", "--out", "x", "--seed", "-3"], 2, "Invalid value for '--seed'"),
    (["data", "prepare", ".", "--out", "x.jsonl", "--valid-fraction", "1.5"], 2, "Invalid value for '--valid-fraction'"),
])
def test_bad_arguments(argv, code, pattern, capsys):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert pattern in err and "Traceback" not in err


def test_info(tmp_path, capsys):
    import torch

    save_model(tmp_path / "m", {"w": torch.zeros(10, 10)}, model_type="tiny", config={}, extra={"note": "x"})
    assert main(["info", str(tmp_path / "m")]) == 0
    assert "tiny" in (out := capsys.readouterr().out) and "1 tensors" in out and "note: x" in out


def test_console_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "semlat.cli", "data", "stats", str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("semlat: error:")


def test_demo_command(synth_tools, tmp_path, capsys):
    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--minutes", "0.2", "-j", "2"]) == 0
    assert "manifest.jsonl" in capsys.readouterr().out
    assert (tmp_path / "d" / "demo_config.json").is_file()
