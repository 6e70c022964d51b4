"""``semlat import f5-tts WEIGHTS OUT --config CONFIG --vocab VOCAB [--vocoder DIR]``: a released F5-TTS (or
E2-TTS) checkpoint as a semlat TTS model folder, runnable by ``semlat tts``.

WEIGHTS: the release's ``model_*.safetensors`` or ``.pt`` (EMA weights; see
:mod:`semlat.generation.f5_checkpoint`). CONFIG: its training YAML (``configs/F5TTS_v1_Base.yaml``) or a JSON
with ``backbone`` and ``arch``. VOCAB: its ``vocab.txt`` (the text embedding has one row per line plus the
filler). ``--vocoder``: a semlat Vocos folder (``semlat import vocos`` of the released mel Vocos), copied
into ``OUT/vocoder`` with its mel floor set to F5-TTS's 1e-5, so that prompts are encoded into exactly the
mel F5-TTS was trained on; the TTS folder then runs on its own. The model keeps the releases' attention over
padded frames (``attn_mask: false``), uses characters with F5's rules (Chinese needs pinyin tokens, which
semlat does not make), and identity latent statistics (F5's mel is not normalised).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from semlat.checkpoints import CONFIG_NAME, check_state_dict, read_model_folder, write_model_files
from semlat.errors import CheckpointError, ConfigError
from semlat.generation.f5_checkpoint import backbone_from_arch, read_backbone_weights, read_f5_config
from semlat.generation.tts import TTSConfig, TTSModel
from semlat.text.frontend import Vocab
from semlat.utils.files import atomic_dir

F5_MEL_FLOOR = 1e-5
F5_FRAME_RATE = 24000 / 256
VOCODER_DIR = "vocoder"


def _mel_dim(config: str | os.PathLike, arch: dict[str, Any]) -> int:
    if "mel_dim" in arch:
        return int(arch["mel_dim"])
    data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    mel = (data.get("model") or {}).get("mel_spec") or {}
    return int(mel.get("n_mel_channels", 100))


def import_f5_tts(weights: str | os.PathLike, out: str | os.PathLike, *, config: str | os.PathLike | None = None,
                  vocab: str | os.PathLike | None = None, vocoder: str | os.PathLike | None = None) -> Path:
    """Import a released F5-TTS; returns the TTS model folder (see the module docstring)."""
    if config is None or vocab is None:
        raise ConfigError("semlat import f5-tts needs --config (the release's YAML) and --vocab (its vocab.txt)")
    backbone, arch = read_f5_config(config)
    tokens = Vocab.read(vocab)
    mel_dim = _mel_dim(config, arch)
    transformer = backbone_from_arch(backbone, arch, text_num_embeds=len(tokens), mel_dim=mel_dim)
    state = read_backbone_weights(weights)
    check_state_dict(transformer.state_dict(), state, str(weights))
    fields = dataclasses.asdict(transformer.config)
    arch_fields = {k: v for k, v in fields.items() if k not in ("mel_dim", "text_num_embeds")}
    space_meta = _vocoder_meta(vocoder, mel_dim) if vocoder is not None else None
    tts_config = TTSConfig(backbone=backbone, arch=arch_fields, units="chars", vocab=list(tokens.tokens),
                           space=VOCODER_DIR if vocoder is not None else "", latent_dim=mel_dim,
                           frame_rate=_frame_rate(space_meta) if space_meta else F5_FRAME_RATE, max_frames=8192)
    model = TTSModel(tts_config)
    model.transformer.load_state_dict(state, strict=True)
    extra = {"latent_dim": mel_dim, "frame_rate": tts_config.frame_rate, "space": tts_config.space,
             "source": {"weights": Path(weights).name, "config": Path(config).name, "vocab": Path(vocab).name}}
    out = Path(out)
    with atomic_dir(out) as tmp:
        write_model_files(tmp, model, model_type="tts", config=dataclasses.asdict(tts_config), extra=extra)
        if vocoder is not None:
            _copy_vocoder(Path(vocoder), tmp / VOCODER_DIR)
    return out


def _vocoder_meta(vocoder: str | os.PathLike, mel_dim: int) -> dict[str, Any]:
    _, meta = read_model_folder(vocoder)
    if meta.get("model_type") != "vocos":
        raise CheckpointError(f"{vocoder}: a {meta.get('model_type')} folder; --vocoder takes a semlat Vocos folder "
                              "(semlat import vocos)")
    if int(meta["config"]["n_mels"]) != mel_dim:
        raise CheckpointError(f"{vocoder}: a Vocos of {meta['config']['n_mels']} mel bands for a {mel_dim}-band F5-TTS")
    return meta


def _frame_rate(meta: dict[str, Any]) -> float:
    config = meta["config"]
    return float(meta.get("frame_rate") or config["sample_rate"] / config["hop_length"])


def _copy_vocoder(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    path = target / CONFIG_NAME
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["config"]["mel_floor"] = F5_MEL_FLOOR  # encode prompts into F5-TTS's mel
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
