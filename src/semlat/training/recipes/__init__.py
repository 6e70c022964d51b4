"""Training recipes, by name. A recipe file's ``recipe:`` key picks one; each maps to
``"module:Class"`` and is imported only when used."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from semlat.config import build_config, read_yaml
from semlat.errors import ConfigError

RECIPES = MappingProxyType({
    "wave_vae": "semlat.training.recipes.wave_vae:WaveVAERecipe",
})


def recipe_class(name: str) -> type:
    """The Recipe class registered as ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(sorted(RECIPES))})")
    module, _, attr = RECIPES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def load_recipe(config_path: str | os.PathLike, overrides: Sequence[str] = ()) -> tuple[type, Any]:
    """Read a recipe YAML (or a run folder's ``config.yaml``), apply overrides, and return
    ``(Recipe class, config dataclass)``."""
    path = Path(config_path)
    data = read_yaml(path)
    name = data.get("recipe")
    for item in overrides:
        if item.startswith("recipe="):
            name = item.split("=", 1)[1]
    if not isinstance(name, str):
        raise ConfigError(f"{path}: needs a top-level 'recipe:' key (one of {', '.join(sorted(RECIPES))})")
    cls = recipe_class(name)
    return cls, build_config(cls.Config, [(str(path), data)], overrides)
