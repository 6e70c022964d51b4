"""``semlat eval recon``: reconstruct a manifest with a model and score every utterance.

What is compared: each utterance is loaded resampled (soxr "HQ") to the **model's rate**, exactly
the signal the model encodes, and its reconstruction (decoded, cropped to the input's length) is
scored against it at that rate; each metric then resamples to its own rate (PESQ wb 16 kHz, nb 8 kHz,
STOI 10 kHz, F0 and speaker 16 kHz, see :mod:`semlat.evaluation.metrics`). Scoring at the model's
rate means a 16 kHz model is not charged for the band above 8 kHz that it never saw.

Outputs in ``out``:

- ``audio/<id>.wav``: every reconstruction as 32-bit float WAV (exactly the signal scored);
- ``utterances.jsonl``: one row per scored utterance, appended as each is done, so a rerun with the
  same model, manifest, split and metrics skips what is already there (resume);
- ``run.json``: what the rows were computed with; a rerun of a different run into ``out`` is refused;
- ``spectrograms.png``: log-mel of input and reconstruction for the first three utterances;
- ``report.json``: every figure with its provenance (model folder and sha256 of its weights,
  manifest and its sha256, split, judges and their versions, semlat version, date), the per-metric
  aggregates and every row; ``report.md``: the same as a Markdown table. Both are written atomically.

Aggregates: per metric, the mean over the utterances where it is defined (NaN scores are counted
and their reasons tallied, never averaged), with a 95 % percentile-bootstrap confidence interval of
the mean (2000 resamples, fixed seed, so reruns give the same interval), the standard deviation and
the median. Unreadable audio is skipped and listed under ``rejects``; it is never fatal.

Batching: ``batch_size`` utterances (of similar length: pending items are sorted by duration) are
zero-padded to the longest and run through the model together. The default, 1, reconstructs every
utterance alone; larger batches are faster on a GPU, and padding can change the last
receptive-field's worth of samples slightly (and all of them for models with global attention).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from semlat._version import __version__
from semlat.audio.io import load_audio, save_audio
from semlat.audio.processing import resample
from semlat.checkpoints import WEIGHTS_NAME
from semlat.data.manifest import Manifest
from semlat.errors import AudioError, ConfigError
from semlat.evaluation.metrics import ALL, COLUMNS, MetricInfo, MetricSuite, Score, parse_metrics
from semlat.inference import Codec, load_codec
from semlat.latent_space import space_info
from semlat.utils.figures import number
from semlat.utils.files import atomic_write_text, sha256_file

ROWS_NAME = "utterances.jsonl"
RUN_NAME = "run.json"
CI_LEVEL = 0.95
CI_RESAMPLES = 2000
CI_SEED = 0
#: Utterances drawn in spectrograms.png.
SPECTROGRAM_ITEMS = 3
#: What must match for a rerun into the same folder to resume.
RUN_KEYS = ("model_sha256", "manifest", "split", "metrics", "f0_method", "precision", "sample_rate")


def bootstrap_interval(count: int, statistic, level: float = CI_LEVEL, resamples: int = CI_RESAMPLES,
                       seed: int = CI_SEED) -> tuple[float, float]:
    """The percentile interval of ``statistic(picks)`` over ``resamples`` seeded resamples of ``count`` items:
    ``picks [R, count]`` are item indices drawn with replacement (in blocks that bound memory to about 32 MB of
    indices) and ``statistic`` returns one value per row (NaN rows are ignored)."""
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    step = max(1, 4_000_000 // count)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        values[start:stop] = statistic(rng.integers(0, count, size=(stop - start, count)))
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_ci(values: Sequence[float], level: float = CI_LEVEL, resamples: int = CI_RESAMPLES,
            seed: int = CI_SEED) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of the finite ``values`` and its percentile-bootstrap interval.

    NaN values are ignored. With no finite value all three are NaN; with one, the interval is NaN.
    The generator is seeded, so the same values always give the same interval.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) == 1:
        return mean, math.nan, math.nan
    return (mean, *bootstrap_interval(len(x), lambda picks: x[picks].mean(axis=1), level, resamples, seed))


def ratio_ci(numerators: Sequence[float], denominators: Sequence[float], level: float = CI_LEVEL,
             resamples: int = CI_RESAMPLES, seed: int = CI_SEED) -> tuple[float, float, float]:
    """``(rate, low, high)``: the corpus rate ``sum(numerators) / sum(denominators)`` (total edits over total
    reference units) and its percentile-bootstrap interval over items (an item's pair is resampled whole).
    Seeded like :func:`mean_ci`; NaN where undefined (no unit, or one item for the interval)."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if len(num) != len(den):
        raise ValueError("ratio_ci needs as many numerators as denominators")
    if len(den) == 0 or den.sum() <= 0:
        return math.nan, math.nan, math.nan
    rate = float(num.sum() / den.sum())
    if len(den) == 1:
        return rate, math.nan, math.nan

    def rates(picks: np.ndarray) -> np.ndarray:
        totals = den[picks].sum(axis=1)
        return np.where(totals > 0, num[picks].sum(axis=1) / np.maximum(totals, 1e-12), np.nan)

    return (rate, *bootstrap_interval(len(den), rates, level, resamples, seed))


def paired_ratio_difference(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]],
                            level: float = CI_LEVEL, resamples: int = CI_RESAMPLES,
                            seed: int = CI_SEED) -> tuple[float, float, float]:
    """``(difference, low, high)`` of two corpus rates over the same items: ``a`` and ``b`` hold each item's
    ``(edits, reference units)`` in the same order; the difference is ``rate(a) - rate(b)`` and its interval a
    paired percentile bootstrap (the same resampled items for both), so that what the items share cancels."""
    if len(a) != len(b):
        raise ValueError("paired_ratio_difference needs the same items on both sides")
    x = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    y = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    if len(x) == 0 or x[:, 1].sum() <= 0 or y[:, 1].sum() <= 0:
        return math.nan, math.nan, math.nan
    difference = float(x[:, 0].sum() / x[:, 1].sum() - y[:, 0].sum() / y[:, 1].sum())
    if len(x) == 1:
        return difference, math.nan, math.nan

    def differences(picks: np.ndarray) -> np.ndarray:
        rate_x = x[picks, 0].sum(1) / np.maximum(x[picks, 1].sum(1), 1e-12)
        rate_y = y[picks, 0].sum(1) / np.maximum(y[picks, 1].sum(1), 1e-12)
        return rate_x - rate_y

    return (difference, *bootstrap_interval(len(x), differences, level, resamples, seed))


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def aggregate(rows: Sequence[dict[str, Any]], columns: Sequence[str],
              infos: Mapping[str, MetricInfo] = COLUMNS) -> dict[str, dict[str, Any]]:
    """Per column: mean, 95 % bootstrap CI, std, median, n (defined), undefined count and reasons.

    ``infos`` describes each column (label, unit, range, direction); the reconstruction metrics'
    :data:`~semlat.evaluation.metrics.COLUMNS` by default.
    """
    out = {}
    for name in columns:
        values = [r["scores"].get(name) for r in rows]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        mean, low, high = mean_ci(finite)
        reasons: dict[str, int] = {}
        for r in rows:
            reason = r.get("undefined", {}).get(name)
            if reason:
                reasons[reason] = reasons.get(reason, 0) + 1
        info = infos[name]
        out[name] = {
            "label": info.label, "unit": info.unit, "range": info.range, "better": info.better,
            "group": info.group, "description": info.description,
            "mean": finite_or_none(mean), "ci95": [finite_or_none(low), finite_or_none(high)],
            "std": finite_or_none(float(np.std(finite, ddof=1))) if len(finite) > 1 else None,
            "median": finite_or_none(float(np.median(finite))) if finite else None,
            "n": len(finite), "undefined": len(values) - len(finite), "undefined_reasons": reasons,
        }
    return out


