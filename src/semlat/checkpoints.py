"""semlat's model folder format and strict loading.

A model folder holds ``model.safetensors`` (weights only) and ``config.json``::

    {"model_type": "wave_vae", "semlat_version": "0.2.0", "config": {...full resolved config...},
     ...extra entries such as "latent_stats"...}

Nothing is ever unpickled: weights are safetensors, metadata is JSON. **Versions** (Descript's codec habit): a
folder records the semlat version that wrote it; :func:`read_model_meta` refuses one written by a newer semlat
and upgrades an older one's description with the :data:`MIGRATIONS` it needs, in one place, so model classes
only ever see today's config. Loading compares every key
and shape before touching the model and names what is missing, unexpected or mis-shaped.

The tables of model types and importers live in :mod:`semlat.models`, above every module they name
(a table here, on the lowest floor, would close an import cycle through each of them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from semlat._version import __version__
from semlat.errors import CheckpointError, first_line
from semlat.utils.files import atomic_dir, atomic_path

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

_MAX_LISTED = 8


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


def check_state_dict(expected: Mapping[str, torch.Tensor | torch.Size], state: Mapping[str, torch.Tensor],
                     where: str = "checkpoint") -> None:
    """Raise CheckpointError unless ``state`` has exactly ``expected``'s keys with the same shapes.

    ``expected`` maps keys to tensors or shapes (e.g. a module's ``state_dict()``).
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    mismatched = []
    for key in sorted(set(expected) & set(state)):
        want = expected[key]
        want_shape = tuple(want.shape) if isinstance(want, torch.Tensor) else tuple(want)
        if tuple(state[key].shape) != want_shape:
            mismatched.append(f"{key} {tuple(state[key].shape)} != {want_shape}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched)}")
    if problems:
        raise CheckpointError(f"{where}: does not fit the model: " + "; ".join(problems))


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Check keys and shapes with :func:`check_state_dict`, then load (strict)."""
    check_state_dict(module.state_dict(), state, where)
    module.load_state_dict(state, strict=True)


def _to_jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def write_model_files(folder: str | os.PathLike, model: nn.Module | Mapping[str, torch.Tensor], *, model_type: str,
                      config: Any, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into an existing ``folder`` (not atomic:
    callers write into a temporary folder, see :func:`save_model`)."""
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta = {"model_type": model_type, "semlat_version": __version__, "config": _to_jsonable(config)}
    for key, value in (extra or {}).items():
        if key in meta:
            raise ValueError(f"extra entry {key!r} would overwrite a reserved config.json entry")
        meta[key] = value
    text = json.dumps(meta, indent=2) + "\n"
    folder = Path(folder)
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "model_type": model_type})
    (folder / CONFIG_NAME).write_text(text, encoding="utf-8")
    return folder


def save_model(folder: str | os.PathLike, model: nn.Module | Mapping[str, torch.Tensor], *, model_type: str,
               config: Any, extra: Mapping[str, Any] | None = None,
               companions: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder``, atomically.

    ``model`` is a module or a state dict; ``config`` is the full constructor config (dict or
    dataclass); ``extra`` adds top-level JSON entries (e.g. latent statistics); ``companions`` are other
    modules' weights written beside as ``<name>.safetensors`` (a release's ``discriminator``, which
    ``train.init_from`` loads into the module of that name). An existing folder is replaced only once the new
    one is complete; other files in it are not kept.
    """
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        write_model_files(tmp, model, model_type=model_type, config=config, extra=extra)
        for name, tensors in (companions or {}).items():  # e.g. a release's discriminator, for fine-tuning
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors"))
    return folder


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", str(text))[:3])


def _tta_guidance_name(meta: dict[str, Any]) -> dict[str, Any]:
    """semlat < 0.2 named a text-to-audio model's guidance scale ``flow.cfg`` (same convention)."""
    flow = meta["config"].get("flow", {})
    if "cfg" in flow and "guidance" not in flow:
        flow["guidance"] = flow.pop("cfg")
    return meta


#: ``(model_type, first version that no longer needs it, upgrade)``: what a folder written by an older semlat
#: needs to read as today's (applied in order by :func:`upgrade_meta`)
MIGRATIONS: tuple[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]], ...] = (
    ("tta", "0.2.0", _tta_guidance_name),
)


#: The folder layouts of semlat 0.1's own training loops, written before model folders existed: ``marker file ->
#: (model_type, what it is)``. Each is read by its type's loader (``judge.json`` + ``model.safetensors`` by
#: :func:`semlat.evaluation.ctc_judge.load_judge`; ``teacher.json`` + ``hubert/`` by
#: :func:`semlat.semantic.hubert_teacher.load_semlat_teacher`), and :func:`legacy_layout` recognises them, so
#: :func:`semlat.models.load` takes them too. A folder's newer layout (``config.json``) always wins; no other
#: old layout is read.
LEGACY_LAYOUTS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "judge.json": ("ctc_judge", "a CTC judge folder of semlat 0.1"),
    "teacher.json": ("hubert_teacher", "a teacher folder of semlat 0.1"),
})


def legacy_layout(path: str | os.PathLike) -> str | None:
    """The :data:`LEGACY_LAYOUTS` marker the folder ``path`` holds, when it holds one and no ``config.json``."""
    path = Path(path).expanduser()
    if not path.is_dir() or (path / CONFIG_NAME).is_file():
        return None
    return next((marker for marker in LEGACY_LAYOUTS if (path / marker).is_file()), None)


