"""The latent-TTS convergence experiment (the Semantic-VAE paper's claim, at demo scale).

The paper trains F5-TTS on Semantic-VAE latents, on mel and on a vanilla VAE's latents and reports that the
semantic latents are more intelligible (WER), keep the speaker better (SIM) and converge faster. Here the
same tiny TTS (``tts/tiny_<kind>``: same backbone, batches of 16 utterances, optimiser, steps) trains on
each latent space's encoding of a corpus's training split, and every ``eval_every`` steps its checkpoint is
judged on a cross-sentence test set:

* **test set** (:func:`cross_sentence_rows`): each utterance of the test split is a target; its prompt is
  another utterance of the same speaker (the next one of the test split, else of the training data), as in
  LibriSpeech-PC's cross-sentence protocol. Duration: F5's ratio rule from the prompt.
* **judges**: the ASR judge's error rate against the target (PER for the offline phoneme judge, WER for
  Whisper) and the speaker judge's cosine between the generated clip and its prompt (SIM), both with
  :func:`~semlat.evaluation.generation_eval.evaluate_tts`; the same judges on the real target audio give
  the floor / ceiling (``ground truth``).
* **x axes**: training steps and training wall-clock (``train_seconds`` of each checkpoint: time in training
  steps only, so evaluation does not count).
* **NFE sweep**: each space's final checkpoint is also judged at the NFEs of ``nfe_sweep`` (default 4, 8, 16,
  32); ``min_nfe`` is the smallest whose error rate is within 10 % (relative) of NFE 32's, the setting
  ``benchmarks/bench_tts.py`` times beside NFE 32.

Output (``out/``)::

    <space>/latents/            the training split's latent store (with statistics)
    <space>/run/                the TTS training run (checkpoints every eval_every steps, all kept)
    <space>/eval/step-XXXXXXXX/ generated audio, generated.jsonl and the evaluation (scores/report.md)
    <space>/eval/nfe-NN/        the final checkpoint at NFE NN (the sweep)
    ground_truth/               the judges on the real target audio
    tts_experiment.json / .md   every point, the settings and judges; convergence.png (PER/WER and SIM
                                against steps and against minutes)

Every stage resumes: the store, the training (up to ``steps``), each checkpoint's audio and scores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semlat.checkpoints import resolve_model_folder
from semlat.chunking import chunk_seed
from semlat.data.manifest import Manifest
from semlat.errors import ConfigError
from semlat.evaluation.generation_eval import evaluate_tts
from semlat.evaluation.plots import convergence_curves
from semlat.generation.synthesis import load_tts, synthesize_to_file
from semlat.inference import encode_to_store, load
from semlat.training.run import train_recipe
from semlat.utils.files import atomic_write_text

#: The tiny TTS recipe for each latent space type (the same model; batch frame budgets and frame split differ).
TINY_CONFIGS = {"wave_vae": "tts/tiny_wave_vae", "mel_dcae": "tts/tiny_mel_dcae", "griffin_lim": "tts/tiny_mel",
                "bigvgan": "tts/tiny_mel", "vocos": "tts/tiny_mel"}
RESULT_NAME = "tts_experiment"
NFE_SWEEP = (4, 8, 16, 32)
NFE_TOLERANCE = 0.10  # min_nfe: error rate within 10 % (relative) of the largest NFE's


@dataclass(frozen=True)
class SpaceRun:
    """One arm of the experiment: a name, the latent space's model folder and the TTS recipe to train."""

    name: str
    model: Path
    config: str | None = None  # default: TINY_CONFIGS of the model's type


def tiny_config_for(model: str | os.PathLike) -> str:
    """The ``tts/tiny_*`` recipe for the latent space at ``model`` (by its ``model_type``)."""
    folder = resolve_model_folder(model)
    kind = json.loads((folder / "config.json").read_text())["model_type"]
    if kind not in TINY_CONFIGS:
        raise ConfigError(f"{folder}: a {kind} model is not a latent space with a tiny TTS recipe "
                          f"({', '.join(TINY_CONFIGS)})")
    return TINY_CONFIGS[kind]


