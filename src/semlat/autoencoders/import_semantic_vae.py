"""Import a released Semantic-VAE generator (github.com/ZhikangNiu/Semantic-VAE) as a semlat ``wave_vae`` folder.

Weights: ``dac/weights.pth`` (a bare ``DAC.state_dict()`` or ``{"state_dict": ...}``), the EMA file
``dac/ema_state_dict.pth`` (``ema_model.<key>`` plus ``initted``/``step``, which are dropped), or a
``.safetensors`` file. The reference keys are semlat's keys, so no renaming is needed. Checkpoints
without ``projectors.*`` keys import without the alignment projector.

Config, in either of the reference's forms:

* ``metainfo.json`` (or the fixtures' config): ``{"DAC": {constructor args}, "Decoder": {BigVGAN json}}``;
* an argbind file (``conf/svae/example.yml``, or the run's flat ``config.json``) with keys such as
  ``DAC.encoder_dim: 64`` and ``DAC.bigvgan_conf: conf/bigvgan_conf/....json``. That path is looked
  up relative to the config file's folder, then each of its parents.

Reference constructor defaults apply to arguments the config omits. Arguments the reference ignores
(``decoder_dim``, ``decoder_rates``, ``decoder_type``, ``attn_proj``, ``post_vae_block``, ``distill``)
are ignored here too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
import yaml

from semlat.autoencoders.wave_vae import RegulatorConfig, WaveVAE, WaveVAEConfig
from semlat.checkpoints import check_state_dict, read_foreign_weights, save_model, unwrap_state_dict
from semlat.errors import CheckpointError, ConfigError
from semlat.vocoders.bigvgan import BigVGANConfig

#: ``DAC.__init__`` defaults of the reference, used for arguments a config omits.
_DAC_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "encoder_dim": 64, "encoder_rates": (2, 4, 8, 8), "latent_dim": None, "vae_dim": 8, "sample_rate": 44100,
    "distill_hidden_dim": 1024, "sampling_ratios": (0, 1)})
_EMA_PREFIX = "ema_model."


def _read_structured(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err.__class__.__name__})") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: cannot parse ({first})") from None


def _find_relative(config_path: Path, target: str) -> Path:
    candidate = Path(target)
    if candidate.is_absolute():
        if candidate.is_file():
            return candidate
    else:
        for folder in (config_path.parent, *config_path.parent.parents):
            if (folder / candidate).is_file():
                return folder / candidate
    raise ConfigError(f"{config_path}: DAC.bigvgan_conf {target} not found (looked beside the config and in its "
                      "parent folders; metainfo.json embeds the decoder config)")


def read_reference_config(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a Semantic-VAE config file into ``(DAC constructor args, BigVGAN json dict)``.

    ``path`` may also be a released checkpoint folder holding ``metainfo.json``.
    """
    path = Path(path)
    if path.is_dir() and (path / "metainfo.json").is_file():
        path = path / "metainfo.json"
    data = _read_structured(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if isinstance(data.get("DAC"), Mapping):
        dac = dict(data["DAC"])
    else:
        dac = {key[len("DAC."):]: value for key, value in data.items() if key.startswith("DAC.")}
        if not dac:
            raise ConfigError(f"{path}: no 'DAC' section or 'DAC.*' keys (is this a Semantic-VAE config?)")
    decoder = data.get("Decoder")
    if decoder is None:
        if not dac.get("bigvgan_conf"):
            raise ConfigError(f"{path}: no 'Decoder' section and no DAC.bigvgan_conf")
        decoder_path = _find_relative(path, str(dac["bigvgan_conf"]))
        decoder = _read_structured(decoder_path)
    if not isinstance(decoder, Mapping):
        raise ConfigError(f"{path}: the decoder config is not a mapping")
    return dac, dict(decoder)


def config_from_reference(dac: Mapping[str, Any], decoder: Mapping[str, Any], *, regulator: bool = True,
                          where: str = "Semantic-VAE config") -> WaveVAEConfig:
    """Map the reference's ``DAC`` args and BigVGAN json to a :class:`WaveVAEConfig`.

    ``regulator`` says whether to build the alignment projector (``projectors``).
    """
    args = {**_DAC_DEFAULTS, **dac}
    if not isinstance(args["vae_dim"], int):
        raise ConfigError(f"{where}: vae_dim must be an integer, got {args['vae_dim']!r}")
    decoder = dict(decoder)
    attn_proj = bool(decoder.pop("attn_proj", False))
    heads = int(decoder.pop("num_heads", 8))
    try:
        return WaveVAEConfig(
            sample_rate=int(args["sample_rate"]),
            encoder_dim=int(args["encoder_dim"]),
            encoder_rates=tuple(args["encoder_rates"]),
            encoder_out_dim=args["latent_dim"],
            latent_dim=args["vae_dim"],
            decoder=BigVGANConfig.from_json_dict(decoder, where=f"{where} (decoder)"),
            regulator=RegulatorConfig(teacher_dim=int(args["distill_hidden_dim"]),
                                      num_blocks=len(args["sampling_ratios"])) if regulator else None,
            decoder_input="attn_proj" if attn_proj else "conv",
            decoder_attn_heads=heads,
        )
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def read_generator_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A Semantic-VAE generator state dict from a bare, ``{"state_dict": ...}``-wrapped or EMA checkpoint."""
    state = unwrap_state_dict(read_foreign_weights(path), where=str(path))
    if any(key.startswith(_EMA_PREFIX) for key in state):
        state = {key[len(_EMA_PREFIX):]: value for key, value in state.items() if key.startswith(_EMA_PREFIX)}
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def import_semantic_vae(weights: str | os.PathLike, out: str | os.PathLike, *,
                        config: str | os.PathLike | None = None, **options: Any) -> Path:
    """Convert a released Semantic-VAE generator into a semlat ``wave_vae`` model folder at ``out``.

    Args:
        weights: ``weights.pth`` / ``ema_state_dict.pth`` / ``.safetensors``.
        out: the model folder to write.
        config: ``metainfo.json``, or the training yml / flat ``config.json`` (see the module docstring).
        options: other importer options (such as a vocoder); none applies, so any given one is an error.
    Returns:
        ``out`` as a Path.
    """
    given = sorted(key for key, value in options.items() if value is not None)
    if given:
        raise ConfigError(f"semantic-vae import takes no option(s) {', '.join(given)}")
    if config is None:
        raise ConfigError("semantic-vae import needs a config (the checkpoint's metainfo.json or the training yml)")
    dac, decoder = read_reference_config(config)
    state = read_generator_weights(weights)
    with_regulator = any(key.startswith("projectors.") for key in state)
    cfg = config_from_reference(dac, decoder, regulator=with_regulator, where=str(config))
    model = WaveVAE(cfg)
    check_state_dict(model.state_dict(), state, where=str(weights))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # e.g. a dtype that cannot be copied
        raise CheckpointError(f"{weights}: cannot load ({str(err).splitlines()[0]})") from None
    return save_model(out, model, model_type="wave_vae", config=dataclasses.asdict(cfg))
