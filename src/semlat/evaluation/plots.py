"""PNG figures for evaluation reports: spectrogram comparisons, probe bars, per-dimension usage.

All figures are drawn with matplotlib's object API on the Agg backend (no display, no global state
beyond the backend choice) and written atomically. Spectrograms are log-mel (80 bands, 1024-point
FFT, hop 256 at the signal's rate, dB relative to the figure's loudest bin, 80 dB range).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semlat.audio.filterbanks import mel_filterbank
from semlat.utils.files import atomic_path

#: Spectrogram settings (at the signal's sample rate).
N_FFT = 1024
HOP = 256
N_MELS = 80
DYNAMIC_RANGE_DB = 80.0


def _figure(width: float, height: float, layout: str | None = None):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def log_mel_db(audio: Any, sample_rate: int) -> np.ndarray:
    """``audio [N]`` -> power log-mel in dB ``[N_MELS, T]`` (not yet range-limited)."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).flatten()
    if len(x) < N_FFT:
        x = torch.nn.functional.pad(x, (0, N_FFT - len(x)))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs().square()
    fb = mel_filterbank(sample_rate, N_FFT, N_MELS, 0.0, sample_rate / 2)  # [M, F]
    return (10.0 * torch.log10(fb @ spec + 1e-10)).numpy()


