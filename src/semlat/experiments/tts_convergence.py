"""The latent-TTS convergence experiment (the Semantic-VAE paper's claim, at demo scale).

The paper trains F5-TTS on Semantic-VAE latents, on mel and on a vanilla VAE's latents and reports that the
semantic latents are more intelligible (WER), keep the speaker better (SIM) and converge faster. Here the
same tiny TTS (``tts/tiny_<kind>``: same backbone, batches of 16 utterances, optimiser, steps; each arm may add
recipe overrides, e.g. ``conditioning=durations``) trains on each latent space's encoding of a corpus's
training split, and every ``eval_every`` steps its checkpoint is judged on a cross-sentence test set:

* **test set** (:func:`cross_sentence_rows`): by default the test split's sentences spoken by *training*
  voices (``voices="seen"``), one target per sentence (``per_sentence``), so that the sentences are unseen and
  each counts once; its prompt is another utterance of the same speaker (the next one of the test split, else
  of the training data), as in LibriSpeech-PC's cross-sentence protocol. Duration: F5's ratio rule from the
  prompt (``f5`` conditioning) or the model's own duration predictor at the prompt's pace (``durations``).
* **judges**: the ASR judge's error rate against the target (PER for the offline phoneme judge, WER for
  Whisper) and the speaker judge's cosine between the generated clip and its prompt (SIM), both with
  :func:`~semlat.evaluation.generation_eval.evaluate_tts`; the same judges on the real target audio give
  the floor / ceiling (``ground truth``). Every error rate is the corpus rate with a 95 % bootstrap interval
  over the test sentences; the final checkpoints of every pair of arms are compared by a *paired* bootstrap
  of their difference over the same sentences (:func:`differences`), which resolves smaller gaps than two
  separate intervals.
* **x axes**: training steps and training wall-clock (``train_seconds`` of each checkpoint: time in training
  steps only, so evaluation does not count); :func:`to_threshold` gives the first checkpoint of each arm at
  or below ``threshold`` (50 % PER by default), and :func:`ordering` states whether the paper's ordering
  (semantic < mel < vanilla, semantic first to the threshold) holds.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from semlat.checkpoints import read_model_meta, resolve_model_folder
from semlat.chunking import chunk_seed
from semlat.data.manifest import Manifest
from semlat.errors import ConfigError
from semlat.evaluation.generation_eval import evaluate_tts
from semlat.evaluation.plots import convergence_curves
from semlat.generation.synthesis import synthesize_to_file
from semlat.inference import encode_to_store
from semlat.models import load as load_any
from semlat.sampling import from_f5_strength
from semlat.training.run import train_recipe
from semlat.training.trainer import latest_checkpoint
from semlat.utils.figures import number, percent, with_interval
from semlat.utils.files import atomic_write_text

#: The tiny TTS recipe for each latent space type (the same model; batch frame budgets and frame split differ).
TINY_CONFIGS = {"wave_vae": "tts/tiny_wave_vae", "mel_dcae": "tts/tiny_mel_dcae", "griffin_lim": "tts/tiny_mel",
                "bigvgan": "tts/tiny_mel", "vocos": "tts/tiny_mel"}
RESULT_NAME = "tts_experiment"
#: Convergence: steps and minutes until an arm's error rate first reaches this.
PER_THRESHOLD = 0.5
NFE_SWEEP = (4, 8, 16, 32)
NFE_TOLERANCE = 0.10  # min_nfe: error rate within 10 % (relative) of the largest NFE's


@dataclass(frozen=True)
class SpaceRun:
    """One arm of the experiment: a name, the latent space's model folder and the TTS recipe to train."""

    name: str
    model: Path
    config: str | None = None  # default: TINY_CONFIGS of the model's type
    overrides: tuple[str, ...] = ()  # this arm's recipe overrides (after the experiment's)


