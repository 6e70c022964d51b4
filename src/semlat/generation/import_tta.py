"""``semlat import semantic-vocoder-tta WEIGHTS OUT --encoder T5_DIR --vocoder SPACE [--config CONFIG]``.

WEIGHTS is the text-to-audio release's state dict (``.safetensors``, or a ``.pt`` with a ``state_dict``/``model``
entry) in the module tree of its ``SingleTaskCrossAttentionAudioFlowMatching`` (see the fixture README):

* ``model.backbone.*``: the UDiT (:class:`~semlat.generation.udit.UDiT`, reproduced numerically against the
  reference; ``tests/fixtures``). Sizes come from the shapes (width, depth, heads from the q/k norm, MLP ratio,
  context width, LoRA rank); ``ada_sola_alpha`` changes no shape and comes from ``--config`` (a JSON with
  ``ada_sola_alpha``, or the Hub ``config.json`` holding it anywhere), else equals the rank (scaling 1, as the
  key listing assumes);
* ``model.content_encoder.text_encoder.model.*``: the frozen FLAN-T5 encoder, loaded into a
  ``T5EncoderModel`` of ``--encoder``'s config and written with ``--encoder``'s tokenizer to
  ``OUT/text_encoder`` (``shared``/``embed_tokens`` are tied: either one is enough);
* ``model.content_encoder.text_encoder.proj.*``: the context projection (``text_proj``);
* ``model.autoencoder.generator.*`` (if present) must equal the generator of ``--vocoder``, a SemanticVocoder
  folder from ``semlat import semantic-vocoder``, which is the latent space the model records.

The latents are raw Dasheng frames (no scaling: statistics 0 / 1). Sampling defaults are the reference's: 100
steps on the sway grid (``s = -1``), CFG 3.5, 10 s windows. One deviation: the reference casts each timestep to
an integer before embedding it; semlat embeds the exact value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from semlat.autoencoders.semantic_vocoder import SemanticVocoder
from semlat.checkpoints import (
    check_state_dict,
    load_model_of_type,
    read_foreign_weights,
    save_model,
    unwrap_state_dict,
)
from semlat.config import read_json_object
from semlat.errors import CheckpointError, ConfigError
from semlat.generation.tta import TTAConfig, TTAFlow, TTAModel
from semlat.generation.udit import UDiTConfig
from semlat.utils.files import atomic_dir

BACKBONE = "model.backbone."
T5 = "model.content_encoder.text_encoder.model."
PROJ = "model.content_encoder.text_encoder.proj."
GENERATOR = "model.autoencoder.generator."


def _find(data: Any, key: str) -> Any:
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def backbone_config(state: dict[str, torch.Tensor], alpha: float | None, where: str) -> UDiTConfig:
    """The UDiT's sizes from its shapes (``alpha`` from the config, else the rank)."""
    try:
        dim, channels = state["patch_embed.proj.weight"].shape[:2]
        head = state["in_blocks.0.attn.norm_q.weight"].shape[0]
        hidden = state["in_blocks.0.mlp.net.2.weight"].shape[1]
        context = state["context_embed.0.weight"].shape[1]
        rank = state["in_blocks.0.adaln.lora_a.weight"].shape[0] // 6
    except KeyError as err:
        raise ConfigError(f"{where}: not the release's UDiT layout (no {err.args[0]})") from None
    depth = 2 * (1 + max(int(k.split(".")[1]) for k in state if k.startswith("in_blocks.")))
    return UDiTConfig(in_chans=int(channels), embed_dim=int(dim), depth=depth, num_heads=int(dim // head),
                      mlp_ratio=hidden / dim, context_dim=int(context), ada_rank=int(rank),
                      ada_alpha=float(alpha if alpha is not None else rank))


def import_semantic_vocoder_tta(weights: str | os.PathLike, out: str | os.PathLike, *,
                                config: str | os.PathLike | None = None, vocoder: str | os.PathLike | None = None,
                                encoder: str | os.PathLike | None = None) -> Path:
    """Import the release (module docstring); returns the TTA model folder."""
    from transformers import AutoTokenizer

    if vocoder is None or encoder is None:
        raise ConfigError("semlat import semantic-vocoder-tta needs --vocoder (a folder from `semlat import "
                          "semantic-vocoder`) and --encoder (a local flan-t5-large folder: config and tokenizer)")
    state = unwrap_state_dict(read_foreign_weights(weights, "text-to-audio checkpoint"), ("state_dict", "model"),
                              where=str(weights))
    parts = {prefix: {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
             for prefix in (BACKBONE, T5, PROJ, GENERATOR)}
    for prefix in (BACKBONE, T5, PROJ):
        if not parts[prefix]:
            raise CheckpointError(f"{weights}: no {prefix}* keys (not SemanticVocoder's text-to-audio layout)")
    settings = read_json_object(config, "text-to-audio config") if config is not None else {}
    space, _, space_folder = load_model_of_type(vocoder, SemanticVocoder, "semantic_vocoder", "a SemanticVocoder",
                                                "make one with `semlat import semantic-vocoder`")
    if parts[GENERATOR]:
        ours = space.generator.state_dict()
        if set(ours) != set(parts[GENERATOR]) or any(not torch.equal(ours[k], parts[GENERATOR][k]) for k in ours):
            raise CheckpointError(f"{weights}: its vocoder is not the one in {space_folder}")
    backbone = backbone_config(parts[BACKBONE], _find(settings, "ada_sola_alpha"), str(weights))
    if backbone.in_chans != space.latent_dim:
        raise ConfigError(f"{weights}: the backbone generates {backbone.in_chans}-d latents, {space_folder} has "
                          f"{space.latent_dim}-d")
    latent_shape = _find(settings, "latent_shape")
    frames = int(latent_shape[-1]) if isinstance(latent_shape, list) and latent_shape else 250
    proj = parts[PROJ]["weight"]
    tta_config = TTAConfig(backbone=backbone, text_dim=int(proj.shape[1]), text_encoder="text_encoder",
                           space=str(space_folder), frame_rate=space.frame_rate,
                           max_seconds=frames / space.frame_rate, flow=TTAFlow(steps=100, guidance=3.5, sway_coef=-1.0))
    model = TTAModel(tta_config)
    model.backbone.load_state_dict(parts[BACKBONE], strict=True)
    model.text_proj.load_state_dict(parts[PROJ], strict=True)
    text_encoder = _text_encoder(parts[T5], Path(encoder), str(weights))  # checked before anything is written
    out = Path(out)
    extra = {"source": {"weights": Path(weights).name, "vocoder": str(space_folder), "encoder": str(encoder)}}
    save_model(out, model, model_type="tta", config=tta_config, extra=extra)
    with atomic_dir(out / "text_encoder") as tmp:
        text_encoder.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(encoder), local_files_only=True).save_pretrained(str(tmp))
    return out


def _text_encoder(state: dict[str, torch.Tensor], folder: Path, where: str) -> Any:
    """A ``T5EncoderModel`` of ``folder``'s config holding the checkpoint's weights."""
    from transformers import T5Config, T5EncoderModel

    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: not a transformers T5 folder (no config.json)")
    model = T5EncoderModel(T5Config.from_pretrained(str(folder), local_files_only=True))
    state = dict(state)
    tied = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    if tied is None:
        raise CheckpointError(f"{where}: the text encoder has no token embedding")
    state.setdefault("shared.weight", tied)
    state.setdefault("encoder.embed_tokens.weight", tied)
    check_state_dict(model.state_dict(), state, f"{where} (its text encoder, against {folder}'s config)")
    model.load_state_dict(state, strict=True)
    return model