def spectrogram_comparison(items: Sequence[tuple[str, Any, Any]], sample_rate: int, path: str | os.PathLike,
                           *, labels: tuple[str, str] = ("input", "reconstruction")) -> Path:
    """One row per ``(title, reference [N], estimate [N])``: the two log-mel spectrograms side by side,
    on one shared colour scale per row (the row's loudest bin is 0 dB)."""
    if not items:
        raise ValueError("no items to plot")
    fig = _figure(12, 2.6 * len(items), layout="constrained")
    axes = fig.subplots(len(items), 2, squeeze=False)
    seconds_per_frame = HOP / sample_rate
    for row, (title, reference, estimate) in enumerate(items):
        specs = [log_mel_db(reference, sample_rate), log_mel_db(estimate, sample_rate)]
        top = max(float(s.max()) for s in specs)
        for col, (spec, label) in enumerate(zip(specs, labels, strict=True)):
            ax = axes[row][col]
            image = ax.imshow(spec - top, origin="lower", aspect="auto", cmap="magma", vmin=-DYNAMIC_RANGE_DB,
                              vmax=0.0, extent=(0, spec.shape[1] * seconds_per_frame, 0, N_MELS))
            ax.set_title(f"{title}: {label}", fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.set_ylabel("mel band", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=list(axes[row]), fraction=0.02, pad=0.01, label="dB")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _time_image(fig, ax, image, path: str | os.PathLike, title: str, ylabel: str, unit: str) -> Path:
    """Label a time x something image (seconds on x), add its colour bar and save the figure."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("s", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label=unit)
    return _save(fig, path)


def spectrogram(audio: Any, sample_rate: int, path: str | os.PathLike, title: str = "") -> Path:
    """One log-mel spectrogram of ``audio [N]`` (loudest bin 0 dB, 80 dB range), 8 x 2.4 inches."""
    spec = log_mel_db(audio, sample_rate)
    fig = _figure(8, 2.4)
    ax = fig.subplots()
    image = ax.imshow(spec - float(spec.max()), origin="lower", aspect="auto", cmap="magma",
                      vmin=-DYNAMIC_RANGE_DB, vmax=0.0, extent=(0, spec.shape[1] * HOP / sample_rate, 0, N_MELS))
    return _time_image(fig, ax, image, path, title, "mel band", "dB")


def latent_image(latents: Any, frame_rate: float, path: str | os.PathLike, title: str = "") -> Path:
    """A latent sequence ``[D, T]`` as an image (channels x frames), each channel standardised over time so
    that channels of different scales stay visible; the colour scale is clipped at +-3 standard deviations."""
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"latents must be [D, T], got shape {z.shape}")
    z = (z - z.mean(axis=1, keepdims=True)) / (z.std(axis=1, keepdims=True) + 1e-8)
    fig = _figure(8, 2.4)
    ax = fig.subplots()
    image = ax.imshow(z, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-3.0, vmax=3.0, interpolation="nearest",
                      extent=(0, z.shape[1] / frame_rate, 0, z.shape[0]))
    return _time_image(fig, ax, image, path, title, "channel", "z-score")


def probe_bars(probes: dict[str, dict[str, Any]], path: str | os.PathLike, title: str = "linear probes") -> Path:
    """Accuracy bars per probe with the majority-class chance (black tick) and ``1 / classes`` (grey)."""
    shown = {name: p for name, p in probes.items() if "accuracy" in p}
    if not shown:
        raise ValueError("no probe with an accuracy to plot")
    fig = _figure(1.6 + 1.3 * len(shown), 3.6)
    ax = fig.add_subplot()
    positions = np.arange(len(shown))
    accuracies = [100 * p["accuracy"] for p in shown.values()]
    ax.bar(positions, accuracies, width=0.6, color="tab:blue")
    for k, p in enumerate(shown.values()):
        ax.hlines(100 * p["chance"], k - 0.35, k + 0.35, colors="black", linewidth=2,
                  label="chance (majority)" if k == 0 else None)
        ax.hlines(100 * p["balanced_chance"], k - 0.35, k + 0.35, colors="grey", linestyles="dashed",
                  label="1 / classes" if k == 0 else None)
        ax.text(k, accuracies[k] + 1.5, f"{accuracies[k]:.1f}", ha="center", fontsize=8)
    ax.set_xticks(positions, [f"{name}\n({p['classes']} classes)" for name, p in shown.items()], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    return _save(fig, path)


def dimension_bars(per_dim: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "latent dimensions") -> Path:
    """Per latent dimension: variance (bars) and, when known, KL to the prior (line); dead ones in red."""
    if not per_dim:
        raise ValueError("no dimensions to plot")
    fig = _figure(max(5.0, 0.25 * len(per_dim) + 2), 3.2)
    ax = fig.add_subplot()
    dims = np.arange(len(per_dim))
    colors = ["tab:red" if d["dead"] else "tab:blue" for d in per_dim]
    ax.bar(dims, [d["variance"] for d in per_dim], color=colors)
    ax.set_xlabel("dimension")
    ax.set_ylabel("variance")
    if all(d.get("kl") is not None for d in per_dim):
        kl_axis = ax.twinx()
        kl_axis.plot(dims, [d["kl"] for d in per_dim], color="black", marker=".", linewidth=1)
        kl_axis.set_ylabel("KL (nats/frame)")
    dead = sum(bool(d["dead"]) for d in per_dim)
    ax.set_title(f"{title} ({dead} dead of {len(per_dim)}, in red)", fontsize=10)
    return _save(fig, path)


def convergence_curves(rows: Sequence[dict[str, Any]], metrics: Sequence[tuple[str, str]], path: str | os.PathLike,
                       title: str = "convergence") -> Path:
    """One panel per (metric, x axis): a line per ``rows[i]["space"]`` through its points.

    ``rows``: dicts with ``space``, ``step``, ``train_minutes`` and the metrics' values (None skipped), and
    where present ``<metric>_ci`` ``[low, high]``, drawn as a band; ``metrics``: ``(key, label)`` pairs, each drawn against steps (left) and training minutes (right)."""
    fig = _figure(10, 3.2 * len(metrics))
    spaces = list(dict.fromkeys(r["space"] for r in rows))
    for m, (key, label) in enumerate(metrics):
        for a, (x_key, x_label) in enumerate((("step", "training steps"), ("train_minutes", "training minutes"))):
            ax = fig.add_subplot(len(metrics), 2, 2 * m + a + 1)
            for space in spaces:
                points = sorted((r[x_key], r[key]) for r in rows if r["space"] == space and r.get(key) is not None)
                if points:
                    (line,) = ax.plot(*zip(*points, strict=True), marker="o", label=space)
                    bands = sorted((r[x_key], *r[f"{key}_ci"]) for r in rows if r["space"] == space
                                   and r.get(f"{key}_ci") and None not in r[f"{key}_ci"])
                    if len(bands) > 1:
                        xs, lows, highs = zip(*bands, strict=True)
                        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
            ax.set_xlabel(x_label)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if m == 0 and a == 0:
                ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
