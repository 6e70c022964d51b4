"""Autoregressive latent TTS: the model's cache gives what the full pass gives, padding changes nothing, generation
stops (or is cut and says so), the ar_tts recipe trains/exports/resumes on the tts recipe's data, `semlat tts`
runs it, and streaming writes the same audio as the whole decode."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from semlat.cli import main
from semlat.errors import ConfigError
from semlat.generation.ar_tts import ARTTSConfig, ARTTSModel, KVCache, left_pad

TINY = ["model.dim=32", "model.depth=2", "model.heads=2", "model.dim_head=16", "model.head_dim=32",
        "model.head_depth=2", "model.text_conv_layers=1", "data.max_frames=400", "data.batch_size=4",
        "train.progress=false", "train.checkpoint_every=2", "train.valid_every=2", "train.log_every=1"]


def _model(**overrides) -> ARTTSModel:
    torch.manual_seed(0)
    config = ARTTSConfig(vocab=[" ", "a", "b", "c"], latent_dim=6, frame_rate=40.0, dim=32, depth=2, heads=2,
                         dim_head=16, head_dim=32, head_depth=2, text_conv_layers=1, **overrides)
    return ARTTSModel(config).eval()


def _teacher_forced(model: ARTTSModel, latents: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """z of every patch from one full pass (the training layout, clean context)."""
    patches = model.patches(model.normalize(latents))
    h_text, valid = model.embed_text(text)
    h = torch.cat([h_text, model.bos.expand(len(text), 1, -1), model.audio_in(patches[:, :-1])], dim=1)
    full_valid = torch.cat([valid, torch.ones(len(text), patches.shape[1], dtype=torch.bool)], dim=1)
    return model.run(h, full_valid, text.shape[1])[:, text.shape[1]:]


@pytest.mark.parametrize("patch", [1, 2])
def test_kv_cache_steps_equal_the_full_pass(patch):
    model = _model(patch=patch)
    latents, text = torch.randn(1, 8, 6), torch.tensor([[1, 2, 3, 0, 2]])
    full = _teacher_forced(model, latents, text)
    patches = model.patches(model.normalize(latents))
    cache = KVCache(model.config.depth)
    h_text, valid = model.embed_text(text)
    z = [model.run(torch.cat([h_text, model.bos.expand(1, 1, -1)], 1),
                   torch.cat([valid, torch.ones(1, 1, dtype=torch.bool)], 1), text.shape[1], cache)[:, -1]]
    for p in range(patches.shape[1] - 1):
        z.append(model.run(model.audio_in(patches[:, p:p + 1]), torch.ones(1, 1, dtype=torch.bool), text.shape[1],
                           cache)[:, -1])
    torch.testing.assert_close(torch.stack(z, 1), full, atol=1e-5, rtol=1e-5)


def test_a_row_computes_the_same_alone_and_padded_in_a_batch():
    model = _model()
    short_text, long_text = torch.tensor([[1, 2]]), torch.tensor([[3, 1, 2, 3, 1]])
    short, long = torch.randn(1, 5, 6), torch.randn(1, 9, 6)
    text = torch.tensor([[1, 2, -1, -1, -1], [3, 1, 2, 3, 1]])
    assert left_pad(text)[0].tolist() == [[-1, -1, -1, 1, 2], [3, 1, 2, 3, 1]]
    latents = torch.zeros(2, 9, 6)
    latents[0, :5], latents[1] = short[0], long[0]
    lens = torch.tensor([5, 9])
    draws = {"drop": torch.zeros(2, dtype=torch.bool), "sigma": torch.zeros(2), "noise": torch.zeros(2, 9, 6)}
    normed = model.normalize(latents) * (torch.arange(9)[None] < lens[:, None])[..., None]
    batch_z = _teacher_forced(model, latents, text)  # (padding rows of the short item are never read below)
    torch.testing.assert_close(batch_z[:1, :5], _teacher_forced(model, short, short_text), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch_z[1:], _teacher_forced(model, long, long_text), atol=1e-5, rtol=1e-5)
    loss, details = model.loss(normed, text, lens, draws=draws)
    assert torch.isfinite(loss) and details["patches"] == 14
    loss.backward()
    assert model.head.proj_out.weight.grad.abs().sum() > 0 and model.blocks[0].attn.to_qkv.weight.grad.abs().sum() > 0
    assert model.text_embed.weight.grad.abs().sum() > 0 and model.stop.weight.grad.abs().sum() > 0


def test_generation_streams_its_frames_stops_at_the_limit_and_is_seeded():
    model = _model(patch=2)
    with torch.no_grad():  # a stop classifier that never ends: the limit must
        model.stop.bias.copy_(torch.tensor([10.0, -10.0, -10.0]))
    prompt, text = torch.randn(1, 7, 6), torch.tensor([[1, 2, 3]])
    seen = []
    result = model.generate(prompt, text, max_frames=9, steps=3, seed=4, on_frames=seen.append)
    assert result.prompt_frames == 6 and not result.stopped  # the prompt is cut at its start to whole patches
    assert result.out.shape == (1, 6 + 9, 6) and sum(f.shape[1] for f in seen) == 9
    torch.testing.assert_close(torch.cat(seen, 1), result.out[:, 6:])
    torch.testing.assert_close(result.out[:, :6], prompt[:, 1:])
    again = model.generate(prompt, text, max_frames=9, steps=3, seed=4)
    assert torch.equal(again.out, result.out)
    with torch.no_grad():  # "ends after frame 1 of this patch" at once
        model.stop.bias.copy_(torch.tensor([-10.0, 10.0, -10.0]))
    ended = model.generate(prompt, text, max_frames=9, steps=3, seed=4, guidance=1.0)
    assert ended.stopped and ended.out.shape[1] == 6 + 1 and ended.steps == 1
    with pytest.raises(ConfigError, match="context"):
        _model(max_positions=8).generate(prompt, torch.tensor([[1, 2, 3, 1]]), steps=2)
    with pytest.raises(ConfigError, match="max_positions must be >= 1"):
        _model(max_positions=0)


def test_chunk_stream_equals_the_chunk_loop_and_the_joiner_equals_crossfade():
    from semlat.chunking import ChunkStream, run_chunked
    from semlat.generation.synthesis import _Joiner, crossfade_concat

    def fn(x, seed=None):  # a receptive field of 2 frames each side, 3 output elements per frame
        smooth = torch.nn.functional.avg_pool1d(x, 5, stride=1, padding=2, count_include_pad=False)
        return smooth.repeat_interleave(3, dim=-1) + (0 if seed is None else seed % 7)

    source = torch.randn(1, 2, 57)
    for chunk, context, overlap, frames in [(8, 3, 0, 57), (8, 3, 2, 57), (10, 4, 3, 23), (10, 4, 0, 13)]:
        whole = run_chunked(fn, source[..., :frames], frames=frames, chunk=chunk, context=context, out_hop=3,
                            overlap=overlap, seed=5)
        stream = ChunkStream(fn, chunk=chunk, context=context, out_hop=3, overlap=overlap, seed=5)
        pieces = [stream.push(source[..., a:min(frames, a + 3)]) for a in range(0, frames, 3)] + [stream.finish()]
        assert torch.equal(torch.cat([p for p in pieces if p is not None], dim=-1), whole), (chunk, overlap, frames)
    pieces = [torch.randn(n) for n in (50, 7, 30, 3)]
    out = []
    joiner = _Joiner(10, out.append)
    for i, piece in enumerate(pieces):
        if i:
            joiner.next_piece()
        for a in range(0, len(piece), 4):
            joiner.add(piece[a:a + 4])
    joiner.close()
    torch.testing.assert_close(torch.cat(out), crossfade_concat(pieces, 10))


# ------------------------------------------------------------------------------------------------ the recipe
@pytest.fixture(scope="module")
def store(demo_corpus, model_dir, tmp_path_factory):
    from semlat.inference import encode_to_store, load

    out = tmp_path_factory.mktemp("ar_latents") / "vae"
    encode_to_store(load(model_dir, device="cpu"), demo_corpus / "manifest.jsonl", out, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    run = tmp_path_factory.mktemp("ar_tts") / "run"
    assert main(["train", "ar_tts/tiny_wave_vae", f"data.latents={store}", f"run_dir={run}", "train.max_steps=2",
                 *TINY]) == 0
    return run


def test_recipe_trains_exports_and_resumes_exactly(trained, store, tmp_path):
    from safetensors.torch import load_file

    meta = json.loads((trained / "checkpoints/step-00000002/config.json").read_text())
    assert meta["model_type"] == "ar_tts" and meta["frame_rate"] == 40.0 and meta["config"]["latent_dim"] == 16
    assert meta["config"]["units"] == "phonemes" and meta["config"]["dim"] == 32
    stats = json.loads((store / "index.json").read_text())["stats"]
    weights = load_file(str(trained / "checkpoints/step-00000002/model.safetensors"))
    torch.testing.assert_close(weights["latent_mean"], torch.tensor(stats["mean"]))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/stop_loss", "train/flow_loss", "valid/stop_loss", "valid/flow_loss"} <= tags, tags
    assert main(["train", "--resume", str(trained), "train.max_steps=4"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "ar_tts/tiny_wave_vae", f"data.latents={store}", f"run_dir={straight}",
                 "train.max_steps=4", *TINY]) == 0
    a = load_file(str(trained / "checkpoints/step-00000004/training.safetensors"))
    b = load_file(str(straight / "checkpoints/step-00000004/training.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tts_command_runs_the_ar_model_and_streams_the_same_audio(trained, demo_corpus, tmp_path, capsys):
    from semlat.data.manifest import Manifest
    from semlat.generation.synthesis import AR_MIN_FRACTION, load_tts, synthesize, synthesize_to_file

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    prompt, prompt_text = manifest.audio_path(0), manifest[0].text
    out, streamed = tmp_path / "speech.wav", tmp_path / "streamed.wav"
    argv = ["tts", str(trained), str(out), "--text", "the cat sat", "--prompt", str(prompt), "--prompt-text",
            prompt_text, "--steps", "2", "--seed", "7", "--device", "cpu", "--seconds", "1.5"]
    assert main(argv) == 0
    assert "first audio after" in capsys.readouterr().out and sf.info(out).samplerate == 16000
    tts = load_tts(trained, "cpu")
    with torch.no_grad():  # a model that never ends its speech: the limit must, and the file says so
        tts.model.stop.bias.copy_(torch.tensor([10.0, -10.0]))
    options = {"text": "the cat sat", "prompt": prompt, "prompt_text": prompt_text, "steps": 2, "seed": 7,
               "seconds": 1.5}
    _, report = synthesize_to_file(tts, out, **options)
    _, streamed_report = synthesize_to_file(tts, streamed, stream=0.25, **options)
    whole, rate = sf.read(out)
    piecewise, _ = sf.read(streamed)
    assert rate == 16000 and len(whole) == len(piecewise) == 60 * 400  # 1.5 s at 40 Hz, the limit
    assert abs(whole - piecewise).max() < 2e-3  # the decoder's chunking tolerance (16-bit files)
    assert report.stopped == streamed_report.stopped == [False]
    assert json.loads(sf.SoundFile(streamed).comment) == {"semlat_tts": {"stopped": [False]}}
    assert streamed_report.first_audio_seconds < streamed_report.wall_seconds  # audio came before the end
    tts = load_tts(trained, "cpu")
    with torch.no_grad():  # a model that ends at once: its stop is not heard before half F5's ratio rule
        tts.model.stop.bias.copy_(torch.tensor([-10.0, 10.0]))
    options.pop("seconds")
    _, early = synthesize_to_file(tts, out, **options)
    ratio = sf.info(prompt).duration / len(prompt_text.encode()) * len(b"the cat sat")
    assert early.stopped == [True]
    assert abs(early.audio_seconds - AR_MIN_FRACTION * ratio) <= 1.5 / 40 + 1e-3
    with pytest.raises(ConfigError, match="keeps its own pace"):
        synthesize(tts, "hello", prompt, prompt_text, speed=1.5)
    with pytest.raises(ConfigError, match="duration-model is for"):
        load_tts(trained, "cpu", duration=str(trained))
    code = main(["tts", str(trained), str(tmp_path / "x.wav"), "--text", "", "--prompt", str(prompt),
                 "--prompt-text", "hi", "--device", "cpu"])
    assert code == 1 and not (tmp_path / "x.wav").exists()


def _ddp_config(store: str, extra: tuple[str, ...], run_dir: str):
    from semlat.configs import builtin_config
    from semlat.training.recipes import load_recipe

    return load_recipe(builtin_config("ar_tts/tiny_wave_vae"), [f"data.latents={store}", f"run_dir={run_dir}",
                                                                "train.max_steps=2", *TINY, *extra])


@pytest.mark.slow
def test_ddp_two_processes(store, tmp_path):
    import functools

    from conftest import check_recipe_ddp

    check_recipe_ddp(functools.partial(_ddp_config, str(store), ()), tmp_path)


# ------------------------------------------------------------------------------------------------ durations
def _aligned_model(patch: int) -> ARTTSModel:
    return _model(patch=patch, conditioning="durations", frame_split=2,
                  duration={"dim": 16, "layers": 1, "max_rate_ratio": 10.0})


@pytest.mark.parametrize("patch", [1, 2])
def test_durations_generation_equals_the_full_pass_and_speaks_the_planned_length(patch):
    """Each generated patch is predicted from the aligned text of *that* patch (the prompt's carry none): the z the
    head saw while generating with the cache equals the training layout's full pass over the result."""
    model = _aligned_model(patch)
    text = torch.tensor([[0, 1, 2, 0, 3, 0]])
    planned = torch.tensor([[1, 3, 2, 0, 4, 1]])  # 11 positions at 2 a frame: 6 frames
    prompt = torch.randn(1, 5, 6)
    seen = []
    hook = model.head.register_forward_hook(lambda module, args, out: seen.append(args[2].clone()))
    result = model.generate(prompt, text, token_durations=planned, steps=2, guidance=1.0, seed=3)
    hook.remove()
    kept = model.prompt_frames(5)
    assert result.out.shape[1] == kept + 6 and result.prompt_frames == kept and result.stopped is None
    z_generated = torch.cat(seen[::2])  # (2 head steps per patch, one z)
    k, s = patch, 2 * patch
    patches = model.patches(model.normalize(result.out))
    with torch.no_grad():
        features, _ = model.embed_text(text, left=False)
        generated = patches.shape[1] - kept // k
        index = torch.cat([torch.full((1, kept // k * s), -1), model.token_index(text, planned, generated * s)], 1)
        h = torch.cat([model.bos.expand(1, 1, -1), model.audio_in(patches[:, :-1])], 1)
        h = h + model.aligned_text(features, index, patches.shape[1])
        z_full = model.run(h, torch.ones(1, patches.shape[1], dtype=torch.bool), 0)[0, kept // k:]
    torch.testing.assert_close(z_generated, z_full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="per-token durations"):
        model.generate(prompt, text, steps=1)
    with pytest.raises(ConfigError, match="given no time"):
        model.generate(prompt, text, token_durations=torch.zeros_like(planned), steps=1)
    with pytest.raises(ConfigError, match="more than the .* context leaves after the prompt"):
        model.generate(prompt, text, token_durations=planned * 2000, steps=1)


def test_durations_loss_hears_the_text_only_where_it_is_aligned():
    """The loss trains the duration predictor too; the text matters to the rest, except where it is dropped."""
    model = _aligned_model(1)
    latents = torch.randn(2, 8, 6)
    lens = torch.tensor([8, 6])
    text = torch.tensor([[0, 1, 2, 0, 3, 0], [0, 3, 1, 0, -1, -1]])
    planned = torch.tensor([[2, 4, 3, 1, 5, 1], [3, 3, 4, 2, 0, 0]])  # 16 and 12 positions: every frame
    other = torch.tensor([[0, 2, 1, 0, 2, 0], [0, 2, 2, 0, -1, -1]])
    draws = {"drop": torch.tensor([False, False]), "sigma": torch.zeros(2), "noise": torch.zeros(2, 8, 6),
             "t": torch.full((4, 14), 0.5), "x0": torch.randn(4, 14, 6), "prompt": torch.zeros(2)}
    with torch.no_grad():
        loss, details = model(latents, text, lens, draws=draws, token_durations=planned)
        changed, _ = model(latents, other, lens, draws=draws, token_durations=planned)
        dropped = {**draws, "drop": torch.tensor([True, True])}
        a, _ = model(latents, text, lens, draws=dropped, token_durations=planned)
        b, _ = model(latents, other, lens, draws=dropped, token_durations=planned)
        a_flow = float(a - model.duration_loss(text, planned))
        b_flow = float(b - model.duration_loss(other, planned))
    assert float(details["duration_loss"]) > 0
    torch.testing.assert_close(loss, details["flow_loss"] + details["stop_loss"] + details["duration_loss"])
    assert abs(float(loss - changed)) > 1e-4
    assert a_flow == pytest.approx(b_flow, abs=1e-5)  # text dropped: only the duration predictor saw it


@pytest.fixture(scope="module")
def aligned_run(store, demo_corpus, tiny_ctc_judge, tmp_path_factory):
    root = tmp_path_factory.mktemp("ar_durations")
    assert main(["judge", "align", str(tiny_ctc_judge), str(demo_corpus / "manifest.jsonl"),
                 str(root / "alignments.jsonl")]) == 0
    run = root / "run"
    assert main(["train", "ar_tts/tiny_wave_vae", f"data.latents={store}", f"run_dir={run}", "train.max_steps=2",
                 "conditioning=durations", f"data.alignments={root / 'alignments.jsonl'}", "duration.dim=16",
                 "duration.layers=1", *TINY]) == 0
    return run


def test_durations_recipe_trains_and_speaks_at_the_prompts_pace(aligned_run, demo_corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from semlat.data.manifest import Manifest
    from semlat.generation.synthesis import load_tts, synthesize_to_file

    meta = json.loads((aligned_run / "checkpoints/step-00000002/config.json").read_text())
    assert meta["model_type"] == "ar_tts" and meta["config"]["conditioning"] == "durations"
    events = EventAccumulator(str(aligned_run / "tensorboard")).Reload()
    assert {"train/duration_loss", "valid/duration_loss", "valid/stop_loss"} <= set(events.Tags()["scalars"])
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    options = {"text": "the cat sat", "prompt": manifest.audio_path(0), "prompt_text": manifest[0].text,
               "steps": 2, "seed": 7}
    tts = load_tts(aligned_run, "cpu")
    _, report = synthesize_to_file(tts, tmp_path / "a.wav", **options)
    _, faster = synthesize_to_file(tts, tmp_path / "b.wav", speed=2.0, **options)
    _, fixed = synthesize_to_file(tts, tmp_path / "c.wav", seconds=1.0, **options)
    assert report.stopped == faster.stopped == [None]  # the plan, not the stop classifier, set the length
    assert faster.audio_seconds == pytest.approx(report.audio_seconds / 2, abs=2 / 40)
    assert fixed.audio_seconds == pytest.approx(1.0, abs=1 / 40)


@pytest.mark.slow
def test_durations_ddp_two_processes(store, aligned_run, tmp_path):
    """The aligned-text mode under DDP: every parameter (the duration predictor's and the aligned-text
    projection's too) gets a gradient on both ranks, and the weights stay identical."""
    import functools

    from conftest import check_recipe_ddp

    extra = ("conditioning=durations", f"data.alignments={aligned_run.parent / 'alignments.jsonl'}", "duration.dim=16",
             "duration.layers=1")
    check_recipe_ddp(functools.partial(_ddp_config, str(store), extra), tmp_path, ("loss", "duration_loss"))
