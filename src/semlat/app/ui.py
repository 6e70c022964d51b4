"""The Gradio front end of ``semlat app`` and :func:`launch`.

Four tabs, each a thin layer over :mod:`semlat.app.actions`:

- **Reconstruct & compare**: upload or record audio (or pick a manifest utterance), choose latent spaces;
  hear every reconstruction, see its spectrogram and latent image, and read ``eval recon``'s metrics;
- **Latents**: ``eval latents`` for a model and a manifest (probes with chance, t-SNE, dimension use),
  computed on demand or opened from an existing report;
- **Generate**: zero-shot TTS and text-to-audio with every served model of those kinds, with the offline
  judges' figures (PER/WER, SIM, DNSMOS) for speech;
- **Reports**: any served report (``semlat eval``'s, the demo's), and ``eval compare``'s tables.

Every handler returns a status line first: a refused request or bad input is shown there in one line
(never a traceback), and the other outputs keep their values. Jobs run in Gradio's queue with
``concurrency`` workers per event, so one user's long job does not hold up another's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from semlat.app import actions
from semlat.app.actions import Workspace
from semlat.app.catalog import scan
from semlat.app.guard import MAX_UPLOAD_MB, PathGuard, Refused
from semlat.app.models import ModelCache
from semlat.errors import SemlatError, first_line
from semlat.evaluation.metrics import GROUPS
from semlat.utils.files import atomic_write_text

#: reconstruction slots shown side by side (latent spaces compared at once)
MAX_COMPARED = 4
#: metric groups ticked by default (the slower F0 and speaker metrics are one click away)
DEFAULT_METRICS = ("pesq", "stoi", "mel", "sisdr")
NONE = "(none)"


def _status(kind: str, text: str) -> str:
    return f"**{kind}:** {text}"


def _guarded(handler: Callable[..., tuple], outputs: int) -> Callable[..., tuple]:
    """Run ``handler``; a SemlatError becomes a one-line status and no other output changes."""

    def run(*args: Any, **kwargs: Any) -> tuple:
        try:
            return handler(*args, **kwargs)
        except SemlatError as err:
            return (_status("refused" if isinstance(err, Refused) else "error", first_line(err)),
                    *[gr.skip()] * (outputs - 1))

    run.__name__ = handler.__name__
    return run


def _progress(progress: gr.Progress) -> actions.Progress:
    return lambda fraction, desc: progress(fraction, desc=desc)


def _figure_rows(figures: dict[str, Any]) -> list[list[Any]]:
    """``[label, figure]`` rows, each figure written with its unit (an error rate as percent, SIM as a cosine)."""
    from semlat.evaluation.generation_eval import TTS_COLUMNS
    from semlat.utils.figures import figure

    units = {info.label: info.unit for info in TTS_COLUMNS.values()}
    return [[name, figure(value, units.get(name, ""))] for name, value in figures.items()]


def _seed(value: float | None) -> int | None:
    return None if value is None or value < 0 else int(value)


def build(ws: Workspace) -> gr.Blocks:
    """The app's Blocks over a workspace (not launched)."""
    catalog = ws.catalog
    spaces, manifests = catalog.names("space"), catalog.names("manifest")
    reports = catalog.names("report")
    comparable = [e.name for e in catalog.entries("report") if e.detail in ("reconstruction", "latents")]
    latent_reports = [e.name for e in catalog.entries("report") if e.detail == "latents"]
    with gr.Blocks(title="semlat", analytics_enabled=False) as app:
        gr.Markdown(f"# semlat\nServing {catalog.summary()} from "
                    + ", ".join(f"`{r}`" for r in catalog.roots) + f". Outputs go to `{ws.out}`.")
        with gr.Tabs():
            with gr.Tab("Reconstruct & compare", id="reconstruct", elem_id="tab-reconstruct"):
                _reconstruct_tab(ws, spaces, manifests)
            with gr.Tab("Latents", id="latents", elem_id="tab-latents"):
                _latents_tab(ws, spaces, manifests, latent_reports)
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                _generate_tab(ws, manifests)
            with gr.Tab("Reports", id="reports", elem_id="tab-reports"):
                _reports_tab(ws, reports, comparable)
    return app


