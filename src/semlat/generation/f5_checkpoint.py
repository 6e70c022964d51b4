"""Reading F5-TTS's released checkpoints and configs into semlat's backbones.

Released files (``model_1250000.safetensors``, ``.pt``) hold the EMA weights as ``ema_model.transformer.<key>``
plus two EMA scalars (``initted``, ``step``); a ``.pt`` wraps them as ``{"ema_model_state_dict": ...}`` (full
trainer checkpoints also hold ``model_state_dict`` with ``transformer.<key>``). Checkpoints from before
Nov 2024 may carry the mel front-end's buffers (``mel_spec.mel_stft.*``), which are dropped. The backbone
keys are semlat's own (the modules use the released names).

Configs: the reference's training YAML (``model: {backbone: DiT | UNetT, arch: {...}, mel_spec: {...}}``)
or a JSON with ``backbone`` and ``arch`` at the top (the fixtures' form).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from semlat.checkpoints import read_foreign_weights
from semlat.errors import CheckpointError, ConfigError
from semlat.generation.dit import DiT, DiTConfig
from semlat.generation.unett import UNetT, UNetTConfig

BACKBONES = {"DiT": (DiT, DiTConfig), "UNetT": (UNetT, UNetTConfig)}
#: arch keys of the reference that semlat's configs do not take (no effect, or the reference's defaults)
IGNORED_ARCH = {"attn_backend", "checkpoint_activations", "qk_norm", "long_skip_connection", "skip_connect_type",
                "text_embedding_average_upsampling", "conv_layers"}
EMA_SCALARS = ("initted", "step")


def read_f5_config(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(backbone name, arch dict)`` from a reference YAML or a JSON of the fixtures' form."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such F5-TTS config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: unreadable F5-TTS config ({type(err).__name__})") from None
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or data.get("backbone") not in BACKBONES or not isinstance(data.get("arch"), Mapping):
        raise ConfigError(f"{path}: expected 'backbone' ({' or '.join(BACKBONES)}) and 'arch' (an F5-TTS config)")
    return str(data["backbone"]), dict(data["arch"])


def backbone_from_arch(backbone: str, arch: Mapping[str, Any], text_num_embeds: int | None = None,
                       mel_dim: int | None = None, attn_mask: bool = False) -> nn.Module:
    """The backbone an F5-TTS arch describes. ``text_num_embeds`` (the vocabulary size) and ``mel_dim`` fill
    in what the YAML leaves to the vocab file and the mel settings; ``attn_mask=False`` is the releases'
    attention over padded frames."""
    model_cls, config_cls = BACKBONES[backbone]
    values = {k: v for k, v in arch.items() if k not in IGNORED_ARCH}
    if "attn_mask_enabled" in values:
        attn_mask = bool(values.pop("attn_mask_enabled")) or attn_mask
    if arch.get("qk_norm") is not None:
        raise ConfigError(f"qk_norm={arch['qk_norm']!r} is not supported (no release uses it)")
    if arch.get("long_skip_connection"):
        raise ConfigError("long_skip_connection is not supported (no release uses it)")
    if backbone == "DiT":
        values["conv_layers"] = int(arch.get("conv_layers", 0))
    else:
        if int(arch.get("conv_layers", 0) or 0) or values.pop("text_mask_padding", False):
            raise ConfigError("UNetT with text convs or text_mask_padding is not supported (no release uses them)")
    if text_num_embeds is not None:
        values["text_num_embeds"] = text_num_embeds
    if mel_dim is not None:
        values["mel_dim"] = mel_dim
    fields = {f for f in config_cls.__dataclass_fields__}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"F5-TTS arch: unknown key(s) {', '.join(unknown)}")
    return model_cls(config_cls(**values, attn_mask=attn_mask))


def backbone_state(data: Mapping[str, Any], where: str, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The backbone's tensors from a released file's contents (see the module docstring)."""
    if "ema_model_state_dict" in data or "model_state_dict" in data:
        key = "ema_model_state_dict" if use_ema and "ema_model_state_dict" in data else "model_state_dict"
        data = data[key]
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{where}: {key} is not a state dict")
    state: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        name = key.replace("ema_model.", "")
        if key in EMA_SCALARS or name.startswith("mel_spec."):  # EMA bookkeeping, legacy mel buffers
            continue
        if not name.startswith("transformer."):
            raise CheckpointError(f"{where}: unexpected key {key!r} (an F5-TTS checkpoint has transformer.* keys)")
        state[name.removeprefix("transformer.")] = value
    if not state:
        raise CheckpointError(f"{where}: no transformer.* weights found")
    return state


def read_backbone_weights(path: str | os.PathLike, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The backbone's tensors from a released ``.safetensors`` or ``.pt``."""
    return backbone_state(read_foreign_weights(path, "F5-TTS checkpoint"), str(path), use_ema)
