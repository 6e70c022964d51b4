"""The bigvgan recipe: the multi-resolution discriminator (keys, shapes, spectrogram), a few training
steps of bigvgan/tiny on real speech (D then G, validation, export to a loadable folder), exact resume,
config errors, and DDP on two gloo processes."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import check_recipe_ddp, fixture_file, train_recorded
from semlat.checkpoints import read_model_folder
from semlat.configs import builtin_config
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import load_codec
from semlat.losses.adversarial import discriminator_loss, generator_adversarial_loss
from semlat.losses.resolution_discriminator import (
    DEFAULT_RESOLUTIONS,
    MultiResolutionDiscriminator,
    ResolutionDiscriminator,
)
from semlat.nn.weight_norm import parametrized_to_legacy
from semlat.training.recipes import load_recipe
from semlat.training.recipes.bigvgan import BigVGANDiscriminator, BigVGANDiscriminatorConfig, feature_loss
from semlat.training.trainer import latest_checkpoint


# ---------------------------------------------------------------------------------------------- MRD
def _released_mrd_keys(channels: int = 32) -> dict[str, tuple[int, ...]]:
    """BigVGAN's ``mrd`` state-dict listing (legacy weight norm) for the three default resolutions."""
    keys = {}
    for r in range(3):
        shapes = [(channels, 1, 3, 9)] + [(channels, channels, 3, 9)] * 3 + [(channels, channels, 3, 3)]
        for i, shape in enumerate(shapes):
            prefix = f"discriminators.{r}.convs.{i}"
            keys.update({f"{prefix}.bias": (channels,), f"{prefix}.weight_g": (channels, 1, 1, 1),
                         f"{prefix}.weight_v": shape})
        keys.update({f"discriminators.{r}.conv_post.bias": (1,), f"discriminators.{r}.conv_post.weight_g": (1, 1, 1, 1),
                     f"discriminators.{r}.conv_post.weight_v": (1, channels, 3, 3)})
    return keys


def test_mrd_keys_match_bigvgan_and_load_a_released_state():
    mrd = MultiResolutionDiscriminator()
    ours = {k: tuple(v.shape) for k, v in parametrized_to_legacy(mrd.state_dict()).items()}
    assert ours == _released_mrd_keys() and len(ours) == 54
    torch.manual_seed(1)
    released = {k: torch.randn(shape) for k, shape in _released_mrd_keys().items()}
    other = MultiResolutionDiscriminator()
    other.load_reference_state_dict(released)
    for key, value in parametrized_to_legacy(other.state_dict()).items():
        assert torch.equal(value, released[key]), key
    del released["discriminators.2.conv_post.bias"]
    with pytest.raises(CheckpointError, match="1 missing key"):
        other.load_reference_state_dict(released)
    assert {k: tuple(v.shape) for k, v in parametrized_to_legacy(
        MultiResolutionDiscriminator(channel_mult=0.25).state_dict()).items()} == _released_mrd_keys(8)