def _utterance_picker(ws: Workspace, manifests: list[str], prefix: str) -> tuple[gr.Dropdown, gr.Dropdown]:
    manifest = gr.Dropdown(choices=manifests, value=None, label="manifest", elem_id=f"{prefix}-manifest")
    utterance = gr.Dropdown(choices=[], value=None, label="utterance", elem_id=f"{prefix}-utterance")

    def listed(name: str | None):
        if not name:
            return gr.update(choices=[], value=None)
        try:
            items = actions.manifest_items(ws, name)
        except SemlatError as err:
            gr.Warning(first_line(err))
            return gr.update(choices=[], value=None)
        return gr.update(choices=items, value=None)

    manifest.change(listed, manifest, utterance)
    return manifest, utterance


def _picked(ws: Workspace, manifest_name: str | None, index: int | None) -> tuple[str, str] | None:
    """``(audio path, text)`` of a picked manifest utterance, or None (nothing picked, or refused with a warning)."""
    if not manifest_name or index is None:
        return None
    try:
        path, words = actions.manifest_utterance(ws, manifest_name, index)
    except SemlatError as err:
        gr.Warning(first_line(err))
        return None
    return str(path), words


def _reconstruct_tab(ws: Workspace, spaces: list[str], manifests: list[str]) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            source = gr.Audio(sources=["upload", "microphone"], type="filepath", label="input audio",
                              elem_id="recon-input")
            with gr.Accordion("or an utterance of a served manifest", open=False):
                manifest, utterance = _utterance_picker(ws, manifests, "recon")
            models = gr.CheckboxGroup(choices=spaces, value=spaces[:2], label="latent spaces",
                                      elem_id="recon-models")
            metrics = gr.CheckboxGroup(choices=list(GROUPS), value=list(DEFAULT_METRICS),
                                       label="metrics (semlat eval recon)")
            run = gr.Button("Reconstruct", variant="primary", elem_id="recon-run")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="recon-status")
            table = gr.Dataframe(label="metrics at each model's input rate (↑ higher / ↓ lower is better)",
                                 headers=["model", "metrics"], interactive=False, elem_id="recon-metrics")
            input_spec = gr.Image(label="input: log-mel spectrogram", type="filepath", interactive=False)
    slots = []
    for k in range(MAX_COMPARED):
        with gr.Row(visible=False) as row:
            audio = gr.Audio(label=f"reconstruction {k + 1}", type="filepath", interactive=False,
                             elem_id=f"recon-audio-{k}")
            spec = gr.Image(label="spectrogram", type="filepath", interactive=False)
            latents = gr.Image(label="latents (channels x frames)", type="filepath", interactive=False)
        slots.append((row, audio, spec, latents))

    def pick(manifest_name: str | None, index: int | None):
        picked = _picked(ws, manifest_name, index)
        return gr.skip() if picked is None else picked[0]

    utterance.change(pick, [manifest, utterance], source)
    outputs = [status, table, input_spec, *[c for slot in slots for c in slot]]

    def reconstruct(audio: str | None, chosen: list[str], groups: list[str], progress=gr.Progress(track_tqdm=True)):
        if len(chosen or []) > MAX_COMPARED:
            raise Refused(f"choose at most {MAX_COMPARED} latent spaces at once")
        job, input_png, results = actions.reconstruct_compare(ws, actions.input_audio(ws, audio), chosen or [], groups,
                                                              _progress(progress))
        headers, rows = actions.score_table(results)
        values: list[Any] = [_status("done", f"{len(results)} reconstruction(s) in `{job}`"),
                             gr.update(value=rows, headers=headers), str(input_png)]
        for k in range(MAX_COMPARED):
            if k < len(results):
                r = results[k]
                values += [gr.update(visible=True), gr.update(value=str(r.audio), label=f"{r.model}: {r.info}"),
                           str(r.spectrogram), str(r.latents)]
            else:
                values += [gr.update(visible=False), None, None, None]
        return tuple(values)

    run.click(_guarded(reconstruct, len(outputs)), [source, models, metrics], outputs)


