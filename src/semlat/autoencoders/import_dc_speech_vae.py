"""Import a released DC-Speech-VAE (github.com/KdaiP/DC-Speech-VAE) as a semlat ``mel_dcae`` model folder::

    semlat import dc-speech-vae generator_700000.pt models/dc_speech_vae \\
        --config default_config.json --vocoder bigvgan_v2_22khz_80band_256x/

WEIGHTS: the released generator file (a flat ``DCAEWrapper`` state dict with parametrization weight
norm, read with ``torch.load(weights_only=True)``; also ``.safetensors``, wrapped or folded forms,
see :func:`~semlat.autoencoders.mel_dcae.import_dcae_state_dict`). CONFIG: the reference's diffusers
``AutoencoderDC`` config json (``models/default_config.json``). VOCODER: the BigVGAN-v2 22 kHz /
80-band release folder as downloaded (``config.json`` + ``bigvgan_generator.pt``), a semlat ``bigvgan``
model folder (``semlat import bigvgan``), or ``griffin-lim`` for the training-free stand-in.

The result is the DCAE + vocoder latent space, so ``semlat encode/decode/reconstruct`` use it directly.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from semlat.autoencoders.mel_dcae import MelDCAE, MelDCAEConfig, import_dcae_state_dict
from semlat.autoencoders.mel_space import MelDCAESpace
from semlat.checkpoints import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_model_of_type,
    load_state_dict_strict,
    read_foreign_weights,
    unwrap_state_dict,
)
from semlat.config import read_json_object
from semlat.errors import CheckpointError, ConfigError
from semlat.latent_space import space_info
from semlat.vocoders.griffin_lim import GriffinLimVocoder
from semlat.vocoders.mel_vocoder import MelVocoder

GRIFFIN_LIM = "griffin-lim"


def read_dcae_config(path: str | os.PathLike) -> MelDCAEConfig:
    """The reference's ``AutoencoderDC`` config json as a :class:`MelDCAEConfig` (weight norm on)."""
    data = read_json_object(path)
    return MelDCAEConfig.from_reference_json(data, where=str(path))


def load_mel_vocoder(source: str | os.PathLike) -> Any:
    """The vocoder named by ``--vocoder``: ``griffin-lim``, a semlat ``bigvgan`` folder, or a BigVGAN
    release folder (``config.json`` + ``bigvgan_generator.pt``)."""
    if str(source) == GRIFFIN_LIM:
        return GriffinLimVocoder()
    path = Path(source)
    if not path.is_dir():
        raise ConfigError(f"--vocoder {path}: not a folder (give a BigVGAN folder or {GRIFFIN_LIM!r})")
    if (path / WEIGHTS_NAME).is_file():
        try:
            return load_model_of_type(path, MelVocoder, "bigvgan", "a bigvgan vocoder",
                                      "train one with `semlat train bigvgan/...`")[0]
        except CheckpointError as err:
            raise ConfigError(f"--vocoder {err}") from None
    from semlat.vocoders.import_bigvgan import build_vocoder, read_bigvgan_config, read_bigvgan_weights

    weights = path / "bigvgan_generator.pt"
    if not (path / CONFIG_NAME).is_file() or not weights.is_file():
        raise ConfigError(f"--vocoder {path}: expected config.json and bigvgan_generator.pt (a BigVGAN release) "
                          f"or a semlat model folder")
    return build_vocoder(read_bigvgan_config(path), read_bigvgan_weights(weights), where=str(weights))


def import_dc_speech_vae(weights: str | os.PathLike, out: str | os.PathLike, *,
                         config: str | os.PathLike | None = None, vocoder: str | os.PathLike | None = None,
                         discriminator: str | os.PathLike | None = None) -> Path:
    """Write the ``mel_dcae`` model folder ``out`` (atomically) from a released DC-Speech-VAE generator.

    ``config`` defaults to ``default_config.json`` beside the weights; ``vocoder`` is required. ``discriminator``:
    the release's mel discriminator (its state dict, semlat's ``MelDiscriminator`` keys are the reference's), kept
    beside the model as ``discriminator.safetensors`` for ``train.init_from`` (shapes are checked then, against the
    recipe's ``discriminator`` config).
    """
    from semlat.checkpoints import save_model

    if vocoder is None:
        raise ConfigError(f"dc-speech-vae import needs --vocoder (the BigVGAN-v2 22 kHz / 80-band folder, "
                          f"or {GRIFFIN_LIM!r})")
    if config is None:
        config = Path(weights).parent / "default_config.json"
        if not Path(config).is_file():
            raise ConfigError(f"dc-speech-vae import needs the reference's config json (--config); none beside "
                              f"{weights}")
    cfg = dataclasses.replace(read_dcae_config(config), weight_norm=True)
    state = import_dcae_state_dict(read_foreign_weights(weights), cfg, where=str(weights))
    autoencoder = MelDCAE(cfg)
    load_state_dict_strict(autoencoder, state, where=str(weights))
    space = MelDCAESpace(autoencoder, load_mel_vocoder(vocoder))
    extra = {**space_info(space), "source": {"weights": Path(weights).name, "vocoder": Path(str(vocoder)).name}}
    companions = {}
    if discriminator is not None:
        companions["discriminator"] = unwrap_state_dict(read_foreign_weights(discriminator, "discriminator"),
                                                        ("discriminator", "state_dict", "model"), str(discriminator))
        extra["source"]["discriminator"] = Path(discriminator).name
    return save_model(out, space, model_type="mel_dcae", config=space.config, extra=extra, companions=companions)
