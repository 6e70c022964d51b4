"""Latent TTS: the tts recipe trains on a latent store (few steps, resume), and `semlat tts` speaks through
the latent space; the model carries the store's statistics; bad input gets one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from semlat.cli import main
from semlat.errors import AudioError, ConfigError, DataError
from semlat.generation.synthesis import load_tts, synthesize
from semlat.generation.tts import TTSConfig, TTSModel
from semlat.inference import encode_to_store, load

TINY = ["model.dim=32", "model.depth=2", "model.heads=2", "model.dim_head=16", "model.text_dim=16",
        "model.conv_layers=1", "data.max_frames=400", "data.batch_size=4", "train.progress=false",
        "train.checkpoint_every=2", "train.valid_every=2", "train.log_every=1"]


@pytest.fixture(scope="module")
def store(demo_corpus, model_dir, tmp_path_factory):
    """The demo corpus encoded by the tiny random VAE: a latent store with text, phonemes and statistics."""
    out = tmp_path_factory.mktemp("latents") / "vae"
    encode_to_store(load(model_dir, device="cpu"), demo_corpus / "manifest.jsonl", out, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    run = tmp_path_factory.mktemp("tts") / "run"
    assert main(["train", "tts/tiny_wave_vae", f"data.latents={store}", f"run_dir={run}", "train.max_steps=2",
                 *TINY]) == 0
    return run


def test_recipe_trains_exports_and_resumes_exactly(trained, store, tmp_path):
    meta = json.loads((trained / "checkpoints/step-00000002/config.json").read_text())
    assert meta["model_type"] == "tts" and meta["frame_rate"] == 40.0 and meta["latent_dim"] == 16
    assert meta["config"]["units"] == "phonemes" and meta["config"]["vocab"][0] == " "
    weights = load_file(str(trained / "checkpoints/step-00000002/model.safetensors"))
    stats = json.loads((store / "index.json").read_text())["stats"]
    torch.testing.assert_close(weights["latent_mean"], torch.tensor(stats["mean"]))  # carried in the checkpoint
    assert main(["train", "--resume", str(trained), "train.max_steps=4"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "tts/tiny_wave_vae", f"data.latents={store}", f"run_dir={straight}", "train.max_steps=4",
                 *TINY]) == 0
    a = load_file(str(trained / "checkpoints/step-00000004/training.safetensors"))
    b = load_file(str(straight / "checkpoints/step-00000004/training.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # training wall-clock (the convergence experiment's x axis) adds up over the resume
    seconds = [json.loads((trained / f"checkpoints/step-0000000{n}/config.json").read_text())["training"]["train_seconds"]
               for n in (2, 4)]
    assert 0 < seconds[0] < seconds[1]


def test_tts_command_speaks_through_the_latent_space(trained, demo_corpus, tmp_path, capsys):
    from semlat.audio import probe_audio
    from semlat.data.manifest import Manifest

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    prompt = manifest.audio_path(0)
    out = tmp_path / "speech.wav"
    argv = ["tts", str(trained), str(out), "--text", "the cat sat", "--prompt", str(prompt), "--prompt-text",
            manifest[0].text, "--steps", "2", "--seed", "7", "--device", "cpu"]
    assert main(argv) == 0 and "16000 Hz" in capsys.readouterr().out
    info = probe_audio(out)
    assert info.sample_rate == 16000 and info.frames > 0
    again = tmp_path / "again.wav"
    assert main([*argv[:2], str(again), *argv[3:]]) == 0
    assert out.read_bytes() == again.read_bytes()  # same seed, same audio
    tts = load_tts(trained, "cpu")
    fixed = synthesize(tts, "the cat sat", prompt, manifest[0].text, steps=2, seed=1, seconds=0.5)
    assert fixed.shape[-1] == 20 * 400  # 0.5 s = 20 latent frames at 40 Hz, 400 samples each


def test_bad_input_is_one_line_errors(trained, demo_corpus, tmp_path, model_dir):
    from semlat.data.manifest import Manifest

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    tts = load_tts(trained, "cpu")
    prompt = manifest.audio_path(0)
    with pytest.raises(ConfigError, match="--text is empty"):
        synthesize(tts, " ", prompt, "hello")
    tts.model.config.vocab = [" ", "zz"]  # a vocabulary that holds none of the text's units
    with pytest.raises(DataError, match="no token of"):
        synthesize(tts, "hello", prompt, "hello")
    tts = load_tts(trained, "cpu")
    silent = tmp_path / "silent.wav"
    import soundfile as sf

    sf.write(silent, torch.zeros(16000).numpy(), 16000)
    with pytest.raises(AudioError, match="silent"):
        synthesize(tts, "hello", silent, "hello")
    with pytest.raises(AudioError, match="no such file"):
        synthesize(tts, "hello", tmp_path / "missing.wav", "hello")
    # a latent space of another size than the one the model was trained on
    from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
    from semlat.checkpoints import save_model
    from semlat.config import to_dict

    other = tmp_path / "other"
    config = WaveVAEConfig.tiny(latent_dim=8)
    save_model(other, WaveVAE(config), model_type="wave_vae", config=to_dict(config))
    with pytest.raises(ConfigError, match="trained on 16 x 40 Hz"):
        load_tts(trained, "cpu", space=str(other))
    code = main(["tts", str(trained), str(tmp_path / "x.wav"), "--text", "", "--prompt", str(prompt),
                 "--prompt-text", "hi", "--device", "cpu"])
    assert code == 1 and not (tmp_path / "x.wav").exists()


def test_model_config_round_trip_and_generation_shapes():
    model = TTSModel(TTSConfig(arch={"dim": 32, "depth": 2, "heads": 2, "dim_head": 16, "text_dim": 16,
                                     "conv_layers": 1}, vocab=[" ", "a", "b"], latent_dim=4, frame_rate=10.0))
    clone = TTSModel.from_config(json.loads(json.dumps(model.info())))
    assert clone.config == model.config
    model.set_stats(torch.full((4,), 2.0), torch.full((4,), 3.0))
    prompt = torch.randn(1, 5, 4) * 3 + 2
    result = model.eval().generate(prompt, torch.tensor([[1, 2, 0, 1]]), torch.tensor([12]), steps=2, seed=0)
    assert result.out.shape == (1, 12, 4)
    torch.testing.assert_close(result.out[:, :5], prompt)  # prompt frames come back as they went in


def test_frame_split_is_lossless_and_lowers_the_duration_floor():
    """frame_split k: each latent frame is k backbone positions of D / k channels; generation comes back in
    latent frames, and the sampler's floor (a position per text token) needs k times fewer frames."""
    arch = {"dim": 32, "depth": 2, "heads": 2, "dim_head": 16, "text_dim": 16, "conv_layers": 1}
    with pytest.raises(ConfigError, match="frame_split must divide"):
        TTSModel(TTSConfig(arch=arch, vocab=[" ", "a"], latent_dim=8, frame_split=3))
    model = TTSModel(TTSConfig(arch=arch, vocab=[" ", "a", "b"], latent_dim=8, frame_rate=5.0, frame_split=4)).eval()
    assert model.transformer.input_embed.proj.in_features == 2 * 8 // 4 + 16  # noisy + cond (2 channels) + text
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(model.merge(model.split(x)), x)
    assert model.split(x)[0, :4].flatten().tolist() == x[0, 0].tolist()  # frame 0's channels, in order
    text = torch.tensor([[1, 2] * 10])  # 20 tokens
    result = model.generate(torch.randn(1, 2, 8), text, torch.tensor([3]), steps=1, seed=0)
    assert result.out.shape == (1, 6, 8) and int(result.durations[0]) == 6  # ceil(21 / 4) frames, not 21
    loss, _ = model(x, torch.tensor([[1, 2], [2, -1]]), torch.tensor([3, 2]))
    assert torch.isfinite(loss)


