"""``semlat import semantic-vocoder WEIGHTS OUT --config CONFIG --encoder DASHENG``: SemanticVocoder as a latent space.

WEIGHTS is the released vocoder checkpoint (``torch.load`` -> ``{"model": state_dict, ...}``; a flat ``.pt``
or ``.safetensors`` too) whose keys are Flow2GAN's generator's (:class:`~semlat.vocoders.flow_vocoder.FlowVocoder`
as they are, windows and the loss filterbank included), loaded strictly. CONFIG is the generator's constructor
arguments as JSON (the Hub ``config.json`` next to the checkpoint, or ``{"kwargs": {...}}`` as the fixtures
write it): the branch hop lengths change no shape, so they must come from it. DASHENG is a folder from
``semlat import dasheng`` (the encoder the vocoder was trained on: base for the released one).
"""

from __future__ import annotations

import os
from pathlib import Path

from semlat.autoencoders.semantic_vocoder import SemanticVocoder, SemanticVocoderConfig
from semlat.checkpoints import (
    check_state_dict,
    load_model_of_type,
    read_foreign_weights,
    save_model,
    unwrap_state_dict,
)
from semlat.config import constructor_kwargs
from semlat.errors import ConfigError
from semlat.semantic.dasheng import Dasheng
from semlat.vocoders.flow_vocoder import FlowVocoderConfig

#: Flow2GAN's names for the latent size and hop (MaeAudioGenerator maps them)
RENAMED = {"n_mels": "latent_dim", "mel_hop_length": "hop_length"}


def read_generator_config(path: str | os.PathLike) -> FlowVocoderConfig:
    """The generator's constructor arguments (Flow2GAN's names accepted) as a :class:`FlowVocoderConfig`."""
    data = constructor_kwargs(path, "generator config")
    known = set(FlowVocoderConfig.__dataclass_fields__)
    values = {RENAMED.get(k, k): v for k, v in data.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown generator argument(s) {', '.join(unknown)}")
    return FlowVocoderConfig(**values)


def import_semantic_vocoder(weights: str | os.PathLike, out: str | os.PathLike, *,
                            config: str | os.PathLike | None = None,
                            encoder: str | os.PathLike | None = None) -> Path:
    """Import the released generator with a semlat Dasheng; returns the model folder (``semantic_vocoder``)."""
    if config is None or encoder is None:
        raise ConfigError("semlat import semantic-vocoder needs --config (the generator's config.json) and "
                          "--encoder (a folder from `semlat import dasheng`)")
    generator_config = read_generator_config(config)
    dasheng, _, encoder_folder = load_model_of_type(encoder, Dasheng, "dasheng", "a Dasheng encoder",
                                                    "make one with `semlat import dasheng`")
    space = SemanticVocoder(SemanticVocoderConfig(encoder=dasheng.config, generator=generator_config))
    state = unwrap_state_dict(read_foreign_weights(weights, "SemanticVocoder checkpoint"), ("model", "state_dict"),
                              where=str(weights))
    check_state_dict(space.generator.state_dict(), state, str(weights))
    space.generator.load_state_dict(state, strict=True)
    space.encoder.load_state_dict(dasheng.state_dict(), strict=True)
    extra = {"source": {"weights": Path(weights).name, "config": Path(config).name, "encoder": str(encoder_folder)}}
    return save_model(out, space, model_type="semantic_vocoder", config=space.config, extra=extra)
