"""The offline HuBERT teacher: MFCC targets, k-means, masking and alignment, training, saving, loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from semlat.errors import ConfigError
from semlat.models import load_teacher
from semlat.semantic.hubert_teacher import (
    FORMAT,
    MFCC,
    MFCCConfig,
    assign_clusters,
    conv_frames,
    dct_matrix,
    deltas,
    fit_kmeans,
    frame_labels,
    hubert_config,
    mfcc,
    normalize_audio,
    span_mask,
)
from semlat.semantic.teachers import TeacherSpec
from semlat.training.run import train_teacher


def _noise(seconds: float, seed: int = 0, amplitude: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return amplitude * torch.randn(1, round(seconds * 16000), generator=g)


# --------------------------------------------------------------------------------------------- MFCC


def test_dct_matrix_is_scipy_orthonormal_dct_ii():
    import scipy.fft

    reference = scipy.fft.dct(np.eye(40), type=2, norm="ortho", axis=0)[:13]
    np.testing.assert_allclose(dct_matrix(13, 40).numpy(), reference, atol=1e-6)
    full = dct_matrix(40, 40)
    torch.testing.assert_close(full @ full.T, torch.eye(40), atol=1e-5, rtol=0)


def test_mfcc_shape_and_rate():
    config = MFCCConfig()
    one, two = mfcc(_noise(1.0)), mfcc(_noise(2.0))
    assert one.shape == (1, config.frames(16000), 39) == (1, 98, 39)  # (16000 - 400) // 160 + 1
    assert two.shape[1] - one.shape[1] == 100  # 100 Hz
    assert config.frame_rate == 100.0
    batch = mfcc(torch.cat([_noise(1.0, 1), _noise(1.0, 2)]))
    assert batch.shape == (2, 98, 39) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch[:1], mfcc(_noise(1.0, 1)))


def test_c0_tracks_log_energy_and_other_cepstra_ignore_gain():
    x = _noise(1.0)
    quiet, loud = mfcc(x), mfcc(2 * x)
    # c0 = sum(log mel) / sqrt(n_mels): doubling the amplitude adds n_mels * ln 4 / sqrt(n_mels).
    expected = math.sqrt(40) * math.log(4.0)
    torch.testing.assert_close(loud[..., 0] - quiet[..., 0], torch.full_like(quiet[..., 0], expected), atol=1e-3,
                               rtol=0)
    torch.testing.assert_close(loud[..., 1:13], quiet[..., 1:13], atol=2e-3, rtol=0)
    # and a loud frame has a larger c0 than a quiet one within one signal
    ramp = torch.cat([x[:, :8000] * 0.1, x[:, 8000:]], dim=1)
    c0 = mfcc(ramp)[0, :, 0]
    assert c0[-10:].mean() > c0[:10].mean() + 20


def test_deltas_of_a_stationary_signal_vanish_and_of_a_ramp_are_its_slope():
    t = torch.arange(16000) / 16000
    tone = 0.3 * torch.sin(2 * math.pi * 1000 * t)[None]  # 16 periods per 160-sample hop: identical frames
    features = mfcc(tone)
    assert features[..., :13].abs().max() > 1
    assert features[..., 13:].abs().max() < 1e-3
    ramp = torch.arange(20, dtype=torch.float32)[None, :, None].repeat(1, 1, 3)
    torch.testing.assert_close(deltas(ramp, 2)[:, 2:-2], torch.ones(1, 16, 3))


def test_mfcc_rejects_audio_shorter_than_a_window():
    with pytest.raises(ValueError, match="shorter than one MFCC window"):
        MFCC()(torch.zeros(1, 399))


# ------------------------------------------------------------------------------------------ k-means


def test_kmeans_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (6, 39))
    frames = (centres[rng.integers(0, 6, 3000)] + rng.normal(0, 1, (3000, 39))).astype(np.float32)
    a, inertia_a = fit_kmeans(frames, 6, seed=3, n_init=1)
    b, inertia_b = fit_kmeans(frames, 6, seed=3, n_init=1)
    assert a.shape == (6, 39) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert inertia_a == inertia_b < 39 * 1.5  # it found the six blobs
    labels = assign_clusters(torch.from_numpy(frames), a)
    assert labels.shape == (3000,) and len(labels.unique()) == 6


# ---------------------------------------------------------------------------- alignment and masks


def test_label_downsampling_matches_the_conv_frames():
    from transformers import HubertModel

    model = HubertModel(hubert_config(hidden=32, layers=1, heads=2, conv_dim=8))
    config = MFCCConfig()
    for n in (400, 719, 720, 16000, 16399, 48123):
        frames = conv_frames(n)
        assert frames == int(model._get_feat_extract_output_lengths(torch.tensor(n)))
        assert frames == (n - 400) // 320 + 1
        # conv frame j and MFCC frame 2j both cover samples [320 j, 320 j + 400)
        assert 2 * (frames - 1) < config.frames(n)
    labels = torch.arange(10)[None]
    assert frame_labels(labels, 5).tolist() == [[0, 2, 4, 6, 8]]
    with pytest.raises(ValueError):
        frame_labels(labels, 6)


def test_span_mask_is_seeded_spans_within_valid_frames():
    lengths = torch.tensor([100, 60, 5])
    a = span_mask(lengths, 100, 0.8, 10, np.random.default_rng(0))
    b = span_mask(lengths, 100, 0.8, 10, np.random.default_rng(0))
    assert a.dtype == torch.bool and a.shape == (3, 100) and torch.equal(a, b)
    assert not a[1, 60:].any() and not a[2, 5:].any()
    assert a[2, :5].all()  # an item shorter than a span is masked whole
    assert 0.4 < a[0].float().mean() < 0.75  # p = 0.8 of starts, span 10: about 55 % masked


def test_normalize_audio_matches_wav2vec2_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    audio = torch.randn(2, 1000) * 0.3 + 0.1
    lengths = torch.tensor([1000, 700])
    ours = normalize_audio(audio, lengths)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True)
    mask = (torch.arange(1000)[None] < lengths[:, None]).numpy()
    theirs = extractor.zero_mean_unit_var_norm(list(audio.numpy()), mask)
    np.testing.assert_allclose(ours.numpy(), np.stack(theirs), atol=1e-5)


# ------------------------------------------------------------------------------ train, save, load


@pytest.fixture(scope="module")
def tiny_teacher(demo_corpus: Path, tmp_path_factory) -> Path:
    """The teacher recipe's tiny config, 3 steps; the latest checkpoint (a model folder)."""
    out = tmp_path_factory.mktemp("teacher") / "tiny"
    return train_teacher(str(demo_corpus / "manifest.jsonl"), str(out), steps=3, config="teacher/tiny", progress=False)


