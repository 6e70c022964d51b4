"""HFTeacher: Hugging Face speech models (WavLM, HuBERT, wav2vec2, data2vec-audio, Whisper) as teachers.

Every model is a tiny random-weight one built from a ``transformers`` config and saved to a tmp folder
with a matching feature extractor; nothing is downloaded (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semlat.audio.processing import resample
from semlat.errors import ConfigError
from semlat.models import load_teacher
from semlat.semantic.teachers import TeacherSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is first imported, if it is not yet
transformers = pytest.importorskip("transformers")

SR = 16000
DIM = 32
LAYERS = 3  # transformer layers of every wav2vec2-family model; hidden states 0..3
CONV = {"conv_dim": (16,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2)}
SMALL = {"hidden_size": DIM, "num_hidden_layers": LAYERS, "num_attention_heads": 2, "intermediate_size": 64,
         "num_conv_pos_embedding_groups": 2, **CONV}
LARGE_LIKE = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}  # normalised input, attention mask
BASE_LIKE = {"feat_extract_norm": "group", "do_stable_layer_norm": False}  # raw input, no mask
WHISPER_WINDOW = 16000  # max_source_positions=50 -> 100 mel frames -> 1 s windows (30 s in the real models)
W2V_FAMILY = ["wavlm", "hubert_base", "hubert_large", "w2v_base", "w2v_large", "data2vec"]
ALL = [*W2V_FAMILY, "whisper"]


def _build(root: Path) -> dict[str, Path]:
    t = transformers
    fe = t.Wav2Vec2FeatureExtractor
    norm_mask = {"do_normalize": True, "return_attention_mask": True}
    specs = {
        "wavlm": (t.WavLMModel, t.WavLMConfig(**SMALL, **LARGE_LIKE, num_conv_pos_embeddings=16, num_buckets=16,
                                              max_bucket_distance=64), fe(**norm_mask)),
        "hubert_base": (t.HubertModel, t.HubertConfig(**SMALL, **BASE_LIKE, num_conv_pos_embeddings=16),
                        fe(do_normalize=False, return_attention_mask=False)),
        "hubert_large": (t.HubertModel, t.HubertConfig(**SMALL, **LARGE_LIKE, num_conv_pos_embeddings=16),
                         fe(**norm_mask)),
        "w2v_base": (t.Wav2Vec2Model, t.Wav2Vec2Config(**SMALL, **BASE_LIKE, num_conv_pos_embeddings=16),
                     fe(do_normalize=True, return_attention_mask=False)),
        "w2v_large": (t.Wav2Vec2Model, t.Wav2Vec2Config(**SMALL, **LARGE_LIKE, num_conv_pos_embeddings=16),
                      fe(**norm_mask)),
        "data2vec": (t.Data2VecAudioModel, t.Data2VecAudioConfig(**SMALL, num_conv_pos_embeddings=2,
                                                                 conv_pos_kernel_size=5), fe(**norm_mask)),
        "whisper": (t.WhisperForConditionalGeneration,
                    t.WhisperConfig(d_model=DIM, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                    num_mel_bins=80, max_source_positions=50, max_target_positions=16, vocab_size=64,
                                    pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1),
                    t.WhisperFeatureExtractor(feature_size=80, chunk_length=1)),
    }
    paths = {}
    for i, (name, (cls, config, extractor)) in enumerate(specs.items()):
        torch.manual_seed(i)
        paths[name] = root / name
        cls(config).save_pretrained(paths[name])
        extractor.save_pretrained(paths[name])
    return paths


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return _build(tmp_path_factory.mktemp("hf_models"))


@pytest.fixture(scope="module")
def teachers(models):
    """Teachers by spec string, loaded once per module."""
    cache: dict[str, object] = {}

    def get(name: str, layers: str = "@1"):
        spec = f"hf:{models[name]}{layers}"
        if spec not in cache:
            cache[spec] = load_teacher(spec)
        return cache[spec]

    return get


def _audio(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, samples, generator=g)


def _reference_hidden_states(path: Path, name: str, audio: torch.Tensor):
    """``transformers``' own output for one unpadded item: (hidden_states, last_hidden_state, frames)."""
    with torch.no_grad():
        if name == "whisper":
            mel = transformers.WhisperFeatureExtractor.from_pretrained(path)(
                audio.numpy(), sampling_rate=SR, return_tensors="pt")
            encoder = transformers.AutoModel.from_pretrained(path).encoder.eval()
            out = encoder(mel["input_features"], output_hidden_states=True)
            frames = audio.shape[-1] // 320
        else:
            inputs = transformers.Wav2Vec2FeatureExtractor.from_pretrained(path)(
                audio.numpy(), sampling_rate=SR, return_tensors="pt")
            out = transformers.AutoModel.from_pretrained(path).eval()(**inputs, output_hidden_states=True)
            frames = out.last_hidden_state.shape[1]
    return [h[0, :frames] for h in out.hidden_states], out.last_hidden_state[0, :frames], frames


