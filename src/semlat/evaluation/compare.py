"""``semlat eval compare RUN...``: several evaluation reports side by side.

Each RUN is an output folder of ``semlat eval recon``, ``eval latents``, ``eval tts`` or ``eval audio``
(or its ``report.json``). Reconstruction figures (mean and 95 % interval per metric), latent figures
(probe accuracies with their chance levels, latent size, active dimensions) and generation figures
(corpus error rates, SIM, FD, each with its judge) become one Markdown table per kind, one column per
run, with the best value of each row in bold. Generation figures made by different judges are shown
but not ranked: the row says they are not comparable.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from semlat.config import read_json_object
from semlat.errors import ConfigError
from semlat.utils.figures import number, percent

#: Report kinds and their section titles, in the order the comparison prints them.
KINDS = {"reconstruction": "Reconstruction", "latents": "Latent diagnostics",
         "tts": "Speech judged (WER / PER, SIM, DNSMOS; generated or reconstructed)",
         "audio": "Audio sets (Fréchet distance)"}


def read_report(run: str | os.PathLike) -> dict[str, Any]:
    """The ``report.json`` of an evaluation folder (or the file itself); one-line errors otherwise."""
    path = Path(run)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ConfigError(f"{run}: no report.json (give a folder written by semlat eval recon/latents/tts/audio)")
    report = read_json_object(path, "report")
    if report.get("kind") not in KINDS:
        raise ConfigError(f"{path}: not a semlat evaluation report (kind {report.get('kind')!r})")
    return report


def run_name(report: dict[str, Any], run: str | os.PathLike) -> str:
    """A short column name: the model folder's run name and step where there is one, else the folder."""
    folder = Path(str(report.get("model", {}).get("folder", run)))
    if folder.parent.name == "checkpoints":
        return f"{folder.parent.parent.name}@{folder.name.removeprefix('step-').lstrip('0') or '0'}"
    return folder.name or str(run)


def _source(report: dict[str, Any]) -> str:
    if "model" in report:
        return f"model `{report['model'].get('folder', '?')}`"
    data = report.get("data", {})
    return f"audio `{data.get('listing') or data.get('generated', '?')}`"


def _bold_best(cells: list[tuple[float | None, str]], better: str) -> list[str]:
    values = [v for v, _ in cells if v is not None and not math.isnan(v)]
    if len(values) < 2:
        return [text for _, text in cells]
    best = max(values) if better == "higher" else min(values)
    return [f"**{text}**" if value == best else text for value, text in cells]


def reconstruction_table(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown rows: one per metric, ``mean [low, high]`` per run."""
    keys: list[str] = []
    for _, report in runs:
        keys += [k for k in report.get("metrics", {}) if k not in keys]
    lines = ["| metric | " + " | ".join(name for name, _ in runs) + " |", "|---|" + "---:|" * len(runs)]
    for key in keys:
        info = next(r["metrics"][key] for _, r in runs if key in r.get("metrics", {}))
        cells = []
        for _, report in runs:
            m = report.get("metrics", {}).get(key)
            if m is None:
                cells.append((None, "—"))
                continue
            low, high = (m.get("ci95") or [None, None])[:2]
            text = number(m.get("mean")) + (f" [{number(low)}, {number(high)}]" if low is not None else "")
            cells.append((m.get("mean"), text))
        arrow = "↑" if info.get("better") == "higher" else "↓"
        lines.append(f"| {info.get('label', key)} {arrow} | " + " | ".join(_bold_best(cells, info.get("better")))
                     + " |")
    return lines


def latents_table(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown rows: latent size, active dimensions, and each probe's accuracy (chance)."""
    lines = ["| figure | " + " | ".join(name for name, _ in runs) + " |", "|---|" + "---:|" * len(runs)]
    size = [(None, (f"{r['size']['latent_dim']} × {r['size']['frame_rate']:.3g} Hz = "
                    f"{r['size']['floats_per_second']:.0f} floats/s")) for _, r in runs]
    lines.append("| latent | " + " | ".join(text for _, text in size) + " |")
    active = [(None, f"{r.get('dimensions', {}).get('active', 'n/a')} of {r['size']['latent_dim']}") for _, r in runs]
    lines.append("| active dims | " + " | ".join(text for _, text in active) + " |")
    probes: list[str] = []
    for _, report in runs:
        probes += [k for k in report.get("probes", {}) if k not in probes]
    for probe in probes:
        cells = []
        for _, report in runs:
            p = report.get("probes", {}).get(probe)
            if not p or "accuracy" not in p:
                cells.append((None, "—"))
            else:
                cells.append((p["accuracy"], f"{percent(p['accuracy'])} (chance {percent(p['chance'])})"))
        lines.append(f"| {probe} probe ↑ | " + " | ".join(_bold_best(cells, "higher")) + " |")
    return lines


def generation_table(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown rows for ``eval tts`` / ``eval audio`` reports: error rates (corpus), SIM, FD, and the
    judge behind each row (figures of different judges are not comparable; the row says so)."""
    lines = ["| figure | " + " | ".join(name for name, _ in runs) + " | judge |", "|---|" + "---:|" * len(runs) + "---|"]
    keys: list[str] = []
    for _, report in runs:
        keys += [k for k in (report.get("metrics") or {}) if k not in keys]
    for key in [*keys, "fd"]:
        cells, judges = [], []
        for _, report in runs:
            if key == "fd":
                m = report.get("frechet")
                value = None if not m else m["value"]
                text = "—" if not m else f"{value:.3f} ({m['pooling']})"
            else:
                m = (report.get("metrics") or {}).get(key)
                value = None if not m else (m.get("corpus") if m.get("corpus") is not None else m.get("mean"))
                percent = key in ("wer", "cer", "per")
                text = "—" if value is None else (f"{100 * value:.2f} %" if percent else number(value))
            cells.append((value, text))
            if m:
                judges.append(m["judge"])
        if not judges:
            continue
        same = len(set(judges)) == 1
        label = "FD" if key == "fd" else next(r["metrics"][key]["label"] for _, r in runs
                                                if key in (r.get("metrics") or {}))
        better = "lower" if key != "sim" else "higher"
        shown = _bold_best(cells, better) if same else [text for _, text in cells]
        judge = judges[0] if same else "differ: not comparable (" + "; ".join(sorted(set(judges))) + ")"
        lines.append(f"| {label} {'↑' if better == 'higher' else '↓'} | " + " | ".join(shown) + f" | {judge} |")
    return lines


def compare_reports(runs: list[str | os.PathLike], names: list[str] | None = None) -> str:
    """Markdown with one table per report kind among ``runs``."""
    if not runs:
        raise ConfigError("eval compare needs at least one evaluation folder")
    loaded = [read_report(run) for run in runs]
    labels = names or [run_name(report, run) for report, run in zip(loaded, runs)]
    if len(labels) != len(loaded):
        raise ConfigError(f"{len(labels)} names for {len(loaded)} runs")
    sections = ["# semlat evaluation: comparison", ""]
    tables = {"reconstruction": reconstruction_table, "latents": latents_table, "tts": generation_table,
              "audio": generation_table}
    for kind, title in KINDS.items():
        table = tables[kind]
        chosen = [(label, report) for label, report in zip(labels, loaded) if report["kind"] == kind]
        if chosen:
            sections += [f"## {title}", "", *table(chosen), ""]
    sources = [f"- {label}: `{run}` ({_source(report)})" for label, report, run in zip(labels, loaded, runs)]
    return "\n".join([*sections, *sources]) + "\n"