def tiny_config_for(model: str | os.PathLike) -> str:
    """The ``tts/tiny_*`` recipe for the latent space at ``model`` (by its ``model_type``)."""
    folder = resolve_model_folder(model)
    kind = read_model_meta(folder)["model_type"]
    if kind not in TINY_CONFIGS:
        raise ConfigError(f"{folder}: a {kind} model is not a latent space with a tiny TTS recipe "
                          f"({', '.join(TINY_CONFIGS)})")
    return TINY_CONFIGS[kind]


VOICES = ("seen", "unseen", "all")


def cross_sentence_rows(manifest: Manifest, split: str = "test", voices: str = "all",
                        per_sentence: bool = False) -> list[dict[str, Any]]:
    """Targets of ``split`` (with text) and, for each, a prompt: another utterance of the same speaker,
    preferring the next one (cyclically) of ``split``, else the first one of the other splits. A target whose
    speaker has no other utterance (only in tiny corpora) prompts itself (``cross: False``; counted in the
    results). Paths are absolute (the listings they go into resolve relative paths against their own folder).
    ``voices``: ``seen`` keeps targets whose speaker has training utterances, ``unseen`` the others,
    ``all`` every target; ``per_sentence`` keeps the first target of each distinct text (so that a sentence spoken
    by several voices counts once). Rows: ``id, text, phonemes, target, prompt, prompt_text, cross, speaker``."""
    if voices not in VOICES:
        raise ConfigError(f"voices must be one of {', '.join(VOICES)}, got {voices!r}")
    trained = {u.speaker for u in manifest if u.split == "train"}
    indices = [i for i, u in enumerate(manifest) if u.split == split and u.text]
    by_speaker: dict[Any, list[int]] = {}
    for i in indices:
        by_speaker.setdefault(manifest[i].speaker, []).append(i)
    others: dict[Any, list[int]] = {}
    for i, u in enumerate(manifest):
        if u.split != split and u.text:
            others.setdefault(u.speaker, []).append(i)
    rows, texts = [], set()
    for i in indices:
        speaker = manifest[i].speaker
        if (voices == "seen" and speaker not in trained) or (voices == "unseen" and speaker in trained):
            continue
        if per_sentence and manifest[i].text in texts:
            continue
        texts.add(manifest[i].text)
        same = by_speaker[speaker]
        if len(same) > 1:
            prompt = same[(same.index(i) + 1) % len(same)]
        elif others.get(speaker):
            prompt = others[speaker][0]
        else:
            prompt = i
        u, p = manifest[i], manifest[prompt]
        rows.append({"id": u.audio, "text": u.text, "phonemes": u.phonemes,
                     "target": str(manifest.audio_path(i).resolve()),
                     "prompt": str(manifest.audio_path(prompt).resolve()), "prompt_text": p.text,
                     "cross": prompt != i, "speaker": speaker})
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
            out[f"{key}_ci"] = metrics[key].get("corpus_ci95")
            out[f"{key}_mean_ci"] = [metrics[key]["mean"], *metrics[key]["ci95"]]
    if "sim" in metrics:
        out["sim"] = metrics["sim"]["mean"]
        out["sim_ci"] = metrics["sim"]["ci95"]
    for key in ("dnsmos_ovrl", "dnsmos_sig"):
        if key in metrics:
            out[key] = metrics[key]["mean"]
    return out


def _counts(report: dict[str, Any], rate: str) -> dict[str, tuple[int, int]]:
    """Each scored clip's ``(edits, reference units)`` of the error rate ``rate``."""
    return {row["id"]: tuple(row["counts"][rate]) for row in report["utterances"] if rate in row.get("counts", {})}


def guidance_of(settings: dict[str, Any]) -> float:
    """The guidance scale of a result's settings (:mod:`semlat.sampling`'s convention); results written before
    semlat 0.2 hold F5-TTS's ``cfg`` strength instead, one less."""
    return settings["guidance"] if "guidance" in settings else from_f5_strength(settings.get("cfg", 2.0))