def test_train_teacher_writes_a_model_folder(tiny_teacher: Path, demo_corpus: Path):
    from safetensors.torch import load_file

    assert {"config.json", "model.safetensors", "training.safetensors", "trainer_state.pt"} <= {
        p.name for p in tiny_teacher.iterdir()}
    info = json.loads((tiny_teacher / "config.json").read_text())
    assert info["model_type"] == "hubert_teacher"
    assert {k: info["training"][k] for k in ("recipe", "step")} == {"recipe": "teacher", "step": 3}
    assert (info["sample_rate"], info["frame_rate"], info["dim"], info["num_layers"], info["clusters"]) == (
        16000, 50.0, 32, 2, 8)
    assert info["recommended_layer"] == 1 and info["mfcc"]["n_mfcc"] == 13 and info["mfcc"]["n_mels"] == 40
    assert 0 <= info["heldout"]["accuracy"] <= 1 and info["heldout"]["chance"] == 1 / 8
    assert info["manifest"] == str((demo_corpus / "manifest.jsonl").resolve())
    assert info["config"]["clusters"] == 8 and info["kmeans"]["frames"] > 0
    run = tiny_teacher.parent.parent
    centroids = load_file(str(run / "kmeans.safetensors"))["centroids"]
    assert centroids.shape == (8, 39)
    assert torch.equal(load_file(str(tiny_teacher / "model.safetensors"))["centroids"], centroids)
    assert (run / "config.yaml").is_file() and (run / "tensorboard").is_dir()  # an ordinary training run


def test_load_semlat_teacher_gives_frozen_50hz_features(tiny_teacher: Path):
    teacher = load_teacher(f"semlat:{tiny_teacher}")
    assert str(teacher.spec) == f"semlat:{tiny_teacher.resolve()}"
    assert TeacherSpec.parse(str(teacher.spec)) == teacher.spec
    assert (teacher.sample_rate, teacher.frame_rate, teacher.dim) == (16000, 50.0, 32)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    audio = torch.cat([_noise(1.0, 1), _noise(1.0, 2)])
    features, frames = teacher.extract(audio, 16000, torch.tensor([16000, 8000]))
    assert features.shape == (2, 49, 32) and frames.tolist() == [49, 24]
    assert features.dtype == torch.float32 and not features.requires_grad
    # 2 s at 22.05 kHz is resampled: 100 frames at 50 Hz
    resampled, _ = teacher.extract(torch.randn(1, 1, 44100) * 0.1, 22050)
    assert resampled.shape == (1, teacher.num_frames(32000), 32) == (1, 99, 32)
    # no layer = the recommended one; the same as asking for it explicitly; other layers differ
    explicit = load_teacher(f"semlat:{tiny_teacher}@1")
    assert str(explicit.spec) == f"semlat:{tiny_teacher.resolve()}@1"
    torch.testing.assert_close(explicit.extract(audio, 16000)[0], teacher.extract(audio, 16000)[0])
    assert not torch.allclose(load_teacher(f"semlat:{tiny_teacher}@0").extract(audio, 16000)[0],
                              explicit.extract(audio, 16000)[0])
    # the training run stands for its latest checkpoint
    run = load_teacher(f"semlat:{tiny_teacher.parent.parent}")
    torch.testing.assert_close(run.extract(audio, 16000)[0], teacher.extract(audio, 16000)[0])