def _latents_tab(ws: Workspace, spaces: list[str], manifests: list[str], latent_reports: list[str]) -> None:
    alignments = [NONE, *ws.catalog.names("alignments")]
    with gr.Row():
        with gr.Column(scale=2):
            model = gr.Dropdown(choices=spaces, value=spaces[0] if spaces else None, label="latent space",
                                elem_id="latents-model")
            manifest = gr.Dropdown(choices=manifests, value=manifests[0] if manifests else None, label="manifest",
                                   elem_id="latents-manifest")
            split = gr.Dropdown(choices=["all", "train", "valid", "test"], value="all", label="split")
            limit = gr.Number(value=100, precision=0, minimum=2, label="utterances (a seeded subset)")
            aligned = gr.Dropdown(choices=alignments, value=alignments[1] if len(alignments) > 1 else NONE,
                                  label="phoneme alignments (for the phoneme probe)")
            recompute = gr.Checkbox(value=False, label="recompute (ignore an earlier result)")
            run = gr.Button("Compute diagnostics", variant="primary", elem_id="latents-run")
            gr.Markdown("or open an existing `semlat eval latents` report:")
            existing = gr.Dropdown(choices=latent_reports, value=None, label="latents report",
                                   elem_id="latents-existing")
            opened = gr.Button("Open report")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="latents-status")
            probes = gr.Dataframe(label="linear probes on frozen latents, with chance levels", interactive=False,
                                  headers=actions.probe_rows({})[0], elem_id="latents-probes")
            gallery = gr.Gallery(label="probes, t-SNE, dimension use", columns=2, height="auto", object_fit="contain",
                                 elem_id="latents-plots")
            with gr.Accordion("full report", open=False):
                text = gr.Markdown()
    outputs = [status, probes, gallery, text]

    def show(folder: Path, report: dict[str, Any], how: str) -> tuple:
        headers, rows = actions.probe_rows(report)
        _, markdown, images = actions.report_view(ws, str(folder))
        size = report.get("size", {})
        return (_status("done", f"{how}: {size.get('latent_dim')} dims x {size.get('frame_rate')} Hz, "
                                f"{report.get('data', {}).get('encoded')} utterances encoded; `{folder}`"),
                gr.update(value=rows, headers=headers), [str(p) for p in images], markdown)

    def compute(model_name, manifest_name, split_name, count, alignments_name, again,
                progress=gr.Progress(track_tqdm=True)):
        folder, report = actions.latent_report(
            ws, model_name, manifest_name, None if split_name == "all" else split_name,
            int(count) if count else None, None if alignments_name in (None, NONE) else alignments_name, again)
        return show(folder, report, "computed")

    def open_report(name):
        entry = ws.entry("report", name, "latents report")
        return show(entry.path, actions.read_report(entry.path), "opened")

    run.click(_guarded(compute, len(outputs)), [model, manifest, split, limit, aligned, recompute], outputs)
    opened.click(_guarded(open_report, len(outputs)), existing, outputs)