def _recon_name(item_id: str) -> str:
    """A safe relative path under ``audio/`` for an id (absolute and ``..`` parts dropped)."""
    parts = [p for p in PurePosixPath(item_id.replace("\\", "/")).parts if p not in ("/", "", ".", "..")]
    path = PurePosixPath(*parts) if parts else PurePosixPath("item")
    return str(path.with_suffix(".wav") if path.suffix else path.with_name(path.name + ".wav"))


def _items(manifest: Manifest) -> list[tuple[str, Path, float]]:
    """``(id, audio path, duration)`` per utterance; the id is the manifest's ``audio`` (made unique)."""
    seen: dict[str, int] = {}
    items = []
    for i, u in enumerate(manifest):
        count = seen.get(u.audio, 0) + 1
        seen[u.audio] = count
        item_id = u.audio if count == 1 else f"{u.audio}#{count}"
        items.append((item_id, manifest.audio_path(i), u.duration))
    return items


def read_rows(path: Path, ids: set[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Rows already done (valid, for a current id, with every column); rewrites the file if it dropped any."""
    if not path.exists():
        return {}
    rows, dropped = {}, 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if (isinstance(row, dict) and row.get("id") in ids and isinstance(row.get("scores"), dict)
                    and all(c in row["scores"] for c in columns)):
                rows[row["id"]] = row
            else:
                dropped += 1
    if dropped:
        atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows.values()))
    return rows


def check_run(out: Path, run: dict[str, Any], keys: Sequence[str] = RUN_KEYS) -> None:
    """Refuse to resume into a folder holding another run's rows (one of ``keys`` differs); record
    this run's identity in ``run.json``. A folder whose run scored nothing (no rows yet, e.g. a run that
    stopped on an error) is taken over."""
    path = out / RUN_NAME
    rows = out / ROWS_NAME
    if rows.is_file() and rows.stat().st_size == 0:
        rows.unlink()
    if path.exists() and not rows.exists():
        path.unlink()
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{path}: unreadable; delete it or choose another --out") from None
        for key in keys:
            if old.get(key) != run.get(key):
                raise ConfigError(f"{out}: holds an evaluation with a different {key} ({old.get(key)!r}, now "
                                  f"{run.get(key)!r}); choose another --out or delete it")
    elif rows.exists():
        raise ConfigError(f"{out}: has {ROWS_NAME} but no {RUN_NAME}; choose another --out or delete it")
    atomic_write_text(path, json.dumps(run, indent=2) + "\n")


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of ``items`` of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def output_folder(out: str | os.PathLike) -> Path:
    """``out`` as a Path; a one-line ConfigError when it exists and is not a folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    return out


def _reconstruct(codec: Codec, audios: list[torch.Tensor]) -> list[torch.Tensor]:
    """Reconstruct ``[1, N_i]`` inputs as one zero-padded batch; each output is cropped to ``[N_i]``."""
    longest = max(a.shape[-1] for a in audios)
    batch = torch.zeros(len(audios), 1, longest)
    for i, a in enumerate(audios):
        batch[i, :, : a.shape[-1]] = a
    recon = codec.decode(codec.encode(batch)).cpu()
    if codec.output_rate != codec.input_rate:
        recon = resample(recon, codec.output_rate, codec.input_rate)
    return [recon[i, 0, : a.shape[-1]] for i, a in enumerate(audios)]


def _row(item_id: str, path: Path, out: Path, recon: torch.Tensor, reference: torch.Tensor, sr: int,
         suite: MetricSuite) -> dict[str, Any]:
    scores: dict[str, Score] = suite(recon, reference, sr)
    relative = None
    if torch.isfinite(recon).all():
        relative = f"audio/{_recon_name(item_id)}"
        save_audio(out / relative, recon, sr, subtype="FLOAT")
    return {"id": item_id, "audio": str(path), "reconstruction": relative,
            "duration": round(reference.shape[-1] / sr, 6),
            "scores": {k: finite_or_none(v) for k, v in scores.items()},
            "undefined": {k: v.reason or "undefined" for k, v in scores.items() if not math.isfinite(v)}}


def evaluate_reconstruction(model_folder: str | os.PathLike, manifest: str | os.PathLike, out: str | os.PathLike, *,
                            split: str | None = None, device: str = "cpu", metrics: str | Sequence[str] = ALL,
                            batch_size: int = 1, precision: str = "fp32", f0_method: str = "dio",
                            progress: bool = True) -> dict[str, Any]:
    """Reconstruct every utterance of ``manifest`` (optionally one ``split``) with the model folder and
    score it against its input; write ``out/`` (see the module docstring) and return the report dict.

    ``metrics`` is a list of metric groups or a comma-separated string (``"pesq,stoi"``; default all),
    ``device`` as for :func:`~semlat.inference.load_codec` ("cpu", "cuda", "auto"); the speaker
    encoder runs there too. Reruns into the same ``out`` resume: utterances already in
    ``utterances.jsonl`` are not recomputed.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    groups = parse_metrics(metrics)
    out = output_folder(out)
    data = Manifest.read_split(manifest, split)
    codec = load_codec(model_folder, device=device, precision=precision)
    suite = MetricSuite(groups, device=codec.device, f0_method=f0_method)
    sr = codec.input_rate  # metrics compare at the input's rate (decoded audio is resampled to it)
    model_sha = sha256_file(Path(model_folder) / WEIGHTS_NAME)
    run = {"model": str(Path(model_folder).resolve()), "model_sha256": model_sha,
           "manifest": str(Path(manifest).resolve()), "split": split, "metrics": list(groups),
           "f0_method": f0_method, "precision": precision, "sample_rate": sr}
    out.mkdir(parents=True, exist_ok=True)
    check_run(out, run)

    items = _items(data)
    rows_path = out / ROWS_NAME
    done = read_rows(rows_path, {i for i, _, _ in items}, suite.columns)
    pending = [item for item in items if item[0] not in done]
    if batch_size > 1:
        pending.sort(key=lambda item: item[2])
    rejects: list[dict[str, str]] = []
    computed = 0
    with rows_path.open("a", encoding="utf-8") as rows_file, \
            tqdm(total=len(pending), desc="evaluating", unit="utt", disable=not progress or not pending) as bar:
        for batch in batches(pending, batch_size):
            loaded = []
            for item_id, path, _ in batch:
                try:
                    audio, _ = load_audio(path, sr)
                except AudioError as err:
                    rejects.append({"id": item_id, "reason": str(err)})
                    continue
                loaded.append((item_id, path, audio))
            recons = _reconstruct(codec, [a for _, _, a in loaded]) if loaded else []
            for (item_id, path, audio), recon in zip(loaded, recons):
                row = _row(item_id, path, out, recon, audio[0], sr, suite)
                done[item_id] = row
                rows_file.write(json.dumps(row, allow_nan=False) + "\n")
                rows_file.flush()
                computed += 1
            bar.update(len(batch))

    rows = [done[i] for i, _, _ in items if i in done]
    figures = {"spectrograms": spectrogram_figure(rows, out, sr)} if rows else {}
    space = codec.space
    report = {
        "kind": "reconstruction",
        "semlat_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"folder": run["model"], "model_type": codec.model_type, "weights_sha256": model_sha,
                  **space_info(space), "sample_rate": sr},
        "data": {"manifest": run["manifest"], "manifest_sha256": sha256_file(manifest), "split": split,
                 "utterances": len(items), "scored": len(rows), "rejected": len(rejects)},
        "settings": {
            "compared_at": f"{sr} Hz, the model's rate (input resampled with soxr HQ; reconstruction cropped "
                           "to the input's length; each metric resamples to its own rate)",
            "aggregate": f"mean over utterances where defined; {round(CI_LEVEL * 100)} % percentile bootstrap "
                         f"CI of the mean ({CI_RESAMPLES} resamples, seed {CI_SEED})",
            "device": str(codec.device), "precision": precision, "batch_size": batch_size, "f0_method": f0_method,
        },
        "judges": suite.judges,
        "metrics": aggregate(rows, suite.columns),
        "figures": {k: v for k, v in figures.items() if v},
        "rejects": rejects,
        "run": {"computed": computed, "resumed": len(rows) - computed, "rows": ROWS_NAME},
        "utterances": rows,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / "report.md", markdown_report(report))
    return report


def spectrogram_figure(rows: Sequence[dict[str, Any]], out: Path, sample_rate: int,
                       count: int = SPECTROGRAM_ITEMS) -> str | None:
    """``spectrograms.png``: input vs reconstruction for the first ``count`` rows with audio; its name."""
    from semlat.evaluation.plots import spectrogram_comparison

    items = []
    for row in rows:
        if row.get("reconstruction") and len(items) < count:
            try:
                reference, _ = load_audio(row["audio"], sample_rate)
                estimate, _ = load_audio(out / row["reconstruction"], sample_rate)
            except AudioError:
                continue
            items.append((row["id"], reference[0].numpy(), estimate[0].numpy()))
    if not items:
        return None
    return spectrogram_comparison(items, sample_rate, out / "spectrograms.png").name


def _fmt(value: float | None) -> str:
    """A metric in the table: three decimals, one from 100 up (:func:`semlat.utils.figures.number`)."""
    return number(value, 1 if value is not None and abs(value) >= 100 else 3)


def markdown_table(report: dict[str, Any]) -> str:
    """The metrics of a report as a Markdown table (mean, 95 % CI, median, n, direction)."""
    lines = ["| metric | mean | 95 % CI | median | n | better |", "|---|---:|---:|---:|---:|---|"]
    for m in report["metrics"].values():
        label = f"{m['label']} ({m['unit']})" if m["unit"] else m["label"]
        low, high = m["ci95"]
        ci = "–" if low is None else f"{_fmt(low)} – {_fmt(high)}"
        n = f"{m['n']}" + (f" (+{m['undefined']} undefined)" if m["undefined"] else "")
        arrow = "↑ higher" if m["better"] == "higher" else "↓ lower"
        lines.append(f"| {label} | {_fmt(m['mean'])} | {ci} | {_fmt(m['median'])} | {n} | {arrow} |")
    return "\n".join(lines) + "\n"


def markdown_report(report: dict[str, Any]) -> str:
    """``report.md``: provenance, the metrics table, judges, undefined scores and rejects."""
    model, data = report["model"], report["data"]
    lines = [
        "# Reconstruction evaluation", "",
        (f"- model: `{model['folder']}` ({model['model_type']}, weights sha256 `{model['weights_sha256'][:16]}`), "
         f"{model['sample_rate']} Hz, {model['latent_dim']} x {model['frame_rate']:g} Hz latents"),
        f"- data: `{data['manifest']}`" + (f", split {data['split']}" if data["split"] else "")
        + f": {data['scored']} of {data['utterances']} utterances scored, {data['rejected']} rejected",
        f"- compared at {report['settings']['compared_at']}",
        f"- {report['settings']['aggregate']}",
        f"- semlat {report['semlat_version']}, {report['created']}", "",
        markdown_table(report),
        "Judges:", "",
    ]
    lines += [f"- {group}: {judge}" for group, judge in report["judges"].items()]
    undefined = [(m["label"], r, c) for m in report["metrics"].values() for r, c in m["undefined_reasons"].items()]
    if undefined:
        lines += ["", "Undefined scores (left out of the means):", ""]
        lines += [f"- {label}: {count} x {reason}" for label, reason, count in undefined]
    if report.get("figures", {}).get("spectrograms"):
        lines += ["", f"![input vs reconstruction]({report['figures']['spectrograms']})"]
    if report["rejects"]:
        lines += ["", f"Rejected inputs ({len(report['rejects'])}):", ""]
        lines += [f"- `{r['id']}`: {r['reason']}" for r in report["rejects"]]
    return "\n".join(lines) + "\n"
