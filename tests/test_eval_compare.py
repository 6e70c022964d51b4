"""semlat eval compare: reports side by side, the best value in bold, clear errors."""

from __future__ import annotations

import json

import pytest

from semlat.cli import main
from semlat.errors import ConfigError
from semlat.evaluation.compare import compare_reports


def _recon(folder, model, stoi, mel):
    folder.mkdir(parents=True)
    metric = {"better": "higher", "label": "STOI", "mean": stoi, "ci95": [stoi - 0.01, stoi + 0.01]}
    distance = {"better": "lower", "label": "mel distance", "mean": mel, "ci95": [mel - 0.1, mel + 0.1]}
    report = {"kind": "reconstruction", "model": {"folder": model}, "metrics": {"stoi": metric, "mel": distance}}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def _latents(folder, model):
    folder.mkdir(parents=True)
    report = {"kind": "latents", "model": {"folder": model},
              "size": {"latent_dim": 16, "frame_rate": 40.0, "floats_per_second": 640.0},
              "dimensions": {"active": 15}, "probes": {"speaker": {"accuracy": 0.5, "chance": 0.125}}}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_compare_tables_mark_the_best(tmp_path):
    a = _recon(tmp_path / "a", "runs/vanilla/checkpoints/step-00000100", stoi=0.7, mel=2.5)
    b = _recon(tmp_path / "b", "runs/semantic/checkpoints/step-00000200", stoi=0.8, mel=3.0)
    c = _latents(tmp_path / "c", "runs/semantic/checkpoints/step-00000200")
    text = compare_reports([a, b, c])
    assert "| metric | vanilla@100 | semantic@200 |" in text
    assert "| STOI ↑ | 0.700 [0.690, 0.710] | **0.800 [0.790, 0.810]** |" in text
    assert "| mel distance ↓ | **2.500 [2.400, 2.600]** | 3.000 [2.900, 3.100] |" in text
    assert "50.0 % (chance 12.5 %)" in text and "15 of 16" in text
    assert "## Reconstruction" in text and "## Latent diagnostics" in text


def test_compare_cli_and_errors(tmp_path, capsys):
    a = _recon(tmp_path / "a", "m1", stoi=0.7, mel=2.5)
    assert main(["eval", "compare", str(a), "--name", "mine", "--out", str(tmp_path / "cmp.md")]) == 0
    assert "| metric | mine |" in (tmp_path / "cmp.md").read_text()
    assert "| metric | mine |" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="no report.json"):
        compare_reports([tmp_path / "missing"])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "report.json").write_text(json.dumps({"kind": "demo"}))
    with pytest.raises(ConfigError, match="not a semlat evaluation report"):
        compare_reports([tmp_path / "odd"])
    with pytest.raises(ConfigError, match="2 names for 1 runs"):
        compare_reports([a], ["x", "y"])