def _space_folder(kind: str, fixtures, tmp_path):
    """A tiny random (or fixture) latent space of each kind, saved as a model folder."""
    from semlat.autoencoders.mel_dcae import MelDCAE, MelDCAEConfig
    from semlat.autoencoders.mel_space import MelDCAESpace
    from semlat.checkpoints import save_model
    from semlat.vocoders.griffin_lim import GriffinLimVocoder

    torch.manual_seed(0)
    if kind == "mel_dcae":
        space = MelDCAESpace(MelDCAE(MelDCAEConfig.tiny()), GriffinLimVocoder())
        return save_model(tmp_path / kind, space, model_type="mel_dcae", config=space.config)
    if kind == "griffin_lim":  # the demo's mel space: BigVGAN's 22.05 kHz 80-band log-mel, no weights
        space = GriffinLimVocoder()
        return save_model(tmp_path / kind, space, model_type="griffin_lim", config=space.config)
    if kind == "vocos":
        from semlat.vocoders.import_vocos import import_vocos

        return import_vocos(fixtures / "vocos/vocos_tiny.safetensors", tmp_path / kind,
                            config=fixtures / "vocos/vocos_tiny_config.json")
    from semlat.vocoders.import_bigvgan import import_bigvgan

    state = load_file(str(fixtures / "bigvgan/generator_tiny.safetensors"))
    torch.save({"generator": state}, tmp_path / "g.pt")
    return import_bigvgan(tmp_path / "g.pt", tmp_path / kind, config=fixtures / "bigvgan/generator_tiny_config.json")


