"""The duration predictor: the recipe trains (few steps, resume), exports a model folder that `semlat tts
--duration-model` uses, and `semlat eval duration` compares it with F5's ratio rule."""

from __future__ import annotations

import json

import pytest
import torch

from semlat.cli import main
from semlat.errors import CheckpointError
from semlat.generation.duration import DurationConfig, DurationPredictor, ratio_rule_seconds

TINY = ["model.dim=16", "model.layers=1", "data.batch_size=8", "train.progress=false", "train.log_every=1",
        "train.valid_every=2", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def duration_run(demo_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("duration") / "run"
    assert main(["train", "duration/tiny", f"data.train={demo_corpus / 'manifest.jsonl'}", f"run_dir={run}",
                 "train.max_steps=2", *TINY]) == 0
    return run


def test_predictor_sums_per_token_seconds_and_follows_the_prompt_pace():
    torch.manual_seed(0)
    model = DurationPredictor(DurationConfig(units="chars", vocab=[" ", "a", "b"], dim=8, layers=1)).eval()
    with torch.no_grad():
        one, padded = model(torch.tensor([[1, 2, -1, -1]])), model(torch.tensor([[1, 2]]))
    torch.testing.assert_close(one, padded)  # padding adds nothing
    assert float(one) > 0
    slow = model.target_seconds("ab", 4 * float(model.seconds(["ab"])[0]), "abab")
    normal = model.target_seconds("ab", float(model.seconds(["ab"])[0]), "abab")
    assert slow == pytest.approx(2 * normal, rel=1e-4)  # a 4x slower prompt is clamped to 2x
    assert ratio_rule_seconds("ab", 2.0, "abab") == pytest.approx(4.0)


def test_recipe_trains_resumes_and_is_measured_against_the_ratio_rule(duration_run, demo_corpus, capsys):
    meta = json.loads((duration_run / "checkpoints/step-00000002/config.json").read_text())
    assert meta["model_type"] == "duration" and meta["config"]["units"] == "chars"
    assert meta["heldout"]["test"]["utterances"] > 0 and meta["heldout"]["test"]["mae_seconds"] > 0
    assert main(["train", "--resume", str(duration_run), "train.max_steps=4"]) == 0
    assert (duration_run / "checkpoints/step-00000004").is_dir()
    capsys.readouterr()
    assert main(["eval", "duration", str(duration_run), str(demo_corpus / "manifest.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "| ratio rule |" in out and "| predictor |" in out and "cross-sentence targets (test split)" in out


def test_tts_uses_the_duration_model(duration_run, demo_corpus, model_dir, tmp_path):
    from semlat.data.manifest import Manifest
    from semlat.generation.synthesis import load_tts, synthesize
    from semlat.inference import encode_to_store, load

    store = tmp_path / "latents"
    encode_to_store(load(model_dir, device="cpu"), demo_corpus / "manifest.jsonl", store, split="train",
                    progress=False)
    run = tmp_path / "tts"
    assert main(["train", "tts/tiny_wave_vae", f"data.latents={store}", f"run_dir={run}", "train.max_steps=1",
                 "model.dim=32", "model.depth=1", "model.heads=2", "model.dim_head=16", "model.text_dim=16",
                 "model.conv_layers=1", "train.progress=false", "train.checkpoint_every=1"]) == 0
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    tts = load_tts(run, "cpu", duration=duration_run)
    text = "a short test sentence, and then a much longer one that goes on and on for a while"
    audio = synthesize(tts, text, manifest.audio_path(0), manifest[0].text, steps=1, seed=0)
    rate = tts.model.config.frame_rate
    hop = round(tts.space.output_rate / rate)
    expected = round(tts.duration.target_seconds(manifest[0].text, manifest[0].duration, text) * rate)
    rule = round(ratio_rule_seconds(manifest[0].text, manifest[0].duration, text) * rate)
    assert abs(expected - rule) > 4  # the two rules disagree here, so the length below tells them apart
    assert abs(audio.shape[-1] // hop - expected) <= 2  # the predictor's length, not the ratio rule's
    with pytest.raises(CheckpointError, match="a duration model"):
        load_tts(run, "cpu", duration=run)  # a TTS folder is no duration model


def _ddp_config(manifest, run_dir):
    from semlat.configs import builtin_config
    from semlat.training.recipes import load_recipe

    return load_recipe(builtin_config("duration/tiny"), [f"data.train={manifest}", f"run_dir={run_dir}",
                                                         "train.max_steps=2", *TINY])


@pytest.mark.slow
def test_ddp_two_processes(demo_corpus, tmp_path):
    """Two gloo processes: each rank trains on its own utterances; DDP keeps the weights identical."""
    import functools

    from conftest import check_recipe_ddp

    check_recipe_ddp(functools.partial(_ddp_config, str(demo_corpus / "manifest.jsonl")), tmp_path)