def cross_sentence_rows(manifest: Manifest, split: str = "test") -> list[dict[str, Any]]:
    """Targets of ``split`` (with text) and, for each, a prompt: another utterance of the same speaker,
    preferring the next one (cyclically) of ``split``, else the first one of the other splits. A target whose
    speaker has no other utterance (only in tiny corpora) prompts itself (``cross: False``; counted in the
    results). Rows: ``id, text, phonemes, target, prompt, prompt_text, cross``."""
    indices = [i for i, u in enumerate(manifest) if u.split == split and u.text]
    by_speaker: dict[Any, list[int]] = {}
    for i in indices:
        by_speaker.setdefault(manifest[i].speaker, []).append(i)
    others: dict[Any, list[int]] = {}
    for i, u in enumerate(manifest):
        if u.split != split and u.text:
            others.setdefault(u.speaker, []).append(i)
    rows = []
    for i in indices:
        speaker = manifest[i].speaker
        same = by_speaker[speaker]
        if len(same) > 1:
            prompt = same[(same.index(i) + 1) % len(same)]
        elif others.get(speaker):
            prompt = others[speaker][0]
        else:
            prompt = i
        u, p = manifest[i], manifest[prompt]
        rows.append({"id": u.audio, "text": u.text, "phonemes": u.phonemes, "target": str(manifest.audio_path(i)),
                     "prompt": str(manifest.audio_path(prompt)), "prompt_text": p.text, "cross": prompt != i})
    return rows