@pytest.mark.parametrize("kind", ["mel_dcae", "bigvgan", "vocos", "griffin_lim"])
def test_tts_runs_end_to_end_on_every_latent_space_type(kind, fixtures, demo_corpus, tmp_path):
    """The same recipe and command on a DC-VAE (5.4 Hz x 80), a BigVGAN mel (86 Hz x 80), a Vocos mel
    (93.75 Hz x 100) and a Griffin-Lim mel (86 Hz x 80); the wave_vae case is the tests above."""
    from semlat.data.manifest import Manifest

    folder = _space_folder(kind, fixtures, tmp_path)
    space = load(folder, device="cpu")
    store = tmp_path / "latents"
    encode_to_store(space, demo_corpus / "manifest.jsonl", store, split="train", progress=False)
    run = tmp_path / "run"
    config = "tts/tiny_mel_dcae" if kind == "mel_dcae" else "tts/tiny_mel"  # the former splits frames in 4
    assert main(["train", config, f"data.latents={store}", f"run_dir={run}", "train.max_steps=1",
                 *TINY, "data.max_frames=4000", "train.checkpoint_every=1"]) == 0
    assert load_tts(run, "cpu").model.config.frame_split == (4 if kind == "mel_dcae" else 1)
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    tts = load_tts(run, "cpu")
    audio = synthesize(tts, "a short test", manifest.audio_path(0), manifest[0].text, steps=1, seed=0, seconds=0.5)
    hop = round(space.output_rate / space.frame_rate)
    # at least the asked 0.5 s; more where F5's rule (a frame per text token) needs more frames (5.4 Hz)
    assert audio.shape[-1] % hop == 0 and audio.shape[-1] >= round(0.5 * space.frame_rate) * hop
    assert torch.isfinite(audio).all() and audio.abs().max() > 0


def _ddp_config(store, run_dir):
    from semlat.configs import builtin_config
    from semlat.training.recipes import load_recipe

    return load_recipe(builtin_config("tts/tiny_wave_vae"), [f"data.latents={store}", f"run_dir={run_dir}",
                                                    "train.max_steps=2", *TINY])


