"""The semantic_vocoder and dasheng_mae recipes: a few steps on the event corpus, validation, export to a
latent space / a Dasheng folder, exact resume, DDP on two gloo processes, and config errors."""

from __future__ import annotations

import functools

import pytest
import torch

from conftest import check_recipe_ddp, train_recorded
from semlat.checkpoints import read_model_folder
from semlat.configs import builtin_config
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import load_codec
from semlat.models import load_teacher
from semlat.training.recipes import load_recipe
from semlat.training.trainer import Trainer, latest_checkpoint


def _vocoder(corpus, encoder, run_dir, *extra):
    return load_recipe(builtin_config("semantic_vocoder/tiny"), [
        f"run_dir={run_dir}", f"data.train={corpus / 'manifest.jsonl'}", f"encoder={encoder}",
        "train.progress=false", "train.num_workers=0", *extra])


def _mae(corpus, run_dir, *extra):
    return load_recipe(builtin_config("dasheng_mae/tiny"), [
        f"run_dir={run_dir}", f"data.train={corpus / 'manifest.jsonl'}", "train.progress=false", *extra])


def test_vocoder_trains_validates_and_exports_a_latent_space(event_corpus, tiny_dasheng, tmp_path):
    recipe_cls, config = _vocoder(event_corpus, tiny_dasheng, tmp_path / "run")
    run = train_recorded(recipe_cls, config)
    assert len(run.losses) == 3 and all(torch.isfinite(torch.tensor(s["loss"])) for s in run.losses)
    valid = run.validations[0]
    assert {"loss", "mel_distance@1", "mel_distance@2", "level_gap_db@1", "level_gap_db@2"} <= set(valid)
    assert -120 < valid["level_gap_db@2"] < 120 and valid["level_gap_db@2"] != 0
    assert valid["mel_distance@1"] != valid["mel_distance@2"]  # the steps change the audio
    folder = latest_checkpoint(tmp_path / "run")
    _, meta = read_model_folder(folder)
    assert meta["model_type"] == "semantic_vocoder" and meta["config"]["steps"] == 8 and meta["config"]["schedule"] == "sine"
    space = load_codec(folder, device="cpu")
    z = space.encode(torch.randn(1, 1, 16000) * 0.1)
    assert z.shape == (1, 32, 25)
    assert space.decode(z, steps=2, seed=0).shape == (1, 1, 24000)
    # the encoder in the exported space is the frozen one, untouched by training
    reference, _ = read_model_folder(tiny_dasheng)
    exported, _ = read_model_folder(folder)
    for key, value in reference.items():
        assert torch.equal(exported[f"encoder.{key}"], value), key
    # and the generator is the trained one
    key = "estimators.0.decoder.in_proj.weight"
    assert torch.equal(exported[f"generator.{key}"], run.weights[f"generator.{key}"])


def test_vocoder_resumes_exactly(event_corpus, tiny_dasheng, tmp_path):
    recipe_cls, straight_cfg = _vocoder(event_corpus, tiny_dasheng, tmp_path / "a", "train.max_steps=4",
                                        "train.valid_every=100")
    straight = train_recorded(recipe_cls, straight_cfg)
    _, half = _vocoder(event_corpus, tiny_dasheng, tmp_path / "b", "train.max_steps=2", "train.valid_every=100")
    first = train_recorded(recipe_cls, half)
    _, rest = _vocoder(event_corpus, tiny_dasheng, tmp_path / "b", "train.max_steps=4", "train.valid_every=100")
    second = train_recorded(recipe_cls, rest, resume=True)
    assert straight.losses == first.losses + second.losses
    for key, value in straight.weights.items():
        assert torch.equal(value, second.weights[key]), key


def test_vocoder_noise_augmentation(event_corpus, tiny_dasheng, tmp_path):
    """``latent_noise``: per-item noise scaled by each channel's spread; off at 0; training resumes exactly."""
    recipe_cls, config = _vocoder(event_corpus, tiny_dasheng, tmp_path / "n", "latent_noise=0.5")
    recipe = Trainer(config, recipe_cls).recipe
    torch.manual_seed(0)
    latents = torch.randn(64, 32, 25) * torch.linspace(0.1, 10, 32)[None, :, None] + 3.0
    noisy = recipe.augment(latents)
    added = (noisy - latents).transpose(0, 1).reshape(32, -1).std(dim=1)  # per channel
    spread = latents.transpose(0, 1).reshape(32, -1).std(dim=1)
    ratio = added / spread  # E|N(0, 0.5²)|² = 0.25: the added noise is half each channel's spread (rms)
    assert bool(((ratio > 0.35) & (ratio < 0.65)).all()), ratio
    per_item = (noisy - latents).std(dim=(1, 2)) / spread.mean()
    assert float(per_item.max() / per_item.min()) > 3  # sigma is drawn per item
    recipe.config.latent_noise = 0.0
    assert torch.equal(recipe.augment(latents), latents)
    with pytest.raises(ConfigError, match="latent_noise"):
        _vocoder(event_corpus, tiny_dasheng, tmp_path / "m", "latent_noise=-1")
    # exact resumption with the noise on
    extra = ("latent_noise=0.3", "train.valid_every=100")
    straight = train_recorded(recipe_cls, _vocoder(event_corpus, tiny_dasheng, tmp_path / "a", "train.max_steps=4",
                                                   *extra)[1])
    train_recorded(recipe_cls, _vocoder(event_corpus, tiny_dasheng, tmp_path / "b", "train.max_steps=2", *extra)[1])
    second = train_recorded(recipe_cls, _vocoder(event_corpus, tiny_dasheng, tmp_path / "b", "train.max_steps=4",
                                                 *extra)[1], resume=True)
    for key, value in straight.weights.items():
        assert torch.equal(value, second.weights[key]), key