def evaluate_checkpoint(checkpoint: Path, rows: Sequence[dict[str, Any]], out: Path, *, asr: str, speaker: str | None,
                        mos: str | None = None, nfe: int = 16, guidance: float = 3.0, seed: int = 0,
                        precision: str = "fp32", stream: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Generate every row with the TTS at ``checkpoint`` (row ``i`` seeded ``chunk_seed(seed, i)``; the DiT in
    ``precision``; decoded in ``stream``-second windows as it is generated when given) into ``out/audio`` and judge
    it; returns the figures, the evaluation's judges and each row's error counts. When every row was generated in
    this call, the figures also hold the mean wall seconds per utterance, real-time factor and first-audio latency
    (:class:`~semlat.generation.synthesis.Spoken`), and for an autoregressive model the share of rows it ended
    itself (``stopped``)."""
    from tqdm import tqdm

    tts = load_any(checkpoint, "cpu", precision, expect="tts")
    files = []
    spoken = []
    for i, row in enumerate(tqdm(rows, desc=f"tts {checkpoint.name}", unit="utt", disable=not progress)):
        path = out / "audio" / f"{i:04d}.wav"
        if not path.is_file():
            spoken.append(synthesize_to_file(tts, path, text=row["text"], prompt=row["prompt"],
                                             prompt_text=row["prompt_text"], steps=nfe, guidance=guidance,
                                             seed=chunk_seed(seed, i), stream=stream)[1])
        files.append(str(path.resolve()))
    listing = _write_listing(rows, files, out / "generated.jsonl")
    report = evaluate_tts(listing, out / "scores", asr=asr, speaker=speaker, mos=mos, progress=progress)
    figures = _figures(report)
    if spoken and len(spoken) == len(rows):
        n = len(spoken)
        figures["generation_seconds_per_utterance"] = round(sum(s.wall_seconds for s in spoken) / n, 3)
        figures["real_time_factor"] = round(sum(s.wall_seconds for s in spoken) / sum(s.audio_seconds for s in spoken), 4)
        figures["first_audio_seconds"] = round(sum(s.first_audio_seconds for s in spoken) / n, 3)
        ends = [flag for s in spoken for flag in s.stopped if flag is not None]
        if ends:
            figures["stopped"] = round(sum(ends) / len(ends), 4)
    rate = next((k for k in ("per", "wer") if k in figures), None)
    counts = _counts(report, rate) if rate else {}
    return {**figures, "judges": report["judges"], "counts": counts}


def run_tts_experiment(out: str | os.PathLike, spaces: Sequence[SpaceRun], manifest: str | os.PathLike, *,
                       asr: str, speaker: str | None = "resemblyzer", mos: str | None = None, steps: int = 3000,
                       eval_every: int = 500, nfe: int = 16, guidance: float = 3.0, seed: int = 0,
                       nfe_sweep: Sequence[int] = NFE_SWEEP, overrides: Sequence[str] = (), voices: str = "seen",
                       per_sentence: bool = True, threshold: float = PER_THRESHOLD, max_minutes: float | None = None,
                       stream: float | None = None, result_name: str = RESULT_NAME, progress: bool = True,
                       log=print) -> dict[str, Any]:
    """Run the experiment (module docstring) into ``out``; returns the result dict (also written as
    ``<result_name>.json`` / ``.md`` with ``convergence.png``). ``max_minutes`` caps each arm's training time;
    ``stream`` decodes the generated latents in windows of that many seconds as they come (first-audio latency)."""
    if steps < 1 or eval_every < 1:
        raise ConfigError(f"steps and eval_every must be positive, got {steps} and {eval_every}")
    out = Path(out)
    manifest_path = Path(manifest)
    data = Manifest.read(manifest_path)
    rows = cross_sentence_rows(data, voices=voices, per_sentence=per_sentence)
    if not rows and voices == "seen":  # a tiny corpus whose test split only has held-out voices
        voices = "all (no test sentence of a training voice)"
        rows = cross_sentence_rows(data, per_sentence=per_sentence)
    if not rows:
        raise ConfigError(f"{manifest_path}: no test utterance with text ({voices} voices)")
    truth_listing = _write_listing(rows, [r["target"] for r in rows], out / "ground_truth" / "targets.jsonl")
    truth = evaluate_tts(truth_listing, out / "ground_truth" / "scores", asr=asr, speaker=speaker, mos=mos,
                         progress=progress)
    points: list[dict[str, Any]] = []
    trained: dict[str, Any] = {}
    sweep: dict[str, list[dict[str, Any]]] = {}
    final_counts: dict[str, dict[str, tuple[int, int]]] = {}
    bf16: dict[str, dict[str, Any]] = {}
    judges = truth["judges"]
    for arm in spaces:
        config = arm.config or tiny_config_for(arm.model)
        folder = out / arm.name
        log(f"[tts experiment] {arm.name}: encoding the training split with {arm.model}")
        space = load_any(arm.model, "cpu", expect="space")
        encode_to_store(space, manifest_path, folder / "latents", split="train", progress=progress)
        done = latest_checkpoint(folder / "run")
        spent = read_model_meta(done)["training"].get("train_seconds", 0.0) / 60 if done is not None else 0.0
        cap = [] if max_minutes is None else [f"train.max_minutes={max_minutes - spent}"]
        if max_minutes is not None and spent >= max_minutes:  # (a resumed experiment: the budget is spent)
            log(f"[tts experiment] {arm.name}: trained for its {max_minutes:g} minutes in an earlier run; reused")
            state = read_model_meta(done)["training"]
            step, seconds = state["step"], state.get("train_seconds", 0.0)
            parameters = sum(v.numel() for k, v in load_file(str(done / "model.safetensors")).items()
                             if k not in ("latent_mean", "latent_std") and not k.endswith("inv_freq"))  # (buffers)
        else:
            log(f"[tts experiment] {arm.name}: training {config} for {steps} steps (checkpoint every {eval_every})"
                + (f", at most {max_minutes - spent:.2f} more minutes" if max_minutes is not None else ""))
            _, trainer = train_recipe(config, [
                f"run_dir={folder / 'run'}", f"data.latents={folder / 'latents'}", f"train.max_steps={steps}",
                f"train.checkpoint_every={eval_every}", f"train.valid_every={eval_every}",
                f"train.keep_checkpoints={steps // eval_every + 2}", f"train.progress={progress}", *cap, *overrides,
                *arm.overrides])
            step, seconds = trainer.step, trainer.train_seconds
            parameters = sum(p.numel() for p in trainer.unwrapped("model").parameters())
        trained[arm.name] = {"model": str(arm.model), "config": config, "overrides": list(arm.overrides),
                             "latent_dim": space.latent_dim, "frame_rate": space.frame_rate,
                             "run": str(folder / "run"), "steps": step, "parameters": parameters,
                             "steps_per_second": round(step / max(seconds, 1e-9), 3)}
        for checkpoint in sorted((folder / "run" / "checkpoints").glob("step-*")):
            state = read_model_meta(checkpoint)["training"]
            log(f"[tts experiment] {arm.name}: judging step {state['step']}")
            figures = evaluate_checkpoint(checkpoint, rows, folder / "eval" / checkpoint.name, asr=asr, speaker=speaker,
                                          mos=mos, nfe=nfe, guidance=guidance, seed=seed, stream=stream,
                                          progress=progress)
            figures.pop("judges")
            final_counts[arm.name] = figures.pop("counts")
            points.append({"space": arm.name, "step": state["step"],
                           "train_minutes": round(state.get("train_seconds", 0.0) / 60, 3), **figures})
        final = max((folder / "run" / "checkpoints").glob("step-*"))
        for n in sorted(set(nfe_sweep)):
            log(f"[tts experiment] {arm.name}: judging {final.name} at NFE {n}")
            figures = evaluate_checkpoint(final, rows, folder / "eval" / f"nfe-{n:02d}", asr=asr, speaker=speaker,
                                          mos=mos, nfe=n, guidance=guidance, seed=seed, progress=progress)
            figures.pop("judges")
            figures.pop("counts")
            sweep.setdefault(arm.name, []).append({"nfe": n, **figures})
        if nfe_sweep:  # the same checkpoint with its DiT in bf16 (the speed benchmark's other setting)
            log(f"[tts experiment] {arm.name}: judging {final.name} with the DiT in bf16")
            figures = evaluate_checkpoint(final, rows, folder / "eval" / f"bf16-nfe-{nfe:02d}", asr=asr,
                                          speaker=speaker, mos=mos, nfe=nfe, guidance=guidance, seed=seed, precision="bf16",
                                          progress=progress)
            figures.pop("judges")
            figures.pop("counts")
            bf16[arm.name] = figures
    result = {
        "settings": {"steps": steps, "eval_every": eval_every, "nfe": nfe, "guidance": guidance, "seed": seed,
                     "manifest": str(manifest_path.resolve()), "test_utterances": len(rows), "voices": voices,
                     "per_sentence": per_sentence, "self_prompted": sum(not r["cross"] for r in rows),
                     "overrides": list(overrides), "threshold": threshold, "max_minutes": max_minutes,
                     "duration": "F5's ratio rule from the prompt (f5 conditioning); the model's duration "
                                 "predictor at the prompt's pace (durations conditioning)"},
        "judges": judges, "spaces": trained, "ground_truth": _figures(truth), "points": points,
        "nfe_sweep": sweep, "min_nfe": {name: min_nfe(runs) for name, runs in sweep.items()}, "bf16": bf16,
    }
    rate = next((k for k in ("per", "wer") if k in result["ground_truth"]), None)
    if rate:
        result["to_threshold"] = {name: to_threshold(points, name, rate, threshold) for name in trained}
        result["differences"] = differences(final_counts)
        result["ordering"] = ordering(result, rate)
    atomic_write_text(out / f"{result_name}.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    metrics = ([(rate, rate.upper())] if rate else []) + ([("sim", "SIM")] if speaker else [])
    if metrics and points:
        convergence_curves(points, metrics, out / "convergence.png",
                           title="TTS on each latent space (95 % CI bands): " + ", ".join(l for _, l in metrics))
    atomic_write_text(out / f"{result_name}.md", render(result))
    return result


def to_threshold(points: Sequence[dict[str, Any]], space: str, rate: str, threshold: float) -> dict[str, Any] | None:
    """The first judged checkpoint of ``space`` whose error rate is at most ``threshold``: its step and training
    minutes (None if none gets there)."""
    for point in sorted((p for p in points if p["space"] == space), key=lambda p: p["step"]):
        if point.get(rate) is not None and point[rate] <= threshold:
            return {"step": point["step"], "train_minutes": point["train_minutes"]}
    return None


def differences(counts: dict[str, dict[str, tuple[int, int]]]) -> list[dict[str, Any]]:
    """Every pair of arms' final error rates: the difference ``a - b`` with a paired bootstrap 95 % CI over the
    test sentences both scored (:func:`~semlat.evaluation.recon_eval.paired_ratio_difference`)."""
    from semlat.evaluation.recon_eval import finite_or_none, paired_ratio_difference

    out = []
    names = list(counts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = [k for k in counts[a] if k in counts[b]]
            figures = paired_ratio_difference([counts[a][k] for k in shared], [counts[b][k] for k in shared])
            diff, low, high = (finite_or_none(v) for v in figures)
            out.append({"a": a, "b": b, "sentences": len(shared), "difference": diff, "ci95": [low, high],
                        "resolved": low is not None and (low > 0 or high < 0)})
    return out


def ordering(result: dict[str, Any], rate: str) -> str:
    """A plain statement of whether the Semantic-VAE paper's claims hold here: error rate semantic < mel <
    vanilla at the final checkpoints (each step resolved by its paired CI), and the semantic space first to the
    threshold."""
    final: dict[str, float] = {}
    for point in result["points"]:
        final[point["space"]] = point.get(rate)
    wanted = ("semantic", "mel", "vanilla")
    if not all(final.get(name) is not None for name in wanted):
        return "the paper's ordering needs the semantic, mel and vanilla arms"
    def less(a: str, b: str) -> str:
        """Is ``rate(a) < rate(b)``, by the paired interval of their difference?"""
        for d in result.get("differences", []):
            if (d["a"], d["b"]) in ((a, b), (b, a)):
                if None in d["ci95"]:
                    return "not resolved (no interval)"
                low, high = d["ci95"] if d["a"] == a else (-d["ci95"][1], -d["ci95"][0])
                return "yes" if high < 0 else "no (reversed)" if low > 0 else "not resolved (CI spans 0)"
        return "not measured"

    first, second = less("semantic", "mel"), less("mel", "vanilla")
    reached = {name: t for name, t in (result.get("to_threshold") or {}).items() if t}
    fastest = None
    if reached:
        best = min(t["train_minutes"] for t in reached.values())
        leaders = [name for name, t in reached.items() if t["train_minutes"] == best]
        fastest = leaders[0] if len(leaders) == 1 else " and ".join(leaders) + " (tied)"
    words = [f"{rate.upper()} semantic < mel: {first}", f"mel < vanilla: {second}"]
    words.append(f"first to {100 * result['settings']['threshold']:.0f} % {rate.upper()} (training minutes): "
                 + (fastest if fastest else "no space reached it"))
    reproduced = first == "yes" and second == "yes" and fastest == "semantic"
    return ("reproduced: " if reproduced else "not reproduced: ") + "; ".join(words)


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


def _short(override: str) -> str:
    """``key=/a/long/path.jsonl`` -> ``key=path.jsonl`` (a table cell; the JSON keeps the whole path)."""
    key, sep, value = override.partition("=")
    return f"{key}={Path(value).name}" if sep and "/" in value else override


def render(result: dict[str, Any]) -> str:
    """The experiment's Markdown: settings, every checkpoint's figures with their 95 % CIs, the convergence to
    the threshold, the paired differences of the final checkpoints and the paper's ordering."""
    s, truth = result["settings"], result["ground_truth"]
    rate = next((k for k in ("per", "wer") if k in truth), None)
    label = rate.upper() if rate else ""
    lines = [(f"# Latent TTS convergence ({s['test_utterances']} cross-sentence test sentences, {s.get('voices', 'all')} "
              f"voices, NFE {s['nfe']}, guidance {guidance_of(s)}, seed {s['seed']})"), ""]
    lines += [f"- {group} judge: {name}" for group, name in result["judges"].items()]
    if s.get("self_prompted"):
        lines.append(f"- {s['self_prompted']} target(s) prompted by themselves (their speaker has no other utterance)")
    lines += [(f"- ground truth (real target audio, same prompts): {label} "
               f"{with_interval(truth.get(rate), truth.get(f'{rate}_ci'), percent) if rate else ''}, "
               f"SIM {with_interval(truth.get('sim'), truth.get('sim_ci'), number)}"),
              "- [95 % CI]: percentile bootstrap over the test sentences (error rates: of the corpus rate)", ""]
    timed = any("real_time_factor" in point for point in result["points"])  # (speed columns where measured)
    head = ("| space | recipe | latent | params | steps/s | step | train min | " + (f"{label} ↓ | " if rate else "")
            + "SIM ↑ |" + (" RTF | first audio s | ends itself |" if timed else ""))
    lines += [head, "|---|---|---|---:|---:|---:|---:|" + ("---:|" if rate else "") + "---:|"
              + ("---:|---:|---:|" if timed else "")]
    for point in result["points"]:
        space = result["spaces"][point["space"]]
        latent = f"{space['latent_dim']} × {space['frame_rate']:.4g} Hz"
        recipe = " ".join([space["config"], *map(_short, space.get("overrides", []))])
        params = f"{space['parameters'] / 1e6:.2f} M" if space.get("parameters") else "–"
        lines.append(f"| {point['space']} | `{recipe}` | {latent} | {params} | {space['steps_per_second']:.2f} | "
                     f"{point['step']} | {point['train_minutes']:.1f} | "
                     + (f"{with_interval(point.get(rate), point.get(f'{rate}_ci'), percent)} | " if rate else "")
                     + f"{with_interval(point.get('sim'), point.get('sim_ci'), number)} |"
                     + (f" {number(point.get('real_time_factor'))} | {number(point.get('first_audio_seconds'))} | "
                        f"{percent(point['stopped']) if point.get('stopped') is not None else '–'} |" if timed else ""))
    if result.get("to_threshold") is not None and s["threshold"] < 1:  # (1: no threshold asked, as --ar-experiment)
        lines += ["", f"First checkpoint at or below {100 * s['threshold']:.0f} % {label}:", ""]
        for name, reached in result["to_threshold"].items():
            lines.append(f"- {name}: " + (f"step {reached['step']}, {reached['train_minutes']:.1f} training minutes"
                                          if reached else "not reached"))
    if result.get("differences"):
        lines += ["", f"Final checkpoints, paired differences of {label} (a − b, 95 % CI over the same sentences):", "",
                  "| a | b | sentences | a − b | resolved |", "|---|---|---:|---:|---|"]
        for d in result["differences"]:
            lines.append(f"| {d['a']} | {d['b']} | {d['sentences']} | "
                         f"{with_interval(d['difference'], d['ci95'], percent)} | {'yes' if d['resolved'] else 'no'} |")
    if result.get("ordering") and {"semantic", "mel", "vanilla"} & {p["space"] for p in result["points"]}:
        lines += ["", f"The Semantic-VAE paper's ordering: {result['ordering']}."]
    if result.get("nfe_sweep"):
        lines += ["", ("Final checkpoints by NFE (smallest NFE within 10 % of NFE "
                       f"{max(r['nfe'] for runs in result['nfe_sweep'].values() for r in runs)}'s error rate in bold):"),
                  "", "| space | NFE | " + (f"{label} ↓ | " if rate else "") + "SIM ↑ | s / utterance |",
                  "|---|---:|" + ("---:|" if rate else "") + "---:|---:|"]
        for name, runs in result["nfe_sweep"].items():
            for r in runs:
                nfe = f"**{r['nfe']}**" if r["nfe"] == result["min_nfe"].get(name) else str(r["nfe"])
                lines.append(f"| {name} | {nfe} | "
                             + (f"{with_interval(r.get(rate), r.get(f'{rate}_ci'), percent)} | " if rate else "")
                             + f"{number(r.get('sim'))} | {number(r.get('generation_seconds_per_utterance'))} |")
    if result.get("bf16"):
        finals = {p["space"]: p for p in result["points"]}
        lines += ["", f"Final checkpoints with the DiT in bf16 (NFE {s['nfe']}), against float32:", "",
                  "| space | " + (f"{label} fp32 | {label} bf16 | " if rate else "") + "SIM fp32 | SIM bf16 |",
                  "|---|" + ("---:|---:|" if rate else "") + "---:|---:|"]
        for name, r in result["bf16"].items():
            f = finals.get(name, {})
            lines.append(f"| {name} | " + (f"{percent(f.get(rate))} | {with_interval(r.get(rate), r.get(f'{rate}_ci'), percent)} | "
                                           if rate else "") + f"{number(f.get('sim'))} | {number(r.get('sim'))} |")
    return "\n".join(lines) + "\n"
