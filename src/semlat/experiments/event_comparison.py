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
from semlat.data.manifest import Manifest
from semlat.errors import DataError
from semlat.evaluation import metrics as M
from semlat.evaluation.event_judge import SAMPLE_RATE, EventJudge, accuracy, labelled_clips
from semlat.evaluation.frechet import frechet_distance_of
from semlat.evaluation.latent_probes import linear_probe, mean_pool
from semlat.generation.captioned import decode_latents, generate_latents, load_tta
from semlat.inference import LoadedSpace, encode_to_store, load
from semlat.training.run import train_recipe
from semlat.utils.files import atomic_write_text

RESULT_NAME = "event_comparison"
STEPS = (1, 2, 4, 8, 16, 32, 200)
SINE_STEPS = (2, 4, 8)
STEPS_TOLERANCE = 0.05
HELD_OUT = ("valid", "test")


def _to_16k(audio: torch.Tensor, rate: int) -> np.ndarray:
    signal = audio.reshape(1, -1).float().cpu()
    if rate != SAMPLE_RATE:
        signal = resample(signal, rate, SAMPLE_RATE)
    return signal[0].numpy()


def _score_set(outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray] | None, labels: Sequence[str],
               judge: EventJudge, real: np.ndarray) -> dict[str, Any]:
    """Judge accuracy and FD of a set of 16 kHz clips; mel distance / PESQ / STOI against ``inputs``."""
    predicted, scores = judge.judge(outputs)
    result: dict[str, Any] = {"clips": len(outputs), "judge_accuracy": accuracy(predicted, labels),
                              "fd": frechet_distance_of(scores, real)}
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
    ``[1, D, T]``; with ``generated`` latents ``[D, T]`` also their accuracy against ``generated_labels``."""
    manifest = Manifest.read(manifest_path, split="train")
    latents, labels = [], []
    for i, u in enumerate(manifest):
        if u.label is not None:
            audio, _ = load_audio(manifest.audio_path(i), space.input_rate)
            latents.append(space.encode(audio[None])[0].numpy())  # [D, T]
            labels.append(u.label)
    test = np.arange(len(latents) + len(heldout)) >= len(latents)
    latents += [z[0].numpy() for z in heldout]
    probe = linear_probe(mean_pool(latents), labels + list(heldout_labels), test_mask=test,
                         classify=mean_pool(generated) if len(generated) else None)
    result = {k: probe[k] for k in ("accuracy", "balanced_accuracy", "chance", "balanced_chance", "n_train",
                                    "n_test", "classes")}
    if len(generated):
        result["generated_accuracy"] = float(np.mean([p == t for p, t in zip(probe["classified"], generated_labels)]))
    return result


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
                         tta_overrides: Sequence[str] = (), steps: Sequence[int] = STEPS, tta_sampling_steps: int = 32,
                         max_clips: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the comparison (module docstring) over ``arms`` (name -> latent space folder)."""
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
    report: dict[str, Any] = {
        "manifest": str(manifest_path), "judge": {"label": judge.label, "train_accuracy": judge.train_accuracy,
                                                  "real_heldout_accuracy": accuracy(predicted, labels),
                                                  "chance": 1.0 / len(judge.classes), "classes": len(judge.classes)},
        "heldout_clips": len(clips), "tta": {"config": tta_config, "steps": tta_steps, "sampling_steps": tta_sampling_steps,
                                          "text_encoder": str(text_encoder), "overrides": list(tta_overrides)},
        "arms": {}}
    for name, folder in arms.items():
        arm_dir = out / name
        space = load(folder, "cpu")
        arm: dict[str, Any] = {"model": str(Path(folder).resolve()), "model_type": space.model_type,
                               "latent": f"{space.latent_dim} x {space.frame_rate:g} Hz"}
        latents = encode_clips(space, clips)
        options: dict[str, Any] = {}
        if space.model_type == "semantic_vocoder":
            arm["steps_table"] = steps_table(space, latents, clips, labels, judge, real, steps,
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
                                                        *tta_overrides])
        arm["tta_train_seconds"] = round(trainer.train_seconds, 1)
        tta = load_tta(checkpoint, "cpu")
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
        report["arms"][name] = arm
        atomic_write_text(out / f"{RESULT_NAME}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / f"{RESULT_NAME}.md", render(report))
    return report


def _f(value: Any, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}"


def render(report: dict[str, Any]) -> str:
    """The comparison as markdown tables."""
    judge = report["judge"]
    lines = [f"Judge: {judge['label']}; accuracy on the real held-out clips {_f(judge['real_heldout_accuracy'], percent=True)}"
             f" ({judge['classes']} classes, chance {_f(judge['chance'], percent=True)}); "
             f"{report['heldout_clips']} held-out clips (valid + test).", "",
             "| space | latent | event probe (chance) | recon mel dist | PESQ | STOI | recon judge acc | recon FD | "
             "TTA judge acc | TTA FD | TTA latent probe acc |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, arm in report["arms"].items():
        p, r, t = arm["probe"], arm["reconstruction"], arm["tta"]
        lines.append(f"| {name} | {arm['latent']} | {_f(p['accuracy'], percent=True)} ({_f(p['chance'], percent=True)}) "
                     f"| {_f(r['mel_distance'])} | {_f(r['pesq'], 2)} | {_f(r['stoi'])} | "
                     f"{_f(r['judge_accuracy'], percent=True)} | {_f(r['fd'], 1)} | {_f(t['judge_accuracy'], percent=True)} "
                     f"| {_f(t['fd'], 1)} | {_f(t.get('latent_probe_accuracy'), percent=True)} |")
    for name, arm in report["arms"].items():
        if "steps_table" not in arm:
            continue
        chosen = arm["chosen"]
        lines += ["", f"Vocoder steps vs quality ({name}; chosen: {chosen['steps']} steps, {chosen['schedule']} grid):",
                  "", "| grid | steps | mel dist | PESQ | STOI | judge acc | FD | decode s / clip |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in arm["steps_table"]:
            lines.append(f"| {row['schedule']} | {row['steps']} | {_f(row['mel_distance'])} | {_f(row['pesq'], 2)} | {_f(row['stoi'])} | "
                         f"{_f(row['judge_accuracy'], percent=True)} | {_f(row['fd'], 1)} | "
                         f"{_f(row['seconds_per_clip'], 2)} |")
    tta = report["tta"]
    lines += ["", f"TTA: `{tta['config']}`, {tta['steps']} steps per space, {tta['sampling_steps']} sampling steps, "
                  f"text encoder {tta['text_encoder']}."]
    return "\n".join(lines) + "\n"