def _generate_tab(ws: Workspace, manifests: list[str]) -> None:
    tts_models, tta_models = ws.catalog.names("tts"), ws.catalog.names("tta")
    judges = [NONE, *ws.asr_choices()]
    with gr.Tab("Speech (zero-shot TTS)", id="tts"):
        with gr.Row():
            with gr.Column(scale=2):
                model = gr.Dropdown(choices=tts_models, value=tts_models[0] if tts_models else None,
                                    label="TTS model", elem_id="tts-model")
                prompt = gr.Audio(sources=["upload", "microphone"], type="filepath", label="prompt audio (the voice)",
                                  elem_id="tts-prompt")
                with gr.Accordion("or a prompt from a served manifest", open=False):
                    manifest, utterance = _utterance_picker(ws, manifests, "tts")
                prompt_text = gr.Textbox(label="prompt text (the transcript of the prompt)", elem_id="tts-prompt-text")
                text = gr.Textbox(label="text to say", lines=2, elem_id="tts-text")
                with gr.Row():
                    nfe = gr.Slider(1, 64, value=32, step=1, label="flow steps (NFE)", elem_id="tts-nfe")
                    cfg = gr.Number(value=3.0, label="guidance scale (1: none)")
                    sway = gr.Number(value=-1.0, label="sway coefficient")
                with gr.Row():
                    speed = gr.Number(value=1.0, minimum=0.1, label="speed")
                    seed = gr.Number(value=0, precision=0, label="seed (-1: random)")
                with gr.Row():
                    asr = gr.Dropdown(choices=judges, value=judges[1] if len(judges) > 1 else NONE,
                                      label="ASR judge (PER or WER/CER)", elem_id="tts-asr")
                    sim = gr.Checkbox(value=True, label=f"SIM ({ws.speaker_spec.split(':')[0]})")
                    mos = gr.Checkbox(value=False, label="DNSMOS")
                run = gr.Button("Generate speech", variant="primary", elem_id="tts-run")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="tts-status")
                audio = gr.Audio(label="generated speech", type="filepath", interactive=False, elem_id="tts-audio")
                spec = gr.Image(label="spectrogram", type="filepath", interactive=False)
                figures = gr.Dataframe(headers=["figure", "value"], label="offline judges", interactive=False,
                                       elem_id="tts-figures")

        def pick(manifest_name, index):
            picked = _picked(ws, manifest_name, index)
            return (gr.skip(), gr.skip()) if picked is None else picked

        utterance.change(pick, [manifest, utterance], [prompt, prompt_text])

        def speak(model_name, prompt_path, prompt_words, words, steps, strength, coef, rate, seed_value, judge,
                  with_sim, with_mos, progress=gr.Progress(track_tqdm=True)):
            result = actions.tts(ws, model_name, actions.input_audio(ws, prompt_path), prompt_words or "", words or "",
                                 steps=int(steps),
                                 guidance=float(strength), sway=float(coef), speed=float(rate), seed=_seed(seed_value),
                                 asr=None if judge in (None, NONE) else judge, speaker=bool(with_sim),
                                 mos=bool(with_mos), progress=_progress(progress))
            return (_status("done", f"`{result.audio}`"), str(result.audio), str(result.spectrogram),
                    _figure_rows(result.figures))

        outputs = [status, audio, spec, figures]
        run.click(_guarded(speak, len(outputs)),
                  [model, prompt, prompt_text, text, nfe, cfg, sway, speed, seed, asr, sim, mos], outputs)

    with gr.Tab("Sound (text-to-audio)", id="tta"):
        with gr.Row():
            with gr.Column(scale=2):
                model = gr.Dropdown(choices=tta_models, value=tta_models[0] if tta_models else None,
                                    label="text-to-audio model", elem_id="tta-model")
                caption = gr.Textbox(label="caption", lines=2, elem_id="tta-caption")
                with gr.Row():
                    seconds = gr.Number(value=0, minimum=0, label="seconds (0: the model's window)")
                    steps = gr.Number(value=0, precision=0, minimum=0, label="flow steps (0: the model's)")
                with gr.Row():
                    cfg = gr.Number(value=3.5, label="guidance scale (1: none)")
                    vocoder_steps = gr.Number(value=0, precision=0, minimum=0,
                                              label="decoder steps (SemanticVocoder; 0: the space's)")
                    seed = gr.Number(value=0, precision=0, label="seed (-1: random)")
                run = gr.Button("Generate sound", variant="primary", elem_id="tta-run")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="tta-status")
                audio = gr.Audio(label="generated audio", type="filepath", interactive=False, elem_id="tta-audio")
                spec = gr.Image(label="spectrogram", type="filepath", interactive=False)
                latents = gr.Image(label="generated latents (channels x frames)", type="filepath", interactive=False)
                figures = gr.Dataframe(headers=["figure", "value"], label="figures", interactive=False,
                                       elem_id="tta-figures")

        def sound(model_name, words, length, flow_steps, strength, decoder_steps, seed_value,
                  progress=gr.Progress(track_tqdm=True)):
            result = actions.tta(ws, model_name, words or "", float(length) if length else None,
                                 steps=int(flow_steps) if flow_steps else None, guidance=float(strength),
                                 decode_steps=int(decoder_steps) if decoder_steps else None, seed=_seed(seed_value),
                                 progress=_progress(progress))
            return (_status("done", f"`{result.audio}`"), str(result.audio), str(result.spectrogram),
                    str(result.latents), _figure_rows(result.figures))

        outputs = [status, audio, spec, latents, figures]
        run.click(_guarded(sound, len(outputs)), [model, caption, seconds, steps, cfg, vocoder_steps, seed], outputs)


