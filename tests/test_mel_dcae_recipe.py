"""The mel_dcae recipe end to end on real speech: a few steps (D and G, Muon), validation, export to a
latent space, exact resume with EMA, the dispersive loss, and DDP on two gloo processes."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import check_recipe_ddp, fixture_file, train_recorded
from semlat.checkpoints import read_model_folder
from semlat.configs import builtin_config
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import load_codec
from semlat.training.recipes import load_recipe
from semlat.training.trainer import latest_checkpoint


def _run(recipe_cls, config, resume=False):
    run = train_recorded(recipe_cls, config, resume=resume)
    return run.losses, run.weights


SEGMENT = 16384 * 2 / 22050  # 32768 samples = 128 mel frames = 8 latent frames


def _config(corpus, run_dir, *extra):
    return load_recipe(builtin_config("mel_dcae/tiny"), [
        f"run_dir={run_dir}", f"data.train={corpus / 'manifest.jsonl'}", "data.batch_size=2",
        f"data.segment_seconds={SEGMENT}", "data.valid_items=2", f"data.valid_seconds={SEGMENT}",
        "loss.disc_start_step=1", "train.num_workers=0", "train.progress=false", "train.log_every=1",
        "train.valid_every=3", "train.checkpoint_every=100", "train.ema.start_step=1", *extra])


def test_tiny_recipe_trains_validates_and_exports(demo_corpus, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", "train.max_steps=3")
    losses, _ = _run(recipe_cls, config)
    assert "d_loss" not in losses[0] and {"d_loss", "adversarial", "feature_matching"} <= set(losses[2])
    assert {"mel_l1", "dispersive"} <= set(losses[0])
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in losses)
    folder = latest_checkpoint(tmp_path / "run")
    _, meta = read_model_folder(folder)
    assert meta["model_type"] == "mel_dcae" and meta["config"]["vocoder"]["type"] == "griffin_lim"
    codec = load_codec(folder, device="cpu")
    z = codec.encode(torch.zeros(1, 1, 22050))
    assert z.shape == (1, 80, 6) and codec.decode(z).shape == (1, 1, 6 * 4096)
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_resume_is_exact_with_muon_and_ema(demo_corpus, tmp_path):
    recipe_cls, straight_cfg = _config(demo_corpus, tmp_path / "a", "train.max_steps=4")
    straight, w_straight = _run(recipe_cls, straight_cfg)
    _, half_cfg = _config(demo_corpus, tmp_path / "b", "train.max_steps=2", "train.checkpoint_every=2")
    first, _ = _run(recipe_cls, half_cfg)
    _, rest_cfg = _config(demo_corpus, tmp_path / "b", "train.max_steps=4", "train.checkpoint_every=2")
    second, w_resumed = _run(recipe_cls, rest_cfg, resume=True)
    assert straight == first + second
    for key in w_straight:
        assert torch.equal(w_straight[key], w_resumed[key]), key


def test_recipe_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="whole number of latent frames"):
        _, config = load_recipe(builtin_config("mel_dcae/tiny"), ["data.segment_seconds=1.0",
                                                                   f"run_dir={tmp_path}"])
        from semlat.training.recipes.mel_dcae import MelDCAERecipe
        MelDCAERecipe(config, type("T", (), {"device": torch.device("cpu")})())
    with pytest.raises(ConfigError, match="batch_size"):
        load_recipe(builtin_config("mel_dcae/tiny"), ["data.batch_size=1"])
    with pytest.raises(ConfigError, match="adamw or muon"):
        load_recipe(builtin_config("mel_dcae/tiny"), ["optim.name=sgd"])


def _ddp_config(corpus, run_dir):
    return _config(corpus, run_dir, "train.max_steps=2", "data.batch_size=4", "train.valid_every=1000")


@pytest.mark.slow
def test_ddp_two_processes(demo_corpus, tmp_path):
    check_recipe_ddp(functools.partial(_ddp_config, demo_corpus), tmp_path, log_key=("loss", "dispersive"))


def test_fine_tunes_from_an_imported_dc_speech_vae(fixtures, demo_corpus, tmp_path):
    """init_from a DC-Speech-VAE release imported through `semlat import` with its discriminator: the autoencoder
    (the ``autoencoder.*`` part of the latent space's weights) and the discriminator start as released, then
    train; a discriminator of another size is a one-line error."""
    from semlat.cli import main
    from semlat.training.trainer import Trainer

    release = tmp_path / "release"
    disc_file = fixture_file(fixtures, "dc_speech_vae/disc_tiny.safetensors")
    assert main(["import", "dc-speech-vae", str(fixture_file(fixtures, "dc_speech_vae/dcae_tiny.safetensors")),
                 str(release), "--config", str(fixture_file(fixtures, "dc_speech_vae/dcae_tiny_config.json")),
                 "--vocoder", "griffin-lim", "--discriminator", str(disc_file)]) == 0
    weights, meta = read_model_folder(release)
    arch = [f"model.{k}={json.dumps(v)}" for k, v in meta["config"]["autoencoder"].items()]
    disc_arch = ["discriminator.bands=10", "discriminator.band_channels=32", "discriminator.patchgan_channels=[4,8,16,32,64]"]
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", "train.max_steps=1", f"train.init_from={release}",
                                 *arch, *disc_arch)
    trainer = Trainer(config, recipe_cls)
    try:
        state = trainer.unwrapped("generator").state_dict()
        assert len(state) == len(weights)
        assert all(torch.equal(state[k], weights[f"autoencoder.{k}"]) for k in state)
        released_disc = load_file(str(disc_file))  # the release's discriminator resumes too
        disc = trainer.unwrapped("discriminator").state_dict()
        assert set(disc) == set(released_disc) and all(torch.equal(disc[k], released_disc[k]) for k in disc)
        trainer.fit()
        after = trainer.unwrapped("generator").state_dict()
        assert any(not torch.equal(after[k], weights[f"autoencoder.{k}"]) for k in after)
    finally:
        trainer.close()
    recipe_cls, config = _config(demo_corpus, tmp_path / "other", "train.max_steps=1", f"train.init_from={release}",
                                 *arch)  # the recipe's default (full-size) discriminator
    with pytest.raises(CheckpointError, match=r"\[discriminator\]: does not fit the model"):
        Trainer(config, recipe_cls)