def test_loaded_teacher_sees_what_training_fed_the_model(tiny_teacher: Path):
    """The loader's normalisation and layer indexing match the training loop's."""
    from semlat.models import load_model

    model = load_model(tiny_teacher).predictor.hubert
    audio = _noise(1.0, 5, amplitude=0.3) + 0.05
    with torch.no_grad():
        states = model(normalize_audio(audio, torch.tensor([16000])), output_hidden_states=True).hidden_states
    features, _ = load_teacher(f"semlat:{tiny_teacher}@2").extract(audio, 16000)
    torch.testing.assert_close(features, states[2], atol=1e-4, rtol=1e-4)


def test_teacher_training_resumes_and_guards_folders(tiny_teacher: Path, demo_corpus: Path, tmp_path):
    import shutil

    manifest = str(demo_corpus / "manifest.jsonl")
    run = tmp_path / "run"
    shutil.copytree(tiny_teacher.parent.parent, run)
    resumed = train_teacher(manifest, str(run), steps=5, config="teacher/tiny", progress=False)
    assert json.loads((resumed / "config.json").read_text())["training"]["step"] == 5  # resumed at 3
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a training run; refusing"):
        train_teacher(manifest, str(other), steps=1, config="teacher/tiny", progress=False)
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    with pytest.raises(ConfigError, match="model.colour"):
        train_teacher(manifest, str(tmp_path / "x"), steps=1, config="teacher/tiny", overrides=["model.colour=red"])
    with pytest.raises(ConfigError, match="mask_prob"):
        train_teacher(manifest, str(tmp_path / "x"), steps=1, config="teacher/tiny", overrides=["masking.mask_prob=2"])


def test_missing_and_invalid_teacher_folders_are_one_line_errors(tiny_teacher: Path, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_teacher(f"semlat:{tmp_path / 'absent'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="is not a semlat teacher") as err:
        load_teacher(f"semlat:{empty}")
    assert "\n" not in str(err.value)
    (empty / "teacher.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable teacher description"):
        load_teacher(f"semlat:{empty}")
    (empty / "teacher.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a semlat teacher"):
        load_teacher(f"semlat:{empty}")
    info = {"format": FORMAT, "sample_rate": 16000, "frame_rate": 50.0, "dim": 32, "num_layers": 2,
            "recommended_layer": 1}
    (empty / "teacher.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="hubert/ is missing"):
        load_teacher(f"semlat:{empty}")
    with pytest.raises(ConfigError, match="out of range"):
        load_teacher(f"semlat:{tiny_teacher}@7")
    with pytest.raises(ConfigError, match="not a semlat teacher"):
        load_teacher(f"semlat:{tiny_teacher.parent.parent.parent}")


def test_teacher_folders_of_semlat_0_1_still_load(tiny_teacher: Path, tmp_path):
    """A ``teacher.json`` + ``hubert/`` folder (the earlier format) gives the same features."""
    from semlat.models import load_model

    legacy = tmp_path / "legacy"
    load_model(tiny_teacher).predictor.hubert.save_pretrained(legacy / "hubert")
    (legacy / "hubert" / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000, "do_normalize": True,
         "return_attention_mask": False, "feature_size": 1, "padding_value": 0.0}))
    (legacy / "teacher.json").write_text(json.dumps({"format": FORMAT, "sample_rate": 16000, "frame_rate": 50.0,
                                                     "dim": 32, "num_layers": 2, "recommended_layer": 1}))
    audio = _noise(1.0, 7)
    expected = load_teacher(f"semlat:{tiny_teacher}").extract(audio, 16000)[0]
    torch.testing.assert_close(load_teacher(f"semlat:{legacy}").extract(audio, 16000)[0], expected,
                               atol=1e-5, rtol=1e-5)
    # semlat.load takes the old layout too (checkpoints.LEGACY_LAYOUTS): the teacher it holds
    import semlat

    torch.testing.assert_close(semlat.load(legacy, device="cpu").extract(audio, 16000)[0], expected,
                               atol=1e-5, rtol=1e-5)


def test_teacher_trains_through_semlat_train_and_resumes_exactly(demo_corpus: Path, tmp_path):
    """The teacher is an ordinary recipe: `semlat train teacher/tiny`, then --resume, ends where a
    straight run ends (weights equal; the k-means of the run is reused, not refitted)."""
    from safetensors.torch import load_file

    from semlat.cli import main

    common = [f"data.train={demo_corpus / 'manifest.jsonl'}", "train.progress=false", "train.checkpoint_every=2"]
    assert main(["train", "teacher/tiny", f"run_dir={tmp_path / 'straight'}", "train.max_steps=4", *common]) == 0
    assert main(["train", "teacher/tiny", f"run_dir={tmp_path / 'split'}", "train.max_steps=2", *common]) == 0
    kmeans = (tmp_path / "split" / "kmeans.safetensors").stat().st_mtime_ns
    assert main(["train", "--resume", str(tmp_path / "split"), "train.max_steps=4"]) == 0
    assert (tmp_path / "split" / "kmeans.safetensors").stat().st_mtime_ns == kmeans
    a = load_file(str(tmp_path / "straight/checkpoints/step-00000004/model.safetensors"))
    b = load_file(str(tmp_path / "split/checkpoints/step-00000004/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