@pytest.mark.slow
def test_ddp_two_processes(store, tmp_path):
    """Two gloo processes: each rank takes its own frame-budget batches; DDP keeps the weights identical."""
    import functools

    from conftest import check_recipe_ddp

    check_recipe_ddp(functools.partial(_ddp_config, str(store)), tmp_path)


def test_long_text_chunks_and_the_batch_list(trained, demo_corpus, tmp_path, capsys):
    from semlat.data.manifest import Manifest
    from semlat.generation.synthesis import crossfade_concat, split_text

    assert split_text("One two. Three four? Five, six!", 12) == ["One two.", "Three four?", "Five, six!"]
    assert split_text("One two. Three four?", 100) == ["One two. Three four?"]
    joined = crossfade_concat([torch.ones(10), torch.zeros(10)], 4)
    assert joined.shape == (16,) and joined[5] == 1 and joined[-1] == 0 and 0 < float(joined[7]) < 1
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    tts = load_tts(trained, "cpu")
    long_text = " ".join(["the cat sat on the mat."] * 6)
    audio = synthesize(tts, long_text, manifest.audio_path(0), "hi.", steps=1, seed=3)  # 3 bytes of prompt text
    assert audio.ndim == 1 and torch.isfinite(audio).all()  # several chunks, cross-faded
    listing = tmp_path / "items.jsonl"
    rows = [{"prompt": str(manifest.audio_path(i)), "prompt_text": manifest[i].text, "text": "the cat sat",
             "output": f"out/{i}.wav"} for i in range(2)]
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["tts", str(trained), "--list", str(listing), "--steps", "1", "--seed", "0", "--device", "cpu"]) == 0
    assert "wrote 2 file(s)" in capsys.readouterr().out
    assert (tmp_path / "out/0.wav").is_file() and (tmp_path / "out/1.wav").is_file()
    (tmp_path / "bad.tsv").write_text("prompt\ttext\nx.wav\thello\n")
    assert main(["tts", str(trained), "--list", str(tmp_path / "bad.tsv"), "--device", "cpu"]) == 1
    assert "row 1 lacks prompt_text, output" in capsys.readouterr().err


def _librispeech_tree(manifest, root, count):
    """The first ``count`` demo utterances as a LibriSpeech-shaped tree (``1089/134686/1089-134686-000i.flac``);
    returns ``[(utterance id, text)]``."""
    import soundfile as sf

    from semlat.audio.io import load_audio

    ids = []
    for i in range(count):
        utt = f"1089-134686-{i:04d}"
        path = root / "1089" / "134686" / f"{utt}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio, rate = load_audio(manifest.audio_path(i))
        sf.write(str(path), audio[0].numpy(), rate)
        ids.append((utt, manifest[i].text))
    return ids


def test_cross_sentence_protocol_generates_and_scores_each_pair(trained, demo_corpus, tiny_whisper, tmp_path, capsys):
    """`semlat eval cross-sentence` on an F5-style .lst over a LibriSpeech-shaped tree: one generated file per
    pair (the target's real duration with --truth-duration), Whisper WER against the target text, a resume
    that regenerates nothing, and one-line errors for a bad line or missing audio."""
    import soundfile as sf

    from semlat.data.manifest import Manifest

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    root = tmp_path / "test-clean"
    ids = _librispeech_tree(manifest, root, 2)
    lst = tmp_path / "cross.lst"
    lst.write_text("".join(f"{ids[i][0]}\t2.0\t{ids[i][1]}\t{ids[1 - i][0]}\t0.75\t{ids[1 - i][1]}\n" for i in (0, 1)))
    out = tmp_path / "eval"
    args = ["eval", "cross-sentence", str(trained), str(lst), "--librispeech", str(root), "--out", str(out),
            "--asr", f"whisper:{tiny_whisper}", "--steps", "1", "--truth-duration"]
    assert main(args) == 0
    assert "scored 2 of 2 pair(s)" in capsys.readouterr().out
    report = json.loads((out / "scores" / "report.json").read_text())
    assert report["metrics"]["wer"]["judge"].startswith("whisper") and report["data"]["scored"] == 2
    generated = out / "audio" / f"{ids[1][0]}.wav"
    assert sf.info(str(generated)).duration == pytest.approx(0.75, abs=0.05)  # the target's real duration
    assert json.loads((out / "config.json").read_text())["duration"] == "the target's real duration"
    stamp = generated.stat().st_mtime_ns
    assert main(args) == 0 and generated.stat().st_mtime_ns == stamp  # resumes: nothing regenerated
    lst.write_text(f"{ids[0][0]}\t2.0\t{ids[0][1]}\n")
    assert main(args) == 1
    assert "cross.lst:1: expected 6 tab-separated fields" in capsys.readouterr().err
    lst.write_text(f"1089-134686-0009\t2.0\thi\t{ids[0][0]}\t1.0\tyo\n")
    assert main(args) == 1
    assert "prompt audio" in capsys.readouterr().err


