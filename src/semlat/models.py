"""Loading by name: the tables of model types, importers and teacher schemes, above every module they name.

A table of ``"module:attr"`` strings in a low module hides an import cycle (the named module imports the
low one), so the tables live here, on a floor above all of them (``semlat.models`` sits between the training
layer and evaluation / generation; see the import-linter contracts, and ``tests/test_architecture.py``, which
counts every such string as an import). Entries are still imported on use, so the CLI starts fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from semlat.checkpoints import (
    CONFIG_NAME,
    LEGACY_LAYOUTS,
    legacy_layout,
    model_from_state,
    read_model_folder,
    read_model_meta,
    resolve_model_folder,
)
from semlat.errors import CheckpointError, ConfigError
from semlat.inference import SPACE_TYPES
from semlat.semantic.teachers import SCHEMES, Teacher, TeacherSpec
from semlat.utils.registry import resolve

#: model_type -> "module:Class"; the class has ``from_config(dict)`` and ``config`` (a dict or dataclass).
MODEL_TYPES: Mapping[str, str] = MappingProxyType({
    **SPACE_TYPES,
    "ctc_judge": "semlat.evaluation.ctc_judge:CTCJudgeModel",
    "tts": "semlat.generation.tts:TTSModel",
    "ar_tts": "semlat.generation.ar_tts:ARTTSModel",
    "tta": "semlat.generation.tta:TTAModel",
    "duration": "semlat.generation.duration:DurationPredictor",
})

#: importer kind -> "module:function"; ``function(weights, out, **options) -> Path`` writes a model folder.
IMPORTERS: Mapping[str, str] = MappingProxyType({
    "semantic-vae": "semlat.autoencoders.import_semantic_vae:import_semantic_vae",
    "bigvgan": "semlat.vocoders.import_bigvgan:import_bigvgan",
    "dc-speech-vae": "semlat.autoencoders.import_dc_speech_vae:import_dc_speech_vae",
    "vocos": "semlat.vocoders.import_vocos:import_vocos",
    "f5-tts": "semlat.generation.import_f5:import_f5_tts",
    "dasheng": "semlat.semantic.import_dasheng:import_dasheng",
    "semantic-vocoder": "semlat.autoencoders.import_semantic_vocoder:import_semantic_vocoder",
    "semantic-vocoder-tta": "semlat.generation.import_tta:import_semantic_vocoder_tta",
})


def model_class(model_type: str) -> Any:
    """The class registered for ``model_type`` (:data:`MODEL_TYPES`); a one-line CheckpointError otherwise."""
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"unknown model type {model_type!r} (known: {', '.join(sorted(MODEL_TYPES))})")
    return resolve(MODEL_TYPES[model_type])


def build_model(model_type: str, config: Mapping[str, Any]) -> nn.Module:
    """Construct a registered model type from its config (weights uninitialised/random)."""
    return model_class(model_type).from_config(config)


def load_model(folder: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Build the model a folder describes (any registered type), load its weights strictly, in eval mode."""
    state, meta = read_model_folder(folder)
    return model_from_state(model_class(meta["model_type"]), state, meta, str(folder), device)


#: what ``load(..., expect=...)`` asks for: ``(what it is called, how to make one)``
EXPECTED = {
    "space": ("a latent space", "train an autoencoder with `semlat train ...` or import a release with `semlat import`"),
    "tts": ("a TTS model", "train one with `semlat train tts/...` or `semlat train ar_tts/...`"),
    "ar_tts": ("an autoregressive TTS model", "train one with `semlat train ar_tts/...`"),
    "tta": ("a text-to-audio model", "train one with `semlat train tta/...`"),
    "ctc_judge": ("a CTC judge", "make one with `semlat judge train`"),
    "duration": ("a duration model", "train one with `semlat train duration/...`"),
}


#: the model types each ``expect`` admits (others: the type of that name alone)
EXPECTED_TYPES: Mapping[str, Any] = MappingProxyType({"space": SPACE_TYPES, "tts": ("tts", "ar_tts")})


