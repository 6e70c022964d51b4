"""`semlat app`: the catalog, the guard, and the app itself driven in headless chromium.

The served folder holds what a `semlat demo` run holds, in tiny form: two random latent spaces (one a
training run), a TTS model trained for 2 steps, a text-to-audio model on a tiny SemanticVocoder, an
offline CTC judge, the demo corpus with its manifest, and `eval recon` / `eval latents` reports.
With SEMLAT_APP_SCREENSHOTS=DIR the browser tests save one PNG per tab there (docs/app in the repo).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import STRICT, missing, tone, write_audio
from semlat.cli import main

if not STRICT:  # under SEMLAT_CI=1 a missing gradio fails the app tests instead
    pytest.importorskip("gradio", reason="the app needs the app extra (pip install 'semlat[app]')")

TINY_TTS = ["model.dim=32", "model.depth=2", "model.heads=2", "model.dim_head=16", "model.text_dim=16",
            "model.conv_layers=1", "data.max_frames=400", "data.batch_size=4", "train.progress=false",
            "train.checkpoint_every=2", "train.valid_every=2", "train.log_every=1", "train.max_steps=2"]


def _save_space(folder: Path, seed: int) -> Path:
    from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
    from semlat.checkpoints import save_model
    from semlat.config import to_dict

    torch.manual_seed(seed)
    config = WaveVAEConfig.tiny()
    save_model(folder, WaveVAE(config), model_type="wave_vae", config=to_dict(config))
    return folder


def _tta_model(root: Path, event_store: Path) -> None:
    """The shared tiny SemanticVocoder as a served space, and a text-to-audio model trained 2 steps on its latents."""
    shutil.copytree(event_store / "space", root / "sv")
    shutil.copytree(event_store / "t5", root / "t5")
    assert main(["train", "tta/tiny", f"run_dir={root / 'tta'}", f"data.latents={event_store / 'latents'}",
                 f"text_encoder={root / 't5'}", "train.progress=false", "train.max_steps=2"]) == 0


@pytest.fixture(scope="module")
def served(demo_corpus, event_store, tiny_ctc_judge, tmp_path_factory) -> Path:
    """A folder laid out like a demo run, with tiny models and real reports."""
    from semlat.evaluation.latent_eval import evaluate_latents
    from semlat.evaluation.recon_eval import evaluate_reconstruction
    from semlat.inference import encode_to_store, load

    root = tmp_path_factory.mktemp("served") / "demo"
    shutil.copytree(demo_corpus, root / "corpus")
    manifest = root / "corpus" / "manifest.jsonl"
    _save_space(root / "runs" / "vanilla", 0)
    _save_space(root / "runs" / "semantic" / "checkpoints" / "step-00000001", 1)
    _save_space(root / "runs" / "semantic" / "checkpoints" / "step-00000002", 2)  # the newest step is listed
    shutil.copytree(tiny_ctc_judge, root / "judge")
    store = root.parent / "latents"
    encode_to_store(load(root / "runs" / "vanilla", device="cpu"), manifest, store, progress=False)
    assert main(["train", "tts/tiny_wave_vae", f"data.latents={store}", f"run_dir={root / 'tts' / 'run'}",
                 *TINY_TTS]) == 0
    _tta_model(root / "events", event_store)
    evaluate_reconstruction(root / "runs" / "vanilla", manifest, root / "eval" / "vanilla" / "recon", split="test",
                            metrics="mel,stoi", progress=False)
    evaluate_latents(root / "runs" / "vanilla", manifest, root / "eval" / "vanilla" / "latents", max_utterances=12,
                     progress=False)
    (root / "report.md").write_text("# semlat demo\n\nA tiny served folder for the app tests.\n")
    return root


@pytest.fixture(scope="module")
def running(served, tmp_path_factory):
    """The app on a free port of 127.0.0.1, shut down after the module."""
    from semlat.app.ui import launch

    out = tmp_path_factory.mktemp("app-out")
    app, url, ws = launch([served], out=out, port=None, device="cpu", max_upload_mb=1.0, block=False,
                          log=lambda _: None)
    yield url, ws
    app.close()


@pytest.fixture(scope="module")
def page(running):
    """A headless chromium page (Debian's chromium, driven by playwright)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install 'semlat[dev]')")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        missing("chromium is not installed (sudo apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(120_000)
        tab.goto(running[0])
        tab.wait_for_selector("#recon-run")
        yield tab
        browser.close()


def _shot(page, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SEMLAT_APP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def _numbers(text: str) -> list[float]:
    out = []
    for token in text.replace("\t", " ").replace("\n", " ").split(" "):
        try:
            out.append(float(token))
        except ValueError:
            continue
    return out


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _status(page, element: str, expect: str) -> str:
    locator = page.locator(f"#{element}")
    locator.filter(has_text=expect).wait_for()
    return locator.inner_text()


# --- without a browser -------------------------------------------------------------------------------

def test_catalog_lists_what_a_demo_folder_holds(served):
    from semlat.app.catalog import scan

    catalog = scan([served])
    assert catalog.names("space") == ["events/sv", "runs/semantic (step-00000002)", "runs/vanilla"]
    assert catalog.names("tts") == ["tts/run (step-00000002)"]
    assert catalog.names("tta") == ["events/tta (step-00000002)"]
    assert catalog.names("judge") and catalog.names("manifest") == ["corpus/manifest.jsonl"]
    kinds = {e.name: e.detail for e in catalog.entries("report")}
    assert kinds["eval/vanilla/recon"] == "reconstruction" and kinds["eval/vanilla/latents"] == "latents"
    assert "demo" in kinds  # the folder's own report.md


def test_guard_refuses_paths_outside_and_bad_uploads(served, tmp_path):
    from semlat.app.guard import PathGuard, Refused, check_upload

    guard = PathGuard([served], tmp_path / "out")
    assert guard.check(served / "corpus" / "manifest.jsonl") == (served / "corpus" / "manifest.jsonl").resolve()
    assert guard.check("corpus/manifest.jsonl").is_file()  # relative to the served folder
    (served / "escape").symlink_to("/etc")
    try:
        for bad in ("/etc/passwd", f"{served}/../../../etc/passwd", "escape/passwd", "~/.ssh"):
            with pytest.raises(Refused, match="outside the folders this app serves"):
                guard.check(bad)
    finally:
        (served / "escape").unlink()
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    with pytest.raises(Refused, match=r"notes.txt: not usable audio"):
        check_upload(text)
    big = write_audio(tmp_path / "big.wav", np.zeros((400_000, 1), np.float32), 16000, "FLOAT")  # 1.6 MB
    with pytest.raises(Refused, match=r"over the upload limit of 1 MB"):
        check_upload(big, max_mb=1.0)
    assert check_upload(big, max_mb=2.0).sample_rate == 16000


def test_models_load_once_and_are_shared(served):
    import concurrent.futures

    from semlat.app.models import ModelCache

    cache = ModelCache("cpu")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: cache.get("space", served / "runs" / "vanilla"), range(4)))
    assert all(m is loaded[0] for m in loaded)
    assert cache.loads == 1  # four users asking at once: one load
    cache.get("space", served / "events" / "sv")
    assert cache.loads == 2


