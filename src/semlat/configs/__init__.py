"""Recipe files shipped with semlat (the repository's ``configs/`` folder points here).

A config argument is a path to a YAML file, or the name of a shipped one such as
``wave_vae/tiny`` (this folder, without ``.yaml``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from semlat.errors import ConfigError


def builtin_config(name: str) -> Path:
    """The path of the shipped recipe ``name`` (e.g. ``"wave_vae/tiny"``)."""
    path = Path(str(resources.files("semlat.configs").joinpath(f"{name}.yaml")))
    if not path.is_file():
        raise ConfigError(f"no shipped config {name!r} (see {', '.join(list_builtin())})")
    return path


def list_builtin() -> list[str]:
    """Names of the shipped recipe files."""
    root = Path(str(resources.files("semlat.configs")))
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def resolve_config(spec: str | os.PathLike) -> Path:
    """A YAML path as given if it exists, else the shipped config of that name."""
    path = Path(spec)
    if path.is_file():
        return path
    try:
        return builtin_config(str(spec).removesuffix(".yaml"))
    except ConfigError:
        raise ConfigError(f"{spec}: no such config file, nor a shipped config "
                          f"({', '.join(list_builtin())})") from None