def test_vocoder_config_errors(event_corpus, tiny_dasheng, tmp_path):
    with pytest.raises(ConfigError, match="whole number of latent frames"):
        _vocoder(event_corpus, tiny_dasheng, tmp_path / "x", "data.segment_seconds=0.45")
    recipe_cls, config = _vocoder(event_corpus, tiny_dasheng, tmp_path / "y", "model.latent_dim=48")
    with pytest.raises(ConfigError, match="32-d frames but model.latent_dim is 48"):
        Trainer(config, recipe_cls)
    recipe_cls, config = _vocoder(event_corpus, tmp_path, tmp_path / "z")
    with pytest.raises(CheckpointError, match="is not a Dasheng encoder"):
        Trainer(config, recipe_cls)


def _ddp_vocoder(corpus, encoder, run_dir):
    return _vocoder(corpus, encoder, run_dir, "train.max_steps=2", "data.batch_size=4", "train.valid_every=1000")


@pytest.mark.slow
def test_vocoder_ddp_two_processes(event_corpus, tiny_dasheng, tmp_path):
    check_recipe_ddp(functools.partial(_ddp_vocoder, event_corpus, tiny_dasheng), tmp_path)


def test_mae_trains_and_exports_a_dasheng_teacher(event_corpus, tmp_path):
    recipe_cls, config = _mae(event_corpus, tmp_path / "run")
    run = train_recorded(recipe_cls, config)
    assert all(0 < s["loss"] < 10 for s in run.losses)
    assert run.validations[0]["mean_baseline_mse"] == 1.0 and run.validations[0]["masked_mse"] > 0
    folder = latest_checkpoint(tmp_path / "run")
    _, meta = read_model_folder(folder)
    assert meta["model_type"] == "dasheng" and "not the released Dasheng" in meta["note"]
    assert meta["offline_mae"]["mask_ratio"] == 0.75
    teacher = load_teacher(f"semlat:{tmp_path / 'run'}")
    feats, lengths = teacher.features(torch.randn(1, 16000) * 0.1, torch.tensor([16000]))
    assert feats.shape == (1, 25, 32) and int(lengths[0]) == 25
    # the exported encoder is the trained one (the MAE decoder is left out)
    assert torch.equal(teacher.model.state_dict()["blocks.0.attn.qkv.weight"],
                       run.weights["model.encoder.blocks.0.attn.qkv.weight"])
    assert not any(k.startswith("decoder") for k in teacher.model.state_dict())


def test_mae_masks_three_quarters_and_scores_only_masked_patches():
    from semlat.semantic.dasheng import DashengConfig
    from semlat.semantic.dasheng_mae import DashengMAE, MAEConfig

    torch.manual_seed(0)
    model = DashengMAE(DashengConfig(embed_dim=32, depth=1, num_heads=2), MAEConfig(32, 1, 2))
    audio = torch.randn(2, 16000) * 0.1
    loss, details = model(audio, torch.Generator().manual_seed(0))
    assert details["masked"].shape == (2, 25) and int(details["masked"].sum(1)[0]) == 25 - round(25 * 0.25)
    err = (details["pred"] - details["target"]).square().mean(-1)
    assert torch.allclose(loss, err[details["masked"]].mean())
    assert torch.allclose(details["target"].mean(-1), torch.zeros(2, 25), atol=1e-4)


def test_mae_resumes_exactly(event_corpus, tmp_path):
    recipe_cls, straight_cfg = _mae(event_corpus, tmp_path / "a", "train.max_steps=4", "train.valid_every=100")
    straight = train_recorded(recipe_cls, straight_cfg)
    _, half = _mae(event_corpus, tmp_path / "b", "train.max_steps=2", "train.valid_every=100")
    first = train_recorded(recipe_cls, half)
    _, rest = _mae(event_corpus, tmp_path / "b", "train.max_steps=4", "train.valid_every=100")
    second = train_recorded(recipe_cls, rest, resume=True)
    assert straight.losses == first.losses + second.losses


def _ddp_mae(corpus, run_dir):
    return _mae(corpus, run_dir, "train.max_steps=2", "data.batch_size=4", "train.valid_every=1000")


@pytest.mark.slow
def test_mae_ddp_two_processes(event_corpus, tmp_path):
    check_recipe_ddp(functools.partial(_ddp_mae, event_corpus), tmp_path)
