"""Registries name their entries as ``"module:attribute"`` strings, imported only when used: the CLI
starts fast, and a registry never creates an import cycle (the import-linter contracts see no edge)."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(spec: str) -> Any:
    """The object a ``"package.module:attribute"`` string names."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"registry entry {spec!r} must look like 'package.module:attribute'")
    return getattr(importlib.import_module(module), attr)
