"""The ``semlat`` command.

Every subcommand turns a :class:`~semlat.errors.SemlatError` into one line on stderr
(``semlat: error: ...``) and exit status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

import semlat
from semlat.errors import ConfigError, SemlatError, ToolMissingError

# Ranges of the numeric options: a value outside is a usage error naming the option (exit 2), never a
# silently clamped or empty output.
POSITIVE = click.FloatRange(min=0, min_open=True)
NON_NEGATIVE = click.FloatRange(min=0)
FRACTION = click.FloatRange(0, 1)
POSITIVE_INT = click.IntRange(min=1)
SEED = click.IntRange(min=0)
#: Sway sampling coefficients outside [-1, 1] bend the time grid backwards.
SWAY = click.FloatRange(-1, 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(semlat.__version__, prog_name="semlat")
def cli() -> None:
    """semlat: semantic audio latents (Semantic-VAE, DC-Speech-VAE, SemanticVocoder)."""


@cli.group()
def data() -> None:
    """Build and inspect manifests and corpora."""


@data.command("prepare")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", "manifest", type=click.Path(dir_okay=False), default=None,
              help="Manifest to write (.jsonl). Rejects go to <name>.rejects.tsv beside it.")
@click.option("--corpus", default=None, metavar="NAME",
              help="Read a released corpus in its own layout: INPUTS is ROOT [OUT] (see docs/data.md: libritts, "
                   "librittsr, librispeech, librispeech_pc, ljspeech, vctk, hifitts, emilia, emilia_wds, wenetspeech4tts, "
                   "audiocaps, clotho, wavcaps, esc50, audioset).")
@click.option("--corpus-option", "-O", "corpus_options", multiple=True, metavar="KEY=VALUE",
              help="A corpus's own option, e.g. -O language=zh (emilia), -O parts=test-clean,dev-clean, "
                   "-O mic=mic1 (vctk), -O test_fold=1 (esc50).")
@click.option("--resample-to", type=POSITIVE_INT, default=None, help="Resample every file to this rate (Hz).")
@click.option("--audio-out", type=click.Path(file_okay=False), default=None,
              help="Folder for resampled audio [default: 'audio' beside the manifest].")
@click.option("--format", "audio_format", type=click.Choice(["flac", "wav"]), default="flac", show_default=True,
              help="Container of resampled audio.")
@click.option("--valid-fraction", type=FRACTION, default=0.02, show_default=True)
@click.option("--test-fraction", type=FRACTION, default=0.02, show_default=True)
@click.option("--split-by", type=click.Choice(["utterance", "speaker"]), default="utterance", show_default=True,
              help="Hash utterance paths or speaker ids into splits (files whose corpus has splits keep them).")
@click.option("--speaker-depth", type=click.IntRange(min=0), default=1, show_default=True,
              help="Speaker id = the folder this many levels above each file (0: none).")
@click.option("--min-duration", type=NON_NEGATIVE, default=0.0, show_default=True, help="Reject shorter files (s).")
@click.option("--max-duration", type=POSITIVE, default=3600.0, show_default=True, help="Reject longer files (s).")
@click.option("--verify", is_flag=True, help="Decode every file fully (finds corrupt data past the header).")
@click.option("--workers", "-j", type=POSITIVE_INT, default=None, help="Parallel processes [default: all CPUs].")
def data_prepare(inputs, manifest, corpus, corpus_options, resample_to, audio_out, audio_format, valid_fraction,
                 test_fraction, split_by, speaker_depth, min_duration, max_duration, verify, workers) -> None:
    """Scan folders of audio (or CSV/TSV lists), or a released corpus, into a JSONL manifest.

    INPUTS are folders (scanned recursively; transcripts are read from sidecar .txt/.lab/
    .normalized.txt files and LibriSpeech *.trans.txt) or list files with a header row naming an
    'audio' column and optionally 'text', 'speaker', 'split', ... With --corpus NAME, INPUTS is the
    corpus's ROOT and optionally OUT (instead of --out).
    """
    if corpus is not None:
        if len(inputs) == 2 and manifest is None:
            inputs, manifest = inputs[:1], inputs[1]
        if len(inputs) != 1:
            raise click.UsageError("with --corpus, give ROOT and OUT (or ROOT and --out OUT)")
    elif corpus_options:
        raise click.UsageError("--corpus-option needs --corpus")
    if manifest is None:
        raise click.UsageError("missing the manifest to write (--out OUT)")
    for spec in inputs:
        if not Path(spec).exists():
            raise click.BadParameter(f"{spec}: does not exist", param_hint="INPUTS")
    from semlat.data.prepare import PrepareOptions, prepare_manifest, rejects_path

    opts = PrepareOptions(
        inputs=list(inputs), manifest=manifest, resample_to=resample_to, audio_out=audio_out,
        audio_format=audio_format, valid_fraction=valid_fraction, test_fraction=test_fraction,
        split_by=split_by, speaker_depth=speaker_depth, min_duration=min_duration,
        max_duration=max_duration, verify=verify, workers=workers,
    )
    if corpus is not None:
        from semlat.data.corpora import prepare_corpus

        result, rejects = prepare_corpus(corpus, inputs[0], opts, **_key_values(corpus_options, "--corpus-option"))
    else:
        result, rejects = prepare_manifest(opts)
    click.echo(f"wrote {manifest}: {len(result)} utterances, {result.total_duration / 3600:.3f} h "
               f"({_split_counts(result)})")
    if rejects:
        click.echo(f"rejected {len(rejects)} file(s), listed in {rejects_path(manifest)}; first: "
                   f"{rejects[0][0]}: {rejects[0][1]}")


def _key_values(pairs, option: str) -> dict:
    """``KEY=VALUE`` strings as a dict; integers become ints and comma-separated values lists."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        value = value.strip()
        out[key.strip()] = ([v.strip() for v in value.split(",") if v.strip()] if "," in value
                            else int(value) if value.lstrip("-").isdigit() else value)
    return out


@data.command("shard")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--split", default="train", show_default=True, help="The manifest's split to shard ('all': every line).")
@click.option("--shard-size", type=POSITIVE_INT, default=1000, show_default=True, help="Utterances per shard.")
@click.option("--features", type=click.Path(exists=True, file_okay=False), default=None,
              help="A teacher feature cache of the manifest (semlat features extract): every utterance's features "
                   "travel in its shard, for the semantic_vae recipe to stream without the cache's index.")
