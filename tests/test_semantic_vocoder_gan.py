"""The semantic_vocoder_gan recipe (Flow2GAN's GAN stage on a trained SemanticVocoder): the unrolled few-step
generator, starting from the init's weights, a few GAN steps with validation and export, exact resume, DDP on
two gloo processes, and its config errors."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from conftest import check_recipe_ddp, train_recorded
from semlat.checkpoints import read_model_folder, save_model
from semlat.configs import builtin_config
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import load_codec
from semlat.losses.level import FrameLevelLoss
from semlat.losses.mel import MultiScaleMelLoss
from semlat.training.recipes import load_recipe
from semlat.training.trainer import Trainer, latest_checkpoint
from semlat.vocoders.flow_vocoder import FewStepVocoder, FlowVocoder, FlowVocoderConfig


@pytest.fixture(scope="module")
def tiny_vocoder_space(tiny_dasheng, tmp_path_factory):
    """A random tiny SemanticVocoder (the tiny Dasheng + a tiny generator) saved as a model folder."""
    from semlat.autoencoders.semantic_vocoder import SemanticVocoder, SemanticVocoderConfig
    from semlat.semantic.dasheng import DashengConfig

    state, meta = read_model_folder(tiny_dasheng)
    config = SemanticVocoderConfig(encoder=DashengConfig(**meta["config"]),
                                   generator=FlowVocoderConfig.tiny(latent_dim=32), steps=8, schedule="sine")
    torch.manual_seed(0)
    space = SemanticVocoder(config)
    space.encoder.load_state_dict(state)
    folder = tmp_path_factory.mktemp("vocoder") / "space"
    save_model(folder, space.eval(), model_type="semantic_vocoder", config=config)
    return folder


def _gan(corpus, init, run_dir, *extra):
    return load_recipe(builtin_config("semantic_vocoder_gan/tiny"), [
        f"run_dir={run_dir}", f"data.train={corpus / 'manifest.jsonl'}", f"init={init}",
        "train.progress=false", "train.num_workers=0", *extra])


def test_few_step_generator_is_the_decode_with_gradients():
    torch.manual_seed(0)
    vocoder = FlowVocoder(FlowVocoderConfig.tiny()).eval()
    latents, noise = torch.randn(2, 16, 3), torch.randn(2, 3 * 960)
    sampled = vocoder.sample(latents, 2, noise=noise, schedule="sine")
    torch.testing.assert_close(sampled.detach(), vocoder.generate(latents, 2, noise=noise, schedule="sine"),
                               rtol=1e-5, atol=1e-6)
    # gradients reach the first step's parameters through both unrolled steps
    few = FewStepVocoder(vocoder, steps=2, schedule="sine")
    out = few(latents)
    assert out.shape == (2, 1, 3 * 960)
    out.square().mean().backward()
    assert vocoder.cond_encoder.in_proj.weight.grad is not None
    assert float(vocoder.cond_encoder.in_proj.weight.grad.abs().sum()) > 0
    with pytest.raises(ConfigError, match="at least one step"):
        FewStepVocoder(vocoder, steps=0)
    with pytest.raises(ConfigError, match="schedule must be one of"):
        FewStepVocoder(vocoder, steps=2, schedule="cosine")


def test_gan_stage_starts_from_init_trains_and_exports(event_corpus, tiny_vocoder_space, tmp_path):
    recipe_cls, config = _gan(event_corpus, tiny_vocoder_space, tmp_path / "run")
    init_state, _ = read_model_folder(tiny_vocoder_space)
    trainer = Trainer(config, recipe_cls)
    try:  # the generator starts as the init's, and the run's model config is the init's
        for key, value in trainer.unwrapped("generator").vocoder.state_dict().items():
            assert torch.equal(value, init_state[f"generator.{key}"]), key
        assert trainer.config.model == FlowVocoderConfig.tiny(latent_dim=32)
    finally:
        trainer.close()
    recipe_cls, config = _gan(event_corpus, tiny_vocoder_space, tmp_path / "run2")
    run = train_recorded(recipe_cls, config)
    assert len(run.losses) == 3
    for logs in run.losses:
        assert {"d_loss", "mel", "adversarial", "feature_matching", "level", "loss"} <= set(logs)  # small's terms
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    valid = run.validations[0]
    assert {"loss", "mel_distance@1", "mel_distance@2", "level_gap_db@2"} <= set(valid)
    folder = latest_checkpoint(tmp_path / "run2")
    exported, meta = read_model_folder(folder)
    assert meta["model_type"] == "semantic_vocoder"
    assert meta["config"]["steps"] == 2 and meta["config"]["schedule"] == "sine"  # the trained few-step decode
    for key, value in init_state.items():
        if key.startswith("encoder."):  # the frozen encoder travels unchanged
            assert torch.equal(exported[key], value), key
    key = "generator.estimators.0.decoder.in_proj.weight"
    assert not torch.equal(exported[key], init_state[key])  # the generator trained
    assert torch.equal(exported[key], run.weights[f"generator.vocoder.{key[len('generator.'):]}"])
    space = load_codec(folder, device="cpu")
    z = space.encode(torch.randn(1, 1, 16000) * 0.1)
    assert space.decode(z, seed=0).shape == (1, 1, 24000)
    # the discriminator stays out of the export
    assert not any(k.startswith(("discriminator", "mpd")) for k in exported)


def test_gan_stage_reconstruction_terms_alone_until_disc_start(event_corpus, tiny_vocoder_space, tmp_path):
    recipe_cls, config = _gan(event_corpus, tiny_vocoder_space, tmp_path / "run", "loss.disc_start_step=2",
                              "train.valid_every=100", "loss.level=3")
    run = train_recorded(recipe_cls, config)
    assert [("d_loss" in logs) for logs in run.losses] == [False, False, True]
    first = run.losses[0]  # before the discriminator joins: the mel and frame-level terms alone
    assert first["level"] > 0
    assert first["loss"] == pytest.approx(15.0 * first["mel"] + 3.0 * first["level"], rel=1e-5)


def test_frame_level_loss_weighs_a_quiet_tone_fully():
    torch.manual_seed(0)
    level, mel = FrameLevelLoss(), MultiScaleMelLoss(sample_rate=24000)
    t = torch.arange(14400) / 24000
    tone, noise = 0.3 * torch.sin(2 * math.pi * 1000 * t)[None, None], 0.1 * torch.randn(1, 1, 14400)
    for x in (tone, noise):  # 20 dB low is one unit, whatever the signal
        assert float(level(x * 0.1, x)) == pytest.approx(1.0, abs=1e-4)
        assert float(level(x, x)) == 0.0
    per_scale = float(mel(tone * 0.1, tone)) / len(mel.mels)
    assert 0.4 < per_scale < 0.7  # the log-mel L1 sees about half of the tone's level error (bands at its floor)
    assert float(mel(noise * 0.1, noise)) / len(mel.mels) == pytest.approx(1.0, abs=0.02)
    assert float(level(torch.zeros(1, 1, 500), torch.zeros(1, 1, 500))) == 0.0  # shorter than a frame, silent
    with pytest.raises(ValueError, match="frame and hop"):
        FrameLevelLoss(hop=0)


def test_gan_stage_resumes_exactly(event_corpus, tiny_vocoder_space, tmp_path):
    extra = ("train.valid_every=100",)
    straight = train_recorded(*_gan(event_corpus, tiny_vocoder_space, tmp_path / "a", "train.max_steps=4", *extra))
    train_recorded(*_gan(event_corpus, tiny_vocoder_space, tmp_path / "b", "train.max_steps=2", *extra))
    second = train_recorded(*_gan(event_corpus, tiny_vocoder_space, tmp_path / "b", "train.max_steps=4", *extra),
                            resume=True)
    for key, value in straight.weights.items():
        assert torch.equal(value, second.weights[key]), key


def test_gan_stage_config_errors(event_corpus, tiny_vocoder_space, tiny_dasheng, tmp_path):
    recipe_cls, config = _gan(event_corpus, tiny_dasheng, tmp_path / "x")
    with pytest.raises(CheckpointError, match="a dasheng model, not a SemanticVocoder"):
        Trainer(config, recipe_cls)
    recipe_cls, config = _gan(event_corpus, tiny_vocoder_space, tmp_path / "y", "model.channels=[8,8,8]")
    with pytest.raises(ConfigError, match="model is taken from init"):
        Trainer(config, recipe_cls)
    with pytest.raises(ConfigError, match="schedule must be one of"):
        _gan(event_corpus, tiny_vocoder_space, tmp_path / "z", "schedule=cosine")
    with pytest.raises(ConfigError, match="loss weights"):
        _gan(event_corpus, tiny_vocoder_space, tmp_path / "w", "loss.mel=-1")
    with pytest.raises(ConfigError, match="loss weights"):
        _gan(event_corpus, tiny_vocoder_space, tmp_path / "w", "loss.level=-1")
    recipe_cls, config = _gan(event_corpus, tiny_vocoder_space, tmp_path / "v", "data.segment_seconds=0.45")
    with pytest.raises(ConfigError, match="whole number of latent frames"):
        Trainer(config, recipe_cls)


def _ddp_gan(corpus, init, run_dir):
    return _gan(corpus, init, run_dir, "train.max_steps=2", "data.batch_size=4", "train.valid_every=1000")


@pytest.mark.slow
def test_gan_stage_ddp_two_processes(event_corpus, tiny_vocoder_space, tmp_path):
    check_recipe_ddp(functools.partial(_ddp_gan, event_corpus, tiny_vocoder_space), tmp_path)
