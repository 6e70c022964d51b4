"""The wave_vae recipe end to end on real speech: train a few steps (D and G), validate, export,
resume exactly, and DDP on two gloo processes."""

from __future__ import annotations

import functools

import pytest
import torch

from conftest import check_recipe_ddp, train_recorded
from semlat.configs import builtin_config
from semlat.errors import ConfigError
from semlat.inference import load_codec
from semlat.training.recipes import load_recipe
from semlat.training.trainer import latest_checkpoint


def _config(corpus, run_dir, *extra):
    return load_recipe(builtin_config("wave_vae/tiny"), [
        f"run_dir={run_dir}", f"data.train={corpus / 'manifest.jsonl'}", "data.batch_size=2",
        "data.segment_seconds=0.25", "data.valid_items=2", "data.valid_seconds=0.5", "loss.disc_start_step=1",
        "train.num_workers=0", "train.progress=false", "train.log_every=1", "train.valid_every=3",
        "train.checkpoint_every=100", *extra])


def _run(recipe_cls, config, resume=False):
    run = train_recorded(recipe_cls, config, resume=resume)
    return run.losses, run.weights


def test_tiny_recipe_trains_validates_and_exports(demo_corpus, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", "train.max_steps=3")
    losses, _ = _run(recipe_cls, config)
    assert "d_loss" not in losses[0] and {"d_loss", "adversarial", "feature_matching"} <= set(losses[2])
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in losses)
    codec = load_codec(latest_checkpoint(tmp_path / "run"), device="cpu")
    z = codec.encode(torch.zeros(1, 1, 16000))
    assert z.shape == (1, 16, 40) and codec.decode(z).shape == (1, 1, 16000)
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_tiny_recipe_resumes_exactly(demo_corpus, tmp_path):
    recipe_cls, straight_cfg = _config(demo_corpus, tmp_path / "a", "train.max_steps=4")
    straight, w_straight = _run(recipe_cls, straight_cfg)
    _, half_cfg = _config(demo_corpus, tmp_path / "b", "train.max_steps=2")
    first, _ = _run(recipe_cls, half_cfg)
    _, rest_cfg = _config(demo_corpus, tmp_path / "b", "train.max_steps=4")
    second, w_resumed = _run(recipe_cls, rest_cfg, resume=True)
    assert straight == first + second  # identical losses at every step
    for key in w_straight:
        assert torch.equal(w_straight[key], w_resumed[key]), key


def test_recipe_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.regulator is set"):
        load_recipe(builtin_config("wave_vae/tiny"), ["model.regulator.teacher_dim=32"])
    with pytest.raises(ConfigError, match="whole number of latent frames"):
        load_recipe(builtin_config("wave_vae/tiny"), ["data.segment_seconds=0.3333"])
    with pytest.raises(ConfigError, match="model.nope"):
        load_recipe(builtin_config("wave_vae/tiny"), ["model.nope=1"])



def _ddp_config(corpus, run_dir):
    return _config(corpus, run_dir, "train.max_steps=2", "data.batch_size=4", "train.valid_every=1000")


@pytest.mark.slow
def test_ddp_two_processes(demo_corpus, tmp_path):
    check_recipe_ddp(functools.partial(_ddp_config, demo_corpus), tmp_path)
