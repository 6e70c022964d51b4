"""The duration-aligned TTS (``conditioning: durations``): alignments become token durations, the text is spread
over the frames, the recipe trains the backbone and its duration predictor together (resume, DDP), and
``semlat tts`` speaks with the model's own durations; bad alignment files get one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from semlat.cli import main
from semlat.errors import ConfigError, DataError
from semlat.generation.aligned import bounded, expand, positions_from_seconds, token_durations
from semlat.generation.tts import TTSConfig, TTSModel
from semlat.inference import encode_to_store, load

TINY = ["model.dim=32", "model.depth=2", "model.heads=2", "model.dim_head=16", "model.text_dim=16",
        "model.conv_layers=1", "data.max_frames=400", "data.batch_size=4", "train.progress=false",
        "train.checkpoint_every=2", "train.valid_every=2", "train.log_every=1", "conditioning=durations",
        "duration.dim=16", "duration.layers=1"]
ARCH = {"dim": 32, "depth": 2, "heads": 2, "dim_head": 16, "text_dim": 16, "conv_layers": 1}


def test_alignment_segments_become_positions_of_the_bounded_tokens():
    tokens = ["h", "a", " ", "b", "i"]
    segments = [("h", 0.10, 0.20), ("a", 0.20, 0.35), ("b", 0.45, 0.50), ("i", 0.50, 0.70)]
    counts = token_durations(tokens, segments, rate=20.0, length=20)
    # [lead, h, a, space (the 0.35-0.45 gap), b, i, trail] at 20 positions a second; they tile the 20 positions
    assert counts == [2, 2, 3, 2, 1, 4, 6] and sum(counts) == 20 and len(counts) == len(bounded(tokens))
    with pytest.raises(DataError, match="a.jsonl: u1: its 3 segments are not the text's 4 units"):
        token_durations(tokens, segments[:3], 20.0, 20, where="a.jsonl: u1")
    with pytest.raises(DataError, match="differ at unit 2"):
        token_durations(tokens, [segments[0], ("x", 0.2, 0.35), *segments[2:]], 20.0, 20)


def test_expand_spreads_ids_over_frames_after_an_offset():
    ids = torch.tensor([[0, 5, 6, 0], [0, 7, 0, -1]])
    durations = torch.tensor([[1, 2, 1, 0], [0, 3, 1, 9]])  # the padded token's 9 is ignored
    frames = expand(ids, durations, offset=torch.tensor([2, 0]))
    assert frames.tolist() == [[-1, -1, 0, 5, 5, 6], [7, 7, 7, 0, -1, -1]]
    seconds = torch.tensor([0.013, 0.013, 0.013, 0.013])
    positions = positions_from_seconds(seconds, 100.0)
    assert int(positions.sum()) == 5 and positions.tolist() == [1, 2, 1, 1]  # rounded running total, no drift


def _model(**extra) -> TTSModel:
    config = TTSConfig(arch=ARCH, units="phonemes", vocab=[" ", "a", "b", "c"], latent_dim=8, frame_rate=20.0,
                       conditioning="durations", duration={"dim": 16, "layers": 1, "max_rate_ratio": 10.0}, **extra)
    return TTSModel(config)


def test_durations_model_trains_both_parts_and_generates_the_planned_length():
    torch.manual_seed(0)
    model = _model()
    text = torch.tensor([[0, 1, 2, 0, 3, 0], [0, 3, 0, -1, -1, -1]])
    durations = torch.tensor([[2, 3, 4, 0, 5, 6], [1, 6, 3, 0, 0, 0]])
    latents = torch.randn(2, 20, 8)
    loss, details = model(latents, text, torch.tensor([20, 10]), token_durations=durations)
    assert torch.isfinite(loss) and float(details["duration_loss"]) > 0
    torch.testing.assert_close(loss, details["flow_loss"] + details["duration_loss"])
    loss.backward()
    assert model.duration.head.weight.grad.abs().sum() > 0  # the predictor learns in the same step
    assert model.transformer.text_embed.text_embed.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="per-token durations"):
        model(latents, text, torch.tensor([20, 10]))

    model.eval()
    plan = model.plan_durations(text[:1], text[:1], prompt_seconds=1.0)
    assert plan.shape == (1, 6) and int(plan.sum()) == 20  # the prompt's pace: its own text took 1 s = 20 frames
    assert int(model.plan_durations(text[:1], seconds=2.0).sum()) == 40
    prompt = torch.randn(1, 7, 8)
    result = model.generate(prompt, text[:1], None, token_durations=plan, steps=2, seed=0)
    assert result.out.shape == (1, 27, 8) and int(result.durations[0]) == 27
    torch.testing.assert_close(result.out[:, :7], prompt)
    clone = TTSModel.from_config(json.loads(json.dumps(model.info())))
    assert clone.config == model.config and clone.duration is not None


def test_only_the_infilled_span_sees_text():
    """Frames outside the masked span carry no text (-1), as the prompt's frames at generation: changing the
    text there does not change the loss."""
    torch.manual_seed(0)
    model = _model().eval()
    latents = torch.randn(1, 20, 8)
    draws = {"frac": torch.tensor([0.5]), "u": torch.tensor([1.0]), "x0": torch.randn(1, 20, 8),
             "time": torch.tensor([0.5]), "drop_audio_cond": False, "drop_text": False}
    text_a = torch.tensor([[0, 1, 2, 3, 0]])
    text_b = torch.tensor([[0, 3, 3, 3, 0]])
    first = torch.tensor([[0, 4, 4, 6, 6]])  # the span is frames 10..19: tokens 3 and 4 (and the last space)
    a, _ = model(latents, text_a, torch.tensor([20]), draws=draws, token_durations=first)
    b, _ = model(latents, text_b, torch.tensor([20]), draws=draws, token_durations=first)
    c, _ = model(latents, torch.tensor([[0, 1, 2, 1, 0]]), torch.tensor([20]), draws=draws, token_durations=first)
    flow = [float(x) - float(model.duration_loss(t, first)) for x, t in
            ((a, text_a), (b, text_b), (c, torch.tensor([[0, 1, 2, 1, 0]])))]
    assert flow[0] == pytest.approx(flow[1], abs=1e-6)  # tokens 1-2 lie before the span
    assert flow[0] != pytest.approx(flow[2], abs=1e-6)  # token 3 lies inside it


@pytest.fixture(scope="module")
def aligned_store(demo_corpus, model_dir, tiny_ctc_judge, tmp_path_factory):
    root = tmp_path_factory.mktemp("durations")
    encode_to_store(load(model_dir, device="cpu"), demo_corpus / "manifest.jsonl", root / "latents", progress=False)
    assert main(["judge", "align", str(tiny_ctc_judge), str(demo_corpus / "manifest.jsonl"),
                 str(root / "alignments.jsonl")]) == 0
    return root


@pytest.fixture(scope="module")
def trained(aligned_store, tmp_path_factory):
    run = tmp_path_factory.mktemp("tts_durations") / "run"
    assert main(["train", "tts/tiny_wave_vae", f"data.latents={aligned_store / 'latents'}", f"run_dir={run}",
                 f"data.alignments={aligned_store / 'alignments.jsonl'}", "train.max_steps=2", *TINY]) == 0
    return run


def test_recipe_trains_resumes_exactly_and_speaks(trained, aligned_store, demo_corpus, tmp_path, capsys):
    meta = json.loads((trained / "checkpoints/step-00000002/config.json").read_text())
    assert meta["config"]["conditioning"] == "durations" and meta["config"]["duration"]["dim"] == 16
    weights = load_file(str(trained / "checkpoints/step-00000002/model.safetensors"))
    assert any(k.startswith("duration.") for k in weights)  # the predictor travels with the model
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "tensorboard"))
    events.Reload()
    assert {"train/flow_loss", "train/duration_loss", "valid/duration_loss"} <= set(events.Tags()["scalars"])
    assert main(["train", "--resume", str(trained), "train.max_steps=4"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "tts/tiny_wave_vae", f"data.latents={aligned_store / 'latents'}", f"run_dir={straight}",
                 f"data.alignments={aligned_store / 'alignments.jsonl'}", "train.max_steps=4", *TINY]) == 0
    a = load_file(str(trained / "checkpoints/step-00000004/training.safetensors"))
    b = load_file(str(straight / "checkpoints/step-00000004/training.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    from semlat.data.manifest import Manifest

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    out = tmp_path / "speech.wav"
    argv = ["tts", str(trained), str(out), "--text", "the cat sat", "--prompt", str(manifest.audio_path(0)),
            "--prompt-text", manifest[0].text, "--steps", "2", "--seed", "3", "--device", "cpu", "--seconds", "0.5"]
    assert main(argv) == 0
    from semlat.audio import probe_audio

    assert probe_audio(out).frames == 20 * 400  # 0.5 s = 20 frames at 40 Hz, the durations scaled to it
    assert main([*argv[:-2]]) == 0  # the model's own durations at the prompt's pace


def test_bad_alignments_are_one_line_errors(aligned_store, tmp_path, capsys):
    store = aligned_store / "latents"
    base = ["train", "tts/tiny_wave_vae", f"data.latents={store}", "train.max_steps=1", *TINY]
    assert main([*base, f"run_dir={tmp_path / 'a'}", "data.alignments=null"]) == 1
    assert "conditioning: durations needs data.alignments" in capsys.readouterr().err
    rows = [json.loads(line) for line in (aligned_store / "alignments.jsonl").read_text().splitlines()]
    shifted = tmp_path / "shifted.jsonl"  # another utterance's segments under each id: not the store's phonemes
    shifted.write_text("".join(json.dumps({"id": r["id"], "segments": s["segments"]}) + "\n"
                               for r, s in zip(rows, rows[1:] + rows[:1], strict=True)))
    assert main([*base, f"run_dir={tmp_path / 'b'}", f"data.alignments={shifted}"]) == 1
    err = capsys.readouterr().err
    assert f"{shifted}: " in err and "segments are not the text's" in err and "Traceback" not in err
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "nope.wav", "segments": [["a", 0.0, 0.1]]}) + "\n")
    assert main([*base, f"run_dir={tmp_path / 'c'}", f"data.alignments={other}"]) == 1
    assert "aligns none of the" in capsys.readouterr().err
    assert not (tmp_path / "b" / "checkpoints").exists() and not (tmp_path / "c" / "checkpoints").exists()


def _ddp_config(store, alignments, run_dir):
    from semlat.configs import builtin_config
    from semlat.training.recipes import load_recipe

    return load_recipe(builtin_config("tts/tiny_wave_vae"), [f"data.latents={store}", f"run_dir={run_dir}",
                                                             f"data.alignments={alignments}", "train.max_steps=2",
                                                             *TINY])


@pytest.mark.slow
def test_ddp_two_processes(aligned_store, tmp_path):
    import functools

    from conftest import check_recipe_ddp

    check_recipe_ddp(functools.partial(_ddp_config, str(aligned_store / "latents"),
                                       str(aligned_store / "alignments.jsonl")), tmp_path)


def test_batched_list_equals_row_by_row_with_durations(trained, demo_corpus, tmp_path):
    from test_tts import check_batched_list_equals_row_by_row

    check_batched_list_equals_row_by_row(trained, demo_corpus, tmp_path)


@pytest.fixture(scope="module")
def aligned_shards(aligned_store, demo_corpus, model_dir, tmp_path_factory):
    """The demo corpus encoded with its alignments (``semlat encode --alignments``; one utterance left unaligned),
    then written as a store of many shards: each item's segments travel in its shard's header."""
    from conftest import reshard_store

    root = tmp_path_factory.mktemp("aligned_shards")
    rows = (aligned_store / "alignments.jsonl").read_text().splitlines()
    partial = root / "alignments.jsonl"
    partial.write_text("\n".join(rows[1:]) + "\n")
    assert main(["encode", str(model_dir), str(demo_corpus / "manifest.jsonl"), str(root / "store"),
                 "--alignments", str(partial), "--device", "cpu"]) == 0
    return reshard_store(root / "store", root / "shards"), json.loads(rows[0])["id"]


def test_store_carried_alignments_stream_and_resume_exactly(aligned_store, aligned_shards, tmp_path, capsys):
    """Durations from the store items' own segments: the same token durations as from the alignment file, a
    streamed run (data.stream, no data.alignments) trains the duration predictor from them, and resumes exactly."""
    from semlat.configs import builtin_config
    from semlat.data.store import TensorStore
    from semlat.training.recipes import load_recipe
    from semlat.training.trainer import Trainer

    shards, unaligned_id = aligned_shards
    from semlat.data.store_stream import StoreStream

    store = TensorStore(shards)
    assert len(StoreStream(shards).shards) > 2 and store.index["unaligned"] == 1
    carried = {item["id"]: item.get("segments") for item in store.items}
    assert carried[unaligned_id] is None and sum(s is not None for s in carried.values()) == len(carried) - 1

    def trainer(overrides):
        cls, config = load_recipe(builtin_config("tts/tiny_wave_vae"), [*TINY, "train.max_steps=1", *overrides])
        return Trainer(config, cls)

    from_file = trainer([f"data.latents={aligned_store / 'latents'}", f"run_dir={tmp_path / 'f'}",
                         f"data.alignments={aligned_store / 'alignments.jsonl'}"])
    from_store = trainer([f"data.latents={shards}", f"run_dir={tmp_path / 's'}", "data.alignments=null"])
    try:
        assert from_store.recipe.durations and unaligned_id not in from_store.recipe.durations
        assert from_store.recipe.durations == {k: v for k, v in from_file.recipe.durations.items()
                                               if k != unaligned_id}
    finally:
        from_file.close()
        from_store.close()
    assert "1 item(s)" in capsys.readouterr().out  # the unaligned utterance is counted, not silently dropped

    base = ["train", "tts/tiny_wave_vae", f"data.latents={shards}", "data.stream=true", "data.alignments=null", *TINY,
            "train.checkpoint_every=100"]
    assert main([*base, f"run_dir={tmp_path / 'a'}", "train.max_steps=4"]) == 0
    assert main([*base, f"run_dir={tmp_path / 'b'}", "train.max_steps=2"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "train.max_steps=4"]) == 0
    a = load_file(str(tmp_path / "a/checkpoints/step-00000004/training.safetensors"))
    b = load_file(str(tmp_path / "b/checkpoints/step-00000004/training.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "a" / "tensorboard"))
    events.Reload()
    assert all(e.value > 0 for e in events.Scalars("train/duration_loss"))


def test_store_carried_alignment_errors(aligned_store, demo_corpus, model_dir, tmp_path, capsys):
    store = aligned_store / "latents"  # encoded without --alignments
    base = ["train", "tts/tiny_wave_vae", "train.max_steps=1", *TINY]
    assert main([*base, f"data.latents={store}", f"run_dir={tmp_path / 'a'}", "data.stream=true",
                 f"data.alignments={aligned_store / 'alignments.jsonl'}"]) == 1
    assert "semlat encode --alignments" in capsys.readouterr().err
    assert main(["encode", str(model_dir), str(demo_corpus / "wavs"), str(tmp_path / "s"), "--device", "cpu",
                 "--alignments", str(aligned_store / "alignments.jsonl")]) == 1
    assert "--alignments needs a manifest" in capsys.readouterr().err
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "nope.wav", "segments": [["a", 0.0, 0.1]]}) + "\n")
    assert main(["encode", str(model_dir), str(demo_corpus / "manifest.jsonl"), str(tmp_path / "t"), "--device", "cpu",
                 "--alignments", str(other)]) == 1
    assert f"{other}: aligns none of the" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists() and not (tmp_path / "a" / "checkpoints").exists()