@pytest.mark.parametrize("name", ALL)
def test_shapes_frame_rate_and_num_frames(teachers, name):
    teacher = teachers(name)
    assert (teacher.sample_rate, teacher.frame_rate, teacher.dim) == (SR, 50.0, DIM)
    lengths = torch.tensor([15000, 9001, 8000])
    features, frame_lengths = teacher.extract(_audio(3, 15000), SR, lengths)
    expected = [teacher.num_frames(int(n)) for n in lengths]
    assert frame_lengths.tolist() == expected and frame_lengths.dtype == torch.long
    assert features.shape == (3, max(expected), DIM) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    for b, n in enumerate(expected):  # frames past an item's length are zero
        assert features[b, n:].abs().sum() == 0
    for n in (400, 719, 720, 1999, 3201):  # num_frames is the length the model itself produces
        assert teacher.extract(_audio(1, n), SR)[0].shape[1] == teacher.num_frames(n)


@pytest.mark.parametrize("name", W2V_FAMILY)
def test_num_frames_is_the_conv_formula(teachers, models, name):
    model = transformers.AutoModel.from_pretrained(models[name])
    for n in (0, 399, 400, 401, 720, 16000, 16319, 16320, 48000):
        assert teachers(name).num_frames(n) == max(int(model._get_feat_extract_output_lengths(torch.tensor(n))), 0)


def test_too_short_audio_gives_no_frames(teachers):
    features, frame_lengths = teachers("wavlm").extract(_audio(2, 300), SR)
    assert features.shape == (2, 0, DIM) and frame_lengths.tolist() == [0, 0]
    features, frame_lengths = teachers("w2v_base").extract(_audio(2, 1000), SR, torch.tensor([1000, 200]))
    assert frame_lengths.tolist() == [2, 0] and features[1].abs().max() == 0


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # transformers' WavLM
@pytest.mark.parametrize("name", ALL)
def test_layer_selection_equals_transformers_hidden_states(teachers, models, name):
    audio = _audio(1, 12345, seed=1)
    hidden, last, frames = _reference_hidden_states(models[name], name, audio)
    count = len(hidden)  # num_layers + 1
    cases = {"": last, "@0": hidden[0], "@2": hidden[2], "@-1": hidden[-1],
             "@0,2": (hidden[0] + hidden[2]) / 2, "@all": torch.stack(hidden).mean(0)}
    if count > 3:
        cases["@-2"] = hidden[-2]
    for layers, expected in cases.items():
        features, frame_lengths = teachers(name, layers).extract(audio, SR)
        assert frame_lengths.tolist() == [frames], layers
        torch.testing.assert_close(features[0], expected, atol=2e-5, rtol=1e-4, msg=f"{name}{layers}")


@pytest.mark.parametrize("name", ALL)
def test_padding_invariance(teachers, name):
    """An item's valid frames do not depend on what it is batched with: exact (to float rounding) for every
    model. LayerNorm wav2vec2/HuBERT/WavLM run padded with an attention mask; GroupNorm models and
    data2vec-audio run in equal-length groups; Whisper pads each window to its fixed length anyway."""
    teacher = teachers(name, "@2")
    audio = _audio(3, 40000, seed=2)
    lengths = torch.tensor([40000, 17777, 23456])
    batched, frame_lengths = teacher.extract(audio, SR, lengths)
    for b in range(3):
        alone, alone_lengths = teacher.extract(audio[b:b + 1, :int(lengths[b])], SR)
        assert alone_lengths[0] == frame_lengths[b]
        torch.testing.assert_close(batched[b, :frame_lengths[b]], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["w2v_base", "data2vec"])
def test_plain_zero_padding_would_not_be_invariant(models, name):
    """Why those models run in equal-length groups: with plain padding (transformers' recipe) an item's
    features change with its batch (GroupNorm: every frame; data2vec-audio: most of all the last frames)."""
    path = models[name]
    model = transformers.AutoModel.from_pretrained(path).eval()
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(path)
    audio = _audio(1, 12000, seed=3)[0].numpy()
    with torch.no_grad():
        alone = model(**extractor(audio, sampling_rate=SR, return_tensors="pt")).last_hidden_state[0]
        padded = model(**extractor(audio, sampling_rate=SR, return_tensors="pt", padding="max_length",
                                   max_length=32000)).last_hidden_state[0, :alone.shape[0]]
    assert (padded - alone).abs().max() > 1e-2


