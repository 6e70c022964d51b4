"""semlat.load, the one loader (every model type, model folders and training runs), and the one metadata reader."""

import json
import shutil

import pytest

import semlat
from semlat.checkpoints import read_model_meta, update_model_meta
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import LoadedSpace


def test_a_latent_space_loads_with_its_options_and_refuses_others(model_dir):
    space = semlat.load(model_dir, device="cpu", chunk_seconds=5.0)
    assert isinstance(space, LoadedSpace) and space.chunk_seconds == 5.0 and space.latent_dim == 16
    with pytest.raises(ConfigError, match="takes no option text_encoder"):
        semlat.load(model_dir, device="cpu", text_encoder="t5")


def test_a_judge_and_a_training_run_load_by_their_type(tiny_ctc_judge):
    from semlat.evaluation.ctc_judge import CTCJudge

    judge = semlat.load(tiny_ctc_judge, device="cpu")
    assert isinstance(judge, CTCJudge)
    run = tiny_ctc_judge.parent.parent  # the training run stands for its latest checkpoint
    assert isinstance(semlat.load(run, device="cpu"), CTCJudge)
    with pytest.raises(ConfigError, match="runs in fp32"):
        semlat.load(tiny_ctc_judge, device="cpu", precision="bf16")


def test_a_judge_folder_of_semlat_0_1_loads_as_today_s(tiny_ctc_judge, demo_corpus, tmp_path):
    """``judge.json`` + ``model.safetensors`` (semlat 0.1's layout, :data:`LEGACY_LAYOUTS`): the same judge,
    through its loader and through semlat.load; a broken one is a one-line error."""
    import soundfile as sf
    import torch
    from safetensors.torch import save_file

    from semlat.checkpoints import legacy_layout
    from semlat.data.manifest import Manifest
    from semlat.evaluation.ctc_judge import FORMAT, load_judge

    meta = read_model_meta(tiny_ctc_judge)
    model = semlat.load(tiny_ctc_judge, device="cpu")
    legacy = tmp_path / "judge01"
    legacy.mkdir()
    state = {k.removeprefix("recognizer."): v.contiguous() for k, v in model.model.state_dict().items()}
    save_file(state, str(legacy / "model.safetensors"))
    (legacy / "judge.json").write_text(json.dumps({"format": FORMAT, **meta["config"]}))
    assert legacy_layout(legacy) == "judge.json" and legacy_layout(tiny_ctc_judge) is None
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    audio, rate = sf.read(manifest.audio_path(0), dtype="float32")
    expected = model.log_probs(torch.from_numpy(audio), rate)[0]
    torch.testing.assert_close(load_judge(legacy).log_probs(torch.from_numpy(audio), rate)[0], expected)
    again = semlat.load(legacy, device="cpu", expect="ctc_judge")
    torch.testing.assert_close(again.log_probs(torch.from_numpy(audio), rate)[0], expected)
    assert again.vocab == model.vocab and again.label == model.label
    save_file({"nope": torch.zeros(1)}, str(legacy / "model.safetensors"))
    with pytest.raises(ConfigError, match="does not fit the model in judge.json"):
        semlat.load(legacy, device="cpu")


def test_the_metadata_reader_never_reads_weights(model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "model.safetensors").write_bytes(b"not weights")  # unreadable weights: the metadata still reads
    assert read_model_meta(folder)["model_type"] == "wave_vae"
    update_model_meta(folder, note="kept")  # --record-stats' path: config.json rewritten, weights untouched
    assert read_model_meta(folder)["note"] == "kept" and (folder / "model.safetensors").read_bytes() == b"not weights"
    with pytest.raises(CheckpointError, match="unreadable weights"):
        semlat.load(folder, device="cpu")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        read_model_meta(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "wave_vae"}))
    with pytest.raises(CheckpointError, match="needs 'model_type' and 'config'"):
        read_model_meta(folder)
    with pytest.raises(CheckpointError, match="missing: no such model folder"):
        semlat.load(tmp_path / "missing", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a semlat model folder or training run"):
        semlat.load(tmp_path / "empty", device="cpu")


def test_expect_names_what_a_command_needs(model_dir, tiny_ctc_judge, tmp_path):
    assert isinstance(semlat.load(model_dir, device="cpu", expect="space"), LoadedSpace)
    with pytest.raises(CheckpointError, match=r"a wave_vae model, not a TTS model \(train one with"):
        semlat.load(model_dir, device="cpu", expect="tts")
    with pytest.raises(CheckpointError, match="a ctc_judge model, not a latent space"):
        semlat.load(tiny_ctc_judge, device="cpu", expect="space")
    with pytest.raises(CheckpointError, match="is not a text-to-audio model .no model folder or training run"):
        semlat.load(tmp_path, device="cpu", expect="tta")


def test_a_folder_from_a_newer_semlat_is_refused_in_one_line(model_dir, tmp_path):
    folder = tmp_path / "future"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "semlat_version": "99.0.0"}))
    with pytest.raises(CheckpointError, match=r"written by semlat 99.0.0, newer than this semlat 0\.2\.0"):
        semlat.load(folder, device="cpu")
