"""Training recipes, by name. A recipe file's ``recipe:`` key picks one; each maps to
``"module:Class"`` and is imported only when used."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from semlat.config import build_config, read_yaml
from semlat.errors import ConfigError
from semlat.utils.registry import resolve

RECIPES = MappingProxyType({
    "wave_vae": "semlat.training.recipes.wave_vae:WaveVAERecipe",
    "semantic_vae": "semlat.training.recipes.semantic_vae:SemanticVAERecipe",
    "bigvgan": "semlat.training.recipes.bigvgan:BigVGANRecipe",
    "mel_dcae": "semlat.training.recipes.mel_dcae:MelDCAERecipe",
    "teacher": "semlat.training.recipes.teacher:TeacherRecipe",
    "judge": "semlat.training.recipes.judge:JudgeRecipe",
    "tts": "semlat.training.recipes.tts:TTSRecipe",
    "ar_tts": "semlat.training.recipes.ar_tts:ARTTSRecipe",
    "duration": "semlat.training.recipes.duration:DurationRecipe",
    "dasheng_mae": "semlat.training.recipes.dasheng_mae:DashengMAERecipe",
    "semantic_vocoder": "semlat.training.recipes.semantic_vocoder:SemanticVocoderRecipe",
    "semantic_vocoder_gan": "semlat.training.recipes.semantic_vocoder_gan:SemanticVocoderGANRecipe",
    "tta": "semlat.training.recipes.tta:TTARecipe",
})


def recipe_class(name: str) -> type:
    """The Recipe class registered as ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(sorted(RECIPES))})")
    return resolve(RECIPES[name])


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in child.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_recipe_yaml(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe file with its ``extends:`` chain resolved: ``extends: paper.yaml`` (relative to the
    file) loads that file first and merges this one over it, key by key."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must name one YAML file")
    return _merge(read_recipe_yaml(path.parent / parent, (*_seen, path)), data)


def load_recipe(config_path: str | os.PathLike, overrides: Sequence[str] = ()) -> tuple[type, Any]:
    """Read a recipe YAML (or a run folder's ``config.yaml``), apply overrides, and return
    ``(Recipe class, config dataclass)``."""
    path = Path(config_path)
    data = read_recipe_yaml(path)
    name = data.get("recipe")
    for item in overrides:
        if item.startswith("recipe="):
            name = item.split("=", 1)[1]
    if not isinstance(name, str):
        raise ConfigError(f"{path}: needs a top-level 'recipe:' key (one of {', '.join(sorted(RECIPES))})")
    cls = recipe_class(name)
    return cls, build_config(cls.Config, [(str(path), data)], overrides)
