"""Semantic-encoder latents vs a waveform VAE's latents on sound events (SemanticVocoder's claim, at demo scale).

The paper reports that a frozen semantic encoder's latents are more discriminative (ESC-50 linear probe 83.4 %
vs 42.5 % for a VAE) and give better text-to-audio (FD, FAD). Here, on the offline event corpus, each arm is a
latent space trained on the same corpus (the offline Dasheng MAE + SemanticVocoder generator; a waveform VAE),
and for each:

* **event probe**: a logistic regression on mean-pooled latents, trained on the corpus' train split and scored
  on its held-out clips (valid + test splits), beside chance (the most frequent held-out class);
* **reconstruction** of the held-out clips: mel distance, PESQ and STOI against the input (16 kHz), the event
  judge's accuracy on the reconstructions and the Fréchet distance of their judge embeddings to the real held-out
  clips (:mod:`semlat.evaluation.event_judge`, which depends on neither space);
* **text-to-audio**: the same ``tta`` recipe (same backbone, steps, batch) on each space's latents of the train
  split; one clip per held-out caption at that clip's length; the judge's class accuracy against the caption's
  label and the Fréchet distance to the real held-out clips; and the **event probe's class accuracy on the
  generated latents themselves** (``latent_probe_accuracy``: the probe above applied to their means), which
  judges the generator apart from the decoder;
* for a SemanticVocoder arm, **vocoder steps vs quality** (``steps`` on the reference's uniform time grid, and
  ``sine_steps`` on the sine grid: mel distance, PESQ, STOI, judge FD and accuracy, seconds per clip) on the
  held-out clips, and the fewest steps within 5 % (relative) of the best mel distance, on the better grid at
  that count (``chosen``), used for the rest of that arm's decoding.

Every accuracy comes with its percentile-bootstrap 95 % interval over the held-out clips and keeps its per-clip
results, from which ``differences`` gives the first arm's paired differences to each other arm (the same
resampled clips on both sides). Each set of clips also reports its median RMS level (dBFS; the real held-out
clips' is ``real.median_rms_dbfs``), and the generated latents their **within-clip std** (each channel's
standard deviation over a clip's frames in the TTA model's normalised units, beside the real held-out latents'):
a generator that leaves noise in its samples scores far above the real latents. ``arm_overrides`` gives an arm
its own text-to-audio options (``flow.prediction=data`` for wide latents, say) after the shared ones.

Output (``out/``): ``<arm>/latents`` (train store), ``<arm>/tta`` (training run), ``<arm>/generated/*.wav``,
``event_comparison.json`` / ``.md``. Stages resume where their outputs exist.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semlat.audio.io import load_audio
from semlat.audio.processing import resample
from semlat.chunking import chunk_seed
from semlat.data.datasets import rms_db
from semlat.data.manifest import Manifest
from semlat.errors import DataError
from semlat.evaluation import metrics as M
from semlat.evaluation.event_judge import SAMPLE_RATE, EventJudge, accuracy, labelled_clips
from semlat.evaluation.frechet import frechet_distance_of
from semlat.evaluation.latent_probes import linear_probe, mean_pool
from semlat.evaluation.recon_eval import bootstrap_interval
from semlat.generation.captioned import decode_latents, generate_latents
from semlat.inference import LoadedSpace, encode_to_store
from semlat.models import load as load_any
from semlat.training.run import train_recipe
from semlat.utils.figures import number, percent, percent_interval
from semlat.utils.files import atomic_write_text

RESULT_NAME = "event_comparison"
STEPS = (1, 2, 4, 8, 16, 32, 200)
SINE_STEPS = (2, 4, 8, 16, 32, 200)  # one sine step is one uniform step: t = 0, 1 on both grids
STEPS_TOLERANCE = 0.05
HELD_OUT = ("valid", "test")


def _to_16k(audio: torch.Tensor, rate: int) -> np.ndarray:
    signal = audio.reshape(1, -1).float().cpu()
    if rate != SAMPLE_RATE:
        signal = resample(signal, rate, SAMPLE_RATE)
    return signal[0].numpy()


def rms_dbfs(clip: np.ndarray) -> float:
    """A clip's RMS level in dB relative to full scale (floored at -120 dB)."""
    return max(rms_db(torch.as_tensor(clip)), -120.0)