def data_shard(manifest, out, split, shard_size, features) -> None:
    """Write a manifest's split as audio shards (Lhotse Shar) that training streams at constant memory.

    Give OUT as data.train of an audio recipe (wave_vae, semantic_vae): each rank then reads only its own
    shards. Use at least as many shards as training processes.
    """
    from semlat.data.manifest import Manifest
    from semlat.data.shards import ShardSet, write_shards

    chosen = Manifest.read(manifest) if split == "all" else Manifest.read_split(manifest, split)
    cache = None
    if features is not None:
        from semlat.semantic.feature_cache import FeatureCache

        cache = FeatureCache(features)
    folder = write_shards(chosen, out, shard_size, features=cache)
    shards = ShardSet(folder)
    carried = f", teacher features of {shards.features['teacher']}" if shards.features else ""
    click.echo(f"wrote {folder}: {len(shards.shards)} shard(s), {shards.items} utterances, "
               f"{shards.seconds / 3600:.3f} h{carried}")


@data.command("demo")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Corpus folder to create.")
@click.option("--minutes", "-m", type=POSITIVE, default=10.0, show_default=True, help="Minutes of speech.")
@click.option("--sample-rate", type=POSITIVE_INT, default=22050, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--workers", "-j", type=POSITIVE_INT, default=None, help="Parallel synthesis jobs [default: all CPUs].")
@click.option("--voices", default=None,
              help="Comma-separated voices to use [default: the 16 demo voices; e.g. espeak_us_m1,flite_slt; "
                   "12 more, none of them a demo voice, e.g. espeak_us_m2 (semlat.data.demo.EXTRA_VOICES)].")
@click.option("--sentences", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A text file of sentences, one per line, to speak instead of the shipped list.")
def data_demo(out, minutes, sample_rate, seed, workers, voices, sentences) -> None:
    """Synthesise the offline demo speech corpus with flite and espeak-ng."""
    from semlat.data.demo import make_demo_corpus, read_sentences

    names = [v.strip() for v in voices.split(",") if v.strip()] if voices is not None else None
    texts = read_sentences(sentences) if sentences is not None else None
    manifest = make_demo_corpus(out, minutes, sample_rate=sample_rate, seed=seed, workers=workers, voices=names,
                                sentences=texts)
    click.echo(f"wrote {Path(out) / 'manifest.jsonl'}: {len(manifest)} utterances, "
               f"{manifest.total_duration / 60:.2f} min, {len(manifest.speakers())} speakers "
               f"({_split_counts(manifest)})")


@data.command("demo-events")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Corpus folder to create.")
@click.option("--minutes", "-m", type=POSITIVE, default=10.0, show_default=True, help="Minutes of clips.")
@click.option("--test-minutes", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Further minutes of clips, all in the test split (the train split stays the same).")
@click.option("--sample-rate", type=POSITIVE_INT, default=16000, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
def data_demo_events(out, minutes, test_minutes, sample_rate, seed) -> None:
    """Synthesise the offline sound-event corpus: 12 classes of labelled, captioned clips, deterministic."""
    from semlat.data.events import make_event_corpus

    manifest = make_event_corpus(out, minutes, test_minutes=test_minutes, sample_rate=sample_rate, seed=seed)
    labels = sorted({u.label for u in manifest})
    click.echo(f"wrote {Path(out) / 'manifest.jsonl'}: {len(manifest)} clips, {manifest.total_duration / 60:.2f} min, "
               f"{len(labels)} classes ({_split_counts(manifest)})")


@data.command("offline-t5")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--dim", type=click.IntRange(min=8), default=64, show_default=True, help="d_model.")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
def data_offline_t5(manifest, out, dim, layers, seed) -> None:
    """Write a random-weight T5 encoder with a word tokenizer over MANIFEST's captions: the text encoder for
    text-to-audio where no pretrained T5 can be downloaded (it tells words apart; it knows no meaning)."""
    from semlat.data.manifest import Manifest
    from semlat.generation.text_encoder import make_offline_t5

    captions = [u.caption for u in Manifest.read(manifest) if u.caption]
    if not captions:
        from semlat.errors import DataError

        raise DataError(f"{manifest}: no utterance has a caption")
    make_offline_t5(out, captions, d_model=dim, layers=layers, heads=max(1, dim // 16), seed=seed)
    click.echo(f"wrote {out}: a random {dim}-d, {layers}-layer T5 encoder over {len(captions)} captions")


@data.command("stats")
@click.argument("manifest", type=click.Path(dir_okay=False))
def data_stats(manifest) -> None:
    """Summarise a manifest per split: utterances, hours, speakers, durations, sample rates."""
    from semlat.data.manifest import Manifest

    m = Manifest.read(manifest)
    rows = [("split", "utts", "hours", "speakers", "min s", "max s", "rates", "text")]
    groups = {}
    for u in m:
        groups.setdefault(u.split or "-", []).append(u)
    for name in sorted(groups, key=lambda s: ("train", "valid", "test", "-").index(s) if s in
                       ("train", "valid", "test", "-") else 9):
        us = groups[name]
        durations = [u.duration for u in us]
        rows.append((name, str(len(us)), f"{sum(durations) / 3600:.3f}",
                     str(len({u.speaker for u in us if u.speaker})), f"{min(durations):.2f}",
                     f"{max(durations):.2f}", ",".join(str(r) for r in sorted({u.sample_rate for u in us})),
                     f"{sum(u.text is not None for u in us)}/{len(us)}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@cli.command("import")
@click.argument("kind")
@click.argument("weights", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--config", "config", type=click.Path(), default=None, help="The reference's model config.")
@click.option("--vocoder", type=click.Path(), default=None, help="A semlat vocoder folder, where the kind needs one.")
@click.option("--vocab", type=click.Path(), default=None, help="The release's vocab.txt (f5-tts).")
@click.option("--encoder", type=click.Path(), default=None,
              help="semantic-vocoder: a semlat Dasheng folder (from `semlat import dasheng`); semantic-vocoder-tta: "
                   "a local flan-t5-large folder (config and tokenizer).")
@click.option("--discriminator", type=click.Path(), default=None,
              help="bigvgan: the release's bigvgan_discriminator_optimizer.pt; dc-speech-vae: its discriminator's "
                   "weights. Kept beside the model, so that train.init_from fine-tunes with them.")
def import_(kind, weights, out, config, vocoder, vocab, encoder, discriminator) -> None:
    """Convert a released checkpoint (WEIGHTS) of KIND into a semlat model folder OUT."""
    from semlat.models import run_importer

    if vocab is not None and kind != "f5-tts":
        raise click.UsageError("--vocab is for f5-tts imports")
    if encoder is not None and kind not in ("semantic-vocoder", "semantic-vocoder-tta"):
        raise click.UsageError("--encoder is for semantic-vocoder and semantic-vocoder-tta imports")
    if discriminator is not None and kind not in ("bigvgan", "dc-speech-vae"):
        raise click.UsageError("--discriminator is for bigvgan and dc-speech-vae imports")
    options = {k: v for k, v in (("config", config), ("vocoder", vocoder), ("vocab", vocab), ("encoder", encoder),
                                 ("discriminator", discriminator)) if v is not None}
    folder = run_importer(kind, weights, out, **options)
    click.echo(f"wrote {folder}")


@cli.command("info")
@click.argument("model", type=click.Path())
def info(model) -> None:
    """Show a model folder's type, semlat version and parameter count."""
    from semlat.checkpoints import read_model_folder

    state, meta = read_model_folder(model)
    params = sum(t.numel() for t in state.values())
    click.echo(f"{model}: {meta['model_type']} (semlat {meta.get('semlat_version', '?')}), "
               f"{len(state)} tensors, {params / 1e6:.2f} M values")
    for key in sorted(k for k in meta if k not in ("model_type", "semlat_version", "config")):
        click.echo(f"  {key}: {meta[key]}")


@cli.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1)
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this folder from its latest checkpoint (ARGS are then overrides).")
def train(args, resume) -> None:
    """Train a recipe: semlat train CONFIG [key=value ...].

    CONFIG is a YAML recipe (e.g. configs/wave_vae/tiny.yaml) or a shipped name (wave_vae/tiny).
    Overrides use dotted keys: train.max_steps=1000 data.batch_size=16 model.latent_dim=32.
    Under torchrun every process runs this same command.
    """
    from semlat.training.run import train_recipe

    if resume:
        config_path, overrides = Path(resume) / "config.yaml", [*args, f"run_dir={resume}"]
        if not config_path.is_file():
            raise SemlatError(f"{config_path}: no such config file (is {resume} a training run?)")
    else:
        if not args or "=" in args[0]:
            raise click.UsageError("give a CONFIG (a YAML file or a shipped name like wave_vae/tiny) or --resume RUN_DIR")
        config_path, overrides = args[0], list(args[1:])
    checkpoint, trainer = train_recipe(config_path, overrides, resume=bool(resume))
    if trainer.dist.is_main:
        click.echo(f"trained {trainer.step} steps; latest checkpoint: {checkpoint}")


def _codec_options(fn):
    for option in reversed([
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True),
        click.option("--chunk-seconds", type=POSITIVE, default=30.0, show_default=True,
                     help="Process long audio in chunks of this length (bounded memory)."),
        click.option("--context-seconds", type=NON_NEGATIVE, default=2.0, show_default=True,
                     help="Context on each side of a chunk."),
    ]):
        fn = option(fn)
    return fn


@cli.group()
def teacher() -> None:
    """Teachers for semantic alignment."""


@teacher.command("train")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps [default: the config's, 400].")
@click.option("--minutes", type=POSITIVE, default=None, help="Also stop after this many minutes of training.")
@click.option("--config", "config", default="teacher/default", show_default=True,
              help="The teacher recipe (a YAML file or a shipped name such as teacher/tiny).")
@click.argument("overrides", nargs=-1)
def teacher_train(manifest, out, steps, minutes, config, overrides) -> None:
    """Train an offline teacher (HuBERT's first iteration: MFCC k-means targets, masked prediction).

    The same as `semlat train teacher/default data.train=MANIFEST run_dir=OUT [OVERRIDES]` (e.g.
    model.clusters=50); OUT is a training run (a rerun resumes it) whose latest checkpoint is the
    teacher. Use it as alignment.teacher=semlat:OUT. Its features are far weaker than WavLM's; it
    exists so the pipeline runs without downloading a pretrained model.
    """

    from semlat.training.run import train_teacher

    checkpoint = train_teacher(manifest, out, steps=steps, minutes=minutes, config=config, overrides=overrides)
    from semlat.checkpoints import read_model_meta

    meta = read_model_meta(checkpoint)
    held = meta.get("heldout", {})
    click.echo(f"held-out masked accuracy {held.get('accuracy', float('nan')):.3f} (majority baseline "
               f"{held.get('majority_baseline', float('nan')):.3f}, chance {held.get('chance', float('nan')):.3f})")
    click.echo(f"wrote teacher {checkpoint} ({meta['training']['step']} steps): use alignment.teacher=semlat:{out}")


@cli.group()
def features() -> None:
    """Teacher feature caches."""


@features.command("extract")
@click.option("--teacher", "teacher_spec", required=True, help="hf:/path/model@layer or semlat:/path[@layer]")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--split", default=None, help="Only this split of the manifest.")
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
def features_extract(teacher_spec, manifest, out, split, device, dtype) -> None:
    """Precompute teacher features for a manifest (fp16 safetensors shards + index.json; resumable).

    Under torchrun every rank extracts its share: torchrun --nproc_per_node 8 -m semlat.cli features extract ...
    """
    import torch

    from semlat.models import load_teacher
    from semlat.semantic.feature_cache import extract_features
    from semlat.training.distributed import init_distributed, shutdown

    info = init_distributed(device)
    try:
        index = extract_features(load_teacher(teacher_spec, info.device), manifest, out, split=split,
                                 device=info.device, dtype=getattr(torch, dtype), progress=info.is_main)
    finally:
        shutdown()
    if info.is_main:
        click.echo(f"wrote {index}")


def _echo_rejects(rejects, out) -> None:
    if rejects:
        click.echo(f"skipped {len(rejects)} unreadable file(s), listed in {Path(out) / 'rejects.tsv'}")


def _load(model, device, precision, chunk_seconds, context_seconds, overlap_seconds=0.0):
    from semlat.models import load

    return load(model, device, precision, expect="space", chunk_seconds=chunk_seconds,
                context_seconds=context_seconds, overlap_seconds=overlap_seconds)


def _decode_options(fn):
    """--steps, --schedule, --seed and --overlap-seconds: options of decoders that sample."""
    for option in reversed([
        click.option("--steps", type=click.IntRange(min=1), default=None,
                     help="Sampling steps (decoders that sample, such as a flow-matching vocoder)."),
        click.option("--schedule", type=click.Choice(["uniform", "sine"]), default=None,
                     help="Time grid of a flow-matching vocoder (SemanticVocoder; uniform is the reference's)."),
        click.option("--seed", type=SEED, default=None, help="Sampling seed (same seed -> same audio)."),
        click.option("--overlap-seconds", type=NON_NEGATIVE, default=0.0, show_default=True,
                     help="Crossfade between chunks (for decoders that sample)."),
    ]):
        fn = option(fn)
    return fn


def _options(steps, seed, schedule=None) -> dict:
    return {k: v for k, v in (("steps", steps), ("seed", seed), ("schedule", schedule)) if v is not None}


def _flow_options(steps_default: int | None, guidance_help: str):
    """--steps and --guidance of a flow-matching generator (one name for each across commands, in
    :mod:`semlat.sampling`'s guidance convention), with the old --nfe / --cfg as hidden aliases for one release."""
    def wrap(fn):
        for option in reversed([
            click.option("--steps", type=click.IntRange(min=1), default=steps_default,
                         show_default=steps_default is not None,
                         help="Flow sampling steps" + ("." if steps_default else " [default: the model's]."),),
            click.option("--guidance", type=NON_NEGATIVE, default=None, help=guidance_help),
            click.option("--nfe", type=click.IntRange(min=1), default=None, hidden=True,
                         help="Deprecated alias of --steps."),
            click.option("--cfg", type=NON_NEGATIVE, default=None, hidden=True,
                         help="Deprecated: --guidance in the old convention."),
        ]):
            fn = option(fn)
        return fn
    return wrap


def _resolve_flow(steps, guidance, nfe, cfg, *, cfg_is_f5: bool, guidance_default: float | None):
    """(steps, guidance) from the new options and the deprecated aliases (which warn on stderr). With
    ``cfg_is_f5`` the old --cfg was F5-TTS's strength: guidance = cfg + 1."""
    from semlat.sampling import from_f5_strength

    if nfe is not None:
        click.echo("warning: --nfe is deprecated; use --steps", err=True)
        steps = nfe
    if cfg is not None:
        if guidance is not None:
            raise click.UsageError("give --guidance or the deprecated --cfg, not both")
        guidance = from_f5_strength(cfg) if cfg_is_f5 else cfg
        click.echo(f"warning: --cfg is deprecated; use --guidance {guidance:g}"
                   + (" (semlat's scale is F5-TTS's cfg strength + 1)" if cfg_is_f5 else ""), err=True)
    return steps, guidance_default if guidance is None else guidance


@cli.command("encode")
@click.argument("model", type=click.Path())
@click.argument("source", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--split", default=None, help="Only this split of a manifest.")
@click.option("--record-stats", is_flag=True,
              help="Copy the store's per-channel latent statistics into MODEL's config.json (latent_stats).")
@click.option("--alignments", type=click.Path(), default=None,
              help="Forced alignments of the manifest (semlat judge align): each item keeps its segments, so the "
                   "duration-aligned TTS can stream the store (data.stream=true, no data.alignments).")
@_codec_options
def encode(model, source, out, split, record_stats, alignments, device, precision, chunk_seconds,
           context_seconds) -> None:
    """Encode audio into latents.

    A file SOURCE with OUT ending in .safetensors writes that one file; a manifest (.jsonl) or a
    folder of audio writes a latent store folder OUT (sharded safetensors + index.json with text,
    speaker and per-channel statistics; a rerun resumes). Under torchrun every rank encodes its share.
    """
    from semlat.inference import encode as encode_files
    from semlat.inference import record_stats as record
    from semlat.training.distributed import init_distributed, shutdown

    info = init_distributed(device)  # under torchrun: one process group, a share of the inputs per rank
    try:
        space = _load(model, info.device, precision, chunk_seconds, context_seconds)
        count, rejects = encode_files(space, source, out, split=split, alignments=alignments)
    finally:
        shutdown()
    if not info.is_main:
        return
    click.echo(f"wrote {count} latent sequence(s) ({space.latent_dim} x {space.frame_rate:g} Hz) to {out}")
    _echo_rejects(rejects, out)
    if record_stats:
        if not Path(out).is_dir():
            raise click.UsageError("--record-stats needs a latent folder (a manifest or folder SOURCE)")
        stats = record(space, out)
        click.echo(f"recorded latent statistics of {stats['frames']} frames in {Path(model) / 'config.json'}")


@cli.command("decode")
@click.argument("model", type=click.Path())
@click.argument("latents", type=click.Path())
@click.argument("out", type=click.Path())
@_codec_options
@_decode_options
def decode(model, latents, out, device, precision, chunk_seconds, context_seconds, steps, schedule, seed,
           overlap_seconds) -> None:
    """Decode latents into audio: a latent file (.safetensors) into OUT.wav, a latent folder into OUT/<id>.wav."""
    from semlat.inference import decode as decode_files

    space = _load(model, device, precision, chunk_seconds, context_seconds, overlap_seconds)
    count = decode_files(space, latents, out, **_options(steps, seed, schedule))
    click.echo(f"wrote {count} file(s) to {out}")


@cli.command("reconstruct")
@click.argument("model", type=click.Path())
@click.argument("source", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--split", default=None, help="Only this split of a manifest.")
@_codec_options
@_decode_options
def reconstruct_(model, source, out, split, device, precision, chunk_seconds, context_seconds, steps, schedule, seed,
                 overlap_seconds) -> None:
    """Encode and decode: IN.wav -> OUT.wav, or a manifest or folder of audio -> a folder of .wav files."""
    from semlat.inference import reconstruct

    space = _load(model, device, precision, chunk_seconds, context_seconds, overlap_seconds)
    done, rejects = reconstruct(space, source, out, split=split, **_options(steps, seed, schedule))
    click.echo(f"wrote {len(done)} reconstruction(s) to {out}")
    _echo_rejects(rejects, out)


@cli.command("tts")
@click.argument("model", type=click.Path())
@click.argument("out", type=click.Path(dir_okay=False), required=False)
@click.option("--text", default=None, help="What to say.")
@click.option("--prompt", default=None, type=click.Path(dir_okay=False), help="Audio of the voice to use.")
@click.option("--prompt-text", default=None, help="The transcript of --prompt.")
@click.option("--list", "listing", default=None, type=click.Path(dir_okay=False),
              help="Batch: a JSONL or TSV list of prompt, prompt_text, text, output (instead of OUT and the above).")
@click.option("--batch", type=POSITIVE_INT, default=1, show_default=True,
              help="With --list: generate this many rows of similar length at once (each as it would come alone).")
@_flow_options(32, "Classifier-free guidance scale, u + w (c - u) (1: none)  [default: 3, F5-TTS's cfg 2].")
@click.option("--sway", type=SWAY, default=-1.0, show_default=True, help="Sway sampling coefficient.")
@click.option("--speed", type=POSITIVE, default=1.0, show_default=True, help="Speaking rate (duration rule).")
@click.option("--seconds", type=POSITIVE, default=None, help="Generate this many seconds (instead of the rule).")
@click.option("--seed", type=SEED, default=None, help="Sampling seed (same seed -> same audio).")
@click.option("--method", type=click.Choice(["euler", "midpoint"]), default="euler", show_default=True)
@click.option("--space", default=None, type=click.Path(), help="Latent space folder (default: the model's).")
@click.option("--duration-model", default=None, type=click.Path(),
              help="A duration model (semlat train duration/...) instead of F5's ratio rule.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: the DiT's weights in bf16 (faster on CPUs with AVX-512 BF16 or AMX, and on GPUs).")
@click.option("--stream", is_flag=True,
              help="Write the audio while it is generated (decoded in --stream-seconds windows; OUT '-': raw "
                   "16-bit PCM on stdout). Reports the first-audio latency.")
@click.option("--stream-seconds", type=POSITIVE, default=1.0, show_default=True,
              help="The streaming decoder's window.")
def tts(model, out, text, prompt, prompt_text, listing, batch, steps, guidance, nfe, cfg, sway, speed, seconds, seed,
        method, space, duration_model, device, precision, stream, stream_seconds) -> None:
    """Zero-shot TTS: say --text in the voice of --prompt with the TTS model MODEL; write OUT (.wav/.flac).

    MODEL is a flow-matching DiT (semlat train tts/...) or an autoregressive model (semlat train ar_tts/...;
    --steps are then its head's steps per patch, and it ends the speech itself: --seconds is the most it may
    say). Batch form: semlat tts MODEL --list items.jsonl (rows: prompt, prompt_text, text, output; paths
    relative to the list). Long text is generated in sentence chunks joined with cross-fades.
    """
    from semlat.generation.synthesis import synthesize_list, synthesize_to_file
    from semlat.models import load

    steps, guidance = _resolve_flow(steps, guidance, nfe, cfg, cfg_is_f5=True, guidance_default=3.0)
    options = {"steps": steps, "guidance": guidance, "sway": sway, "speed": speed, "seconds": seconds,
               "method": method}
    if listing is not None:
        if out or text or prompt or prompt_text:
            raise click.UsageError("--list replaces OUT, --text, --prompt and --prompt-text")
        if stream:
            raise click.UsageError("--stream writes one OUT; it does not take --list")
        loaded = load(model, device, precision, expect="tts", space=space, duration=duration_model)
        written = synthesize_list(loaded, listing, seed=seed, batch=batch, **options)
        click.echo(f"wrote {len(written)} file(s) ({loaded.space.output_rate} Hz)")
        return
    if not out or text is None or prompt is None or prompt_text is None:
        raise click.UsageError("give OUT, --text, --prompt and --prompt-text (or --list)")
    if batch != 1:
        raise click.UsageError("--batch needs --list")
    loaded = load(model, device, precision, expect="tts", space=space, duration=duration_model)
    path, report = synthesize_to_file(loaded, out, text=text, prompt=prompt, prompt_text=prompt_text, seed=seed,
                                      stream=stream_seconds if stream else None, **options)
    echo = functools.partial(click.echo, err=str(out) == "-")
    echo(f"wrote {path} ({loaded.space.output_rate} Hz, {report.audio_seconds:.2f} s): first audio after "
         f"{report.first_audio_seconds:.2f} s, real-time factor {report.real_time_factor:.3f}")
    if any(stopped is False for stopped in report.stopped):
        echo("note: the model did not end its speech (no stop) within the length limit; the audio was cut there "
             "(give --seconds for a longer limit)")


@cli.command("tta")
@click.argument("model", type=click.Path())
@click.argument("out", type=click.Path(dir_okay=False), required=False)
@click.option("--caption", default=None, help="What the sound should be.")
@click.option("--seconds", type=POSITIVE, default=None, help="Length [default: the model's window].")
@click.option("--list", "listing", default=None, type=click.Path(dir_okay=False),
              help="Batch: a text file of captions (one per line, written to --out-dir) or a JSONL/TSV of "
                   "caption and output.")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False), help="Where a plain --list writes NNNN.wav.")
@_flow_options(None, "Classifier-free guidance scale, u + w (c - u) (1: none) [default: the model's, 3.5].")
@click.option("--sway", type=SWAY, default=None, help="Sway sampling coefficient [default: the model's, -1].")
@click.option("--decode-steps", "--vocoder-steps", "decode_steps", type=click.IntRange(min=1), default=None,
              help="Steps of a sampling decoder (SemanticVocoder) [default: the space's].")
@click.option("--seed", type=SEED, default=None, help="Sampling seed (same seed -> same audio).")
@click.option("--space", default=None, type=click.Path(), help="Latent space folder (default: the model's).")
@click.option("--text-encoder", default=None, type=click.Path(), help="T5 folder (default: the model's).")
@click.option("--device", default="auto", show_default=True)
def tta(model, out, caption, seconds, listing, out_dir, steps, guidance, nfe, cfg, sway, decode_steps, seed, space,
        text_encoder, device) -> None:
    """Text-to-audio: generate --caption with the TTA model MODEL; write OUT (.wav/.flac).

    Batch form: semlat tta MODEL --list captions.txt --out-dir DIR (or a JSONL/TSV of caption, output).
    """
    from semlat.generation.captioned import generate_list, generate_to_file
    from semlat.models import load

    steps, guidance = _resolve_flow(steps, guidance, nfe, cfg, cfg_is_f5=False, guidance_default=None)
    decode = {"steps": decode_steps} if decode_steps else {}
    if listing is not None:
        if out or caption:
            raise click.UsageError("--list replaces OUT and --caption")
        loaded = load(model, device, expect="tta", space=space, text_encoder=text_encoder)
        written = generate_list(loaded, listing, seconds or loaded.model.config.max_seconds, out_dir=out_dir,
                                seed=seed, steps=steps, guidance=guidance, sway=sway, decode_options=decode)
        click.echo(f"wrote {len(written)} file(s) ({loaded.space.output_rate} Hz)")
        return
    if not out or caption is None:
        raise click.UsageError("give OUT and --caption (or --list)")
    if not caption.strip():
        raise ConfigError("empty caption: give a description of the sound (--caption)")
    loaded = load(model, device, expect="tta", space=space, text_encoder=text_encoder)
    path = generate_to_file(loaded, out, caption, seconds or loaded.model.config.max_seconds, steps=steps,
                            guidance=guidance, sway=sway, seed=seed, decode_options=decode)
    click.echo(f"wrote {path} ({loaded.space.output_rate} Hz)")


@cli.group()
def judge() -> None:
    """Judges for generation metrics (the offline CTC recognizer)."""


@judge.command("train")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--units", type=click.Choice(["phonemes", "chars"]), default="phonemes", show_default=True,
              help="Recognise espeak IPA phonemes or the characters of the text.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps [default: the config's, 700].")
@click.option("--minutes", type=POSITIVE, default=None, help="Also stop after this many minutes of training.")
@click.option("--config", "config", default="judge/default", show_default=True,
              help="The judge recipe (a YAML file or a shipped name such as judge/tiny).")
@click.argument("overrides", nargs=-1)
def judge_train(manifest, out, units, steps, minutes, config, overrides) -> None:
    """Train the offline CTC judge on MANIFEST's train split; use it as ctc:OUT.

    The same as `semlat train judge/default data.train=MANIFEST run_dir=OUT [OVERRIDES]`; OUT is a
    training run (a rerun resumes it). It is far weaker than Whisper; its figures are labelled as
    the offline judge's.
    """

    from semlat.training.run import train_judge

    checkpoint = train_judge(manifest, out, units=units, steps=steps, minutes=minutes, config=config,
                             overrides=overrides)
    from semlat.checkpoints import read_model_meta
    from semlat.utils.figures import percent

    meta = read_model_meta(checkpoint)
    metric = meta["metric"]
    for split, figures in meta["heldout"].items():
        value = figures[metric]
        shown = percent(value, missing="n/a")
        click.echo(f"held-out {split} {metric.upper()}: {shown} ({figures['utterances']} utterances)")
    click.echo(f"wrote judge {checkpoint} ({meta['training']['step']} steps): use ctc:{out}")


@judge.command("align")
@click.argument("judge_folder", type=click.Path(file_okay=False))
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--split", default=None, help="Only this split of the manifest.")
@click.option("--peaks", is_flag=True, help="Keep CTC's peaky segments instead of tiling the speech.")
def judge_align(judge_folder, manifest, out, split, peaks) -> None:
    """Force-align MANIFEST's phonemes (or text) with a CTC judge; write OUT for eval latents --alignments."""
    from semlat.evaluation.ctc_judge import load_judge, write_alignments

    written, skipped = write_alignments(load_judge(judge_folder), manifest, out, split=split, extend=not peaks)
    click.echo(f"aligned {written} utterance(s) into {out}; skipped {len(skipped)}")
    for reason in skipped[:5]:
        click.echo(f"  skipped {reason}")


@cli.group("eval")
def eval_() -> None:
    """Evaluate models (reconstruction, latent diagnostics, generated speech and audio, comparisons)."""


@eval_.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--name", "names", multiple=True, help="Column names, one per RUN (default: run@step).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Also write the Markdown here.")
def eval_compare(runs, names, out) -> None:
    """Put several `eval recon` / `eval latents` output folders side by side (best value in bold)."""
    from semlat.evaluation.compare import compare_reports
    from semlat.utils.files import atomic_write_text

    text = compare_reports(list(runs), list(names) or None)
    if out:
        atomic_write_text(Path(out), text)
    click.echo(text, nl=False)


@eval_.command("recon")
@click.argument("model", type=click.Path())
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for reconstructions, utterances.jsonl and report.json/.md (a rerun resumes).")
@click.option("--split", default=None, help="Only this split of the manifest (e.g. test).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--metrics", default="all", show_default=True,
              help="Comma-separated groups: pesq,stoi,mel,stft,sisdr,f0,speaker.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Utterances per model call (zero-padded; 1 is exact).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
def eval_recon(model, manifest, out, split, device, metrics, batch_size, precision) -> None:
    """Reconstruct MANIFEST with MODEL and score it: PESQ, STOI, mel/STFT distance, SI-SDR, F0, speaker."""
    from semlat.evaluation.recon_eval import evaluate_reconstruction, markdown_table

    report = evaluate_reconstruction(model, manifest, out, split=split, device=device, metrics=metrics,
                                     batch_size=batch_size, precision=precision)
    click.echo(markdown_table(report), nl=False)
    data = report["data"]
    click.echo(f"scored {data['scored']} of {data['utterances']} utterance(s) ({report['run']['resumed']} resumed); "
               f"report: {Path(out) / 'report.md'}, {Path(out) / 'report.json'}")
    if data["rejected"]:
        click.echo(f"rejected {data['rejected']} unreadable file(s), listed in the report; first: "
                   f"{report['rejects'][0]['reason']}")


@eval_.command("latents")
@click.argument("model", type=click.Path())
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for report.json/.md and the t-SNE plots.")
@click.option("--split", default=None, help="Only this split of the manifest (e.g. test).")
@click.option("--alignments", default=None, type=click.Path(dir_okay=False),
              help='JSONL of {"id": audio as in the manifest, "segments": [[label, start_s, end_s], ...]} '
                   "for the phoneme frame probe.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--max-utterances", type=click.IntRange(min=1), default=None,
              help="Encode at most this many utterances (a seeded random subset).")
def eval_latents(model, manifest, out, split, alignments, device, max_utterances) -> None:
    """Diagnose MODEL's latents on MANIFEST: linear probes (with chance), dimension use, robustness, t-SNE."""
    from semlat.evaluation.latent_eval import evaluate_latents, probe_table

    report = evaluate_latents(model, manifest, out, split=split, alignments=alignments, device=device,
                              max_utterances=max_utterances)
    click.echo(probe_table(report), nl=False)
    size, dims = report["size"], report["dimensions"]
    click.echo(f"{size['latent_dim']} dims x {size['frame_rate']:g} Hz = {size['floats_per_second']:g} floats/s; "
               f"{dims['active']} of {dims['latent_dim']} dims active; report: {Path(out) / 'report.md'}, "
               f"{Path(out) / 'report.json'}")


@eval_.command("tts")
@click.argument("listing", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for utterances.jsonl and report.json/.md (a rerun resumes).")
@click.option("--asr", default=None, help="ASR judge: whisper:/path or ctc:/path (WER/CER, or PER).")
@click.option("--speaker", default=None, help="Speaker judge for SIM against each clip's prompt: "
              "wavlm-sv:/path or resemblyzer.")
@click.option("--reference", default=None, type=click.Path(),
              help="Reference audio for FD: a folder, a JSONL list, or a .npz of saved statistics.")
@click.option("--embedding", default=None,
              help="Embedding model for FD: ctc:/path, panns:/file.pth or vggish:/file.pth "
                   "(default: the ASR judge when it is ctc:).")
@click.option("--pooling", type=click.Choice(["frames", "clip"]), default=None,
              help="FD rows: every frame or one mean per clip (default: the embedding model's convention).")
@click.option("--language", default="en-us", show_default=True, help="espeak-ng voice for target phonemes (PER).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Clips per ASR call.")
@click.option("--mos", type=click.Choice(["dnsmos", "dnsmos-personalized"]), default=None,
              help="Offline quality judge: DNSMOS P.835 (SIG/BAK/OVRL) + P.808 via speechmos (not UTMOS).")
def eval_tts(listing, out, asr, speaker, reference, embedding, pooling, language, device, batch_size, mos) -> None:
    """Score generated speech in LISTING (JSONL: audio, text, [phonemes], [prompt]): WER/CER/PER, SIM, DNSMOS, FD."""
    from semlat.evaluation.generation_eval import evaluate_tts, metrics_table

    report = evaluate_tts(listing, out, asr=asr, speaker=speaker, reference=reference, embedding=embedding,
                          pooling=pooling, language=language, device=device, batch_size=batch_size, mos=mos)
    click.echo(metrics_table(report), nl=False)
    data = report["data"]
    click.echo(f"scored {data['scored']} of {data['clips']} clip(s) ({report['run']['resumed']} resumed); "
               f"report: {Path(out) / 'report.md'}, {Path(out) / 'report.json'}")
    if report["rejects"]:
        click.echo(f"skipped {len(report['rejects'])} unreadable clip(s); first: {report['rejects'][0]['reason']}")


@eval_.command("cross-sentence")
@click.argument("model", type=click.Path())
@click.argument("listing", type=click.Path(dir_okay=False))
@click.option("--librispeech", "root", required=True, type=click.Path(file_okay=False),
              help="LibriSpeech's test-clean folder (speaker/chapter/<id>.flac).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for audio/, generated.jsonl, scores/ and config.json (a rerun resumes).")
@click.option("--asr", default=None, help="ASR judge: whisper:/path (the paper's WER) or ctc:/path.")
@click.option("--speaker", default=None, help="Speaker judge for SIM against the prompt: wavlm-sv:/path or resemblyzer.")
@click.option("--mos", type=click.Choice(["dnsmos", "dnsmos-personalized"]), default=None,
              help="Offline quality judge: DNSMOS via speechmos (not UTMOS).")
@_flow_options(32, "Classifier-free guidance scale, u + w (c - u) (1: none)  [default: 3, F5-TTS's cfg 2].")
@click.option("--sway", type=SWAY, default=-1.0, show_default=True, help="Sway sampling coefficient.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Pair i is seeded from (seed, i).")
@click.option("--truth-duration", is_flag=True, help="Generate each target's real duration (default: F5's rule).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Clips per ASR call.")
def eval_cross_sentence(model, listing, root, out, asr, speaker, mos, steps, guidance, nfe, cfg, sway, seed,
                        truth_duration, device, batch_size) -> None:
    """LibriSpeech-PC cross-sentence TTS evaluation: generate every pair of LISTING (F5-TTS's .lst) with MODEL,
    then score it (WER/CER, SIM vs the prompt, DNSMOS). Under torchrun (torchrun --nproc_per_node N -m
    semlat.cli eval cross-sentence ...) each process takes every N-th pair and rank 0 merges the scores."""
    from semlat.evaluation.generation_eval import metrics_table
    from semlat.experiments.cross_sentence import run_cross_sentence

    if not (asr or speaker or mos):
        raise click.UsageError("give at least one judge: --asr, --speaker or --mos")
    steps, guidance = _resolve_flow(steps, guidance, nfe, cfg, cfg_is_f5=True, guidance_default=3.0)
    report = run_cross_sentence(model, listing, root, out, asr=asr, speaker=speaker, mos=mos, steps=steps,
                                guidance=guidance,
                                sway=sway, seed=seed, truth_duration=truth_duration, device=device,
                                batch_size=batch_size)
    if report is None:  # a torchrun rank other than 0: its share is done, rank 0 merges and reports
        click.echo("this rank's pairs are generated and scored; rank 0 writes the report")
        return
    click.echo(metrics_table(report), nl=False)
    click.echo(f"scored {report['data']['scored']} of {report['data']['clips']} pair(s); "
               f"report: {Path(out) / 'scores' / 'report.md'}")


@eval_.command("duration")
@click.argument("model", type=click.Path())
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--split", default="test", show_default=True, help="The manifest split whose pairs are measured.")
def eval_duration(model, manifest, split) -> None:
    """Duration rules side by side: F5's ratio rule vs the duration model MODEL on MANIFEST's cross-sentence pairs."""
    from semlat.experiments.duration_rules import compare_duration_rules, render

    click.echo(render(compare_duration_rules(model, manifest, split)), nl=False)


@eval_.command("audio")
@click.argument("generated", type=click.Path())
@click.argument("reference", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for report.json/.md and both sets' statistics (.npz).")
@click.option("--embedding", required=True, help="ctc:/path, panns:/file.pth or vggish:/file.pth.")
@click.option("--pooling", type=click.Choice(["frames", "clip"]), default=None,
              help="FD rows: every frame or one mean per clip (default: the embedding model's convention).")
@click.option("--device", default="cpu", show_default=True)
def eval_audio(generated, reference, out, embedding, pooling, device) -> None:
    """Fréchet distance between GENERATED and REFERENCE audio (folders, JSONL lists; REFERENCE may be a .npz)."""
    from semlat.evaluation.generation_eval import evaluate_audio, metrics_table

    report = evaluate_audio(generated, reference, out, embedding=embedding, pooling=pooling, device=device)
    click.echo(metrics_table(report), nl=False)
    click.echo(f"report: {Path(out) / 'report.md'}, {Path(out) / 'report.json'}")


@cli.command("demo")
@click.option("--out", "-o", default="demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--corpus-minutes", type=POSITIVE, default=None,
              help="Minutes of synthetic speech [default: 60; 90 with --tts-experiment].")
@click.option("--teacher-steps", type=click.IntRange(min=1), default=400, show_default=True,
              help="Offline teacher training steps.")
@click.option("--train-steps", type=click.IntRange(min=1), default=None,
              help="Training steps for each of the three autoencoders [default: 2500 vanilla, 2500 semantic, "
                   "900 dc_vae: about 5 idle CPU minutes each].")
@click.option("--judge-steps", type=click.IntRange(min=1), default=700, show_default=True,
              help="Offline CTC judge training steps (PER and the phoneme probe's alignments).")
@click.option("--teacher-minutes", type=POSITIVE, default=None, help="Also cap the teacher's training time.")
@click.option("--train-minutes", type=POSITIVE, default=None, help="Also cap each autoencoder's training time.")
@click.option("--judge-minutes", type=POSITIVE, default=None, help="Also cap the judge's training time.")
@click.option("--tts-steps", type=click.IntRange(min=0), default=None,
              help="Training steps of the duration-aligned tiny TTS (0: no TTS stage) [default: 1500; "
                   "3000 with --tts-experiment].")
@click.option("--tts-eval-every", type=click.IntRange(min=1), default=None,
              help="Judge the TTS every N steps [default: once at the end; 500 with --tts-experiment].")
@click.option("--tts-experiment", is_flag=True,
              help="The Semantic-VAE paper's comparison: the TTS on every latent space (and F5's implicit "
                   "alignment on the mel) for 3000 steps, judged every 500, with CIs and plots, and the final "
                   "checkpoints at NFE 4, 8, 16, 32 (90 minutes of speech; a few hours on 2 cores).")
@click.option("--events", is_flag=True,
              help="Add the sound-event comparison (SemanticVocoder's claim): event corpus, offline Dasheng MAE, "
                   "SemanticVocoder (flow + few-step GAN stage) and a waveform VAE at equal time, text-to-audio on each (about 2.5 more hours on 2 cores).")
@click.option("--phonetic-teacher", is_flag=True,
              help="Add semantic_ctc: the semantic VAE aligned to a SUPERVISED phonetic teacher (a CTC recognizer "
                   "trained on other voices and sentences than the judge's), and the phoneme probes on unseen "
                   "speakers against the vanilla VAE (about 11 more minutes on 2 cores).")
@click.option("--ar-experiment", is_flag=True,
              help="Add the autoregressive-TTS comparison: AR vs the F5 DiT on DC-VAE and waveform-VAE latents, and AR "
                   "TTS on DC-VAEs without the sigma-VAE noise or the dispersive loss (2 more DC-VAEs, then 6 TTS arms "
                   "of --ar-minutes each, judged with streamed decoding).")
@click.option("--ar-minutes", type=POSITIVE, default=None, help="Training minutes of each AR-experiment arm [default: 8].")
@click.option("--ar-conditioning", type=click.Choice(["durations", "f5"]), default="durations", show_default=True,
              help="The AR experiment's text: frame-aligned from forced alignments and a duration predictor "
                   "(durations; learns within minutes) or a sequence whose alignment attention must learn (f5).")
@click.argument("overrides", nargs=-1)
def demo(out, corpus_minutes, teacher_steps, train_steps, judge_steps, teacher_minutes, train_minutes, judge_minutes,
         tts_steps, tts_eval_every, tts_experiment, events, phonetic_teacher, ar_experiment, ar_minutes,
         ar_conditioning, overrides) -> None:
    """The main job: demo corpus -> teacher -> vanilla, semantic and DC tiny VAEs -> judge -> evaluation report.

    Budgets are steps, so the same command gives the same models on any machine (a time cap makes the
    result depend on the machine's speed). Extra key=value OVERRIDES go to all three training recipes
    (configs/wave_vae/tiny.yaml, semantic_vae/tiny.yaml, mel_dcae/tiny.yaml), e.g. data.batch_size=8.
    """
    from semlat.demo_run import (
        DEFAULT_CORPUS_MINUTES,
        DEFAULT_TTS_STEPS,
        EXPERIMENT_CORPUS_MINUTES,
        EXPERIMENT_EVAL_EVERY,
        EXPERIMENT_TTS_STEPS,
        run_demo,
    )
    from semlat.experiments.tts_convergence import NFE_SWEEP

    if corpus_minutes is None:
        corpus_minutes = EXPERIMENT_CORPUS_MINUTES if tts_experiment else DEFAULT_CORPUS_MINUTES

    if tts_steps is None:
        tts_steps = EXPERIMENT_TTS_STEPS if tts_experiment else DEFAULT_TTS_STEPS
    if tts_eval_every is None and tts_experiment:
        tts_eval_every = EXPERIMENT_EVAL_EVERY
    nfe_sweep = NFE_SWEEP if tts_experiment else ()
    report = run_demo(out, corpus_minutes=corpus_minutes, teacher_steps=teacher_steps, train_steps=train_steps,
                      judge_steps=judge_steps, teacher_minutes=teacher_minutes, train_minutes=train_minutes,
                      judge_minutes=judge_minutes, tts_steps=tts_steps, tts_eval_every=tts_eval_every,
                      tts_nfe_sweep=nfe_sweep, tts_experiment=tts_experiment, events=events,
                      phonetic_teacher=phonetic_teacher, ar_experiment=ar_experiment, ar_minutes=ar_minutes,
                      ar_conditioning=ar_conditioning, overrides=tuple(overrides), log=click.echo)

    def show(value, fmt):
        return "n/a" if value is None else fmt.format(value)

    for m in report["models"]:
        cosine = "" if m["alignment_cosine"] is None else f", alignment cosine {m['alignment_cosine']:.3f}"
        click.echo(f"{m['name']:8s} {m['steps']} steps: test mel distance {show(m['mel_distance'], '{:.3f}')}, "
                   f"STOI {show(m['stoi'], '{:.3f}')}, PER {show(m['per'], '{:.1%}')}{cosine}")
    click.echo(f"clean test audio: PER {show(report['clean_per'], '{:.1%}')} (offline judge)")
    if report.get("phonetic_teacher"):
        for name, row in report["phonetic_teacher"]["comparison"]["spaces"].items():
            if "accuracy" in row:
                versus = "" if row.get("difference") is None else f" ({row['difference']:+.1%} vs vanilla)"
                click.echo(f"phoneme probe on unseen speakers, {name}: {row['accuracy']:.1%}{versus}")
    if report["tts"]:
        for name, point in report["tts"]["final"].items():
            click.echo(f"tts on {name:8s} {point['step']} steps: PER {show(point.get('per'), '{:.1%}')}, "
                       f"SIM {show(point.get('sim'), '{:.3f}')} (real speech: PER "
                       f"{show(report['tts']['ground_truth'].get('per'), '{:.1%}')})")
        if report["tts"].get("samples"):
            click.echo(f"listen: {Path(report['tts']['samples'][0]['audio']).parent} (generated test sentences)")
    if report.get("ar"):
        click.echo(f"autoregressive TTS: {report['ar']['statement']} ({report['ar']['report']})")
    for warning in report["warnings"]:
        click.echo(f"WARNING: {warning}")
    click.echo(f"report: {Path(out) / 'report.md'}")


@cli.command("app")
@click.option("--models", "roots", multiple=True, required=True, type=click.Path(file_okay=False),
              help="A folder to serve (repeatable): model folders, training runs, manifests and reports under it, "
                   "e.g. a `semlat demo` output folder.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the default accepts only this machine; 0.0.0.0 opens it to the network).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=7860, show_default=True,
              help="Port (0: any free port).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the app's outputs [default: a new temporary folder].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.1), default=50.0, show_default=True,
              help="Refuse larger uploads.")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="Jobs of one kind that run at once (Gradio's queue).")
@click.option("--asr", "asr", multiple=True,
              help="An ASR judge for generated speech besides the served CTC judges (repeatable): whisper:/path, "
                   "ctc:/path.")
@click.option("--speaker", default="resemblyzer", show_default=True,
              help="Speaker judge for SIM: resemblyzer or wavlm-sv:/path.")
def app(roots, host, port, out, device, max_upload_mb, concurrency, asr, speaker) -> None:
    """A local web app: hear and compare reconstructions, see latent diagnostics, generate speech and sound,
    read reports, for every model under the --models folders (needs `pip install 'semlat[app]'`)."""
    try:
        from semlat.app.ui import launch
    except ImportError as err:
        raise ToolMissingError(f"semlat app needs Gradio: pip install 'semlat[app]' ({err})") from None
    launch(list(roots), out=out, host=host, port=port or None, device=device, max_upload_mb=max_upload_mb,
           concurrency=concurrency, asr=list(asr), speaker=speaker, log=click.echo)


def _split_counts(manifest) -> str:
    counts = {}
    for u in manifest:
        counts[u.split or "none"] = counts.get(u.split or "none", 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, printing SemlatError as one line."""
    try:
        cli.main(args=argv, prog_name="semlat", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("semlat: aborted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except SemlatError as err:
        click.echo(f"semlat: error: {err}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("semlat: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
