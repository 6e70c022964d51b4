"""``semlat import vocos WEIGHTS OUT --config CONFIG``: a released Vocos checkpoint as a semlat model folder.

WEIGHTS is the release's ``pytorch_model.bin`` (a flat dict: ``feature_extractor.*``, ``backbone.*``,
``head.*``; read with ``torch.load(weights_only=True)``) or a ``.safetensors`` with the same keys. CONFIG is
its ``config.yaml`` (top-level ``feature_extractor``/``backbone``/``head``, each ``{class_path, init_args}``;
the training yamls' ``model.init_args`` nesting is accepted too) or the same content as JSON.

Key mapping into :class:`~semlat.vocoders.vocos.Vocos`: ``backbone.convnext.{i}.`` -> ``backbone.blocks.{i}.``,
``backbone.final_layer_norm.`` -> ``backbone.final_norm.``; ``backbone.embed``, ``backbone.norm`` (LayerNorm or
AdaLN ``scale``/``shift``) and ``head.out`` keep their names. The three buffers (the STFT and iSTFT windows
and the mel filterbank) are checked against semlat's own and dropped. The EnCodec variant's
``feature_extractor.codebook_weights`` is kept; its ``feature_extractor.encodec.*`` weights are dropped:
the reference overwrites them with the ``encodec`` package's pretrained model anyway, and EnCodec is not
part of semlat.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from semlat.checkpoints import check_state_dict, read_foreign_weights, save_model, unwrap_state_dict
from semlat.errors import CheckpointError, ConfigError
from semlat.latent_space import space_info
from semlat.vocoders.vocos import Vocos, VocosConfig

#: buffers of the released mel model, recomputed by semlat (checked, then dropped)
BUFFERS = ("feature_extractor.mel_spec.spectrogram.window", "feature_extractor.mel_spec.mel_scale.fb",
           "head.istft.window")
FEATURE_CLASSES = {"MelSpectrogramFeatures": "mel", "EncodecFeatures": "encodec"}
#: quantizers of EnCodec 24 kHz at its largest bandwidth (12 kbps at 75 Hz)
ENCODEC_CODEBOOKS = 16


def _sections(data: Mapping[str, Any], path: Path) -> dict[str, Mapping[str, Any]]:
    if "model" in data and isinstance(data["model"], Mapping) and "init_args" in data["model"]:
        data = data["model"]["init_args"]  # a training yaml
    sections = {}
    for name in ("feature_extractor", "backbone", "head"):
        part = data.get(name)
        if name == "feature_extractor" and part is None:
            continue
        if not isinstance(part, Mapping) or "class_path" not in part:
            raise ConfigError(f"{path}: no '{name}' section with class_path/init_args (a Vocos config.yaml)")
        sections[name] = part
    return sections


def read_vocos_config(path: str | os.PathLike) -> VocosConfig:
    """A Vocos ``config.yaml`` (or JSON of the same shape) as a :class:`VocosConfig`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such Vocos config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: unreadable Vocos config ({type(err).__name__})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a Vocos config must be a mapping")
    parts = _sections(data, path)
    backbone, head = parts["backbone"].get("init_args", {}), parts["head"].get("init_args", {})
    if not parts["backbone"]["class_path"].endswith("VocosBackbone"):
        raise ConfigError(f"{path}: backbone {parts['backbone']['class_path']} is not supported (VocosBackbone only)")
    if not parts["head"]["class_path"].endswith("ISTFTHead"):
        raise ConfigError(f"{path}: head {parts['head']['class_path']} is not supported (ISTFTHead only)")
    values: dict[str, Any] = {
        "input_channels": int(backbone["input_channels"]), "dim": int(backbone["dim"]),
        "intermediate_dim": int(backbone["intermediate_dim"]), "num_layers": int(backbone["num_layers"]),
        "layer_scale_init_value": backbone.get("layer_scale_init_value"),
        "adanorm_num_embeddings": backbone.get("adanorm_num_embeddings"),
        "n_fft": int(head["n_fft"]), "hop_length": int(head["hop_length"]), "padding": head.get("padding", "same"),
    }
    feature = parts.get("feature_extractor")  # none: features are given (a decode-only checkpoint)
    kind = FEATURE_CLASSES.get(feature["class_path"].rsplit(".", 1)[-1]) if feature else "encodec"
    if kind is None:
        raise ConfigError(f"{path}: feature extractor {feature['class_path']} is not supported")
    if kind == "mel":
        args = feature.get("init_args", {})
        values.update(features="mel", sample_rate=int(args.get("sample_rate", 24000)), n_mels=int(args.get("n_mels", 100)),
                      mel_n_fft=int(args.get("n_fft", 1024)), mel_hop_length=int(args.get("hop_length", 256)),
                      mel_padding=args.get("padding", "center"))
    else:
        values.update(features="encodec", codebooks=ENCODEC_CODEBOOKS if feature else 0)
    config = VocosConfig(**values)
    config.validate(str(path))
    return config


def convert_state(state: Mapping[str, torch.Tensor], model: Vocos, where: str) -> dict[str, torch.Tensor]:
    """Released keys -> semlat's (see the module docstring); buffers checked against the model's own."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in BUFFERS:
            _check_buffer(key, value, model, where)
            continue
        if key.startswith("feature_extractor.encodec."):
            continue
        new = key.replace("backbone.convnext.", "backbone.blocks.").replace("backbone.final_layer_norm.",
                                                                          "backbone.final_norm.")
        if new == "feature_extractor.codebook_weights":
            new = "codebook_weights"
        out[new] = value
    return out


def _check_buffer(key: str, value: torch.Tensor, model: Vocos, where: str) -> None:
    if key == "head.istft.window":
        ours = model.head.window
    elif model.mel is None:
        raise CheckpointError(f"{where}: has {key} but the config has no mel front-end")
    elif key.endswith("spectrogram.window"):
        ours = model.mel.spectrogram.window
    else:
        ours = model.mel.filterbank.T
    if tuple(value.shape) != tuple(ours.shape) or not torch.allclose(value.float(), ours.float(), atol=1e-6):
        raise CheckpointError(f"{where}: buffer {key} differs from the front-end the config describes")


def import_vocos(weights: str | os.PathLike, out: str | os.PathLike, *, config: str | os.PathLike | None = None,
                 **options: Any) -> Path:
    """Import a released Vocos; returns the model folder (``model_type: vocos``)."""
    if options:
        raise ConfigError(f"semlat import vocos takes --config only, not {', '.join(sorted(options))}")
    if config is None:
        raise ConfigError("semlat import vocos needs --config (the release's config.yaml)")
    cfg = read_vocos_config(config)
    model = Vocos(cfg)
    state = unwrap_state_dict(read_foreign_weights(weights, "Vocos checkpoint"), where=str(weights))
    converted = convert_state(state, model, str(weights))
    check_state_dict(model.state_dict(), converted, str(weights))
    model.load_state_dict(converted, strict=True)
    extra = {**space_info(model), "source": {"weights": Path(weights).name, "config": Path(config).name}}
    return save_model(out, model, model_type="vocos", config=json.loads(json.dumps(model.info)), extra=extra)