def accuracy_ci(correct: Sequence[bool]) -> list[float]:
    """The percentile-bootstrap 95 % interval of an accuracy over its clips (seeded)."""
    x = np.asarray(correct, dtype=np.float64)
    return list(bootstrap_interval(len(x), lambda picks: x[picks].mean(axis=1))) if len(x) > 1 else [math.nan] * 2


def paired_difference(a: Sequence[bool], b: Sequence[bool]) -> list[float]:
    """``[difference, low, high]``: ``mean(a) - mean(b)`` over the same clips and its paired bootstrap 95 %
    interval (the same resampled clips on both sides)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        return [math.nan] * 3
    return [float(x.mean() - y.mean()), *bootstrap_interval(len(x), lambda picks: x[picks].mean(1) - y[picks].mean(1))]


def _score_set(outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray] | None, labels: Sequence[str],
               judge: EventJudge, real: np.ndarray) -> dict[str, Any]:
    """Judge accuracy (with its interval and the per-clip ``correct`` list), FD and median RMS level of a set of
    16 kHz clips; mel distance / PESQ / STOI against ``inputs``."""
    predicted, scores = judge.judge(outputs)
    correct = [p == t for p, t in zip(predicted, labels, strict=True)]
    result: dict[str, Any] = {"clips": len(outputs), "judge_accuracy": accuracy(predicted, labels),
                              "judge_accuracy_ci95": accuracy_ci(correct), "correct": correct,
                              "fd": frechet_distance_of(scores, real),
                              "median_rms_dbfs": float(np.median([rms_dbfs(o) for o in outputs]))}
    if inputs is not None:
        for name, fn in (("mel_distance", M.mel_distance), ("pesq", M.pesq_wb), ("stoi", M.stoi)):
            values = [float(fn(o[: len(i)], i[: len(o)], SAMPLE_RATE)) for o, i in zip(outputs, inputs)]
            finite = [v for v in values if math.isfinite(v)]
            result[name] = float(np.mean(finite)) if finite else None
    return result


def encode_clips(space: LoadedSpace, clips: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """16 kHz clips -> their latents ``[1, D, T]`` (once per space: the probe, the reconstruction and every row
    of the steps table share them)."""
    latents = []
    for clip in clips:
        audio = torch.as_tensor(clip)[None]
        if space.input_rate != SAMPLE_RATE:
            audio = resample(audio, SAMPLE_RATE, space.input_rate)
        latents.append(space.encode(audio[None]))
    return latents


def _decode(space: LoadedSpace, latents: Sequence[torch.Tensor], clips: Sequence[np.ndarray],
            options: dict[str, Any]) -> list[np.ndarray]:
    """Decode each clip's latents (clip ``i`` seeded ``chunk_seed(0, i)``) -> 16 kHz, cut to the clip's length."""
    return [_to_16k(space.decode(z, **options, seed=chunk_seed(0, index)), space.output_rate)[: len(clip)]
            for index, (z, clip) in enumerate(zip(latents, clips))]


def event_probe(space: LoadedSpace, manifest_path: Path, heldout: Sequence[torch.Tensor],
                heldout_labels: Sequence[str], generated: Sequence[np.ndarray] = (),
                generated_labels: Sequence[str] = ()) -> dict[str, Any]:
    """Mean-pooled latents -> label: trained on the train split's clips, scored on the ``heldout`` latents
    ``[1, D, T]`` (``correct``: per clip, and the accuracy's interval); with ``generated`` latents ``[D, T]``
    also their accuracy against ``generated_labels`` (``generated_correct``: per clip)."""
    manifest = Manifest.read(manifest_path, split="train")
    latents, labels = [], []
    for i, u in enumerate(manifest):
        if u.label is not None:
            audio, _ = load_audio(manifest.audio_path(i), space.input_rate)
            latents.append(space.encode(audio[None])[0].numpy())  # [D, T]
            labels.append(u.label)
    test = np.arange(len(latents) + len(heldout)) >= len(latents)
    latents += [z[0].numpy() for z in heldout]
    pooled = mean_pool(latents)
    extra = [pooled[test]] + ([mean_pool(generated)] if len(generated) else [])
    probe = linear_probe(pooled, labels + list(heldout_labels), test_mask=test, classify=np.concatenate(extra))
    result = {k: probe[k] for k in ("accuracy", "balanced_accuracy", "chance", "balanced_chance", "n_train",
                                    "n_test", "classes")}
    classified = list(probe["classified"])
    result["correct"] = [p == t for p, t in zip(classified[: len(heldout)], heldout_labels, strict=True)]
    result["accuracy_ci95"] = accuracy_ci(result["correct"])
    if len(generated):
        result["generated_correct"] = [p == t for p, t in zip(classified[len(heldout):], generated_labels, strict=True)]
        result["generated_accuracy"] = float(np.mean(result["generated_correct"]))
    return result


def within_clip_std(latents: Sequence[torch.Tensor], mean: torch.Tensor, std: torch.Tensor) -> float:
    """The mean over clips and channels of each channel's standard deviation over a clip's frames, in units of
    the per-channel statistics ``mean``/``std [D]`` a text-to-audio model normalises with: how much a latent
    sequence moves within a clip (a generator that leaves noise in its samples scores far above real latents)."""
    values = [((z.reshape(z.shape[-2], -1).float() - mean[:, None]) / std[:, None]).std(dim=1).mean()
              for z in latents if z.shape[-1] > 1]
    return float(torch.stack(values).mean()) if values else math.nan


def steps_table(space: LoadedSpace, latents: Sequence[torch.Tensor], clips: Sequence[np.ndarray],
                labels: Sequence[str], judge: EventJudge, real: np.ndarray, steps: Sequence[int] = STEPS,
                sine_steps: Sequence[int] = SINE_STEPS, progress: bool = True) -> list[dict[str, Any]]:
    """Reconstruction quality of a sampling decoder at each number of steps and schedule (same noise seeds) from
    the clips' ``latents``; ``seconds_per_clip`` times the decoding."""
    from tqdm import tqdm

    settings = [("uniform", n) for n in steps] + [("sine", n) for n in sine_steps]
    rows = []
    for schedule, n in tqdm(settings, desc="vocoder steps", unit="setting", disable=not progress):
        started = time.perf_counter()
        outputs = _decode(space, latents, clips, {"steps": n, "schedule": schedule})
        seconds = (time.perf_counter() - started) / len(clips)
        rows.append({"schedule": schedule, "steps": n, **_score_set(outputs, clips, labels, judge, real),
                     "seconds_per_clip": seconds})
    return rows


def choose_steps(rows: Sequence[dict[str, Any]], tolerance: float = STEPS_TOLERANCE) -> dict[str, Any]:
    """The fewest steps with a mel distance within ``tolerance`` (relative) of the best, and at that count the
    grid with the lowest mel distance: ``{"steps", "schedule"}``."""
    best = min(r["mel_distance"] for r in rows)
    good = [r for r in rows if r["mel_distance"] <= best * (1 + tolerance)]
    pick = min(good, key=lambda r: (r["steps"], r["mel_distance"]))
    return {"steps": pick["steps"], "schedule": pick.get("schedule", "uniform")}


def run_event_comparison(out: str | os.PathLike, manifest_path: str | os.PathLike, arms: dict[str, str | Path], *,
                         text_encoder: str | os.PathLike, tta_config: str = "tta/small", tta_steps: int = 3000,
                         tta_overrides: Sequence[str] = (), arm_overrides: dict[str, Sequence[str]] | None = None,
                         steps: Sequence[int] = STEPS, tta_sampling_steps: int = 32, max_clips: int | None = None,
                         table_clips: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the comparison (module docstring) over ``arms`` (name -> latent space folder); ``tta_overrides`` go
    to every arm's text-to-audio training, ``arm_overrides[name]`` to that arm's after them. ``max_clips``
    caps the held-out clips, ``table_clips`` those of the vocoder steps table (its 200-step rows cost seconds a
    clip; the table's job is choosing the default steps)."""
    arm_overrides = {name: list(v) for name, v in (arm_overrides or {}).items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = Path(manifest_path).resolve()
    judge = EventJudge().fit(manifest_path, "train")
    clips, labels, captions = labelled_clips(manifest_path, HELD_OUT)
    if not clips:
        raise DataError(f"{manifest_path}: no labelled clips in the valid and test splits")
    if max_clips is not None:
        clips, labels, captions = clips[:max_clips], labels[:max_clips], captions[:max_clips]
    predicted, real = judge.judge(clips)
    table = len(clips[:table_clips])  # the steps table's clips: the first ``table_clips`` (all by default)
    report: dict[str, Any] = {
        "manifest": str(manifest_path), "judge": {"label": judge.label, "train_accuracy": judge.train_accuracy,
                                                  "real_heldout_accuracy": accuracy(predicted, labels),
                                                  "chance": 1.0 / len(judge.classes), "classes": len(judge.classes)},
        "real": {"median_rms_dbfs": float(np.median([rms_dbfs(c) for c in clips]))},
        "heldout_clips": len(clips), "table_clips": table,
        "tta": {"config": tta_config, "steps": tta_steps, "sampling_steps": tta_sampling_steps,
                "text_encoder": str(text_encoder), "overrides": list(tta_overrides)},
        "arms": {}}
    for name, folder in arms.items():
        arm_dir = out / name
        space = load_any(folder, "cpu", expect="space")
        arm: dict[str, Any] = {"model": str(Path(folder).resolve()), "model_type": space.model_type,
                               "latent": f"{space.latent_dim} x {space.frame_rate:g} Hz"}
        latents = encode_clips(space, clips)
        options: dict[str, Any] = {}
        if space.model_type == "semantic_vocoder":
            arm["steps_table"] = steps_table(space, latents[:table], clips[:table], labels[:table], judge, real, steps,
                                             [n for n in SINE_STEPS if n <= max(steps)], progress)
            arm["chosen"] = choose_steps(arm["steps_table"])
            options = dict(arm["chosen"])
        arm["reconstruction"] = _score_set(_decode(space, latents, clips, options), clips, labels, judge, real)
        encode_to_store(space, manifest_path, arm_dir / "latents", split="train", progress=progress)
        checkpoint, trainer = train_recipe(tta_config, [f"run_dir={arm_dir / 'tta'}",
                                                        f"data.latents={arm_dir / 'latents'}",
                                                        f"text_encoder={text_encoder}", f"model.in_chans={space.latent_dim}",
                                                        f"train.max_steps={tta_steps}",
                                                        f"train.progress={'true' if progress else 'false'}",
                                                        *tta_overrides, *arm_overrides.get(name, ())])
        arm["tta_train_seconds"] = round(trainer.train_seconds, 1)
        arm["tta_overrides"] = arm_overrides.get(name, [])
        tta = load_any(checkpoint, "cpu", expect="tta")
        generated, generated_latents = [], []
        gen_dir = arm_dir / "generated"
        gen_dir.mkdir(parents=True, exist_ok=True)
        for index, (caption, clip) in enumerate(zip(captions, clips)):
            seconds = min(len(clip) / SAMPLE_RATE, tta.model.config.max_seconds)
            made = generate_latents(tta, caption, seconds, steps=tta_sampling_steps, seed=chunk_seed(0, index))
            audio = decode_latents(tta, made, seconds, seed=chunk_seed(0, index), decode_options=options)
            tta.space.save(audio, gen_dir / f"{index:04d}.wav")
            generated.append(_to_16k(audio, tta.space.output_rate))
            generated_latents.append(made[0].cpu().numpy())
        arm["tta"] = _score_set(generated, None, labels, judge, real)
        arm["probe"] = event_probe(space, manifest_path, latents, labels, generated_latents, labels)
        arm["tta"]["latent_probe_accuracy"] = arm["probe"].pop("generated_accuracy")
        arm["tta"]["latent_probe_correct"] = arm["probe"].pop("generated_correct")
        stats = (tta.model.latent_mean.cpu(), tta.model.latent_std.cpu())
        arm["tta"]["within_clip_std"] = within_clip_std([torch.as_tensor(z) for z in generated_latents], *stats)
        arm["tta"]["real_within_clip_std"] = within_clip_std([z[0] for z in latents], *stats)
        report["arms"][name] = arm
        atomic_write_text(out / f"{RESULT_NAME}.json", json.dumps(report, indent=2) + "\n")
    report["differences"] = differences(report)
    atomic_write_text(out / f"{RESULT_NAME}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / f"{RESULT_NAME}.md", render(report))
    return report


#: The per-clip results compared between arms: (name, where in an arm, the per-clip list).
DIFFERENCES = (("event probe", "probe", "correct"), ("recon judge acc", "reconstruction", "correct"),
               ("TTA judge acc", "tta", "correct"), ("TTA latent probe acc", "tta", "latent_probe_correct"))


def differences(report: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """For the first arm against each other arm, ``{"<first> - <other>": {measure: [difference, low, high]}}``
    (paired over the same held-out clips)."""
    names = list(report["arms"])
    out: dict[str, dict[str, list[float]]] = {}
    for other in names[1:]:
        a, b = report["arms"][names[0]], report["arms"][other]
        out[f"{names[0]} - {other}"] = {label: paired_difference(a[part][key], b[part][key])
                                        for label, part, key in DIFFERENCES
                                        if key in a.get(part, {}) and key in b.get(part, {})}
    return out


def render(report: dict[str, Any]) -> str:
    """The comparison as markdown tables."""
    judge = report["judge"]
    real = report.get("real", {})
    lines = [f"Judge: {judge['label']}; accuracy on the real held-out clips {percent(judge['real_heldout_accuracy'])}"
             f" ({judge['classes']} classes, chance {percent(judge['chance'])}); "
             f"{report['heldout_clips']} held-out clips (valid + test); 95 % intervals by bootstrap over the clips. "
             f"Real held-out clips: median RMS {number(real.get('median_rms_dbfs'), 1)} dBFS.", "",
             "| space | latent | event probe (chance) | recon mel dist | PESQ | STOI | recon judge acc | recon FD | "
             "recon RMS dBFS |", "|---|---|---|---|---|---|---|---|---|"]
    for name, arm in report["arms"].items():
        p, r = arm["probe"], arm["reconstruction"]
        lines.append(f"| {name} | {arm['latent']} | {percent_interval(p['accuracy'], p.get('accuracy_ci95'))} "
                     f"({percent(p['chance'])}) | {number(r['mel_distance'])} | {number(r['pesq'], 2)} | "
                     f"{number(r['stoi'])} | {percent_interval(r['judge_accuracy'], r.get('judge_accuracy_ci95'))} | {number(r['fd'], 1)} | "
                     f"{number(r.get('median_rms_dbfs'), 1)} |")
    lines += ["", "| space | TTA options | TTA judge acc | TTA FD | TTA RMS dBFS | TTA latent probe acc | "
                  "within-clip std (real) | TTA train s |", "|---|---|---|---|---|---|---|---|"]
    for name, arm in report["arms"].items():
        t = arm["tta"]
        probe_correct = t.get("latent_probe_correct")
        lines.append(f"| {name} | {' '.join(arm.get('tta_overrides') or []) or 'defaults'} | "
                     f"{percent_interval(t['judge_accuracy'], t.get('judge_accuracy_ci95'))} | {number(t['fd'], 1)} | "
                     f"{number(t.get('median_rms_dbfs'), 1)} | "
                     f"{percent_interval(t.get('latent_probe_accuracy'), accuracy_ci(probe_correct) if probe_correct else None)} | "
                     f"{number(t.get('within_clip_std'), 3)} ({number(t.get('real_within_clip_std'), 3)}) | "
                     f"{number(arm.get('tta_train_seconds'), 0)} |")
    for pair, values in report.get("differences", {}).items():
        lines += ["", f"Paired differences ({pair}, percentage points, 95 % interval):", ""]
        lines += [f"- {label}: {100 * v[0]:+.1f} [{100 * v[1]:+.1f}, {100 * v[2]:+.1f}]"
                  if all(math.isfinite(x) for x in v) else f"- {label}: -" for label, v in values.items()]
    for name, arm in report["arms"].items():
        if "steps_table" not in arm:
            continue
        chosen = arm["chosen"]
        clips = report.get("table_clips", report["heldout_clips"])
        lines += ["", f"Vocoder steps vs quality ({name}, the first {clips} held-out clips; chosen: {chosen['steps']} "
                      f"steps, {chosen['schedule']} grid):",
                  "", "| grid | steps | mel dist | PESQ | STOI | judge acc | FD | RMS dBFS | decode s / clip |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in arm["steps_table"]:
            lines.append(f"| {row['schedule']} | {row['steps']} | {number(row['mel_distance'])} | {number(row['pesq'], 2)} | {number(row['stoi'])} | "
                         f"{percent_interval(row['judge_accuracy'], row.get('judge_accuracy_ci95'))} | {number(row['fd'], 1)} | "
                         f"{number(row.get('median_rms_dbfs'), 1)} | {number(row['seconds_per_clip'], 2)} |")
    tta = report["tta"]
    lines += ["", f"TTA: `{tta['config']}`, {tta['steps']} steps per space, {tta['sampling_steps']} sampling steps, "
                  f"text encoder {tta['text_encoder']}."]
    return "\n".join(lines) + "\n"