def load(path: str | os.PathLike, device: str | torch.device = "auto", precision: str = "fp32", *,
         expect: str | None = None, **options: Any) -> Any:
    """semlat's one loader: whatever the model folder (or training run, or checkpoint) at ``path`` holds, ready
    for inference on ``device``.

    ========================================== =====================================================
    ``model_type``                              returns
    ========================================== =====================================================
    a latent space (``inference.SPACE_TYPES``)  :class:`~semlat.inference.LoadedSpace` (``precision``;
                                                ``chunk_seconds``, ``context_seconds``, ``overlap_seconds``)
    ``tts``, ``ar_tts``                         :class:`~semlat.generation.synthesis.LoadedTTS` (``space``,
                                                ``duration``; ``precision`` fp32 or bf16)
    ``tta``                                     :class:`~semlat.generation.captioned.LoadedTTA` (``space``,
                                                ``text_encoder``)
    ``ctc_judge``                               :class:`~semlat.evaluation.ctc_judge.CTCJudge`
    any other registered type                   the model itself, in eval mode
    a teacher folder of semlat 0.1              its :class:`~semlat.semantic.teachers.Teacher` (recommended layer)
    ========================================== =====================================================

    The folder layouts of semlat 0.1 (:data:`~semlat.checkpoints.LEGACY_LAYOUTS`: ``judge.json`` judges,
    ``teacher.json`` teachers) load too; a folder written by a newer semlat is refused in one line.

    Options a type does not take are a one-line ConfigError. The type is read from ``config.json`` first
    (:func:`~semlat.checkpoints.read_model_meta`), so the weights are read once. ``expect`` (a key of
    :data:`EXPECTED`: ``space``, ``tts``, ``tta``, ``ctc_judge``, ``duration``) makes any other type, or no model
    at all, a one-line CheckpointError that says what was expected and how to make one (what the commands do)."""
    folder = resolve_model_folder(path)
    legacy = legacy_layout(folder)
    what, hint = EXPECTED[expect] if expect is not None else ("", "")
    if expect is not None and legacy is None and folder.is_dir() and not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"{path} is not {what} (no model folder or training run; {hint})")
    # a missing path: "no such model folder"
    model_type = LEGACY_LAYOUTS[legacy][0] if legacy else read_model_meta(folder)["model_type"]
    if expect is not None and model_type not in EXPECTED_TYPES.get(expect, (expect,)):
        raise CheckpointError(f"{folder}: a {model_type} model, not {what} ({hint})")
    allowed = {"tts": {"space", "duration"}, "ar_tts": {"space", "duration"}, "tta": {"space", "text_encoder"}, "ctc_judge": set()}.get(
        model_type, {"chunk_seconds", "context_seconds", "overlap_seconds"} if model_type in SPACE_TYPES else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"{folder}: a {model_type} model takes no option {', '.join(unknown)}"
                          + (f" (it takes {', '.join(sorted(allowed))})" if allowed else ""))
    if legacy == "teacher.json":  # semlat 0.1's teacher folder holds a Hugging Face model, not semlat weights
        if options or precision != "fp32":
            raise ConfigError(f"{folder}: {LEGACY_LAYOUTS[legacy][1]} takes no options and runs in fp32")
        from semlat.utils.devices import pick_device

        return load_teacher(f"semlat:{folder}", pick_device(device))
    if model_type in SPACE_TYPES:
        from semlat.inference import load as load_space

        return load_space(folder, device, precision, **options)
    if model_type in ("tts", "ar_tts"):
        from semlat.generation.synthesis import load_tts

        return load_tts(folder, device, options.get("space"), options.get("duration"), precision)
    if precision != "fp32":
        raise ConfigError(f"{folder}: a {model_type} model runs in fp32 (precision {precision!r})")
    if model_type == "tta":
        from semlat.generation.captioned import load_tta

        return load_tta(folder, device, options.get("space"), options.get("text_encoder"))
    from semlat.utils.devices import pick_device

    if model_type == "ctc_judge":
        from semlat.evaluation.ctc_judge import load_judge

        return load_judge(folder, device=pick_device(device))
    return load_model(folder, pick_device(device))


def run_importer(kind: str, weights: str | os.PathLike, out: str | os.PathLike, **options: Any) -> Path:
    """Convert a released checkpoint with the importer ``kind`` (:data:`IMPORTERS`) into the model folder ``out``."""
    if kind not in IMPORTERS:
        known = ", ".join(sorted(IMPORTERS)) or "none yet"
        raise CheckpointError(f"unknown import kind {kind!r} (available: {known})")
    fn: Callable[..., Path] = resolve(IMPORTERS[kind])
    return fn(weights, out, **options)


def load_teacher(spec: str | TeacherSpec, device: str | torch.device = "cpu") -> Teacher:
    """Load the teacher a spec names (:mod:`semlat.semantic.teachers`), frozen, on ``device``."""
    parsed = TeacherSpec.parse(spec)
    if not Path(parsed.path).exists():
        raise ConfigError(f"teacher {parsed}: {parsed.path} does not exist (teachers load from local folders; "
                          "see the README on getting WavLM-Large)")
    if parsed.scheme == "hf":
        from semlat.semantic.hf_teacher import HFTeacher

        teacher: Teacher = HFTeacher(parsed)
    elif parsed.scheme == "semlat":
        from semlat.semantic.hubert_teacher import load_semlat_teacher

        teacher = load_semlat_teacher(parsed)
    elif parsed.scheme == "ctc":
        from semlat.evaluation.ctc_teacher import load_ctc_teacher

        teacher = load_ctc_teacher(parsed)
    else:  # TeacherSpec.parse admits only SCHEMES
        raise ConfigError(f"teacher {parsed}: unknown scheme (use one of {', '.join(SCHEMES)})")
    return teacher.to(device).freeze()
