"""The supervised phonetic teacher (``ctc:`` specs): the CTC judge's encoder as alignment target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import train_recorded
from semlat.configs import builtin_config
from semlat.errors import ConfigError
from semlat.evaluation.ctc_judge import load_judge
from semlat.models import load_teacher
from semlat.semantic.feature_cache import extract_features
from semlat.semantic.teachers import TeacherSpec
from semlat.training.recipes import load_recipe


def test_ctc_teacher_gives_the_judges_encoder_frames(tiny_ctc_judge):
    teacher = load_teacher(f"ctc:{tiny_ctc_judge}")
    judge = load_judge(tiny_ctc_judge)
    assert (teacher.sample_rate, teacher.frame_rate, teacher.dim) == (16000, 50.0, judge.model.config.channels)
    assert "supervised" in teacher.label and str(teacher.spec).startswith("ctc:/")
    rng = np.random.default_rng(0)
    a, b = (0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 11000))
    audio = torch.zeros(2, 16000)
    audio[0], audio[1, :11000] = torch.from_numpy(a), torch.from_numpy(b)
    feats, frames = teacher.extract(audio, 16000, torch.tensor([16000, 11000]))
    assert frames.tolist() == [teacher.num_frames(16000), teacher.num_frames(11000)] == [51, 35]
    expected = judge.hidden_states([a, b], 16000)  # the judge's own batching: one item at a time
    for i, n in enumerate(frames.tolist()):
        assert torch.allclose(feats[i, :n], expected[i], atol=1e-5)
    # at another rate the teacher resamples; layer 0 is the input conv's output, not normed
    first, _ = load_teacher(f"ctc:{tiny_ctc_judge}@0").extract(audio[:1, :8000], 8000)
    assert first.shape == (1, teacher.num_frames(16000), teacher.dim) and not torch.allclose(first, feats[:1])
    assert torch.isfinite(first).all()


def test_bad_ctc_specs_are_one_line_errors(tiny_ctc_judge, tmp_path):
    with pytest.raises(ConfigError, match="layers 0..1"):
        load_teacher(f"ctc:{tiny_ctc_judge}@5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty"):
        load_teacher(f"ctc:{tmp_path / 'empty'}")
    with pytest.raises(ConfigError, match="ctc:/path"):
        TeacherSpec.parse("whisper:/x")


def test_semantic_vae_aligns_to_a_ctc_teacher(demo_corpus, tiny_ctc_judge, tmp_path):
    """A feature cache of the CTC teacher and a semantic VAE trained against it (2 steps)."""
    cache = tmp_path / "features"
    extract_features(load_teacher(f"ctc:{tiny_ctc_judge}"), demo_corpus / "manifest.jsonl", cache, progress=False)
    recipe_cls, config = load_recipe(builtin_config("semantic_vae/tiny"), [
        f"run_dir={tmp_path / 'run'}", f"data.train={demo_corpus / 'manifest.jsonl'}",
        f"alignment.teacher=ctc:{tiny_ctc_judge}", f"alignment.cache={cache}",
        "data.batch_size=2", "data.segment_seconds=0.5", "data.valid_items=2", "data.valid_seconds=0.5",
        "train.num_workers=0", "train.progress=false", "train.log_every=1", "train.valid_every=100",
        "train.checkpoint_every=100", "train.max_steps=2"])
    run = train_recorded(recipe_cls, config)
    assert all(-1.0 <= step["alignment"] <= 1.0 for step in run.losses)
