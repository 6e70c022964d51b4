"""The main job, ``semlat demo``: from nothing to trained latent spaces and an evaluation report, on a CPU.

1. synthesise the offline demo corpus (flite + espeak-ng) at 16 kHz;
2. train the offline teacher (HuBERT's first iteration) and cache its features for the corpus;
3. train the tiny **vanilla** VAE (``wave_vae/tiny``), the tiny **semantic** VAE
   (``semantic_vae/tiny``, aligned to that teacher) and the tiny **DC-VAE** (``mel_dcae/tiny``: 22.05 kHz
   log-mel, 16x16 compression, σ-VAE noise + dispersive loss, Griffin-Lim as the vocoder) on the same
   data with the same time budget;
4. train the offline CTC phoneme judge on the corpus and force-align every utterance with it;
5. evaluate every latent space with ``semlat eval``: reconstruction metrics on the held-out test
   utterances (``eval recon``), latent diagnostics with speaker and phoneme probes (``eval latents``),
   and the judge's phoneme error rate, speaker similarity and Fréchet distance of the reconstructions
   (``eval tts``, with the clean test audio measured the same way as the floor);
6. write ``report.md`` / ``report.json``: a summary table, the alignment cosine on held-out speech,
   ``eval compare``'s side-by-side tables, and where every report, plot, audio file and log is.

Every step reuses what an earlier run left in ``out`` (corpus, teacher, features, training runs,
which resume and train for another budget; the judge; evaluations, which resume).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from semlat.audio.io import load_audio
from semlat.configs import builtin_config
from semlat.data.demo import make_demo_corpus
from semlat.data.manifest import Manifest
from semlat.inference import LoadedSpace, load
from semlat.latent_space import space_info
from semlat.semantic.alignment import frame_mask, latent_valid_frames, mean_cosine
from semlat.training.recipes import load_recipe
from semlat.training.trainer import Trainer, latest_checkpoint
from semlat.utils.files import atomic_write_text

SAMPLE_RATE = 16000
#: Utterances (a seeded subset of the whole corpus) that eval latents encodes for the probes.
LATENT_UTTERANCES = 150


def _train(config_name: str, out: Path, name: str, minutes: float, progress: bool,
           overrides: tuple[str, ...]) -> Path:
    recipe_cls, config = load_recipe(builtin_config(config_name), [
        f"run_dir={out / 'runs' / name}", f"data.train={out / 'corpus' / 'manifest.jsonl'}",
        f"train.max_minutes={minutes}", f"train.progress={progress}", *overrides])
    trainer = Trainer(config, recipe_cls, resume=latest_checkpoint(config.run_dir) is not None)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return latest_checkpoint(config.run_dir)


def _speech_listing(rows: list[dict[str, Any]], audio_root: Path | None, manifest: Manifest, path: Path) -> Path:
    """A JSONL list for ``eval tts``: each test utterance's audio (its reconstruction under ``audio_root``,
    or the clean file), its phonemes and text, prompted by the clean utterance (SIM to the original)."""
    by_id = {u.audio: (i, u) for i, u in enumerate(manifest)}
    lines = []
    for row in rows:
        index, u = by_id[row["id"]]
        clean = str(manifest.audio_path(index))
        if audio_root is None:
            audio = clean
        elif row.get("reconstruction"):
            audio = str(audio_root / row["reconstruction"])
        else:
            continue
        lines.append(json.dumps({"audio": audio, "id": row["id"], "text": u.text, "phonemes": u.phonemes,
                                 "prompt": clean}, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def _summary(recon: dict[str, Any], speakers: dict[str, str | None], train_speakers: set[str | None]) -> dict[str, Any]:
    """Mel distance and SI-SDR over all test utterances and over seen / unseen speakers."""
    rows = recon["utterances"]

    def mean(selected: list[dict[str, Any]], key: str) -> float | None:
        values = [r["scores"][key] for r in selected if r["scores"].get(key) is not None]
        return sum(values) / len(values) if values else None

    def part(selected: list[dict[str, Any]]) -> dict[str, Any]:
        return {"utterances": len(selected), "mel_distance": mean(selected, "mel_distance"),
                "si_sdr": mean(selected, "si_sdr")}

    return {**part(rows), "seen_speakers": part([r for r in rows if speakers.get(r["id"]) in train_speakers]),
            "unseen_speakers": part([r for r in rows if speakers.get(r["id"]) not in train_speakers])}


def _figure(report: dict[str, Any], key: str, field: str = "mean") -> float | None:
    metric = (report.get("metrics") or {}).get(key)
    return None if metric is None else metric.get(field)


def _evaluate(name: str, checkpoint: Path, manifest: Manifest, judge: str, alignments: Path, folder: Path,
              reference_listing: Path, progress: bool) -> dict[str, Any]:
    """``eval recon``, ``eval latents`` and ``eval tts`` (on the reconstructions) for one latent space."""
    from semlat.evaluation.generation_eval import evaluate_tts
    from semlat.evaluation.latent_eval import evaluate_latents
    from semlat.evaluation.recon_eval import evaluate_reconstruction

    manifest_path = manifest.root / "manifest.jsonl"
    recon = evaluate_reconstruction(checkpoint, manifest_path, folder / "recon", split="test", device="cpu",
                                    progress=progress)
    latents = evaluate_latents(checkpoint, manifest_path, folder / "latents", alignments=alignments, device="cpu",
                               max_utterances=LATENT_UTTERANCES, progress=progress)
    listing = _speech_listing(recon["utterances"], folder / "recon", manifest, folder / "speech.jsonl")
    speech = evaluate_tts(listing, folder / "speech", asr=judge, speaker="resemblyzer", reference=reference_listing,
                          progress=progress)
    return {"recon": recon, "latents": latents, "speech": speech,
            "folders": {"recon": str(folder / "recon"), "latents": str(folder / "latents"),
                        "speech": str(folder / "speech")}}


@torch.no_grad()
def held_out_alignment(codec: LoadedSpace, manifest: Manifest, cache) -> float:
    """Mean cosine between the VAE's latent means and its regulator's projection of the teacher
    features, over the test utterances (the alignment the paper trains, measured on unseen data)."""
    model = codec.model
    cosines = []
    for i, u in enumerate(manifest.split("test")):
        audio, _ = load_audio(manifest.split("test").audio_path(i), SAMPLE_RATE)
        mu = codec.encode(audio[None])
        features = rearrange(cache.get(u.audio).float(), "d t -> 1 t d").to(mu.device)
        length = mu.shape[-1]
        valid = latent_valid_frames(torch.tensor([features.shape[1]]), cache.frame_rate, model.frame_rate, length)
        target, _ = model.projectors(features, valid.to(mu.device), torch.tensor([length], device=mu.device))
        cosines.append(float(mean_cosine(mu.transpose(1, 2), target, frame_mask(valid, length).to(mu.device))))
    return sum(cosines) / len(cosines)


def _judge(out: Path, manifest_path: Path, minutes: float, progress: bool) -> tuple[str, Path]:
    """Train (or reuse) the offline CTC phoneme judge and force-align the corpus with it."""
    from semlat.evaluation.ctc_judge import load_judge, train_judge, write_alignments

    judge_dir = out / "judge"
    if not (judge_dir / "judge.json").is_file():
        train_judge(manifest_path, judge_dir, max_minutes=minutes, progress=progress)
    alignments = out / "eval" / "alignments.jsonl"
    if not alignments.is_file():
        write_alignments(load_judge(judge_dir), manifest_path, alignments, progress=progress)
    return f"ctc:{judge_dir}", alignments


def run_demo(out: str | os.PathLike, *, corpus_minutes: float = 10.0, train_minutes: float = 5.0,
             teacher_minutes: float = 3.0, judge_minutes: float = 3.0, overrides: tuple[str, ...] = (),
             progress: bool = True) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the report as a dict."""
    from semlat.evaluation.compare import compare_reports
    from semlat.evaluation.generation_eval import evaluate_tts
    from semlat.semantic.feature_cache import FeatureCache, extract_features
    from semlat.semantic.hubert_teacher import train_teacher

    out = Path(out)
    started = time.monotonic()
    corpus = out / "corpus"
    manifest_path = corpus / "manifest.jsonl"
    if not manifest_path.is_file():
        make_demo_corpus(corpus, corpus_minutes, sample_rate=SAMPLE_RATE, progress=progress)
    manifest = Manifest.read(manifest_path)
    teacher_dir = out / "teacher"
    if not (teacher_dir / "teacher.json").is_file():
        train_teacher(str(manifest_path), str(teacher_dir), max_minutes=teacher_minutes, progress=progress)
    teacher = f"semlat:{teacher_dir}"
    features_dir = out / "features"
    if not (features_dir / "index.json").is_file():
        extract_features(teacher, manifest_path, features_dir, progress=progress)
    cache = FeatureCache(features_dir)

    checkpoints: dict[str, tuple[str, Path]] = {}
    for name, config_name, extra in [
        ("vanilla", "wave_vae/tiny", ()),
        ("semantic", "semantic_vae/tiny", (f"alignment.teacher={teacher}", f"alignment.cache={features_dir}")),
        ("dc_vae", "mel_dcae/tiny", ()),
    ]:
        checkpoints[name] = (config_name, _train(config_name, out, name, train_minutes, progress, (*extra, *overrides)))

    judge, alignments = _judge(out, manifest_path, judge_minutes, progress)
    test = manifest.split("test")
    clean_rows = [{"id": u.audio} for u in test]
    reference_listing = _speech_listing(clean_rows, None, manifest, out / "eval" / "clean.jsonl")
    clean = evaluate_tts(reference_listing, out / "eval" / "clean", asr=judge, progress=progress)
    speakers = {u.audio: u.speaker for u in manifest}
    train_speakers = {u.speaker for u in manifest.split("train")}

    models: list[dict[str, Any]] = []
    for name, (config_name, checkpoint) in checkpoints.items():
        codec = load(checkpoint, device="cpu")
        evaluation = _evaluate(name, checkpoint, manifest, judge, alignments, out / "eval" / name, reference_listing,
                               progress)
        recon, latents, speech = evaluation["recon"], evaluation["latents"], evaluation["speech"]
        state = json.loads((checkpoint / "config.json").read_text())
        models.append({
            "name": name, "recipe": config_name, "model": str(checkpoint), "steps": state["training"]["step"],
            **space_info(codec.space), "vocoder": state["config"].get("vocoder", {}).get("type"),
            "alignment_cosine": held_out_alignment(codec, manifest, cache) if name == "semantic" else None,
            **_summary(recon, speakers, train_speakers),
            "stoi": _figure(recon, "stoi"), "pesq_wb": _figure(recon, "pesq_wb"),
            "speaker_similarity": _figure(recon, "speaker_similarity"),
            "per": _figure(speech, "per", "corpus"), "fd": (speech.get("frechet") or {}).get("value"),
            "speaker_probe": latents["probes"].get("speaker", {}).get("accuracy"),
            "phoneme_probe": latents["probes"].get("phoneme", {}).get("accuracy"),
            "reconstructions": str(out / "eval" / name / "recon" / "audio"),
            "evaluation": evaluation["folders"],
            "tensorboard": str(out / "runs" / name / "tensorboard"),
        })
    runs = [Path(m["evaluation"][kind]) for m in models for kind in ("recon", "latents", "speech")]
    names = [f"{m['name']}" for m in models for _ in range(3)]
    comparison = compare_reports([*runs, out / "eval" / "clean"], [*names, "clean audio"])
    report = {"corpus": str(corpus), "teacher": teacher, "judge": judge, "judge_label": clean["judges"]["asr"],
              "train_minutes": train_minutes, "minutes": round((time.monotonic() - started) / 60, 2),
              "threads": torch.get_num_threads(), "clean_per": _figure(clean, "per", "corpus"), "models": models,
              "comparison": comparison}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / "report.md", render_report(report))
    return report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def render_report(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary, the notes on reading it, eval compare's tables, the paths."""
    lines = [
        "# semlat demo report", "",
        (f"Tiny autoencoders trained for {report['train_minutes']:g} min each on the synthetic demo corpus "
         f"({report['minutes']} min in all, {report['threads']} threads). Test split: held-out sentences, "
         "including speakers never heard in training."), "",
        ("| latent space | steps | latent | mel distance ↓ | STOI ↑ | PER ↓ | SIM ↑ | unseen speakers: mel ↓ | "
         "speaker probe ↑ | phoneme probe ↑ | alignment cosine ↑ |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        lines.append(
            f"| {m['name']} ({m['recipe']}) | {m['steps']} | {m['latent_dim']} × {m['frame_rate']:.3g} Hz | "
            f"{_fmt(m['mel_distance'])} | {_fmt(m['stoi'])} | {_pct(m['per'])} | {_fmt(m['speaker_similarity'])} | "
            f"{_fmt(m['unseen_speakers']['mel_distance'])} | {_pct(m['speaker_probe'])} | "
            f"{_pct(m['phoneme_probe'])} | {_fmt(m['alignment_cosine'])} |")
    lines += [
        "",
        "- Mel distance: Semantic-VAE's multi-scale log-mel L1 (7 scales, summed; 0 = identical), at 16 kHz.",
        (f"- PER: phoneme error rate of the reconstructions by the offline judge `{report['judge_label']}` "
         f"(not Whisper); the same judge gets {_pct(report['clean_per'])} on the clean test audio, the floor."),
        "- SIM: cosine of resemblyzer d-vectors of reconstruction and original (offline judge).",
        "- Probes: linear probes on frozen latents (speaker from utterance means; phoneme per frame from the",
        "  judge's forced alignments), held-out accuracy; chance levels are in the tables below.",
        "- dc_vae decodes its mels with Griffin-Lim (no trained vocoder in a CPU demo), which caps its",
        "  waveform figures: SI-SDR and PESQ especially, since Griffin-Lim does not recover the phase.",
        "- Alignment cosine: the mean cosine between the semantic VAE's latent means and its regulator's",
        "  projection of the teacher features on the test utterances (what training maximises; the",
        "  vanilla VAE has no regulator).",
        (f"- Teacher: `{report['teacher']}` (HuBERT's first iteration trained on the demo corpus; far weaker "
         "than WavLM)."), "",
    ]
    comparison = report["comparison"].split("\n", 2)[2] if report["comparison"].startswith("# ") else report["comparison"]
    lines += [comparison.rstrip(), "", "## Where things are", ""]
    for m in report["models"]:
        folders = m["evaluation"]
        lines.append(f"- {m['name']}: model `{m['model']}`; reports `{folders['recon']}/report.md` (with "
                     f"spectrograms.png), `{folders['latents']}/report.md` (t-SNE, probe and dimension plots), "
                     f"`{folders['speech']}/report.md`; `tensorboard --logdir {m['tensorboard']}`")
    return "\n".join(lines) + "\n"