def _write_listing(rows: Sequence[dict[str, Any]], audio: Sequence[str], path: Path) -> Path:
    lines = [json.dumps({"id": r["id"], "audio": a, "text": r["text"], "phonemes": r["phonemes"],
                         "prompt": r["prompt"]}, ensure_ascii=False) for r, a in zip(rows, audio, strict=True)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    metrics = report["metrics"]
    out: dict[str, Any] = {}
    for key in ("per", "wer", "cer"):
        if key in metrics:
            out[key] = metrics[key]["corpus"]
            out[f"{key}_mean_ci"] = [metrics[key]["mean"], *metrics[key]["ci95"]]
    if "sim" in metrics:
        out["sim"] = metrics["sim"]["mean"]
        out["sim_ci"] = metrics["sim"]["ci95"]
    for key in ("dnsmos_ovrl", "dnsmos_sig"):
        if key in metrics:
            out[key] = metrics[key]["mean"]
    return out


def evaluate_checkpoint(checkpoint: Path, rows: Sequence[dict[str, Any]], out: Path, *, asr: str, speaker: str | None,
                        mos: str | None = None, nfe: int = 16, cfg: float = 2.0, seed: int = 0,
                        progress: bool = True) -> dict[str, Any]:
    """Generate every row with the TTS at ``checkpoint`` (row ``i`` seeded ``chunk_seed(seed, i)``) into
    ``out/audio`` and judge it; returns the figures and the evaluation's judges."""
    from tqdm import tqdm

    tts = load_tts(checkpoint, "cpu")
    files = []
    started = time.monotonic()
    generated = 0
    for i, row in enumerate(tqdm(rows, desc=f"tts {checkpoint.name}", unit="utt", disable=not progress)):
        path = out / "audio" / f"{i:04d}.wav"
        if not path.is_file():
            synthesize_to_file(tts, path, text=row["text"], prompt=row["prompt"], prompt_text=row["prompt_text"],
                               nfe=nfe, cfg=cfg, seed=chunk_seed(seed, i))
            generated += 1
        files.append(str(path.resolve()))
    seconds = time.monotonic() - started
    listing = _write_listing(rows, files, out / "generated.jsonl")
    report = evaluate_tts(listing, out / "scores", asr=asr, speaker=speaker, mos=mos, progress=progress)
    figures = _figures(report)
    if generated == len(rows):
        figures["generation_seconds_per_utterance"] = round(seconds / max(1, len(rows)), 3)
    return {**figures, "judges": report["judges"]}


def run_tts_experiment(out: str | os.PathLike, spaces: Sequence[SpaceRun], manifest: str | os.PathLike, *,
                       asr: str, speaker: str | None = "resemblyzer", mos: str | None = None, steps: int = 3000,
                       eval_every: int = 500, nfe: int = 16, cfg: float = 2.0, seed: int = 0,
                       nfe_sweep: Sequence[int] = NFE_SWEEP, overrides: Sequence[str] = (), progress: bool = True,
                       log=print) -> dict[str, Any]:
    """Run the experiment (module docstring) into ``out``; returns the result dict (also written as
    ``tts_experiment.json`` / ``.md`` with ``convergence.png``)."""
    if steps < 1 or eval_every < 1:
        raise ConfigError(f"steps and eval_every must be positive, got {steps} and {eval_every}")
    out = Path(out)
    manifest_path = Path(manifest)
    rows = cross_sentence_rows(Manifest.read(manifest_path))
    if not rows:
        raise ConfigError(f"{manifest_path}: no test utterance with text")
    truth_listing = _write_listing(rows, [r["target"] for r in rows], out / "ground_truth" / "targets.jsonl")
    truth = evaluate_tts(truth_listing, out / "ground_truth" / "scores", asr=asr, speaker=speaker, mos=mos,
                         progress=progress)
    points: list[dict[str, Any]] = []
    trained: dict[str, Any] = {}
    sweep: dict[str, list[dict[str, Any]]] = {}
    judges = truth["judges"]
    for arm in spaces:
        config = arm.config or tiny_config_for(arm.model)
        folder = out / arm.name
        log(f"[tts experiment] {arm.name}: encoding the training split with {arm.model}")
        space = load(arm.model, device="cpu")
        encode_to_store(space, manifest_path, folder / "latents", split="train", progress=progress)
        log(f"[tts experiment] {arm.name}: training {config} for {steps} steps (checkpoint every {eval_every})")
        _, trainer = train_recipe(config, [
            f"run_dir={folder / 'run'}", f"data.latents={folder / 'latents'}", f"train.max_steps={steps}",
            f"train.checkpoint_every={eval_every}", f"train.valid_every={eval_every}",
            f"train.keep_checkpoints={steps // eval_every + 2}", f"train.progress={progress}", *overrides])
        trained[arm.name] = {"model": str(arm.model), "config": config, "latent_dim": space.latent_dim,
                             "frame_rate": space.frame_rate, "run": str(folder / "run"),
                             "steps_per_second": round(trainer.step / max(trainer.train_seconds, 1e-9), 3)}
        for checkpoint in sorted((folder / "run" / "checkpoints").glob("step-*")):
            state = json.loads((checkpoint / "config.json").read_text())["training"]
            log(f"[tts experiment] {arm.name}: judging step {state['step']}")
            figures = evaluate_checkpoint(checkpoint, rows, folder / "eval" / checkpoint.name, asr=asr, speaker=speaker,
                                          mos=mos, nfe=nfe, cfg=cfg, seed=seed, progress=progress)
            figures.pop("judges")
            points.append({"space": arm.name, "step": state["step"],
                           "train_minutes": round(state.get("train_seconds", 0.0) / 60, 3), **figures})
        final = max((folder / "run" / "checkpoints").glob("step-*"))
        for n in sorted(set(nfe_sweep)):
            log(f"[tts experiment] {arm.name}: judging {final.name} at NFE {n}")
            figures = evaluate_checkpoint(final, rows, folder / "eval" / f"nfe-{n:02d}", asr=asr, speaker=speaker,
                                          mos=mos, nfe=n, cfg=cfg, seed=seed, progress=progress)
            figures.pop("judges")
            sweep.setdefault(arm.name, []).append({"nfe": n, **figures})
    result = {
        "settings": {"steps": steps, "eval_every": eval_every, "nfe": nfe, "cfg": cfg, "seed": seed,
                     "manifest": str(manifest_path.resolve()), "test_utterances": len(rows),
                     "self_prompted": sum(not r["cross"] for r in rows),
                     "overrides": list(overrides), "duration": "F5's ratio rule from the prompt"},
        "judges": judges, "spaces": trained, "ground_truth": _figures(truth), "points": points,
        "nfe_sweep": sweep, "min_nfe": {name: min_nfe(runs) for name, runs in sweep.items()},
    }
    atomic_write_text(out / f"{RESULT_NAME}.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    rate = next((k for k in ("per", "wer") if k in result["ground_truth"]), None)
    metrics = ([(rate, rate.upper())] if rate else []) + ([("sim", "SIM")] if speaker else [])
    if metrics and points:
        convergence_curves(points, metrics, out / "convergence.png",
                           title="tiny TTS on each latent space: " + ", ".join(label for _, label in metrics))
    atomic_write_text(out / f"{RESULT_NAME}.md", render(result))
    return result


def min_nfe(runs: Sequence[dict[str, Any]], tolerance: float = NFE_TOLERANCE) -> int | None:
    """The smallest NFE of a sweep whose error rate (PER, else WER) is at most ``(1 + tolerance)`` times the
    largest NFE's; None without an error rate."""
    if not runs:
        return None
    ordered = sorted(runs, key=lambda r: r["nfe"])
    rate = next((k for k in ("per", "wer") if ordered[-1].get(k) is not None), None)
    if rate is None:
        return None
    limit = (1 + tolerance) * ordered[-1][rate]
    return next(r["nfe"] for r in ordered if r.get(rate) is not None and r[rate] <= limit)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render(result: dict[str, Any]) -> str:
    """The experiment's Markdown: settings, the final figures per space and every checkpoint's."""
    s, truth = result["settings"], result["ground_truth"]
    rate = next((k for k in ("per", "wer") if k in truth), None)
    lines = [f"# Latent TTS convergence ({s['test_utterances']} cross-sentence test utterances, NFE {s['nfe']}, "
             f"CFG {s['cfg']}, seed {s['seed']})", ""]
    lines += [f"- {group} judge: {label}" for group, label in result["judges"].items()]
    if s.get("self_prompted"):
        lines.append(f"- {s['self_prompted']} target(s) prompted by themselves (their speaker has no other utterance)")
    lines += [f"- ground truth (real target audio, same prompts): {rate.upper() if rate else ''} "
              f"{_pct(truth.get(rate)) if rate else ''}, SIM {_num(truth.get('sim'))}", ""]
    head = "| space | latent | steps/s | step | train min | " + (f"{rate.upper()} ↓ | " if rate else "") + "SIM ↑ |"
    lines += [head, "|---|---|---:|---:|---:|" + ("---:|" if rate else "") + "---:|"]
    for point in result["points"]:
        space = result["spaces"][point["space"]]
        latent = f"{space['latent_dim']} × {space['frame_rate']:.4g} Hz"
        lines.append(f"| {point['space']} | {latent} | {space['steps_per_second']:.2f} | {point['step']} | "
                     f"{point['train_minutes']:.1f} | " + (f"{_pct(point.get(rate))} | " if rate else "")
                     + f"{_num(point.get('sim'))} |")
    if result.get("nfe_sweep"):
        lines += ["", "Final checkpoints by NFE (smallest NFE within 10 % of NFE "
                  f"{max(r['nfe'] for runs in result['nfe_sweep'].values() for r in runs)}'s error rate in bold):", "",
                  "| space | NFE | " + (f"{rate.upper()} ↓ | " if rate else "") + "SIM ↑ | s / utterance |",
                  "|---|---:|" + ("---:|" if rate else "") + "---:|---:|"]
        for name, runs in result["nfe_sweep"].items():
            for r in runs:
                nfe = f"**{r['nfe']}**" if r["nfe"] == result["min_nfe"].get(name) else str(r["nfe"])
                lines.append(f"| {name} | {nfe} | " + (f"{_pct(r.get(rate))} | " if rate else "")
                             + f"{_num(r.get('sim'))} | {_num(r.get('generation_seconds_per_utterance'))} |")
    return "\n".join(lines) + "\n"