def _reports_tab(ws: Workspace, reports: list[str], comparable: list[str]) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            chosen = gr.Dropdown(choices=reports, value=reports[0] if reports else None, label="report",
                                 elem_id="reports-choice")
            typed = gr.Textbox(label="or a report folder (under the served folders)", elem_id="reports-path")
            opened = gr.Button("Open", variant="primary", elem_id="reports-open")
            gr.Markdown("**Compare** `eval recon` / `eval latents` reports side by side (best value in bold):")
            many = gr.Dropdown(choices=comparable, value=comparable[:2], multiselect=True, label="reports to compare",
                               elem_id="reports-compare-choice")
            compared = gr.Button("Compare", elem_id="reports-compare")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="reports-status")
            text = gr.Markdown(elem_id="reports-text")
            gallery = gr.Gallery(label="figures", columns=1, height="auto", object_fit="contain",
                                 elem_id="reports-figures")
    outputs = [status, text, gallery]

    def open_report(name, path_text):
        folder, markdown, images = actions.report_view(ws, (path_text or "").strip() or name or "")
        return _status("opened", f"`{folder}`"), markdown, [str(p) for p in images]

    def compare(names):
        return _status("compared", ", ".join(names or [])), actions.compare(ws, names or []), []

    opened.click(_guarded(open_report, len(outputs)), [chosen, typed], outputs)
    compared.click(_guarded(compare, len(outputs)), many, outputs)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int) -> None:
    """:class:`Refused` (one line) when ``host:port`` cannot be bound, e.g. another app is listening there."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise Refused(f"cannot listen on {host}:{port} ({err.strerror or err}): give another --port "
                          "(0 picks a free one)") from None


def workspace(roots: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, device: str = "auto",
              max_upload_mb: float = MAX_UPLOAD_MB, asr: Sequence[str] = (), speaker: str = "resemblyzer") -> Workspace:
    """Scan ``roots`` and set up the output folder (a new temporary one when ``out`` is None); ``asr`` adds judge
    specs (``whisper:/path``, ``ctc:/path``) to the served CTC judges, ``speaker`` is the SIM judge's spec."""
    if not roots:
        raise Refused("give at least one folder to serve (--models DIR)")
    try:
        catalog = scan(roots)
    except ValueError as err:
        raise Refused(str(err)) from None
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="semlat-app-"))
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    return Workspace(catalog, PathGuard(catalog.roots, folder), ModelCache(device), folder, max_upload_mb,
                     asr_specs=list(asr), speaker_spec=speaker)


def launch(roots: Sequence[str | os.PathLike], *, out: str | os.PathLike | None = None, host: str = "127.0.0.1",
           port: int | None = None, device: str = "auto", max_upload_mb: float = MAX_UPLOAD_MB, concurrency: int = 4,
           asr: Sequence[str] = (), speaker: str = "resemblyzer", block: bool = True,
           log: Callable[[str], None] = print) -> tuple[gr.Blocks, str, Workspace]:
    """Start the app on ``host:port`` (a free port when None); with ``block`` serve until interrupted.

    ``asr`` / ``speaker``: judge specs as for :func:`workspace`. Writes the resolved settings to ``OUT/app.json``.
    Returns the Blocks, its URL and the workspace."""
    if port:
        check_port(host, port)
    ws = workspace(roots, out, device, max_upload_mb, asr, speaker)
    port = port or free_port(host if is_loopback(host) else "0.0.0.0")
    ws.settings = {"roots": [str(r) for r in ws.catalog.roots], "out": str(ws.out), "host": host, "port": port,
                   "device": device, "max_upload_mb": max_upload_mb, "concurrency": concurrency,
                   "asr": list(asr), "speaker": speaker,
                   "found": {kind: [e.name for e in entries] for kind, entries in ws.catalog.items.items()}}
    atomic_write_text(ws.out / "app.json", json.dumps(ws.settings, indent=2) + "\n")
    if not is_loopback(host):
        log(f"WARNING: serving on {host}: anyone who can reach this machine can use the app and hear the files "
            "under the served folders")
    app = build(ws).queue(default_concurrency_limit=concurrency)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: the app works offline
    app.launch(theme=theme, server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
               allowed_paths=[str(p) for p in ws.guard.allowed], max_file_size=f"{max_upload_mb:g}mb",
               inbrowser=False)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    log(f"semlat app: {ws.catalog.summary()}; open {url} (Ctrl+C stops)")
    if block:
        try:
            app.block_thread()
        finally:
            app.close()
    return app, url, ws