def test_semlat_load_gives_a_tts_with_its_latent_space_from_a_run(trained, model_dir):
    import semlat
    from semlat.generation.synthesis import LoadedTTS

    tts = semlat.load(trained, device="cpu", space=str(model_dir))
    assert isinstance(tts, LoadedTTS) and tts.space.latent_dim == 16 and tts.folder.name.startswith("step-")
    with pytest.raises(ConfigError, match="takes no option chunk_seconds"):
        semlat.load(trained, device="cpu", chunk_seconds=3.0)


def _smaller_release(trained, out, drop: int = 3):
    """The trained run's model as a release whose vocabulary lacks its last ``drop`` tokens (a model folder
    with no training weights, as `semlat import f5` writes)."""
    from semlat.checkpoints import read_model_folder, save_model

    weights, meta = read_model_folder(trained / "checkpoints/step-00000002")
    vocab = meta["config"]["vocab"]
    key = "transformer.text_embed.text_embed.weight"
    weights[key] = weights[key][: len(vocab) + 1 - drop]
    config = dict(meta["config"], vocab=vocab[:-drop])
    extra = {k: v for k, v in meta.items() if k not in ("model_type", "config", "semlat_version", "training")}
    return save_model(out, weights, model_type="tts", config=config, extra=extra), vocab[-drop:], weights


def _trainer(overrides):
    from semlat.configs import builtin_config
    from semlat.training.recipes import load_recipe
    from semlat.training.trainer import Trainer

    cls, config = load_recipe(builtin_config("tts/tiny_wave_vae"), overrides)
    return Trainer(config, cls)


