"""Latent diagnostics (semlat.evaluation.latent_probes) and ``semlat eval latents``: probes sit at
chance on random features and are perfect on labels-as-features, the frame probe never splits an
utterance, dimension statistics find planted dead dimensions and compute the KL exactly, robustness
is zero for a constant encoder and grows with noise for the identity, plots are written, and an
end-to-end run writes its report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import write_audio
from semlat.cli import main
from semlat.data.manifest import Manifest, Utterance
from semlat.evaluation import latent_probes as P
from semlat.evaluation.latent_eval import evaluate_latents, frame_labels, read_alignments

SR = 16000


def test_probe_on_random_features_sits_at_chance():
    rng = np.random.default_rng(0)
    accuracies = []
    for seed in range(3):
        labels = rng.integers(0, 4, 600)
        result = P.linear_probe(rng.standard_normal((600, 8)), labels, seed=seed)
        assert result["classes"] == 4 and result["balanced_chance"] == 0.25
        assert result["n_train"] + result["n_test"] == 600 and not (result["train_mask"] & result["test_mask"]).any()
        assert 0.25 <= result["chance"] < 0.35
        accuracies.append(result["accuracy"])
    assert abs(np.mean(accuracies) - 0.25) < 0.06


def test_probe_on_labels_as_features_is_perfect():
    rng = np.random.default_rng(1)
    labels = np.array([f"spk{v}" for v in rng.integers(0, 6, 300)])
    classes, y = np.unique(labels, return_inverse=True)
    features = np.eye(len(classes))[y] + 0.05 * rng.standard_normal((300, len(classes)))
    result = P.linear_probe(features, labels)
    assert result["accuracy"] == 1.0 and result["balanced_accuracy"] == 1.0
    assert result["chance"] < 0.5


def test_stratified_split_puts_every_class_on_both_sides():
    labels = ["a"] * 10 + ["b"] * 2 + ["c"]
    test = P.stratified_split(labels, 0.3, seed=0)
    for c in ("a", "b"):
        rows = np.array([v == c for v in labels])
        assert test[rows].any() and (~test[rows]).any()
    assert not test[-1]  # a lone example stays in train
    assert np.array_equal(test, P.stratified_split(labels, 0.3, seed=0))  # seeded


def test_speaker_probe_on_mean_pooled_latents():
    rng = np.random.default_rng(2)
    speakers = [f"s{k}" for k in range(4) for _ in range(6)]
    offsets = {s: 3 * rng.standard_normal(8) for s in set(speakers)}
    latents = [offsets[s][:, None] + rng.standard_normal((8, int(rng.integers(20, 40)))) for s in speakers]
    result = P.speaker_probe(latents, speakers)
    assert result["accuracy"] > 0.9 and result["balanced_chance"] == 0.25
    test = result["test_mask"]
    assert {speakers[i] for i in np.flatnonzero(test)} == set(speakers)  # every speaker is tested


def test_frame_probe_splits_by_utterance():
    rng = np.random.default_rng(3)
    latents, labels = [], []
    for _ in range(10):
        t = int(rng.integers(30, 60))
        lab = rng.integers(0, 3, t)
        latents.append(np.eye(3)[lab].T * 2 + 0.1 * rng.standard_normal((3, t)))
        labels.append([None if k % 7 == 0 else f"p{v}" for k, v in enumerate(lab)])
    result = P.frame_probe(latents, labels, seed=0)
    train, test = set(result["train_utterances"]), set(result["test_utterances"])
    assert train and test and not train & test and train | test == set(range(10))
    assert result["accuracy"] > 0.95
    labelled = sum(v is not None for lab in labels for v in lab)
    assert result["n_train"] + result["n_test"] == labelled
    capped = P.frame_probe(latents, labels, max_frames=100)
    assert capped["n_train"] + capped["n_test"] == 100
    assert not set(capped["train_utterances"]) & set(capped["test_utterances"])
    # held-out utterances (e.g. unseen speakers) are exactly the test side, counted per utterance
    flags = [k >= 7 for k in range(10)]
    held = P.frame_probe(latents, labels, held_out=flags)
    assert held["test_utterances"] == [7, 8, 9] and held["train_utterances"] == list(range(7))
    assert [u for u, _, _ in held["test_counts"]] == [7, 8, 9]
    assert sum(n for _, _, n in held["test_counts"]) == held["n_test"]
    assert sum(c for _, c, _ in held["test_counts"]) == round(held["accuracy"] * held["n_test"])
    with pytest.raises(ValueError, match="one side"):
        P.frame_probe(latents, labels, held_out=[True] * 10)


def test_dimension_stats_find_planted_dead_dims_and_exact_kl():
    rng = np.random.default_rng(4)
    latents = [rng.standard_normal((6, 50)) for _ in range(3)]
    for z in latents:
        z[2] = 0.7  # constant: dead by variance
    stats = P.dimension_stats(latents)
    assert stats["dead_dims"] == [2] and stats["active"] == 5 and stats["kl"] is None
    assert stats["mean"][2] == pytest.approx(0.7) and stats["variance"][2] == pytest.approx(0.0, abs=1e-20)

    mu = [np.full((3, 4), 1.0), np.full((3, 6), 1.0)]
    logvar = [np.full((3, 4), 0.0), np.full((3, 6), 0.0)]
    for m, lv in zip(mu, logvar):
        m[1], lv[1] = 0.0, 0.0      # the prior itself: KL 0, dead
        m[2], lv[2] = 0.5, math.log(2.0)
    mu[0][0] = 3.0  # dim 0: mu 3 on 4 frames, 1 on 6 -> mean KL (4 * 4.5 + 6 * 0.5) / 10
    sampled = [rng.standard_normal(m.shape) for m in mu]  # varying latents: only the KL can mark dims dead
    stats = P.dimension_stats(sampled, mu, logvar)
    expected = [(4 * 4.5 + 6 * 0.5) / 10, 0.0, 0.5 * (0.25 + 2.0 - 1.0 - math.log(2.0))]
    np.testing.assert_allclose(stats["kl"], expected, rtol=1e-12)
    assert stats["dead_dims"] == [1] and stats["active"] == 2


def test_robustness_zero_for_constant_encoder_and_grows_with_noise_for_identity():
    rng = np.random.default_rng(5)
    audio = [0.3 * rng.standard_normal(4000), 0.1 * np.sin(np.arange(3000) / 10.0)]
    constant = P.robustness(lambda x: np.ones((4, 10)), audio)
    assert all(r["mean"] == 0.0 and r["n"] == 2 for r in constant.values())
    identity = P.robustness(lambda x: x[None, :], audio)
    noise = [identity[f"noise_{snr}dB"]["mean"] for snr in (40, 30, 20)]
    assert noise[0] < noise[1] < noise[2]
    np.testing.assert_allclose(noise, [0.01, 10 ** -1.5, 0.1], rtol=0.1)  # sqrt of the noise-to-signal ratio
    assert identity["gain_x0.5"]["mean"] == pytest.approx(0.5) and identity["gain_x2"]["mean"] == pytest.approx(1.0)
    assert P.robustness(lambda x: x[None, :], audio)["noise_30dB"] == identity["noise_30dB"]  # seeded


def test_embedding_plot_writes_png(tmp_path):
    rng = np.random.default_rng(6)
    labels = [f"c{k % 3}" for k in range(40)]
    features = rng.standard_normal((40, 5)) + 3 * np.eye(5)[[k % 3 for k in range(40)]]
    path = P.embedding_plot(features, labels, tmp_path / "plots" / "t.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    small = P.embedding_plot(features[:3], labels[:3], tmp_path / "small.png", "few points")
    assert small.stat().st_size > 0
    assert P.embed_2d(features, method="pca").shape == (40, 2)


def test_size_per_second_and_frame_labels():
    assert P.size_per_second(64, 40.0) == 2560.0
    assert P.size_per_second(80, 22050 / 4096) == pytest.approx(430.66, abs=0.01)
    labels = frame_labels([("a", 0.0, 0.1), ("b", 0.1, 0.2)], 10, 40.0)  # centres 12.5, 37.5, ... ms
    assert labels == ["a"] * 4 + ["b"] * 4 + [None] * 2


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    """Twelve short synthetic utterances: three 'speakers' (pitches), two event labels, splits."""
    root = tmp_path_factory.mktemp("latent_corpus")
    rng = np.random.default_rng(7)
    utterances = []
    for k in range(12):
        speaker = f"spk{k % 3}"
        seconds = 0.5 + 0.05 * (k % 4)
        t = np.arange(round(seconds * SR)) / SR
        f0 = (110, 180, 300)[k % 3]
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(len(t))
        name = f"wav/u{k:02d}.wav"
        write_audio(root / name, x.astype(np.float32)[:, None], SR)
        utterances.append(Utterance(audio=name, duration=seconds, sample_rate=SR, speaker=speaker,
                                    label="hum" if k % 2 else "buzz", split="test" if k < 10 else "train"))
    Manifest(utterances, root).write(root / "manifest.jsonl")
    align = root / "align.jsonl"
    lines = [json.dumps({"id": u.audio, "segments": [["a", 0.0, 0.2], ["b", 0.2, 0.35], ["sil", 0.35, u.duration]]})
             for u in utterances[:8]]
    align.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_evaluate_latents_end_to_end(model_dir, tone_corpus, tmp_path, one_thread):
    out = tmp_path / "latents"
    report = evaluate_latents(model_dir, tone_corpus / "manifest.jsonl", out, split="test",
                              alignments=tone_corpus / "align.jsonl", device="cpu", progress=False)
    assert report["data"]["encoded"] == 10
    assert report["size"] == {"latent_dim": 16, "frame_rate": 40.0, "floats_per_second": 640.0}
    for name in ("speaker", "event", "phoneme"):
        probe = report["probes"][name]
        assert "skipped" not in probe, probe
        assert 0.0 <= probe["accuracy"] <= 1.0 and 0.0 < probe["chance"] <= 1.0
    phone = report["probes"]["phoneme"]
    assert phone["classes"] == 3 and not set(phone["train_utterances"]) & set(phone["test_utterances"])
    # spk0 has no train-split utterance: the unseen-speaker probe trains on spk1/spk2 and scores spk0's 3 aligned
    unseen = report["probes"]["phoneme_unseen_speakers"]
    assert unseen["unseen_speakers"] == ["spk0"] and unseen["test_utterances"] == 3 and unseen["train_utterances"] == 5
    assert set(unseen["test_counts"]) == {"wav/u00.wav", "wav/u03.wav", "wav/u06.wav"}
    low, high = unseen["ci95"]
    assert low <= unseen["accuracy"] <= high
    dims = report["dimensions"]
    assert dims["kl_source"] and len(dims["per_dim"]) == 16 and all(d["kl"] >= 0 for d in dims["per_dim"])
    assert set(report["robustness"]) == {"noise_40dB", "noise_30dB", "noise_20dB", "gain_x0.5", "gain_x2"}
    assert set(report["figures"]) == {"speaker", "event", "phoneme", "probes", "dimensions"}
    for file in report["figures"].values():
        assert (out / file).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "report.json").read_text())
    assert saved["model"]["weights_sha256"] == report["model"]["weights_sha256"] and saved["data"]["split"] == "test"
    md = (out / "report.md").read_text()
    assert "| speaker |" in md and "chance" in md and "floats per second" in md
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes left no temporaries


def test_eval_latents_cli_on_demo_corpus(model_dir, demo_corpus, tmp_path, capsys, one_thread):
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    align = tmp_path / "align.jsonl"
    rows = []
    for u in manifest:  # hand-written alignments: three equal phone-like segments per utterance
        d = u.duration / 3
        rows.append(json.dumps({"id": u.audio, "segments": [["x", 0, d], ["y", d, 2 * d], ["z", 2 * d, 3 * d]]}))
    align.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "demo_latents"
    argv = ["eval", "latents", str(model_dir), str(demo_corpus / "manifest.jsonl"), "--out", str(out),
            "--alignments", str(align), "--device", "cpu", "--max-utterances", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| probe | accuracy | chance (majority) |" in printed and "floats/s" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["encoded"] == 8 and report["probes"]["phoneme"]["classes"] == 3
    assert (out / "report.md").exists() and (out / "tsne_phoneme.png").exists()


@pytest.mark.parametrize("content, message", [
    ("not json\n", "not valid JSON"),
    ('{"segments": []}\n', "'id' string"),
    ('{"id": "a.wav", "segments": [["x", 0.5, 0.2]]}\n', "bad segment"),
    ('{"id": "a.wav", "segments": "x"}\n', "'segments' must be a list"),
    ('{"id": "a.wav", "segments": []}\n{"id": "a.wav", "segments": []}\n', "duplicate id"),
    ("\n", "no alignments"),
])
def test_bad_alignments_are_one_line_errors(model_dir, tone_corpus, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(Exception, match=message):
        read_alignments(bad)
    argv = ["eval", "latents", str(model_dir), str(tone_corpus / "manifest.jsonl"), "--out", str(tmp_path / "o"),
            "--alignments", str(bad), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("semlat: error: ") and message in err and err.count("\n") == 1