def test_long_inputs_run_through_the_chunk_loop_with_progress(running, tmp_path):
    from semlat.app import actions

    _, ws = running
    clip = write_audio(tmp_path / "long.wav", tone(35.0, 16000, 330.0), 16000)  # two 30 s chunks
    seen = []
    job, _, results = actions.reconstruct_compare(ws, clip, ["runs/vanilla"], ["mel"],
                                                  lambda fraction, desc: seen.append((fraction, desc)))
    assert [r.model for r in results] == ["runs/vanilla"] and math.isfinite(results[0].scores["mel_distance"])
    chunks = [desc for _, desc in seen if "chunk" in desc]
    assert "runs/vanilla: encoding (chunk 2 of 2)" in chunks and "runs/vanilla: decoding (chunk 2 of 2)" in chunks
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert json.loads((job / "job.json").read_text())["models"] == [str(ws.catalog.find("space", "runs/vanilla").path)]
    import soundfile as sf

    assert sf.info(str(results[0].audio)).duration == pytest.approx(35.0, abs=1e-3)


def test_file_route_serves_only_the_served_folders(running, served):
    url, ws = running
    for outside in ("/etc/passwd", f"{served}/../../../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}gradio_api/file={outside}")
        assert err.value.code in (403, 404)
    with urllib.request.urlopen(f"{url}gradio_api/file={served / 'report.md'}") as response:
        assert b"semlat demo" in response.read()
    settings = json.loads((ws.out / "app.json").read_text())
    assert settings["host"] == "127.0.0.1" and settings["found"]["tts"] == ["tts/run (step-00000002)"]


