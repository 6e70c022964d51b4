"""The model folder format: round trip, strict key/shape checks, no unpickling, atomic writes."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from semlat.checkpoints import (
    check_state_dict,
    load_state_dict_strict,
    read_foreign_weights,
    read_model_folder,
    save_model,
    unwrap_state_dict,
)
from semlat.errors import CheckpointError
from semlat.models import build_model, run_importer
from semlat.utils.files import atomic_dir, atomic_path


class Tiny(nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("scale", torch.ones(dim))


def test_round_trip(tmp_path):
    model = Tiny()
    folder = save_model(tmp_path / "m", model, model_type="tiny", config={"dim": 4}, extra={"latent_stats": [0.5]})
    state, meta = read_model_folder(folder)
    assert meta["model_type"] == "tiny" and meta["config"] == {"dim": 4} and meta["latent_stats"] == [0.5]
    assert "semlat_version" in meta and sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    fresh = Tiny()
    load_state_dict_strict(fresh, state)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_strict_checks_name_the_problem(tmp_path):
    model = Tiny()
    state = dict(model.state_dict())
    del state["norm.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["proj.weight"] = torch.zeros(3, 4)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(Tiny(), state, "m/model.safetensors")
    text = str(err.value)
    assert "missing key(s): norm.bias" in text and "unexpected key(s): extra.weight" in text
    assert "proj.weight (3, 4) != (4, 4)" in text and "\n" not in text
    many = {f"k{i}": torch.zeros(1) for i in range(20)}
    with pytest.raises(CheckpointError, match="20 missing key\\(s\\).*and 12 more"):
        check_state_dict(many, {})
    check_state_dict({"a": torch.Size([2])}, {"a": torch.zeros(2)})  # shapes may be given directly


def test_bad_folders(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        read_model_folder(tmp_path / "none")
    folder = save_model(tmp_path / "m", Tiny(), model_type="tiny", config={})
    (folder / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json: invalid JSON"):
        read_model_folder(folder)
    (folder / "config.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(CheckpointError, match="needs 'model_type'"):
        read_model_folder(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        read_model_folder(folder)
    with pytest.raises(CheckpointError, match="unknown model type 'nope'"):
        build_model("nope", {})
    with pytest.raises(CheckpointError, match="unknown import kind 'nope'"):
        run_importer("nope", tmp_path / "w.pt", tmp_path / "out")


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_weights_never_unpickle_objects(tmp_path, capsys):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "step": 3}, good)
    assert unwrap_state_dict(read_foreign_weights(good))["w"].tolist() == [1.0, 1.0]
    evil = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, evil)
    with pytest.raises(CheckpointError, match="evil.pth: cannot read as a weights-only"):
        read_foreign_weights(evil)
    assert "unpickled!" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        read_foreign_weights(raw)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_foreign_weights(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no state dict found"):
        unwrap_state_dict({"optimizer": 1, "epoch": 2})
    nested = {"generator": {"a": torch.zeros(1)}}
    assert list(unwrap_state_dict(nested)) == ["a"]


def test_atomic_writes_leave_old_content_on_failure(tmp_path):
    folder = save_model(tmp_path / "m", Tiny(), model_type="tiny", config={"v": 1})
    with pytest.raises(RuntimeError), atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text("half")
        raise RuntimeError("crash while writing")
    assert read_model_folder(folder)[1]["config"] == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left
    save_model(folder, Tiny(), model_type="tiny", config={"v": 2})  # replacing a folder works
    assert read_model_folder(folder)[1]["config"] == {"v": 2}
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise ValueError
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "m"]
