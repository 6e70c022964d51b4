"""PANNs Cnn14 and VGGish embedders: key layout of the released checkpoints, strict loading with one-line
errors, output shapes, resampling, short input, determinism.

Real-size networks are built once per module (one ~80M / ~72M parameter checkpoint each, random
weights); error cases use small files. The numeric parity with the reference implementations
(torchlibrosa + audioset_tagging_cnn, torchvggish) was checked outside the test suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from semlat.checkpoints import read_foreign_weights
from semlat.errors import CheckpointError, ConfigError
from semlat.evaluation import panns, vggish

TINY = (4, 4, 8, 8, 8, 16)


def _cnn14_listing(n_fft: int, channels=panns.CHANNELS, classes: int = 527) -> dict[str, tuple[int, ...]]:
    """The reference Cnn14 state dict (audioset_tagging_cnn pytorch/models.py + torchlibrosa), by hand."""
    freqs = n_fft // 2 + 1
    keys = {"spectrogram_extractor.stft.conv_real.weight": (freqs, 1, n_fft),
            "spectrogram_extractor.stft.conv_imag.weight": (freqs, 1, n_fft),
            "logmel_extractor.melW": (freqs, 64)}

    def bn(prefix: str, n: int) -> None:
        keys.update({f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), f"{prefix}.running_mean": (n,),
                     f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": ()})

    bn("bn0", 64)
    widths = (1, *channels)
    for i in range(6):
        c_in, c_out = widths[i], widths[i + 1]
        keys[f"conv_block{i + 1}.conv1.weight"] = (c_out, c_in, 3, 3)
        keys[f"conv_block{i + 1}.conv2.weight"] = (c_out, c_out, 3, 3)
        bn(f"conv_block{i + 1}.bn1", c_out)
        bn(f"conv_block{i + 1}.bn2", c_out)
    keys.update({"fc1.weight": (channels[-1], channels[-1]), "fc1.bias": (channels[-1],),
                 "fc_audioset.weight": (classes, channels[-1]), "fc_audioset.bias": (classes,)})
    return keys


VGGISH_LISTING = {  # torchvggish vggish.py: VGG(make_layers()), 18 tensors
    "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
}


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))


def _noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1


# --- PANNs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate,n_fft", [(32000, 1024), (16000, 512)])
def test_cnn14_real_size_keys_match_reference_listing(rate, n_fft):
    with torch.device("meta"):
        model = panns.Cnn14(panns.VARIANTS[rate])
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(got) == 84
    assert got == _cnn14_listing(n_fft)


def test_cnn14_front_end_constants():
    assert panns.VARIANTS[32000] == panns.FrontEnd(32000, 1024, 320, 64, 50.0, 14000.0)
    assert panns.VARIANTS[16000] == panns.FrontEnd(16000, 512, 160, 64, 50.0, 8000.0)
    # librosa's slaney filterbank, as the reference stores in melW
    librosa = pytest.importorskip("librosa")
    want = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000).T
    got = panns.LogMel(panns.VARIANTS[16000]).melW.numpy()
    assert np.abs(got - want).max() < 1e-6


@pytest.fixture(scope="module")
def cnn14_16k(tmp_path_factory):
    """A real-size 16 kHz Cnn14 with random weights, saved as the released file is: {"model": ..., "sampler": ...}."""
    torch.manual_seed(0)
    model = panns.Cnn14(panns.VARIANTS[16000]).eval()
    _randomise_bn(model)
    path = tmp_path_factory.mktemp("panns") / "Cnn14_16k_mAP=0.438.pth"
    sampler = {"indexes_per_class": [np.arange(5), np.arange(3)], "pointers_of_classes": [np.int64(2), 0]}
    torch.save({"iteration": 10, "model": model.state_dict(), "sampler": sampler}, path)
    return path, model


def test_panns_embedder_real_size(cnn14_16k):
    path, model = cnn14_16k
    emb = panns.PannsEmbedder(path)
    assert (emb.sample_rate, emb.dim) == (16000, 2048)
    assert emb.label.startswith("panns-cnn14 (Cnn14_16k_mAP=0.438.pth, sha256 ") and emb.label.endswith(", 16000 Hz)")
    x = _noise(1.0, 16000)
    out = emb.embed(x, 16000)
    assert out.shape == (1, 2048) and out.dtype == torch.float32 and out.device.type == "cpu"
    with torch.no_grad():
        want = model(torch.from_numpy(x).float()[None])
    assert torch.allclose(out, want, atol=1e-5)            # saved -> loaded gives the same output
    assert (out > 0).any() and (out >= 0).all()             # ReLU'd fc1 output, not all zero
    assert torch.equal(emb.embed(torch.from_numpy(x)[None], 16000), out)   # [1, N] torch, deterministic


def test_panns_rate_mismatch_is_config_error(cnn14_16k):
    with pytest.raises(ConfigError, match="16000 Hz variant"):
        panns.PannsEmbedder(cnn14_16k[0], sample_rate=32000)


@pytest.fixture
def tiny_cnn14(monkeypatch):
    monkeypatch.setattr(panns, "CHANNELS", TINY)
    torch.manual_seed(1)
    model = panns.Cnn14(panns.VARIANTS[32000]).eval()
    _randomise_bn(model)
    return model


def test_panns_bare_and_wrapped_and_safetensors_load_the_same(tiny_cnn14, tmp_path):
    state = tiny_cnn14.state_dict()
    torch.save(state, tmp_path / "bare.pth")
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    x = _noise(0.5, 32000, seed=3)
    outs = [panns.PannsEmbedder(tmp_path / name).embed(x, 32000) for name in ("bare.pth", "wrapped.pth", "w.safetensors")]
    with torch.no_grad():
        want = tiny_cnn14(torch.from_numpy(x).float()[None])
    assert outs[0].shape == (1, 16)
    for out in outs:
        assert torch.allclose(out, want, atol=1e-5)


def test_panns_resamples_and_pads_short_audio(tiny_cnn14, tmp_path):
    torch.save({"model": tiny_cnn14.state_dict()}, tmp_path / "c.pth")
    emb = panns.PannsEmbedder(tmp_path / "c.pth")
    x32 = _noise(0.8, 32000, seed=4)
    x16 = x32[::2].copy()                                   # other rate: resampled back to 32 kHz
    a, b = emb.embed(x32, 32000), emb.embed(x16, 16000)
    assert a.shape == b.shape == (1, 16)
    assert not torch.equal(a, b) and torch.isfinite(b).all()
    short = emb.embed(_noise(0.05, 32000), 32000)           # 1600 samples < 9920: zero-padded
    assert short.shape == (1, 16) and torch.isfinite(short).all()
    with torch.no_grad():
        padded = np.pad(_noise(0.05, 32000), (0, panns.VARIANTS[32000].min_samples - 1600))
        assert torch.allclose(short, tiny_cnn14(torch.from_numpy(padded).float()[None]), atol=1e-5)


def test_panns_refuses_wrong_dft_kernels(tiny_cnn14, tmp_path):
    state = tiny_cnn14.state_dict()
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.randn_like(state["spectrogram_extractor.stft.conv_real.weight"])
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad\.pth: .*conv_real\.weight is not the Hann-windowed DFT"):
        panns.from_checkpoint(tmp_path / "bad.pth")


def _one_line(err: pytest.ExceptionInfo, path) -> str:
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    return text


def test_panns_errors_are_one_line_and_name_the_file(tiny_cnn14, tmp_path):
    state = tiny_cnn14.state_dict()
    missing = dict(state)
    del missing["fc1.bias"]
    torch.save({"model": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError) as err:
        panns.from_checkpoint(tmp_path / "missing.pth")
    assert "1 missing key(s): fc1.bias" in _one_line(err, tmp_path / "missing.pth")

    extra = dict(state, **{"head.weight": torch.zeros(2)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError) as err:
        panns.from_checkpoint(tmp_path / "extra.pth")
    assert "1 unexpected key(s): head.weight" in _one_line(err, tmp_path / "extra.pth")

    wrong = dict(state, **{"fc1.weight": torch.zeros(16, 15)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError) as err:
        panns.from_checkpoint(tmp_path / "wrong.pth")
    assert "fc1.weight (16, 15) != (16, 16)" in _one_line(err, tmp_path / "wrong.pth")

    with pytest.raises(CheckpointError) as err:
        panns.PannsEmbedder(tmp_path / "absent.pth")
    assert "no such checkpoint file" in _one_line(err, tmp_path / "absent.pth")

    (tmp_path / "junk.pth").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError) as err:
        panns.PannsEmbedder(tmp_path / "junk.pth")
    assert "cannot read" in _one_line(err, tmp_path / "junk.pth")

    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    with pytest.raises(CheckpointError) as err:
        panns.PannsEmbedder(tmp_path / "junk.safetensors")
    assert "unreadable safetensors" in _one_line(err, tmp_path / "junk.safetensors")

    torch.save({"model": {"fc1.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as err:
        panns.PannsEmbedder(tmp_path / "other.pth")
    assert "not a PANNs Cnn14 checkpoint" in _one_line(err, tmp_path / "other.pth")


def test_weights_only_load_refuses_arbitrary_objects(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": ConfigError("x")}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError, match="cannot read as a weights-only torch file"):
        read_foreign_weights(tmp_path / "obj.pth")


# --- VGGish -----------------------------------------------------------------------------------

def test_vggish_real_size_keys_match_reference_listing():
    with torch.device("meta"):
        model = vggish.VGGish()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == VGGISH_LISTING


def test_vggish_front_end_constants():
    front = vggish.VGGishFrontEnd()
    assert (vggish.WINDOW, vggish.HOP, vggish.N_FFT, vggish.N_MELS) == (400, 160, 512, 64)
    assert vggish.MIN_SAMPLES == 15600
    mel = front.mel
    assert mel.shape == (257, 64) and torch.all(mel[0] == 0) and torch.all(mel.amax(0) <= 1)
    # band 0 starts at 125 Hz: bins at or below 125 Hz (bin 4 = 125 Hz) get no weight
    assert torch.all(mel[:5, 0] == 0) and mel[5, 0] > 0
    x = torch.from_numpy(_noise(2.0, 16000))
    assert front(x).shape == (2, 96, 64)                    # 196 frames -> 2 whole examples
    with pytest.raises(ValueError, match="at least 15600 samples"):
        front(x[:15599])


@pytest.fixture(scope="module")
def vggish_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = vggish.VGGish().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.bias.normal_(0, 0.05)
    folder = tmp_path_factory.mktemp("vggish")
    torch.save(model.state_dict(), folder / "vggish-10086976.pth")
    gen = np.random.default_rng(1)
    pca = {"pca_eigen_vectors": (gen.standard_normal((128, 128)) * 0.3).astype(np.float32),
           "pca_means": (gen.standard_normal(128) * 0.1).astype(np.float32)}
    torch.save(pca, folder / "vggish_pca_params-970ea276.pth")   # numpy arrays, as released
    np.savez(folder / "vggish_pca_params.npz", **pca)
    return folder, model, pca


def test_vggish_embedder_shapes_options_and_round_trip(vggish_ckpt):
    folder, model, pca = vggish_ckpt
    emb = vggish.VGGishEmbedder(folder / "vggish-10086976.pth")
    assert (emb.sample_rate, emb.dim) == (16000, 128)
    assert emb.label.startswith("vggish (vggish-10086976.pth, sha256 ")
    x = _noise(3.5, 16000)
    out = emb.embed(x, 16000)
    assert out.shape == (3, 128) and out.dtype == torch.float32
    with torch.no_grad():
        want = model(vggish.VGGishFrontEnd()(torch.from_numpy(x)).float())
    assert torch.allclose(out, want, atol=1e-6)
    assert (out < 0).any()                                  # raw last layer, no ReLU by default
    assert torch.equal(emb.embed(torch.from_numpy(x)[None], 16000), out)    # [1, N] torch, deterministic

    relu = vggish.VGGishEmbedder(folder / "vggish-10086976.pth", final_relu=True).embed(x, 16000)
    assert torch.allclose(relu, out.clamp(min=0))

    for pca_file in ("vggish_pca_params-970ea276.pth", "vggish_pca_params.npz"):
        post = vggish.VGGishEmbedder(folder / "vggish-10086976.pth", final_relu=True, postprocess=True,
                                     pca=folder / pca_file).embed(x, 16000)
        whitened = (relu.double() - torch.from_numpy(pca["pca_means"]).double()) @ torch.from_numpy(pca["pca_eigen_vectors"]).double().T
        expect = torch.round((whitened.clamp(-2, 2) + 2) * (255 / 4))
        assert post.shape == (3, 128)
        assert (post - expect).abs().max() <= 1             # at most a rounding-boundary step
        assert post.min() >= 0 and post.max() <= 255 and torch.equal(post, post.round())


def test_vggish_resampling_and_short_audio(vggish_ckpt):
    folder, _, _ = vggish_ckpt
    emb = vggish.VGGishEmbedder(folder / "vggish-10086976.pth")
    x44 = _noise(2.5, 44100, seed=5)
    out = emb.embed(x44, 44100)
    assert out.shape == (2, 128) and torch.isfinite(out).all()
    short = emb.embed(_noise(0.2, 16000), 16000)            # padded to one example
    assert short.shape == (1, 128)
    assert not torch.equal(short, emb.embed(np.zeros(100), 16000))
    with pytest.raises(ValueError, match="1-D"):
        emb.embed(np.zeros((2, 16000)), 16000)


def test_vggish_errors_are_one_line_and_name_the_file(vggish_ckpt, tmp_path):
    folder = vggish_ckpt[0]
    with pytest.raises(ConfigError, match="needs the PCA parameter file"):
        vggish.VGGishEmbedder(folder / "vggish-10086976.pth", postprocess=True)
    small = {k: torch.zeros(1) for k in ("features.0.bias", "embeddings.4.bias")}
    torch.save({"model": small}, tmp_path / "small.pth")
    with pytest.raises(CheckpointError) as err:
        vggish.from_checkpoint(tmp_path / "small.pth")
    text = _one_line(err, tmp_path / "small.pth")
    assert "16 missing key(s): embeddings.0.bias" in text and "features.0.bias (1,) != (64,)" in text

    torch.save({"pca_eigen_vectors": np.zeros((128, 64), np.float32), "pca_means": np.zeros(128, np.float32)},
               tmp_path / "pca.pth")
    with pytest.raises(CheckpointError) as err:
        vggish.pca_from_file(tmp_path / "pca.pth")
    assert "pca_eigen_vectors (128, 64) != (128, 128)" in _one_line(err, tmp_path / "pca.pth")

    np.savez(tmp_path / "pca.npz", pca_means=np.zeros(128, np.float32))
    with pytest.raises(CheckpointError) as err:
        vggish.pca_from_file(tmp_path / "pca.npz")
    assert "missing key(s): pca_eigen_vectors" in _one_line(err, tmp_path / "pca.npz")

    with pytest.raises(CheckpointError) as err:
        vggish.VGGishEmbedder(tmp_path / "absent.pth")
    assert "no such checkpoint file" in _one_line(err, tmp_path / "absent.pth")


def test_specs_load_both_models_for_eval_audio(cnn14_16k, vggish_ckpt, tmp_path):
    from semlat.evaluation.embedders import default_pooling, load_audio_embedder
    from semlat.evaluation.generation_eval import evaluate_audio

    (path, _), (folder, _, _) = cnn14_16k, vggish_ckpt
    panns_embedder = load_audio_embedder(f"panns:{path}")
    vggish_embedder = load_audio_embedder(f"vggish:{folder / 'vggish-10086976.pth'}")
    assert isinstance(panns_embedder, panns.PannsEmbedder) and default_pooling(panns_embedder) == "clip"
    assert isinstance(vggish_embedder, vggish.VGGishEmbedder) and default_pooling(vggish_embedder) == "frames"
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        sf.write(clips / f"{i}.wav", _noise(1.2, 22050, seed=i).astype(np.float32), 22050)
    report = evaluate_audio(clips, clips, tmp_path / "fd", embedding=f"panns:{path}", progress=False)
    fd = report["frechet"]
    assert fd["value"] == pytest.approx(0.0, abs=1e-3) and fd["pooling"] == "clip" and fd["generated"]["rows"] == 3
    assert fd["judge"].startswith("panns-cnn14 (Cnn14_16k_mAP=0.438.pth")
