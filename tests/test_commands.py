"""``semlat encode / decode / reconstruct / train / demo`` on a tiny model: outputs, formats,
and one-line errors for bad arguments and bad audio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tone, write_audio
from semlat.audio import probe_audio
from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
from semlat.checkpoints import save_model
from semlat.cli import main
from semlat.config import to_dict
from semlat.data.latent_file import read_latent_file
from semlat.data.manifest import Manifest, Utterance
from semlat.data.store import TensorStore


@pytest.fixture
def corpus(tmp_path):
    utts = []
    for i, seconds in enumerate([0.7, 1.3]):
        write_audio(tmp_path / "wavs" / f"u{i}.wav", tone(seconds, 22050, 300 + 100 * i), 22050)
        utts.append(Utterance(f"wavs/u{i}.wav", seconds, 22050, text=f"text {i}", speaker="s", split="test"))
    (tmp_path / "wavs" / "bad.wav").write_bytes(b"garbage that is not audio")
    utts.append(Utterance("wavs/bad.wav", 1.0, 22050, split="test"))
    return Manifest(utts, tmp_path).write(tmp_path / "m.jsonl")


def test_encode_decode_manifest(model_dir, corpus, tmp_path, capsys):
    latents = tmp_path / "latents"
    assert main(["encode", str(model_dir), str(corpus), str(latents)]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 latent sequence(s) (16 x 40 Hz)" in out and "skipped 1 unreadable" in out
    reader = TensorStore(latents)
    items = {item["id"]: (item, z) for item, z in reader}
    assert set(items) == {"wavs/u0.wav", "wavs/u1.wav"}
    item, z = items["wavs/u1.wav"]
    assert z.shape == (16, 52) and item["text"] == "text 1" and item["frames"] == 52  # ceil(1.3 * 40)
    assert reader.index["frame_rate"] == 40.0 and "bad.wav" in (latents / "rejects.tsv").read_text()
    assert reader.kind == "latents" and item["speaker"] == "s"
    mean, std = reader.stats  # per-channel statistics over every stored frame
    every = torch.cat([z for _, z in items.values()], dim=1)
    torch.testing.assert_close(mean, every.mean(1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(std, every.std(1, unbiased=False), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(reader.get("wavs/u1.wav"), z)
    decoded = tmp_path / "decoded"
    assert main(["decode", str(model_dir), str(latents), str(decoded)]) == 0
    info = probe_audio(decoded / "wavs" / "u1.wav")
    assert info.sample_rate == 16000 and info.frames == round(1.3 * 16000)


def test_file_in_file_out(model_dir, corpus, tmp_path, capsys):
    """One input and a file-shaped OUT give that file (not a folder of that name), both ways."""
    wav = corpus.parent / "wavs" / "u1.wav"
    latent_file = tmp_path / "a.safetensors"
    assert main(["encode", str(model_dir), str(wav), str(latent_file)]) == 0
    assert latent_file.is_file()
    z, meta = read_latent_file(latent_file)
    assert z.shape == (16, 52) and meta["id"] == "u1.wav" and meta["frame_rate"] == 40.0
    assert meta["duration"] == pytest.approx(1.3, abs=1e-3) and meta["input_rate"] == meta["output_rate"] == 16000
    out_wav = tmp_path / "out.wav"
    assert main(["decode", str(model_dir), str(latent_file), str(out_wav), "--seed", "3"]) == 0
    assert out_wav.is_file() and probe_audio(out_wav).frames == round(1.3 * 16000)
    # a latent file decoded into a folder lands as <folder>/<id>.wav
    assert main(["decode", str(model_dir), str(latent_file), str(tmp_path / "dec")]) == 0
    assert (tmp_path / "dec" / "u1.wav").is_file()
    # one file into a folder OUT: a store of one item, which decodes to OUT.wav as well
    assert main(["encode", str(model_dir), str(wav), str(tmp_path / "one")]) == 0
    assert len(TensorStore(tmp_path / "one")) == 1
    assert main(["decode", str(model_dir), str(tmp_path / "one"), str(tmp_path / "one.wav")]) == 0
    assert probe_audio(tmp_path / "one.wav").frames == round(1.3 * 16000)
    # a folder of audio is an input like a manifest (bad.wav is skipped and listed)
    assert main(["encode", str(model_dir), str(corpus.parent / "wavs"), str(tmp_path / "from_folder")]) == 0
    assert {item["id"] for item in TensorStore(tmp_path / "from_folder").items} == {"u0.wav", "u1.wav"}
    assert main(["decode", str(model_dir), str(tmp_path / "from_folder"), str(tmp_path / "many.wav")]) == 1
    assert "holds 2 latent sequences" in capsys.readouterr().err


def test_decode_takes_latents_written_by_other_code(model_dir, corpus, tmp_path, capsys):
    """A plain safetensors file holding one [D, T], [T, D] or [1, D, T] tensor decodes like semlat's own file;
    what cannot be read unambiguously is a one-line error naming the file."""
    from safetensors.torch import save_file

    wav = corpus.parent / "wavs" / "u1.wav"
    assert main(["encode", str(model_dir), str(wav), str(tmp_path / "a.safetensors")]) == 0
    z, _ = read_latent_file(tmp_path / "a.safetensors")  # [16, 52]
    assert main(["decode", str(model_dir), str(tmp_path / "a.safetensors"), str(tmp_path / "ref.wav")]) == 0
    reference = probe_audio(tmp_path / "ref.wav").frames
    for name, tensor in (("dt", z), ("td", z.t().contiguous()), ("bdt", z[None])):
        save_file({"z": tensor}, str(tmp_path / f"{name}.safetensors"))
        assert main(["decode", str(model_dir), str(tmp_path / f"{name}.safetensors"), str(tmp_path / f"{name}.wav")]) == 0
        assert probe_audio(tmp_path / f"{name}.wav").frames == reference  # 52 frames x 400 samples = 1.3 s
    same = [sf.read(tmp_path / f"{name}.wav")[0] for name in ("ref", "dt", "td", "bdt")]
    assert all(np.allclose(same[0], other, atol=1e-6) for other in same[1:])
    for name, tensors, message in (("two", {"a": z, "b": z.clone()}, "2 tensors"),
                                   ("wide", {"z": torch.randn(8, 52)}, "does not fit a space of 16 channels"),
                                   ("square", {"z": torch.randn(16, 16)}, "ambiguous"),
                                   ("ints", {"z": torch.zeros(16, 4, dtype=torch.long)}, "latents are one float")):
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        assert main(["decode", str(model_dir), str(tmp_path / f"{name}.safetensors"), str(tmp_path / "x.wav")]) == 1
        err = capsys.readouterr().err
        assert message in err and f"{name}.safetensors" in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "x.wav").exists()


def test_encode_records_latent_statistics_in_the_model_folder(model_dir, corpus, tmp_path):
    import semlat

    assert main(["encode", str(model_dir), str(corpus), str(tmp_path / "z"), "--record-stats"]) == 0
    meta = json.loads((model_dir / "config.json").read_text())
    stats = TensorStore(tmp_path / "z").index["stats"]
    assert meta["latent_stats"]["mean"] == stats["mean"] and meta["latent_stats"]["frames"] == 28 + 52
    space = semlat.load(model_dir, device="cpu")
    mean, std = space.latent_stats
    assert mean.shape == std.shape == (16,) and bool((std > 0).all())


def test_python_entry_point_takes_tensors_and_paths(model_dir, corpus, tmp_path):
    import semlat

    space = semlat.load(model_dir, device="cpu", precision="fp32")
    wav = corpus.parent / "wavs" / "u0.wav"
    z = space.encode(wav)
    assert z.shape == (1, 16, 28) and (space.input_rate, space.output_rate, space.frame_rate) == (16000, 16000, 40.0)
    audio = space.decode(z)
    assert audio.shape == (1, 1, 28 * 400)
    from semlat.audio import load_audio

    same = space.encode(load_audio(wav, 16000)[0][None])
    torch.testing.assert_close(same, z)
    assert space.save(audio, tmp_path / "x.flac").is_file()
    assert main(["encode", str(model_dir), str(wav), str(tmp_path / "z.safetensors")]) == 0
    torch.testing.assert_close(space.decode(tmp_path / "z.safetensors"), audio)  # the CLI uses the same function


def test_reconstruct_file_and_manifest(model_dir, corpus, tmp_path, capsys):
    source = corpus.parent / "wavs" / "u0.wav"
    assert main(["reconstruct", str(model_dir), str(source), str(tmp_path / "r.wav"), "--precision", "bf16"]) == 0
    assert probe_audio(tmp_path / "r.wav").frames == round(0.7 * 16000)
    assert main(["reconstruct", str(model_dir), str(corpus), str(tmp_path / "recon"), "--split", "test",
                 "--chunk-seconds", "0.5", "--context-seconds", "0.25"]) == 0
    assert sorted(p.name for p in (tmp_path / "recon" / "wavs").iterdir()) == ["u0.wav", "u1.wav"]


@pytest.mark.parametrize("argv,pattern", [
    (["encode", "/no/model", "x.wav", "out"], "semlat: error: /no/model: no such model folder"),
    (["reconstruct", "{model}", "{bad}", "{tmp}/o.wav"], "unreadable or corrupt audio"),
    (["reconstruct", "{model}", "{tmp}/missing.wav", "{tmp}/o.wav"], "missing.wav: no such file"),
    (["decode", "{model}", "{tmp}", "{tmp}/o"], "not a tensor store"),
    (["encode", "{model}", "{manifest}", "{tmp}/z.safetensors"], "OUT must be a folder, not a file like z.safetensors"),
    (["encode", "{model}", "{good}", "{tmp}/z.wav"], "encode writes latents"),
    (["reconstruct", "{model}", "{manifest}", "{tmp}/r.wav"], "OUT must be a folder"),
    (["reconstruct", "{model}", "{good}", "{tmp}/r.safetensors"], "reconstruct writes audio"),
    (["decode", "{model}", "{tmp}/none.safetensors", "{tmp}/o.wav"], "no such latent file or folder"),
    (["decode", "{model}", "{manifest}", "{tmp}/o.wav"], "unreadable latent file"),
    (["reconstruct", "{model}", "{good}", "{tmp}/r.wav", "--steps", "4"], "does not take decode option 'steps'"),
    (["train", "{tmp}/nope.yaml"], "no such config file, nor a shipped config"),
    (["train", "wave_vae/tiny", "model.bogus=1"], "model.bogus: Key 'bogus' not in 'WaveVAEConfig'"),
    (["train", "wave_vae/tiny", "train.max_steps=lots"], "train.max_steps: Value 'lots'"),
    (["train", "--resume", "{tmp}/norun"], "norun/config.yaml: no such config file"),
    (["encode", "{model}", "x.wav", "out", "--precision", "fp8"], "Invalid value for '--precision'"),
])
def test_bad_arguments_give_one_line_errors(model_dir, corpus, tmp_path, capsys, argv, pattern):
    fill = {"model": str(model_dir), "bad": str(corpus.parent / "wavs" / "bad.wav"), "tmp": str(tmp_path),
            "manifest": str(corpus), "good": str(corpus.parent / "wavs" / "u0.wav")}
    code = main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err
    assert code in (1, 2) and pattern in err and "Traceback" not in err
    if code == 1:
        assert err.strip().count("\n") == 0


def test_decode_refuses_latents_of_another_model(model_dir, corpus, tmp_path):
    torch.manual_seed(0)
    other = tmp_path / "other"
    config = WaveVAEConfig.tiny(latent_dim=8)
    save_model(other, WaveVAE(config), model_type="wave_vae", config=to_dict(config))
    assert main(["encode", str(other), str(corpus), str(tmp_path / "z8")]) == 0
    assert main(["decode", str(model_dir), str(tmp_path / "z8"), str(tmp_path / "o")]) == 1


@pytest.mark.slow
def test_demo_main_job(synth_tools, tmp_path, capsys, monkeypatch):
    from semlat.experiments import phonetic_teacher, tts_convergence

    monkeypatch.setattr(phonetic_teacher, "TEACHER_MINUTES", 0.3)
    monkeypatch.setattr(tts_convergence, "NFE_SWEEP", (4,))  # (the sweep's code is the same for every NFE)
    out = tmp_path / "demo"
    argv = ["demo", "--corpus-minutes", "0.5", "--teacher-steps", "3", "--train-steps", "3", "--judge-steps", "3",
            "--tts-steps", "2", "--tts-eval-every", "1", "--tts-experiment", "--phonetic-teacher", "--ar-experiment",
            "--ar-minutes", "0.02", "train.valid_every=2", "train.checkpoint_every=2", "train.num_workers=0",
            "data.batch_size=2", "train.progress=false"]
    monkeypatch.chdir(tmp_path)  # a relative --out, as users type it: every listing must still find its audio
    code = main([argv[0], "--out", "demo", *argv[1:]])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["throughput"]) == {"teacher", "vanilla", "semantic", "dc_vae", "judge", "phonetic_teacher",
                                         "semantic_ctc", "dc_vae_no_sigma", "dc_vae_no_dispersive"}
    assert all(stage["steps"] == 3 for stage in report["throughput"].values())  # step budgets, not time
    assert all(stage["expected_steps_per_second"] > 0 for stage in report["throughput"].values())
    vanilla, semantic, dc_vae, semantic_ctc = report["models"]
    assert (vanilla["name"], semantic["name"], dc_vae["name"]) == ("vanilla", "semantic", "dc_vae")
    # --phonetic-teacher: the semantic VAE aligned to a supervised CTC teacher that shares no voice or sentence
    # with the judge's corpus, and the phoneme probes on unseen speakers against the vanilla VAE
    phonetic = report["phonetic_teacher"]
    assert phonetic["teacher"].startswith("ctc:") and phonetic["teacher"] != report["judge"]
    assert phonetic["shared_speakers"] == phonetic["shared_sentences"] == 0 and phonetic["teacher_speakers"] >= 2
    assert semantic_ctc["name"] == "semantic_ctc" and -1.0 <= semantic_ctc["alignment_cosine"] <= 1.0
    assert set(phonetic["comparison"]["spaces"]) == {"vanilla", "semantic", "semantic_ctc"}
    assert dc_vae["latent_dim"] == 80 and abs(dc_vae["frame_rate"] - 22050 / 4096) < 1e-9
    assert dc_vae["vocoder"] == "griffin_lim" and dc_vae["alignment_cosine"] is None
    assert report["judge_label"].startswith("ctc-phonemes (offline") and 0 <= report["clean_per"]
    for m in report["models"]:
        assert m["steps"] >= 1
        assert (m["latent_dim"], m["frame_rate"]) == (16, 40.0) or m is dc_vae
        assert m["utterances"] >= 1 and m["unseen_speakers"]["utterances"] >= 1
        assert m["per"] is not None and m["per"] >= 0 and m["stoi"] is not None
        for kind in ("recon", "latents", "speech"):  # every latent space gets the full evaluation
            assert json.loads((Path(m["evaluation"][kind]) / "report.json").read_text())["kind"] in (
                "reconstruction", "latents", "tts")
        assert (Path(m["evaluation"]["recon"]) / "spectrograms.png").is_file()
        assert (Path(m["evaluation"]["latents"]) / "dimensions.png").is_file()
    assert vanilla["alignment_cosine"] is None and -1.0 <= semantic["alignment_cosine"] <= 1.0
    probe = report["teacher_probe"]  # how phonetic the alignment target is, by the latent spaces' probe
    assert ("accuracy" in probe and 0 <= probe["accuracy"] <= 1 and probe["dim"] > 0) or "skipped" in probe
    text = (out / "report.md").read_text()
    assert "| vanilla (wave_vae/tiny)" in text and "| semantic (semantic_vae/tiny)" in text
    assert "## Is the semantic VAE more phonetic?" in text and "**supervised** phonetic teacher" in text
    assert "| dc_vae (mel_dcae/tiny)" in text
    for section in ("## Reconstruction", "## Latent diagnostics", "## Speech judged"):
        assert section in text
    assert "| figure | vanilla | semantic | dc_vae | semantic_ctc | clean audio | judge |" in text
    # the TTS stage (--tts-experiment): the duration-aligned tiny TTS on every latent space and F5's implicit
    # alignment on the mel, judged at every checkpoint
    tts = report["tts"]
    assert list(tts["final"]) == ["mel", "vanilla", "semantic", "semantic_ctc", "dc_vae", "mel_f5"]
    assert all(point["step"] == 2 and 0 <= point["per"] and -1 <= point["sim"] <= 1 for point in tts["final"].values())
    assert tts["spaces"]["mel"]["frame_rate"] == pytest.approx(22050 / 256)
    assert "conditioning=durations" in tts["spaces"]["mel"]["overrides"] and tts["spaces"]["mel_f5"]["overrides"] == []
    experiment = json.loads((out / "tts" / "tts_experiment.json").read_text())
    assert sorted((p["space"], p["step"]) for p in experiment["points"]) == sorted(
        (name, step) for name in tts["final"] for step in (1, 2))
    assert all(b["train_minutes"] > a["train_minutes"] for a, b in zip(experiment["points"][::2],
                                                                      experiment["points"][1::2], strict=True))
    assert Path(tts["plot"]).is_file() and "## Zero-shot TTS on each latent space" in text
    assert "| real speech (same prompts) |" in text and "The Semantic-VAE paper's ordering:" in text
    assert "### Listen: mel, test sentences it never saw" in text
    assert set(experiment["bf16"]) == set(tts["final"])  # each final checkpoint judged with its DiT in bf16 too
    samples = tts["samples"]
    assert samples and all(Path(row["audio"]).is_file() and Path(row["real_audio"]).is_file() for row in samples)
    assert all(row["transcript"] is not None and row["per"] is not None for row in samples)
    assert f"]({Path(samples[0]['audio']).resolve().relative_to(out.resolve()).as_posix()})" in text
    # --ar-experiment: two DC-VAE ablations, then six arms for the same minutes, judged with streamed decoding, all
    # with frame-aligned text (the default --ar-conditioning)
    ar = report["ar"]
    assert ar["conditioning"] == "durations"
    assert "conditioning: durations" in (out / "ar_durations" / "ar_dc_vae" / "run" / "config.yaml").read_text()
    assert "frame_split: 4" in (out / "ar_durations" / "ar_dc_vae" / "run" / "config.yaml").read_text()
    assert list(ar["final"]) == ["dit_dc_vae", "ar_dc_vae", "dit_vanilla", "ar_vanilla", "ar_dc_vae_no_sigma",
                                 "ar_dc_vae_no_dispersive"]
    assert all(p["per"] >= 0 and p["first_audio_seconds"] > 0 and p["real_time_factor"] > 0
               for p in ar["final"].values())
    assert "stopped" not in ar["final"]["ar_vanilla"]  # (the planned length ends it, not the stop classifier)
    assert all(space["parameters"] > 0 for space in ar["spaces"].values())
    assert "noise_max_std: 0" in (out / "runs" / "dc_vae_no_sigma" / "config.yaml").read_text()
    assert "dispersive: 0" in (out / "runs" / "dc_vae_no_dispersive" / "config.yaml").read_text()
    table = (out / "ar_durations" / "ar_experiment.md").read_text()
    assert "| ar_dc_vae | `ar_tts/tiny_mel_dcae conditioning=durations data.alignments=alignments.jsonl` |" in table
    assert "What it shows: ar_dc_vae" in table
    assert "## Autoregressive TTS on continuous latents" in text
    printed = capsys.readouterr().out
    assert "report.md" in printed and "clean test audio: PER" in printed and "tts on dc_vae" in printed
    assert "autoregressive TTS: ar_dc_vae" in printed
    assert "expected 8.9 steps/s on an idle 2-core machine" in printed and "3 steps in" in printed

    # the same command and seed again (same corpus), without --tts-experiment (the default demo: the mel arm
    # only): the same step counts and figures, to float noise
    again = tmp_path / "again"
    shutil.copytree(out / "corpus", again / "corpus")
    rerun = [a for a in argv[1:] if a not in ("--tts-experiment", "--phonetic-teacher", "--ar-experiment",
                                              "--ar-minutes", "0.02")]
    assert main([argv[0], "--out", str(again), *rerun]) == 0
    second = json.loads((again / "report.json").read_text())
    assert second["phonetic_teacher"] is None and second["ar"] is None
    for a, b in zip(report["models"][:3], second["models"], strict=True):
        assert a["steps"] == b["steps"] == 3
        for key in ("mel_distance", "stoi", "per", "speaker_probe", "fd"):
            if b[key] is None:  # (a probe the 1-utterance test split cannot run)
                assert a[key] is None, key
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    assert report["clean_per"] == second["clean_per"]
    assert list(second["tts"]["final"]) == ["mel"]
    # TTS training and seeded generation repeat too
    assert report["tts"]["final"]["mel"]["per"] == pytest.approx(second["tts"]["final"]["mel"]["per"], abs=1e-9)


def test_demo_warns_when_far_slower_than_expected():
    import time

    from semlat import demo_run

    lines = []
    slow = demo_run.Throughput(lines.append)
    slow.start("vanilla", 10)
    slow.finish("vanilla", 10, time.monotonic() - 1000.0)  # 0.01 steps/s against 8.9 expected
    assert len(slow.warnings) == 1 and "of the expected" in slow.warnings[0] and "torch threads" in slow.warnings[0]
    assert any(line.startswith("[demo] WARNING") for line in lines)
    assert any("expected 8.9 steps/s" in line for line in lines)
    quick = demo_run.Throughput(lines.append)
    quick.finish("vanilla", 10, time.monotonic() - 0.1)  # 100 steps/s
    assert quick.warnings == [] and quick.stages["vanilla"]["steps"] == 10
    assert quick.stages["vanilla"]["steps_per_second"] > 50
