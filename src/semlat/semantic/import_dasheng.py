"""``semlat import dasheng WEIGHTS OUT [--config CONFIG]``: a released Dasheng encoder as a semlat model folder.

WEIGHTS is a release from zenodo record 11511780 (``dasheng_base.pt``, ``dasheng_06b.pt``, ``dasheng_12b.pt``:
``torch.load`` gives ``{"model": state_dict, "config": {...}}``), a flat state dict (``.pt``/``.bin``) or a
``.safetensors`` with the same keys. The keys are :class:`~semlat.semantic.dasheng.Dasheng`'s as they are
(the front-end's window and filterbank and BatchNorm's statistics included) and loaded strictly. The sizes come
from ``--config`` (a JSON of the ``Dasheng`` constructor's arguments, or ``{"kwargs": {...}}``), else from the
file's ``config`` entry, else from the shapes (the head count from the released sizes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semlat.checkpoints import check_state_dict, read_foreign_weights, save_model, unwrap_state_dict
from semlat.config import constructor_kwargs
from semlat.errors import ConfigError
from semlat.semantic.dasheng import Dasheng, DashengConfig, config_from_state

#: the constructor arguments of the ``dasheng`` package that size the model
SIZE_KEYS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "target_length")


def _config_from_kwargs(kwargs: Mapping[str, Any], where: str) -> DashengConfig:
    unsupported = {k: kwargs[k] for k in ("patch_size", "patch_stride", "n_mels", "hop_size", "n_fft")
                   if k in kwargs and list(kwargs[k] if isinstance(kwargs[k], (list, tuple)) else [kwargs[k]])
                   not in ([64, 4], [64], [160], [512])}
    if unsupported:
        raise ConfigError(f"{where}: unsupported Dasheng front-end or patch settings {unsupported}")
    if kwargs.get("init_values") not in (None, 0):
        raise ConfigError(f"{where}: LayerScale (init_values) is not supported (no release uses it)")
    return DashengConfig(**{k: kwargs[k] for k in SIZE_KEYS if k in kwargs})


def read_dasheng_config(path: str | os.PathLike) -> DashengConfig:
    """A JSON of the ``Dasheng`` constructor's arguments (or ``{"kwargs": {...}}``, as the fixtures write it)."""
    return _config_from_kwargs(constructor_kwargs(path, "Dasheng config"), str(path))


def import_dasheng(weights: str | os.PathLike, out: str | os.PathLike, *, config: str | os.PathLike | None = None
                   ) -> Path:
    """Import a released Dasheng; returns the model folder (``model_type: dasheng``)."""
    data = read_foreign_weights(weights, "Dasheng checkpoint")
    state = unwrap_state_dict(data, ("model", "state_dict"), where=str(weights))
    if config is not None:
        cfg = read_dasheng_config(config)
    elif isinstance(data.get("config"), Mapping):
        cfg = _config_from_kwargs(data["config"], f"{weights} (its config)")
    else:
        cfg = config_from_state(state, str(weights))
    model = Dasheng(cfg)
    check_state_dict(model.state_dict(), state, str(weights))
    model.load_state_dict(state, strict=True)
    extra = {"source": {"weights": Path(weights).name}, "sample_rate": 16000, "frame_rate": 25.0,
             "dim": cfg.embed_dim}
    return save_model(out, model, model_type="dasheng", config=cfg, extra=extra)