def test_fine_tuning_extends_the_vocabulary_and_can_freeze_the_text_encoder(trained, store, tmp_path, model_dir):
    from semlat.errors import CheckpointError

    release, dropped, weights = _smaller_release(trained, tmp_path / "release")
    base = [f"data.latents={store}", *TINY, "train.max_steps=1"]
    trainer = _trainer([*base, f"run_dir={tmp_path / 'ft'}", f"train.init_from={release}"])
    try:
        tokens = trainer.recipe.vocab.tokens
        release_vocab = json.loads((release / "config.json").read_text())["config"]["vocab"]
        assert tokens[: len(release_vocab)] == release_vocab and sorted(tokens[len(release_vocab):]) == sorted(dropped)
        state = trainer.unwrapped("model").state_dict()
        key = "transformer.text_embed.text_embed.weight"
        assert state[key].shape[0] == len(tokens) + 1
        assert torch.equal(state[key][: len(release_vocab) + 1], weights[key])  # old ids keep their embeddings
        assert all(torch.equal(state[k], v) for k, v in weights.items() if k != key)
        trainer.fit()
    finally:
        trainer.close()
    meta = json.loads((tmp_path / "ft/checkpoints/step-00000001/config.json").read_text())
    assert meta["config"]["vocab"] == tokens and meta["training"]["init_from"] == {"model": str(release)}

    with pytest.raises(ConfigError, match=r"freeze_text: the store has 3 token\(s\) the release lacks"):
        _trainer([*base, f"run_dir={tmp_path / 'fz'}", f"train.init_from={release}", "freeze_text=true"])
    trainer = _trainer([*base, f"run_dir={tmp_path / 'frozen'}", f"train.init_from={trained}", "freeze_text=true"])
    before = {k: v.clone() for k, v in trainer.unwrapped("model").state_dict().items()}
    try:
        trainer.fit()
        after = trainer.unwrapped("model").state_dict()
    finally:
        trainer.close()
    text = [k for k in before if k.startswith("transformer.text_embed.")]
    assert text and all(torch.equal(before[k], after[k]) for k in text)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("transformer.transformer_blocks"))
    with pytest.raises(CheckpointError, match="a 'wave_vae' model; recipe tts trains 'tts'"):
        _trainer([*base, f"run_dir={tmp_path / 'wrong'}", f"train.init_from={model_dir}"])
    with pytest.raises(CheckpointError, match="does not fit the model"):
        _trainer([*base, f"run_dir={tmp_path / 'size'}", f"train.init_from={trained}", "model.depth=3"])


def _batch_rows(manifest, tmp_path, name):
    texts = ["the cat sat", "a much longer sentence about the weather today", "yes", "the dog ran home"]
    return [{"prompt": str(manifest.audio_path(i)), "prompt_text": manifest[i].text, "text": texts[i],
             "output": str(tmp_path / name / f"{i}.wav")} for i in range(4)]


def check_batched_list_equals_row_by_row(model_folder, demo_corpus, tmp_path):
    """`semlat tts --list --batch`: rows of different prompts, texts and lengths in one sampler run come out as
    they do one by one (each row draws its own noise; padding is masked)."""
    import soundfile as sf

    from semlat.data.manifest import Manifest
    from semlat.generation.synthesis import synthesize_list

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    tts = load_tts(model_folder, "cpu")
    outputs = {}
    for batch in (1, 4):
        listing = tmp_path / f"rows{batch}.jsonl"
        listing.write_text("".join(json.dumps(r) + "\n" for r in _batch_rows(manifest, tmp_path, f"b{batch}")))
        written = synthesize_list(tts, listing, seed=7, batch=batch, steps=2, progress=False)
        outputs[batch] = [torch.from_numpy(sf.read(str(p), dtype="float32")[0]) for p in written]
    assert [len(a) for a in outputs[1]] == [len(a) for a in outputs[4]]
    for one, batched in zip(outputs[1], outputs[4]):
        torch.testing.assert_close(batched, one, atol=2e-4, rtol=0)


def test_batched_list_equals_row_by_row(trained, demo_corpus, tmp_path, capsys):
    check_batched_list_equals_row_by_row(trained, demo_corpus, tmp_path)
    assert main(["tts", str(trained), "out.wav", "--text", "x", "--prompt", "p.wav", "--prompt-text", "y",
                 "--batch", "2"]) == 2
    assert "--batch needs --list" in capsys.readouterr().err


def _cross_sentence_rank(rank, world, trained, lst, root, out, judge):
    from semlat.experiments.cross_sentence import run_cross_sentence

    run_cross_sentence(trained, lst, root, out, asr=judge, speaker=None, steps=1, seed=3, progress=False,
                       rank=rank, world_size=world, wait_seconds=0.05)