def test_mrd_feature_map_shapes():
    mrd = MultiResolutionDiscriminator()
    maps = mrd(torch.randn(2, 1, 8192) * 0.3)
    assert mrd.names == ["mrd1024", "mrd2048", "mrd512"] and [len(m) for m in maps] == [6, 6, 6]
    # frames = T // hop + 1 here ((n_fft - hop) // 2 reflect padding each side, center=False); time
    # (the last dim) is halved, rounding up, by the three strided layers; frequency keeps n_fft // 2 + 1 bins.
    for (n_fft, hop, _), fmaps in zip(DEFAULT_RESOLUTIONS, maps):
        frames = (8192 + 2 * ((n_fft - hop) // 2) - n_fft) // hop + 1
        lengths = [frames, -(-frames // 2), -(-frames // 4), -(-frames // 8), -(-frames // 8), -(-frames // 8)]
        assert [tuple(m.shape) for m in fmaps] == [(2, 1 if j == 5 else 32, n_fft // 2 + 1, n)
                                                   for j, n in enumerate(lengths)]
    assert tuple(maps[0][0].shape) == (2, 32, 513, 68)


def test_mrd_spectrogram_is_a_rectangular_window_stft():
    d = ResolutionDiscriminator((512, 50, 240))
    audio = torch.randn(1, 1, 2000, dtype=torch.float64)
    ours = d.spectrogram(audio)[0, 0].numpy()
    x = np.pad(audio[0, 0].numpy(), (231, 231), mode="reflect")
    frames = np.stack([x[s:s + 512] for s in range(0, len(x) - 512 + 1, 50)])
    window = np.zeros(512)
    window[136:376] = 1.0  # 240 ones centred in 512
    expected = np.abs(np.fft.rfft(frames * window, axis=-1)).T
    assert ours.shape == expected.shape == (257, 40)
    np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_discriminator_gradients_are_finite_on_silence():
    disc = BigVGANDiscriminator(BigVGANDiscriminatorConfig(channel_mult=0.25))
    assert disc.names == ["mpd2", "mpd3", "mpd5", "mpd7", "mpd11", "mrd1024", "mrd2048", "mrd512"]
    fake = torch.zeros(2, 1, 4096, requires_grad=True)  # exactly-zero STFT bins everywhere
    real = torch.randn(2, 1, 4096) * 0.1
    fake_maps, real_maps = disc(fake), disc(real)
    loss = generator_adversarial_loss(fake_maps) + 2 * feature_loss(fake_maps, real_maps)
    loss = loss + discriminator_loss(fake_maps, real_maps)
    loss.backward()
    assert torch.isfinite(fake.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters())


def test_feature_loss_counts_every_map_including_logits():
    fake = [[torch.ones(2, 3), torch.full((4,), 2.0)]]
    real = [[torch.zeros(2, 3), torch.zeros(4)]]
    assert float(feature_loss(fake, real)) == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------- recipe
def _config(corpus, run_dir, *extra):
    return load_recipe(builtin_config("bigvgan/tiny"), [
        f"run_dir={run_dir}", f"data.train={corpus / 'manifest.jsonl'}", "data.batch_size=2",
        "data.segment_size=4096", "data.valid_items=2", "data.valid_seconds=0.5", "loss.disc_start_step=1",
        "train.num_workers=0", "train.progress=false", "train.log_every=1", "train.valid_every=3",
        "train.checkpoint_every=100", *extra])


def _run(recipe_cls, config, resume=False):
    run = train_recorded(recipe_cls, config, resume=resume)
    return run.losses, run.validations, run.weights


@pytest.mark.slow
def test_tiny_recipe_trains_validates_and_exports(demo_corpus, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", "train.max_steps=3")
    losses, validations, _ = _run(recipe_cls, config)
    assert "d_loss" not in losses[0] and {"mel", "loss"} <= set(losses[0])
    assert {"d_loss", "adversarial", "feature_matching", "mel", "loss"} <= set(losses[2])
    assert all(np.isfinite(list(step.values())).all() for step in losses)
    assert len(validations) == 1 and set(validations[0]) == {"mel_l1", "mel_distance"}
    assert np.isfinite(list(validations[0].values())).all()
    folder = latest_checkpoint(tmp_path / "run")
    _, meta = read_model_folder(folder)
    assert meta["model_type"] == "bigvgan" and meta["training"]["recipe"] == "bigvgan"
    assert meta["config"]["upsample_rates"] == [8, 8, 4]
    codec = load_codec(folder, device="cpu")
    mel = codec.encode(torch.zeros(1, 1, 22050))
    assert mel.shape == (1, 80, 87) and codec.decode(mel).shape == (1, 1, 87 * 256)
    assert any((tmp_path / "run" / "tensorboard").iterdir())


@pytest.mark.slow
def test_tiny_recipe_resumes_exactly(demo_corpus, tmp_path):
    recipe_cls, straight_cfg = _config(demo_corpus, tmp_path / "a", "train.max_steps=3", "train.valid_every=100")
    straight, _, w_straight = _run(recipe_cls, straight_cfg)
    _, half_cfg = _config(demo_corpus, tmp_path / "b", "train.max_steps=2", "train.valid_every=100")
    first, _, _ = _run(recipe_cls, half_cfg)
    _, rest_cfg = _config(demo_corpus, tmp_path / "b", "train.max_steps=3", "train.valid_every=100")
    second, _, w_resumed = _run(recipe_cls, rest_cfg, resume=True)
    assert straight == first + second
    for key in w_straight:
        assert torch.equal(w_straight[key], w_resumed[key]), key


@pytest.mark.slow
def test_tiny_recipe_accumulates_in_bf16_with_the_multiscale_loss(demo_corpus, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", "train.max_steps=2", "train.grad_accum=2",
                                 "train.precision=bf16", "loss.mel_type=multiscale", "loss.mel=15",
                                 "loss.disc_start_step=0", "train.valid_every=2", "train.ema.enabled=true",
                                 "train.ema.start_step=0", "train.ema.every=1")
    losses, validations, _ = _run(recipe_cls, config)
    assert all({"d_loss", "mel", "adversarial", "feature_matching"} <= set(step) for step in losses)
    assert all(np.isfinite(list(step.values())).all() for step in losses + validations)
    assert load_codec(latest_checkpoint(tmp_path / "run"), device="cpu").model.frame_rate == 22050 / 256


def test_recipe_config_errors():
    with pytest.raises(ConfigError, match="whole number of hops"):
        load_recipe(builtin_config("bigvgan/tiny"), ["data.segment_size=5000"])
    with pytest.raises(ConfigError, match="at least the longest FFT \\(2048\\)"):
        load_recipe(builtin_config("bigvgan/tiny"), ["data.segment_size=1024"])
    with pytest.raises(ConfigError, match="prod\\(upsample_rates\\)"):
        load_recipe(builtin_config("bigvgan/tiny"), ["model.hop_size=512"])
    with pytest.raises(ConfigError, match="mel_type"):
        load_recipe(builtin_config("bigvgan/tiny"), ["loss.mel_type=stft"])
    with pytest.raises(ConfigError, match="model.nope"):
        load_recipe(builtin_config("bigvgan/tiny"), ["model.nope=1"])
    _, paper = load_recipe(builtin_config("bigvgan/paper"))
    assert paper.data.segment_size == 65536 and paper.data.batch_size == 32
    assert paper.model.upsample_initial_channel == 1536 and paper.loss.mel == 45.0
    assert paper.optim.gamma == 0.9999996 and tuple(paper.optim.betas) == (0.8, 0.99)



def _ddp_config(corpus, run_dir):
    return _config(corpus, run_dir, "train.max_steps=2", "data.batch_size=4", "loss.disc_start_step=0",
                   "train.valid_every=2")


@pytest.mark.slow
def test_ddp_two_processes(demo_corpus, tmp_path):
    check_recipe_ddp(functools.partial(_ddp_config, demo_corpus), tmp_path)
    assert load_codec(latest_checkpoint(tmp_path / "run"), device="cpu").model.latent_dim == 80


# ---------------------------------------------------------------------------------------------- fine-tuning
def _released_architecture(meta_config: dict) -> list[str]:
    """``model.*`` overrides that give the recipe a released generator's architecture."""
    keys = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
            "resblock_dilation_sizes", "activation", "use_tanh_at_final", "use_bias_at_final")
    return [f"model.{k}={json.dumps(meta_config[k]).lower() if isinstance(meta_config[k], bool) else json.dumps(meta_config[k])}"
            for k in keys]


def test_fine_tunes_from_an_imported_release_and_resumes(fixtures, demo_corpus, tmp_path):
    """init_from a BigVGAN release imported through `semlat import` with its discriminator file: the generator and
    the MPD + MRD start as released, train, and a resumed run continues them exactly."""
    from semlat.cli import main as cli_main
    from semlat.training.trainer import Trainer

    state = load_file(str(fixture_file(fixtures, "bigvgan/generator_tiny.safetensors")))
    torch.save({"generator": state}, tmp_path / "bigvgan_generator.pt")
    torch.manual_seed(5)  # a release's discriminator file, in BigVGAN's format (legacy weight norm, mpd/mrd keys)
    ours = BigVGANDiscriminator(BigVGANDiscriminatorConfig(channel_mult=0.25)).state_dict()
    legacy = parametrized_to_legacy(ours)
    torch.save({"mpd": {"discriminators." + k[4:]: v for k, v in legacy.items() if k.startswith("mpd.")},
                "mrd": {k[4:]: v for k, v in legacy.items() if k.startswith("mrd.")}, "steps": 0, "epoch": 0},
               tmp_path / "bigvgan_discriminator_optimizer.pt")
    release = tmp_path / "release"
    assert cli_main(["import", "bigvgan", str(tmp_path / "bigvgan_generator.pt"), str(release), "--config",
                     str(fixture_file(fixtures, "bigvgan/generator_tiny_config.json")), "--discriminator",
                     str(tmp_path / "bigvgan_discriminator_optimizer.pt")]) == 0
    imported, meta = read_model_folder(release)
    arch = [*_released_architecture(meta["config"]), f"train.init_from={release}", "data.segment_size=4096"]

    recipe_cls, config = _config(demo_corpus, tmp_path / "a", "train.max_steps=1", "train.valid_every=100", *arch)
    trainer = Trainer(config, recipe_cls)
    try:
        generator = trainer.unwrapped("generator").state_dict()
        assert set(generator) == set(imported) and all(torch.equal(generator[k], imported[k]) for k in imported)
        disc = trainer.unwrapped("discriminator").state_dict()  # the release's MPD + MRD resume too
        assert set(disc) == set(ours) and all(torch.equal(disc[k], ours[k]) for k in ours)
        assert trainer.initialized == {"generator": str(release), "discriminator": str(release)}
    finally:
        trainer.close()
    straight = train_recorded(*_config(demo_corpus, tmp_path / "b", "train.max_steps=2", "train.valid_every=100",
                                       *arch))
    assert any(not torch.equal(straight.weights[f"generator.{k}"], imported[k]) for k in imported)  # it trained
    train_recorded(*_config(demo_corpus, tmp_path / "c", "train.max_steps=1", "train.valid_every=100", *arch))
    resumed = train_recorded(*_config(demo_corpus, tmp_path / "c", "train.max_steps=2", "train.valid_every=100",
                                      *arch), resume=True)
    for key, value in straight.weights.items():
        assert torch.equal(value, resumed.weights[key]), key
    _, exported = read_model_folder(latest_checkpoint(tmp_path / "c"))
    assert exported["training"]["init_from"] == {"generator": str(release), "discriminator": str(release)}


def test_init_from_of_another_type_or_size_is_a_one_line_error(fixtures, demo_corpus, tmp_path, model_dir):
    from semlat.training.trainer import Trainer

    state = load_file(str(fixture_file(fixtures, "bigvgan/generator_tiny.safetensors")))
    torch.save({"generator": state}, tmp_path / "g.pt")
    from semlat.vocoders.import_bigvgan import import_bigvgan

    release = import_bigvgan(tmp_path / "g.pt", tmp_path / "release",
                             config=fixture_file(fixtures, "bigvgan/generator_tiny_config.json"))
    recipe_cls, config = _config(demo_corpus, tmp_path / "size", "train.max_steps=1", f"train.init_from={release}")
    with pytest.raises(CheckpointError, match=r"does not fit the model: .*shape mismatch") as err:
        Trainer(config, recipe_cls)
    assert "\n" not in str(err.value)
    recipe_cls, config = _config(demo_corpus, tmp_path / "type", "train.max_steps=1", f"train.init_from={model_dir}")
    with pytest.raises(CheckpointError, match=r"a 'wave_vae' model; recipe bigvgan trains 'bigvgan'"):
        Trainer(config, recipe_cls)
    recipe_cls, config = _config(demo_corpus, tmp_path / "none", "train.max_steps=1", f"train.init_from={tmp_path}")
    with pytest.raises(CheckpointError, match="not a model folder, checkpoint or training run"):
        Trainer(config, recipe_cls)
    assert not (tmp_path / "size" / "checkpoints").exists() and not (tmp_path / "type" / "checkpoints").exists()
    with pytest.raises(CheckpointError, match="not a BigVGAN discriminator checkpoint"):  # a generator file given
        import_bigvgan(tmp_path / "g.pt", tmp_path / "r2", discriminator=tmp_path / "g.pt",
                       config=fixture_file(fixtures, "bigvgan/generator_tiny_config.json"))
    assert not (tmp_path / "r2").exists()