def test_api_refuses_files_that_were_not_uploaded(running, tmp_path):
    """A client of Gradio's API that names a file outside (instead of uploading one) gets an error, no job."""
    url, ws = running
    outside = write_audio(tmp_path / "outside.wav", tone(0.5, 16000), 16000)
    body = {"data": [{"path": str(outside), "meta": {"_type": "gradio.FileData"}}, ["runs/vanilla"], ["mel"]]}
    request = urllib.request.Request(f"{url}gradio_api/call/reconstruct", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    event = json.load(urllib.request.urlopen(request))["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/reconstruct/{event}") as response:
        stream = response.read().decode()
    assert "event: error" in stream and "done" not in stream
    jobs = list((ws.out / "reconstruct").glob("*")) if (ws.out / "reconstruct").exists() else []
    assert not any(json.loads((j / "job.json").read_text())["input"] == str(outside) for j in jobs)


def test_operator_judge_specs_are_offered_and_nothing_else(served, tiny_whisper, tmp_path):
    from semlat.app import actions
    from semlat.app.guard import Refused
    from semlat.app.ui import workspace

    spec = f"whisper:{tiny_whisper}"
    ws = workspace([served], tmp_path / "out", device="cpu", asr=[spec])
    assert ws.asr_choices() == ["judge", spec]
    prompt = sorted((served / "corpus").rglob("*.wav"))[0]
    speech = torch.from_numpy(tone(1.0, 16000)[:, 0])
    figures = actions.judge_tts(ws, speech, 16000, "hello there", prompt, spec, speaker=False, mos=False)
    assert {"WER", "CER", "transcript (text)"} <= figures.keys() and figures["WER"] >= 0
    assert "PER" in actions.judge_tts(ws, speech, 16000, "hello there", prompt, "judge", speaker=False, mos=False)
    with pytest.raises(Refused, match="is not an ASR judge this app serves"):
        actions.judge_tts(ws, speech, 16000, "hi", prompt, f"whisper:{tmp_path}", speaker=False, mos=False)


def test_cli_refuses_a_missing_folder_and_a_busy_port(served, tmp_path, capsys):
    import socket

    assert main(["app", "--models", str(tmp_path / "nowhere")]) != 0
    assert "nowhere" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["app", "--models", str(served), "--port", str(port), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before anything was written


# --- in the browser ------------------------------------------------------------------------------------

def test_reconstruct_and_compare(page, served, tmp_path):
    _open_tab(page, "Reconstruct & compare")
    clip = write_audio(tmp_path / "input.wav", tone(1.5, 16000, 220.0) + 0.01 * np.random.default_rng(0)
                       .standard_normal((24000, 1)).astype(np.float32), 16000)
    page.locator("#recon-input input[type=file]").set_input_files(str(clip))
    page.locator("#recon-run").click()
    _status(page, "recon-status", "done")
    for k in range(2):  # both default spaces: a player each, with audio behind it
        player = page.locator(f"#recon-audio-{k}")
        player.wait_for(state="visible")
    table = page.locator("#recon-metrics").inner_text()
    assert "PESQ wb" in table and "events/sv" in table and "runs/semantic" in table
    values = _numbers(table)
    assert len(values) >= 2 * 5 and all(math.isfinite(v) for v in values)
    _shot(page, "reconstruct", tmp_path)


def test_generate_speech_and_sound(page, served, tmp_path):
    _open_tab(page, "Generate")
    page.get_by_role("tab", name="Speech (zero-shot TTS)").click()
    prompt = sorted((served / "corpus").rglob("*.wav"))[0]
    page.locator("#tts-prompt input[type=file]").set_input_files(str(prompt))
    page.locator("#tts-prompt-text textarea").fill("This is the prompt.")
    page.locator("#tts-text textarea").fill("Hello there.")
    page.locator("#tts-nfe input[type=number]").fill("2")
    page.get_by_label("DNSMOS").check()
    page.locator("#tts-run").click()
    _status(page, "tts-status", "done")
    page.locator("#tts-audio audio, #tts-audio .waveform-container, #tts-audio button").first.wait_for()
    figures = page.locator("#tts-figures").inner_text()
    for label in ("PER", "SIM", "DNSMOS OVRL", "transcript (phonemes)"):
        assert label in figures
    assert re.search(r"PER\s+\d+\.\d %", figures), figures  # an error rate in percent, not a bare fraction
    values = _numbers(figures)
    assert len(values) >= 6 and all(math.isfinite(v) for v in values)
    _shot(page, "generate-tts", tmp_path)

    page.get_by_role("tab", name="Sound (text-to-audio)").click()
    page.locator("#tta-caption textarea").fill("A dog barks twice.")
    page.locator("#tta-run").click()
    _status(page, "tta-status", "done")
    figures = page.locator("#tta-figures").inner_text()
    assert "seconds" in figures and all(math.isfinite(v) for v in _numbers(figures))
    _shot(page, "generate-tta", tmp_path)


def test_latents_and_reports(page, tmp_path):
    _open_tab(page, "Latents")
    page.locator("#latents-run").click()
    text = _status(page, "latents-status", "computed")
    assert "dims" in text
    probes = page.locator("#latents-probes").inner_text()
    assert "speaker" in probes and _numbers(probes)
    page.locator("#latents-plots img").first.wait_for()
    _shot(page, "latents", tmp_path)

    _open_tab(page, "Reports")
    page.locator("#reports-compare").click()
    _status(page, "reports-status", "compared")
    assert "eval/vanilla/recon" in page.locator("#reports-text").inner_text()
    page.locator("#reports-path textarea, #reports-path input").first.fill("eval/vanilla/recon")
    page.locator("#reports-open").click()
    _status(page, "reports-status", "opened")
    assert "Reconstruction" in page.locator("#reports-text").inner_text()
    page.locator("#reports-figures img").first.wait_for()  # spectrograms.png beside the report
    _shot(page, "reports", tmp_path)


def test_one_users_long_job_does_not_block_another(page, running, tmp_path):
    """Two users reconstruct at once: the short job started second finishes while the long one still runs."""
    long_clip = write_audio(tmp_path / "long.wav", tone(30.0, 16000, 200.0), 16000)  # 0.96 MB, under the limit
    short_clip = write_audio(tmp_path / "short.wav", tone(0.5, 16000, 200.0), 16000)
    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    other.set_default_timeout(120_000)
    try:
        for tab in (page, other):
            tab.goto(running[0])
            tab.wait_for_selector("#recon-run")
        page.locator("#recon-input input[type=file]").set_input_files(str(long_clip))
        for label in ("runs/vanilla", "f0", "speaker"):  # three spaces and every metric: many seconds
            page.get_by_label(label, exact=True).check()
        other.locator("#recon-input input[type=file]").set_input_files(str(short_clip))
        for label in ("events/sv", "pesq", "stoi", "sisdr"):  # one space, one metric: a moment
            other.get_by_label(label, exact=True).uncheck()
        page.wait_for_timeout(500)
        other.wait_for_timeout(500)
        page.locator("#recon-run").click()
        page.wait_for_timeout(300)
        other.locator("#recon-run").click()
        _status(other, "recon-status", "done")
        assert "done" not in page.locator("#recon-status").inner_text()  # the long job is still running
        _status(page, "recon-status", "done")
    finally:
        other.close()


def test_refusals_are_visible_messages(page, running, tmp_path):
    page.goto(running[0])  # a fresh page: empty inputs
    page.wait_for_selector("#recon-run")
    _open_tab(page, "Reports")
    page.locator("#reports-path textarea, #reports-path input").first.fill("/etc")
    page.locator("#reports-open").click()
    assert "outside the folders this app serves" in _status(page, "reports-status", "refused")
    page.locator("#reports-path textarea, #reports-path input").first.fill("")

    _open_tab(page, "Reconstruct & compare")
    notes = tmp_path / "notes.wav"
    notes.write_text("this is not audio at all " * 40)
    page.locator("#recon-input input[type=file]").set_input_files(str(notes))
    page.locator("#recon-run").click()
    message = _status(page, "recon-status", "not usable audio")
    assert "refused" in message and "Traceback" not in page.content()

    page.goto(running[0])
    page.wait_for_selector("#recon-run")
    big = write_audio(tmp_path / "big.wav", np.zeros((400_000, 1), np.float32), 16000, "FLOAT")  # 1.6 MB > 1 MB
    page.locator("#recon-input input[type=file]").set_input_files(str(big))
    page.get_by_text("exceed the maximum allowed size of 1.0 Mb").wait_for()  # Gradio refuses it before upload
    page.locator("#recon-run").click()
    assert "give audio" in _status(page, "recon-status", "refused")  # nothing reached the app


def test_demo_report_says_how_to_open_the_app(tmp_path):
    from semlat.demo_report import render_report

    report = {"corpus": str(tmp_path / "demo" / "corpus"), "train_steps": {"vanilla": 1}, "minutes": 1.0, "threads": 2,
              "models": [], "judge_label": "ctc", "clean_per": None, "teacher": "t", "comparison": ""}
    text = render_report(report)
    assert f"semlat app --models {tmp_path / 'demo'}" in text and "127.0.0.1" in text


def test_only_loopback_hosts_count_as_local():
    from semlat.app.ui import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