def test_cross_sentence_shards_over_ranks_and_merges_the_same_scores(trained, demo_corpus, tiny_whisper, tmp_path):
    """Two ranks (as torchrun starts them) each generate and score every other pair; rank 0's merged report
    equals one process's, pair for pair."""
    from semlat.data.manifest import Manifest
    from semlat.experiments.cross_sentence import run_cross_sentence

    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    root = tmp_path / "test-clean"
    ids = _librispeech_tree(manifest, root, 3)
    lst = tmp_path / "cross.lst"
    lst.write_text("".join(f"{ids[i][0]}\t2.0\t{ids[i][1]}\t{ids[(i + 1) % 3][0]}\t0.75\t{ids[(i + 1) % 3][1]}\n"
                           for i in range(3)))
    judge = f"whisper:{tiny_whisper}"
    single = run_cross_sentence(trained, lst, root, tmp_path / "one", asr=judge, speaker=None, steps=1, seed=3,
                                progress=False)
    for rank in (1, 0):  # (as torchrun's two processes would, one after the other: rank 0 waits for rank 1)
        _cross_sentence_rank(rank, 2, trained, lst, root, tmp_path / "two", judge)
    merged = json.loads((tmp_path / "two" / "scores" / "report.json").read_text())
    assert merged["data"]["scored"] == 3 == single["data"]["scored"]
    assert [u["id"] for u in merged["utterances"]] == [u["id"] for u in single["utterances"]]
    for a, b in zip(merged["utterances"], single["utterances"]):
        assert a["hypothesis"] == b["hypothesis"] and a["counts"] == b["counts"]
    assert merged["metrics"]["wer"]["corpus"] == pytest.approx(single["metrics"]["wer"]["corpus"])
    assert (tmp_path / "two" / "scores" / "rank-1" / "report.json").is_file()


@pytest.fixture(scope="module")
def sharded_store(store, tmp_path_factory):
    from conftest import reshard_store

    return reshard_store(store, tmp_path_factory.mktemp("sharded") / "vae")


def test_streamed_store_trains_like_the_index_and_resumes_exactly(store, sharded_store, tmp_path):
    """data.stream: the vocabulary and statistics come from the shards' headers (the same as from the index), each
    rank reads its own shards in frame-budget batches, and a resumed run takes exactly the batches a straight one
    does."""
    from semlat.data.store import TensorStore
    from semlat.data.store_stream import StoreStream

    streamed = StoreStream(sharded_store)
    indexed = TensorStore(store)
    assert len(streamed.shards) > 2
    for a, b in zip(streamed.stats, indexed.stats, strict=True):
        torch.testing.assert_close(a, b)
    base = [f"data.latents={sharded_store}", *TINY, "data.stream=true", "train.checkpoint_every=100"]
    streaming = _trainer([*base, f"run_dir={tmp_path / 'probe'}", "train.max_steps=1"])
    indexing = _trainer([f"data.latents={store}", *TINY, f"run_dir={tmp_path / 'probe2'}", "train.max_steps=1"])
    try:
        assert streaming.recipe.vocab.tokens == indexing.recipe.vocab.tokens
        dataset, _ = streaming.recipe.train_dataset()
        batches = list(streaming.recipe.batch_sampler(dataset))
        assert sum(len(b) for b in batches) == sum(1 for i in indexed.items if indexing.recipe.accept(i))
        frames = {i["id"]: int(i["frames"]) for i in indexed.items}
        assert all(len(b) * max(frames[item_id] for _, item_id, _ in b) <= 400 for b in batches)  # the budget
    finally:
        streaming.close()
        indexing.close()
    assert main(["train", "tts/tiny_wave_vae", *base, f"run_dir={tmp_path / 'a'}", "train.max_steps=4"]) == 0
    assert main(["train", "tts/tiny_wave_vae", *base, f"run_dir={tmp_path / 'b'}", "train.max_steps=2"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "train.max_steps=4"]) == 0
    a = load_file(str(tmp_path / "a/checkpoints/step-00000004/training.safetensors"))
    b = load_file(str(tmp_path / "b/checkpoints/step-00000004/training.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="data.stream reads the store shard by shard"):
        _trainer([*base, f"run_dir={tmp_path / 'c'}", "conditioning=durations", "data.alignments=x.jsonl"])
