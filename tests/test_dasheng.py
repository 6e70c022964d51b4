"""Dasheng (SemanticVocoder's encoder): the importer and module reproduce the reference fixture (chunking,
the key mask, the batch-wide dB floor), accept the three released key listings, and serve as a teacher."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.cli import main
from semlat.models import load_model
from semlat.semantic.dasheng import Dasheng, DashengConfig

TOL = {"atol": 2e-3, "rtol": 1e-3}  # the fixture README's Dasheng tolerance (float32 log of tiny mel powers)


@pytest.fixture(scope="module")
def io(fixtures):
    return load_file(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny_io.safetensors"))


@pytest.fixture(scope="module")
def imported(fixtures, tmp_path_factory):
    out = tmp_path_factory.mktemp("dasheng") / "tiny"
    weights = fixture_file(fixtures, "semantic_vocoder/dasheng_tiny.safetensors")
    config = fixture_file(fixtures, "semantic_vocoder/dasheng_tiny_config.json")
    assert main(["import", "dasheng", str(weights), str(out), "--config", str(config)]) == 0
    return out


def test_reproduces_the_reference(imported, io):
    model = load_model(imported)
    with torch.inference_mode():
        patches = model.patches(io["audio_1s"])
        torch.testing.assert_close(patches, io["patches"], **TOL)
        torch.testing.assert_close(model(io["audio_1s"]), io["frames_1s"], **TOL)  # 16 + 9 patches: two chunks
        torch.testing.assert_close(model(io["audio_short"]), io["frames_short"], **TOL)  # one chunk
        lengths = io["frames_1s_masked_len"]
        torch.testing.assert_close(model(io["audio_1s"], lengths), io["frames_1s_masked"], **TOL)
        # the reference's dB floor is taken over the batch: item 1 alone differs, and semlat reproduces both
        alone = model(io["audio_1s"][1:])
        torch.testing.assert_close(alone, io["frames_1s_item1_alone"], **TOL)
        assert (alone - io["frames_1s"][1:]).abs().max() > 1e-2
    assert model.num_frames(16000) == 25 and model.num_frames(6400) == 10


def test_full_size_models_accept_the_released_key_listings(fixtures):
    for name, config in (("base", DashengConfig.base()), ("06B", DashengConfig.b06()), ("12B", DashengConfig.b12())):
        listing = json.loads(fixture_file(fixtures, f"semantic_vocoder/keys_dasheng_{name}.json").read_text())["keys"]
        with torch.device("meta"):
            model = Dasheng(config)
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert ours == listing, name


def test_import_reads_the_release_wrapper_and_names_unknown_sizes(fixtures, tmp_path, capsys):
    state = load_file(str(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny.safetensors")))
    kwargs = json.loads(fixture_file(fixtures, "semantic_vocoder/dasheng_tiny_config.json").read_text())["kwargs"]
    torch.save({"model": state, "config": kwargs}, tmp_path / "release.pt")  # zenodo's layout
    assert main(["import", "dasheng", str(tmp_path / "release.pt"), str(tmp_path / "a")]) == 0
    assert load_model(tmp_path / "a").config.embed_dim == 32
    torch.save(state, tmp_path / "flat.pt")  # no config: the sizes come from the shapes, 32 is no release
    assert main(["import", "dasheng", str(tmp_path / "flat.pt"), str(tmp_path / "b")]) == 1
    assert "embed_dim 32 is not a released Dasheng size" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    # a file of another size than its config: one line naming the file, nothing written
    (tmp_path / "deeper.json").write_text(json.dumps({**kwargs, "depth": kwargs["depth"] + 1}))
    assert main(["import", "dasheng", str(tmp_path / "flat.pt"), str(tmp_path / "c"), "--config",
                 str(tmp_path / "deeper.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert "flat.pt" in err and "missing" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_an_imported_dasheng_is_a_teacher(imported, io):
    from semlat.models import load_teacher

    teacher = load_teacher(f"semlat:{imported}")
    assert teacher.sample_rate == 16000 and teacher.frame_rate == 25.0 and teacher.dim == 32
    features, frames = teacher.extract(io["audio_1s"], 16000, torch.tensor([16000, 11000]))
    assert features.shape == (2, 25, 32) and frames.tolist() == [25, 17]
    torch.testing.assert_close(features, io["frames_1s_masked"], **TOL)
    features, frames = teacher.extract(io["wrapper_audio_24k"], 24000)  # resampled to 16 kHz first
    assert features.shape == (2, 25, 32) and frames.tolist() == [25, 25]