def test_whisper_long_audio_is_processed_in_windows(teachers):
    teacher = teachers("whisper", "@1")
    audio = _audio(2, 2 * WHISPER_WINDOW + 8000, seed=4)
    features, frame_lengths = teacher.extract(audio, SR, torch.tensor([2 * WHISPER_WINDOW + 8000, 20000]))
    assert frame_lengths.tolist() == [125, 62] and features.shape == (2, 125, DIM)
    for start, stop in ((0, WHISPER_WINDOW), (WHISPER_WINDOW, 2 * WHISPER_WINDOW), (2 * WHISPER_WINDOW, 40000)):
        window, _ = teacher.extract(audio[:1, start:stop], SR)
        torch.testing.assert_close(features[0, start // 320:stop // 320], window[0], atol=1e-5, rtol=1e-5)
    second, _ = teacher.extract(audio[1:, WHISPER_WINDOW:20000], SR)
    torch.testing.assert_close(features[1, 50:62], second[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["wavlm", "whisper"])
def test_other_sample_rates_are_resampled(teachers, name):
    teacher = teachers(name, "@2")
    audio = _audio(2, 22050, seed=5)
    lengths = torch.tensor([22050, 15000])
    features, frame_lengths = teacher.extract(audio, 22050, lengths)
    expected, expected_lengths = teacher.extract(resample(audio, 22050, SR), SR, torch.tensor([16000, 10885]))
    assert frame_lengths.tolist() == expected_lengths.tolist() == [teacher.num_frames(16000), teacher.num_frames(10885)]
    torch.testing.assert_close(features, expected)


@pytest.mark.parametrize("name", ["wavlm", "whisper"])
def test_frozen(teachers, name):
    teacher = teachers(name, "@2")
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    audio = _audio(1, 8000, seed=6).requires_grad_(True)
    first, _ = teacher.extract(audio, SR)
    second, _ = teacher.extract(audio, SR)
    assert not first.requires_grad and torch.equal(first, second)  # no dropout, no graph


def test_spec_can_be_replaced_and_folder_given_separately(models, teachers):
    """The offline ``semlat:`` teacher builds an HFTeacher on its embedded folder, then replaces ``.spec``."""
    from semlat.semantic.hf_teacher import HFTeacher

    teacher = HFTeacher(TeacherSpec("hf", "/nowhere/wavlm", (1,)), model_path=models["wavlm"]).freeze()
    audio = _audio(1, 9000, seed=7)
    before, _ = teacher.extract(audio, SR)
    teacher.spec = TeacherSpec("semlat", "/runs/demo_teacher", (3,))
    after, _ = teacher.extract(audio, SR)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    torch.testing.assert_close(before, teachers("wavlm", "@1").extract(audio, SR)[0], atol=1e-6, rtol=1e-6)


def test_layers_above_the_selection_are_not_run(teachers):
    assert len(teachers("wavlm", "@0").model.encoder.layers) == 1  # hidden_states[0] is the encoder input
    assert len(teachers("wavlm", "@1").model.encoder.layers) == 2
    assert len(teachers("wavlm", "@all").model.encoder.layers) == LAYERS
    assert len(teachers("whisper", "@0").model.layers) == 1


def test_a_folder_without_preprocessor_config_follows_the_feature_encoder(models, teachers, tmp_path):
    """Without preprocessor_config.json: 16 kHz, and a LayerNorm feature encoder gets normalised input and a
    mask (fairseq's convention, and the released large models' settings)."""
    import shutil

    bare = tmp_path / "wavlm_bare"
    shutil.copytree(models["wavlm"], bare)
    (bare / "preprocessor_config.json").unlink()
    teacher = load_teacher(f"hf:{bare}@2")
    assert teacher.sample_rate == SR and teacher.do_normalize and teacher.padded_batches
    audio = _audio(2, 9000, seed=9)
    torch.testing.assert_close(teacher.extract(audio, SR)[0], teachers("wavlm", "@2").extract(audio, SR)[0])


def test_runs_in_the_checkpoint_dtype(models, tmp_path):
    path = tmp_path / "w2v_bf16"
    transformers.AutoModel.from_pretrained(models["w2v_large"]).to(torch.bfloat16).save_pretrained(path)
    transformers.Wav2Vec2FeatureExtractor.from_pretrained(models["w2v_large"]).save_pretrained(path)
    teacher = load_teacher(f"hf:{path}@2")
    assert next(teacher.parameters()).dtype == torch.bfloat16
    audio = _audio(2, 12000, seed=8)
    features, _ = teacher.extract(audio, SR, torch.tensor([12000, 7000]))
    reference, _ = load_teacher(f"hf:{models['w2v_large']}@2").extract(audio, SR, torch.tensor([12000, 7000]))
    assert features.dtype == torch.float32
    assert (features - reference).abs().mean() < 0.05 * reference.abs().mean()


def _error(spec: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_teacher(spec)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_errors(models, tmp_path):
    assert "out of range" in _error(f"hf:{models['wavlm']}@{LAYERS + 1}")
    assert "layer -5" in _error(f"hf:{models['wavlm']}@1,-5")
    assert "out of range" in _error(f"hf:{models['whisper']}@3")
    assert "does not exist" in _error(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError):
        TeacherSpec.parse("hf:/models/wavlm@top")
    with pytest.raises(ConfigError):
        TeacherSpec.parse("huggingface:/models/wavlm")

    bert = tmp_path / "bert"
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(bert)
    message = _error(f"hf:{bert}")
    assert str(bert) in message and "'bert'" in message

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json" in _error(f"hf:{empty}")

    no_weights = tmp_path / "no_weights"
    transformers.AutoConfig.from_pretrained(models["wavlm"]).save_pretrained(no_weights)
    assert "cannot load" in _error(f"hf:{no_weights}@1")


def test_importing_teachers_does_not_import_transformers():
    code = ("import sys, semlat.semantic.teachers, semlat.semantic.hf_teacher; "
            "assert 'transformers' not in sys.modules, 'transformers imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)