def upgrade_meta(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """``meta`` (a config.json) as today's semlat reads it: a folder written by a newer semlat is a one-line
    CheckpointError; an older one gets each :data:`MIGRATIONS` entry it predates."""
    written = meta.get("semlat_version")
    if written is not None and _version(written) > _version(__version__):
        raise CheckpointError(f"{where}: written by semlat {written}, newer than this semlat {__version__} "
                              "(upgrade semlat to read it)")
    for model_type, fixed_in, upgrade in MIGRATIONS:
        if meta.get("model_type") == model_type and (written is None or _version(written) < _version(fixed_in)):
            meta = upgrade(meta)
    return meta


def read_model_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of the model folder at ``path`` (or of a training run's latest checkpoint, see
    :func:`resolve_model_folder`), checked, without reading the weights; a one-line CheckpointError otherwise."""
    folder = resolve_model_folder(path)
    if not folder.is_dir():
        raise CheckpointError(f"{path}: no such model folder")
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{path}: not a semlat model folder or training run ({CONFIG_NAME} is missing)")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(meta, dict) or "model_type" not in meta or "config" not in meta:
        raise CheckpointError(f"{config_path}: needs 'model_type' and 'config' entries")
    return upgrade_meta(meta, str(config_path))


def read_model_folder(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``(state_dict, config.json contents)`` from a model folder, with clear errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such model folder")
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{folder}: not a semlat model folder ({path.name} is missing)")
    meta = read_model_meta(folder)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path}: unreadable weights ({err})") from None
    return state, meta


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder of a training run (``checkpoints/latest``), or ``None``."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text(encoding="utf-8").strip()
    return folder if folder.is_dir() else None


def resolve_model_folder(path: str | os.PathLike) -> Path:
    """``path`` itself when it is a model folder, else the latest checkpoint of the training run at ``path``
    (so a run folder can stand for the model it trained); ``path`` unchanged when it is neither."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file():
        return path
    return latest_checkpoint(path) or path


def load_model_of_type(path: str | os.PathLike, cls: Any, model_type: str, what: str, hint: str,
                       device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any], Path]:
    """``(model, config.json, folder)`` of the model folder (or training run, see
    :func:`resolve_model_folder`) at ``path``, which must hold a ``model_type`` model (built as ``cls``, which
    has ``from_config``); otherwise a one-line CheckpointError saying it is not ``what`` (and ``hint``: how to
    make one). Loading any folder by its own type is :func:`semlat.models.load_model`."""
    folder = resolve_model_folder(path)
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"{path} is not {what} (no model folder or training run; {hint})")
    state, meta = read_model_folder(folder)
    if meta.get("model_type") != model_type:
        raise CheckpointError(f"{folder}: a {meta.get('model_type')} model, not {what} ({model_type})")
    return model_from_state(cls, state, meta, str(folder), device), meta, folder


def model_from_state(cls: Any, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], where: str = "checkpoint",
                     device: str | torch.device = "cpu") -> nn.Module:
    """``cls.from_config(meta["config"])`` with ``state`` loaded strictly, in eval mode on ``device``."""
    model = cls.from_config(meta["config"])
    load_state_dict_strict(model, state, where)
    return model.to(device).eval()


def update_model_meta(folder: str | os.PathLike, **entries: Any) -> Path:
    """Add or replace top-level ``config.json`` entries of a model folder (e.g. ``latent_stats``),
    atomically; the weights are untouched. ``model_type``, ``config`` and ``semlat_version`` stay."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a semlat model folder ({CONFIG_NAME} is missing)")
    meta = read_model_meta(folder)  # the weights are not read
    for key in entries:
        if key in ("model_type", "config", "semlat_version"):
            raise ValueError(f"{key!r} is a reserved config.json entry")
    meta.update(entries)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


_NUMPY_DTYPES = ("BoolDType", "Int8DType", "UInt8DType", "Int16DType", "UInt16DType", "Int32DType", "UInt32DType",
                 "Int64DType", "UInt64DType", "LongDType", "ULongDType", "LongLongDType", "ULongLongDType",
                 "Float16DType", "Float32DType", "Float64DType")


def _numpy_globals() -> list[Any]:
    """numpy's array, dtype and scalar constructors (under the numpy 1 and numpy 2 pickle names): all a
    pickled numeric array needs (released PANNs files hold their sampler state as arrays; VGGish's PCA
    file is arrays), and nothing that runs other code."""
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    allowed: list[Any] = [np.ndarray, np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    dtypes = getattr(np, "dtypes", None)
    allowed += [getattr(dtypes, name) for name in _NUMPY_DTYPES if hasattr(dtypes, name)]
    return allowed


def read_foreign_weights(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """Read a released checkpoint file (``.safetensors``, or ``.pt``/``.pth``/``.bin`` through
    ``torch.load(weights_only=True)`` with numpy arrays allowed, which refuses any other pickled
    object); every failure is a one-line CheckpointError naming the file (``what`` names its kind)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: {what} file is empty (0 bytes)")
    if path.suffix == ".safetensors":
        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors file ({first_line(err)})") from None
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile,
            AttributeError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot read as a weights-only torch file ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return data


def unwrap_state_dict(data: Mapping[str, Any], wrappers: tuple[str, ...] = ("state_dict", "generator",
                      "model", "ema_model_state_dict", "model_state_dict"), where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Return the tensor dict inside common wrappers (``{"state_dict": {...}}``, ...), or ``data``
    itself when it is already flat. Non-tensor entries of a flat dict are an error."""
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return dict(data)
    for key in wrappers:
        inner = data.get(key)
        if isinstance(inner, Mapping):
            return unwrap_state_dict(inner, wrappers, where)
    kinds = ", ".join(sorted(data)[:_MAX_LISTED])
    raise CheckpointError(f"{where}: no state dict found (top-level keys: {kinds})")


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                  metadata: Mapping[str, str] | None = None) -> Path:
    """Save a flat tensor dict as safetensors, atomically (used for latents and caches)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata=dict(metadata or {}))
    return path
