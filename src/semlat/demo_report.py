"""The main job's report (``demo/report.md``) from its ``report.json``: rendering only, apart from the
orchestration in :mod:`semlat.demo_run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semlat.utils.figures import number, percent, percent_interval, with_interval


def _audio_link(path: str | None, root: Path) -> str:
    if not path:
        return "–"
    try:
        shown = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        shown = Path(path)
    return f"[{shown.name}]({shown.as_posix()})"


def _tts_section(tts: dict[str, Any], root: Path) -> list[str]:
    from semlat.experiments.tts_convergence import guidance_of

    truth = tts["ground_truth"]
    s = tts["settings"]
    several = len(tts["final"]) > 1
    lines = ["## Zero-shot TTS" + (" on each latent space" if several else ""), "",
             (f"A tiny latent TTS (`tts/tiny_*`: DiT dim 128, depth 4; phonemes in; `conditioning: durations`, the "
              "text spread over the frames by the judge's forced alignments in training and by the model's own "
              f"duration predictor when it speaks) trained {tts['steps']} steps on the training split's latents, then "
              f"asked for each of {s['test_utterances']} test sentences it never saw, in the voice of another "
              f"utterance of a training speaker (NFE {s['nfe']}, guidance {guidance_of(s)}). mel: the 22.05 kHz 80-band "
              "log-mel, vocoded by Griffin-Lim" + ("; mel_f5: the same TTS with F5-TTS's implicit text alignment."
                                                   if "mel_f5" in tts["final"] else ".")), "",
             "| latent space | latent | steps/s | PER ↓ [95 % CI] | SIM ↑ [95 % CI] |", "|---|---|---:|---:|---:|"]
    for name, point in tts["final"].items():
        space = tts["spaces"][name]
        lines.append(f"| {name} | {space['latent_dim']} × {space['frame_rate']:.4g} Hz | "
                     f"{space['steps_per_second']:.2f} | {percent_interval(point.get('per'), point.get('per_ci'))} | "
                     f"{with_interval(point.get('sim'), point.get('sim_ci'))} |")
    lines.append(f"| real speech (same prompts) | | | {percent_interval(truth.get('per'), truth.get('per_ci'))} | "
                 f"{with_interval(truth.get('sim'), truth.get('sim_ci'))} |")
    nfe = {name: n for name, n in (tts.get("min_nfe") or {}).items() if n is not None}
    if nfe:
        lines += ["", "- Smallest NFE within 10 % of NFE 32's PER (final checkpoints): "
                  + ", ".join(f"{name} {n}" for name, n in nfe.items())]
    if tts.get("ordering") and several:
        lines += ["", f"- The Semantic-VAE paper's ordering: {tts['ordering']}."]
    lines += ["", f"- Judges: {', '.join(tts['judges'].values())}. SIM: generated clip vs its prompt.",
              f"- Every checkpoint: `{tts['report']}`" + (f"; curves: `{tts['plot']}`" if tts.get("plot") else
                                                            " (`semlat demo --tts-experiment` trains it on every "
                                                            "latent space, judges several checkpoints and plots the "
                                                            "convergence curves)"), ""]
    if tts.get("samples"):
        arm = next(iter(tts["final"]))
        lines += [f"### Listen: {arm}, test sentences it never saw", "",
                  "| text | generated | judge heard (PER, SIM) | real | judge heard (PER) |", "|---|---|---|---|---|"]
        for row in tts["samples"]:
            lines.append(f"| {row['text']} | {_audio_link(row['audio'], root)} | `{row['transcript'] or ''}` "
                         f"({percent(row['per'])}, {number(row['sim'])}) | {_audio_link(row['real_audio'], root)} | "
                         f"`{row['real_transcript'] or ''}` ({percent(row['real_per'])}) |")
        lines += ["", "Transcripts are the offline judge's phonemes (espeak-ng IPA without stress).", ""]
    return lines


def events_section(events: dict[str, Any]) -> list[str]:
    """The sound-event comparison (semantic-encoder latents vs a waveform VAE's) as a report section."""
    from semlat.experiments.event_comparison import render

    minutes = events.get("training_minutes", {})
    return ["## Sound events: semantic-encoder latents vs a waveform VAE", "",
            ("SemanticVocoder's claim on the offline event corpus. *semantic*: a small Dasheng-architecture MAE "
             "trained offline on the corpus (not the released Dasheng) + a SemanticVocoder generator on its frames, "
             "flow matching then a few-step GAN stage "
             f"({minutes.get('dasheng_mae', '?')} + {minutes.get('semantic_vocoder', '?')} + "
             f"{minutes.get('semantic_vocoder_gan', '?')} training minutes); *vae*: "
             f"the tiny waveform VAE for the same time ({minutes.get('vae', '?')} min). The text encoder is a "
             "random-weight T5 (no pretrained one offline): it tells words apart, it knows no meaning."), "",
            render(events).rstrip(), "", *_wall_line(events.get("wall_minutes")),
            f"- Full tables: `{events['report']}`", ""]


def _wall_line(wall: dict[str, float] | None) -> list[str]:
    if not wall:
        return []
    stages = ", ".join(f"{name} {minutes}" for name, minutes in wall.items() if name != "total")
    return [f"- Wall time of this stage: {wall['total']} min ({stages}; a stage that resumed counts only its "
            "time in the last call)."]


def _teacher_line(probe: dict[str, Any] | None) -> str:
    if not probe or "accuracy" not in probe:
        return "."
    unseen = probe.get("unseen_speakers")
    return (f"; the phoneme probe on its features ({probe['dim']} × {probe['frame_rate']:g} Hz, the same utterances "
            f"and probe as the latent spaces'): {percent(probe['accuracy'])}, chance {percent(probe['chance'])}"
            + (f"; on unseen speakers {_with_ci(unseen)}." if unseen else "."))


def _phonetic_section(phonetic: dict[str, Any]) -> list[str]:
    from semlat.experiments.phonetic_teacher import render

    labels = {"vanilla": "vanilla (no teacher)", "semantic": "semantic (self-supervised offline HuBERT teacher)",
              "semantic_ctc": "semantic_ctc (**supervised** phonetic teacher)"}
    return ["## Is the semantic VAE more phonetic?", "",
            ("*semantic_ctc* is the semantic VAE aligned to a **supervised** phonetic teacher instead of the "
             f"self-supervised one: the encoder of a CTC phoneme recognizer (`{phonetic['teacher']}`, the judge's "
             f"recipe, {phonetic['steps']} steps) trained on its own corpus of {phonetic['teacher_minutes']} min: "
             f"{phonetic['teacher_speakers']} voices that are not demo voices, speaking sentences scrambled from the "
             "words of the demo's training sentences; it shares no speaker and no sentence with the corpus the judge "
             "learned from, and the judge is never the teacher" + _teacher_line(phonetic.get("teacher_probe"))), "",
            render(phonetic["comparison"], labels).rstrip(), "",
            ("Probe: trained on the test frames of speakers heard in training, scored on those of speakers never "
             "heard; the difference's interval is a paired bootstrap over the utterances both probes scored. The "
             "claim (issue 21, after Semantic-VAE): at equal steps and mel distance within 5 %, at least 8 points "
             "over the vanilla VAE."), ""]


def _with_ci(probe: dict[str, Any] | None) -> str:
    if not probe:
        return "n/a"
    ci = probe.get("ci95")
    return percent(probe["accuracy"]) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _budgets(steps: dict[str, int]) -> str:
    return ", ".join(f"{name} {count} steps" for name, count in steps.items())


def _corpus_size(report: dict[str, Any]) -> str:
    if "corpus_minutes" not in report:  # a report.json written before the corpus size was recorded
        return "its size not recorded"
    return f"{report['corpus_minutes']} min of speech: {report['utterances']} utterances, {report['speakers']} voices"


def render_report(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary, the notes on reading it, eval compare's tables, the paths."""
    lines = [
        "# semlat demo report", "",
        (f"Tiny autoencoders trained for a step budget each ({_budgets(report['train_steps'])}; about 5 idle "
         "CPU minutes each) on the synthetic demo corpus "
         f"({_corpus_size(report)}). This run took {report['minutes']} min on {report['threads']} threads "
         "(stages reused from an earlier run not counted). Test split: held-out sentences, "
         "including speakers never heard in training."), "",
        *[f"> **Warning:** {w}" for w in report.get("warnings", [])],
        *([""] if report.get("warnings") else []),
        ("| latent space | steps | latent | mel distance ↓ | STOI ↑ | PER ↓ | SIM ↑ | unseen speakers: mel ↓ | "
         "speaker probe ↑ | phoneme probe ↑ | phoneme probe, unseen speakers ↑ [95 % CI] | alignment cosine ↑ |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        lines.append(
            f"| {m['name']} ({m['recipe']}) | {m['steps']} | {m['latent_dim']} × {m['frame_rate']:.3g} Hz | "
            f"{number(m['mel_distance'])} | {number(m['stoi'])} | {percent(m['per'])} | {number(m['speaker_similarity'])} | "
            f"{number(m['unseen_speakers']['mel_distance'])} | {percent(m['speaker_probe'])} | "
            f"{percent(m['phoneme_probe'])} | {_with_ci(m.get('phoneme_probe_unseen'))} | "
            f"{number(m['alignment_cosine'])} |")
    lines += [
        "",
        "- Mel distance: Semantic-VAE's multi-scale log-mel L1 (7 scales, summed; 0 = identical), at 16 kHz.",
        (f"- PER: phoneme error rate of the reconstructions by the offline judge `{report['judge_label']}` "
         f"(not Whisper); the same judge gets {percent(report['clean_per'])} on the clean test audio, the floor."),
        "- SIM: cosine of resemblyzer d-vectors of reconstruction and original (offline judge).",
        "- Probes: linear probes on frozen latents (speaker from utterance means; phoneme per frame from the",
        "  judge's forced alignments), held-out accuracy; chance levels are in the tables below. The phoneme",
        "  probe splits test utterances at random; on unseen speakers it is trained on the frames of speakers heard",
        "  in training and scored on the others' (interval: bootstrap over those utterances).",
        "- dc_vae decodes its mels with Griffin-Lim (no trained vocoder in a CPU demo), which caps its",
        "  waveform figures: SI-SDR and PESQ especially, since Griffin-Lim does not recover the phase.",
        "- Alignment cosine: the mean cosine between the semantic VAE's latent means and its regulator's",
        "  projection of the teacher features on the test utterances (what training maximises; the",
        "  vanilla VAE has no regulator).",
        (f"- Teacher: `{report['teacher']}` (HuBERT's first iteration trained on the demo corpus; far weaker "
         "than WavLM)" + _teacher_line(report.get("teacher_probe"))), "",
    ]
    if report.get("phonetic_teacher"):
        lines += _phonetic_section(report["phonetic_teacher"])
    comparison = report["comparison"].split("\n", 2)[2] if report["comparison"].startswith("# ") else report["comparison"]
    lines += [comparison.rstrip(), ""]
    if report.get("tts"):
        lines += _tts_section(report["tts"], Path(report["corpus"]).parent)
    if report.get("events"):
        lines += events_section(report["events"])
    if report.get("ar"):
        lines += ["## Autoregressive TTS on continuous latents", "",
                  f"Every arm trained {report['ar']['minutes']:g} minutes with {report['ar']['conditioning']} "
                  f"conditioning. {report['ar']['statement']}.", "",
                  f"- Full table: `{report['ar']['report']}`", ""]
    lines += ["## Where things are", ""]
    for m in report["models"]:
        folders = m["evaluation"]
        lines.append(f"- {m['name']}: model `{m['model']}`; reports `{folders['recon']}/report.md` (with "
                     f"spectrograms.png), `{folders['latents']}/report.md` (t-SNE, probe and dimension plots), "
                     f"`{folders['speech']}/report.md`; `tensorboard --logdir {m['tensorboard']}`")
    served = Path(report["corpus"]).parent
    lines += ["", "## Listen and compare in the browser", "",
              f"`semlat app --models {served}` serves every model, manifest and report of this run on "
              "http://127.0.0.1:7860: reconstructions of any utterance side by side with their spectrograms, latents "
              "and metrics, the latent diagnostics, TTS (and text-to-audio) with each trained model, and these "
              "reports (needs the `app` extra, part of `dev`)."]
    return "\n".join(lines) + "\n"
