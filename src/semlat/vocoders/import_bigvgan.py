"""Import a released BigVGAN generator (NVIDIA's BigVGAN repository and its released generators) as a
semlat ``bigvgan`` model folder::

    semlat import bigvgan bigvgan_generator.pt models/bigvgan_v2_22k --config config.json

Weights: the released ``bigvgan_generator.pt`` (``{"generator": state_dict}``, read with
``torch.load(weights_only=True)``), a bare state dict, or a ``.safetensors`` file; with weight norm
(legacy ``weight_g``/``weight_v`` or torch's parametrization keys) or after ``remove_weight_norm()``
(plain ``weight``). Config: the release's ``config.json`` (or the folder holding it); without
``--config`` the ``config.json`` beside the weights is used.

Keys and shapes are checked against the generator built on the meta device before any real memory
is allocated, so a wrong config is a one-line error naming the keys that do not fit. The folder
always stores the weight-normed form (a weight-norm-free checkpoint gets ``g = ||w||``, ``v = w``,
which reproduces ``w`` exactly), so training can continue from it; inference folds it away again.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import parametrize

from semlat.checkpoints import check_state_dict, read_foreign_weights, save_model, unwrap_state_dict
from semlat.config import read_json_object
from semlat.errors import CheckpointError, ConfigError
from semlat.latent_space import space_info
from semlat.nn.weight_norm import legacy_to_parametrized, remove_weight_norm, weight_norm
from semlat.vocoders.bigvgan import BigVGAN
from semlat.vocoders.mel_vocoder import MelVocoder, MelVocoderConfig

_WN_SUFFIXES = (".parametrizations.weight.original0", ".parametrizations.weight.original1")


def read_bigvgan_config(path: str | os.PathLike) -> MelVocoderConfig:
    """A BigVGAN ``config.json`` (or a folder holding one) as a :class:`MelVocoderConfig`."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    data = read_json_object(path)
    return MelVocoderConfig.from_bigvgan_json(data, where=str(path))


def read_bigvgan_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The generator state dict of a released file, with legacy weight-norm keys renamed to semlat's."""
    data = read_foreign_weights(path)
    if "generator" not in data and {"mpd", "mrd"} <= set(data):
        raise CheckpointError(f"{path}: this is a discriminator/optimizer checkpoint "
                              "(bigvgan_discriminator_optimizer.pt); import bigvgan_generator.pt")
    state = unwrap_state_dict(data, where=str(path))
    if state and all(key.startswith("module.") for key in state):  # saved from a DDP wrapper
        state = {key[len("module."):]: value for key, value in state.items()}
    return legacy_to_parametrized(state)


def is_weight_normed(state: Mapping[str, Any]) -> bool:
    """Whether a (parametrization-named) generator state dict carries weight-norm ``g``/``v`` pairs."""
    return any(key.endswith(_WN_SUFFIXES) for key in state)


def check_generator_state(config: MelVocoderConfig, state: Mapping[str, torch.Tensor],
                          where: str = "checkpoint") -> bool:
    """Check a generator state dict's keys and shapes against ``config`` (on the meta device, no memory).

    ``state`` uses semlat's key names (see :func:`read_bigvgan_weights`); tensors may live on the meta
    device. Raises :class:`CheckpointError` naming missing, unexpected or mis-shaped keys. Returns
    whether the state is weight-normed.
    """
    normed = is_weight_normed(state)
    with torch.device("meta"):
        generator = BigVGAN(config.generator_config())
        if not normed:
            remove_weight_norm(generator)
    form = "with weight norm" if normed else "without weight norm"
    check_state_dict(generator.state_dict(), state, where=f"{where} (generator {form})")
    return normed


def build_vocoder(config: MelVocoderConfig, state: Mapping[str, torch.Tensor],
                  where: str = "checkpoint") -> MelVocoder:
    """A :class:`MelVocoder` holding the generator weights ``state`` (with or without weight norm);
    the result is always weight-normed. Keys are checked first (:func:`check_generator_state`)."""
    normed = check_generator_state(config, state, where)
    model = MelVocoder(config)
    generator = model.generator
    wn_modules = [m for m in generator.modules() if parametrize.is_parametrized(m, "weight")]
    if not normed:
        remove_weight_norm(generator)
    try:
        generator.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:  # e.g. a dtype that cannot be copied
        raise CheckpointError(f"{where}: cannot load ({str(err).strip().splitlines()[0]})") from None
    if not normed:
        for module in wn_modules:  # g = ||w|| and v = w: the same weight, in the stored form
            weight_norm(module)
    return model


def import_bigvgan(weights: str | os.PathLike, out: str | os.PathLike, *,
                   config: str | os.PathLike | None = None, **options: Any) -> Path:
    """Convert a released BigVGAN generator into a semlat ``bigvgan`` model folder at ``out`` (atomically).

    Args:
        weights: ``bigvgan_generator.pt``, a bare state dict (``.pt``/``.pth``/``.bin``) or ``.safetensors``.
        out: the model folder to write.
        config: the release's ``config.json`` or its folder; ``None``: ``config.json`` beside ``weights``.
        options: other importer options (such as a vocoder); none applies, so any given one is an error.
    Returns:
        ``out`` as a Path.
    """
    discriminator = options.pop("discriminator", None)
    given = sorted(key for key, value in options.items() if value is not None)
    if given:
        raise ConfigError(f"bigvgan import takes no option(s) {', '.join(given)}")
    if config is None:
        config = Path(weights).parent / "config.json"
        if not config.is_file():
            raise ConfigError(f"bigvgan import needs the release's config.json (--config); none beside {weights}")
    cfg = read_bigvgan_config(config)
    state = read_bigvgan_weights(weights)
    model = build_vocoder(cfg, state, where=str(weights))
    extra = {**space_info(model), "source": {"weights": Path(weights).name}}
    companions = {}
    if discriminator is not None:
        companions["discriminator"] = read_bigvgan_discriminator(discriminator)
        extra["source"]["discriminator"] = Path(discriminator).name
    return save_model(out, model, model_type="bigvgan", config=dataclasses.asdict(cfg), extra=extra,
                      companions=companions)


def read_bigvgan_discriminator(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A release's ``bigvgan_discriminator_optimizer.pt`` (``mpd``, ``mrd`` state dicts with legacy weight-norm
    keys; its optimiser states are not read) as the state of semlat's ``bigvgan`` recipe discriminator (``mpd.{i}``
    period discriminators, ``mrd.discriminators.{j}``)."""
    data = read_foreign_weights(path, "discriminator checkpoint")
    if not {"mpd", "mrd"} <= set(data):
        raise CheckpointError(f"{path}: not a BigVGAN discriminator checkpoint (needs 'mpd' and 'mrd'; has "
                              f"{', '.join(sorted(data)[:8])})")
    state = {}
    for key, value in data["mpd"].items():
        if not key.startswith("discriminators."):
            raise CheckpointError(f"{path}: unexpected mpd key {key!r}")
        state["mpd." + key[len("discriminators."):]] = value
    state.update({f"mrd.{key}": value for key, value in data["mrd"].items()})
    return legacy_to_parametrized(state)
