"""Typed configs: YAML recipes and ``key=value`` overrides merged into dataclasses (OmegaConf).

A recipe file is YAML whose top-level ``recipe`` key names the training recipe; the rest is merged
over that recipe's config dataclass, then command-line overrides (dotted keys: ``train.max_steps=10``,
``model.latent_dim=32``, ``optim.betas=[0.9,0.99]``) are merged over that. Unknown keys and values of
the wrong type are one-line :class:`~semlat.errors.ConfigError`s naming the source and the key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from semlat.errors import ConfigError, first_line
from semlat.utils.files import atomic_write_text

T = TypeVar("T")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{path}: invalid YAML{where} ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping, not {type(data).__name__}")
    return data


def read_json_object(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """Read a JSON object (a released model's config, a semlat folder's description...), with one-line
    errors that call the file ``what``: missing, unreadable (invalid JSON, at which line), not an object."""
    import json

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: unreadable {what} ({type(err).__name__})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: unreadable {what} (invalid JSON: {err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object in the {what}, not {type(data).__name__}")
    return data


def constructor_kwargs(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A released model's constructor arguments from a JSON object, bare or wrapped as ``{"kwargs": {...}}``
    (the fixtures' layout); one-line errors as :func:`read_json_object`'s."""
    data = read_json_object(path, what)
    return dict(data["kwargs"]) if isinstance(data.get("kwargs"), dict) else data


def check_keys(cls: type, keys: Any, where: str) -> None:
    """One-line ConfigError naming every key of ``keys`` that is not a field of dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(keys) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
    """Build dataclass ``cls`` from a plain dict (a config.json section): the one place that checks a
    dict's keys against the fields (unknown keys are a one-line ConfigError naming ``where``), turns
    JSON lists back into tuples for tuple-typed fields, and reports constructor errors in one line."""
    where = where or f"{cls.__name__}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    check_keys(cls, data, where)
    kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values = {k: _tuples(v) if kinds[k].startswith(("tuple", "Tuple")) and isinstance(v, list) else v
              for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: {first_line(err)}") from None


def as_config(config_class: type[T], config: Any, where: str | None = None) -> T:
    """``config`` as a ``config_class`` instance: itself, or built from its dict form by the class's own
    ``from_dict`` (configs that read a reference's format) or by :func:`from_dict`."""
    if isinstance(config, config_class):
        return config
    custom = getattr(config_class, "from_dict", None)
    if custom is not None:
        return custom(config)
    return from_dict(config_class, config, where)


class FromConfig:
    """The one ``from_config`` of every model built from one config dataclass (Vocos's ``instantiate`` habit):
    a class sets ``config_class`` (and ``config_where``, the name its errors use) and gets
    ``from_config(config_or_dict)``, which :mod:`semlat.models` and the recipes call."""

    config_class: ClassVar[type]
    config_where: ClassVar[str | None] = None

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(as_config(cls.config_class, config, cls.config_where))


def _describe(err: OmegaConfBaseException) -> str:
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    key = getattr(err, "full_key", None)
    if "$VALUE" in message:  # OmegaConf left its template unfilled; say what we know instead
        message = "value has the wrong type"
    return f"{key}: {message}" if key else message


def build_config(schema: type[T], sources: Sequence[tuple[str, Mapping[str, Any]]] = (),
                 overrides: Sequence[str] = ()) -> T:
    """Merge ``sources`` (``(name, mapping)`` pairs, later wins) and ``overrides`` over ``schema``'s defaults.

    Returns an instance of ``schema`` (nested dataclasses included).
    """
    merged = OmegaConf.structured(schema)
    for name, data in sources:
        try:
            merged = OmegaConf.merge(merged, OmegaConf.create(dict(data)))
        except OmegaConfBaseException as err:
            raise ConfigError(f"{name}: {_describe(err)}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.max_steps=100)")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise ConfigError(f"override {item!r}: {_describe(err)}") from None
    try:
        result = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    validate_tree(result)
    return result  # type: ignore[return-value]


def validate_tree(config: Any, where: str = "") -> None:
    """Call ``validate(where)`` on ``config`` and every nested dataclass that defines it
    (``where`` is the dotted path of the field, e.g. ``"train"``), children first."""
    if not dataclasses.is_dataclass(config):
        return
    for f in dataclasses.fields(config):
        validate_tree(getattr(config, f.name), f"{where}.{f.name}" if where else f.name)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate(where or "config")


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (lists instead of tuples) of a dataclass config, ready for JSON/YAML."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_yaml(config: Any, path: str | os.PathLike) -> Path:
    """Write a dataclass config (or mapping) as YAML, atomically."""
    data = to_dict(config) if dataclasses.is_dataclass(config) else _plain(config)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return Path(path)
