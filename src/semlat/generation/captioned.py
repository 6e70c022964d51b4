"""Text-to-audio from a TTA model folder: caption -> audio (``semlat tta``).

1. The caption goes through the frozen T5 encoder the model was trained with (``config.text_encoder``, or
   ``text_encoder`` given here) and the model's projection.
2. ``seconds`` of latent frames (``round(seconds · frame_rate)``, at most the model's window) are sampled with
   ``steps`` Euler steps, ``guidance`` (zeros as the unconditional context) and sway.
3. The latent space (``config.space``) decodes them at its output rate (``decode_options`` such as a
   SemanticVocoder's ``steps`` go to it; its seed is the sampling seed).

A batch list is a text file with one caption per line, or a JSONL/TSV of ``caption`` and ``output``;
:func:`generate_list` writes one file per row (``OUT_DIR/NNNN.wav`` for plain captions) with a progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from semlat.checkpoints import load_model_of_type
from semlat.chunking import chunk_seed
from semlat.data.listing import read_rows
from semlat.errors import ConfigError, DataError
from semlat.generation.text_encoder import T5CaptionEncoder
from semlat.generation.tta import TTAModel
from semlat.inference import LoadedSpace, load


@dataclass
class LoadedTTA:
    """A text-to-audio model, its caption encoder and the latent space it generates in."""

    model: TTAModel
    encoder: T5CaptionEncoder
    space: LoadedSpace
    folder: Path


def _relative(folder: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def load_tta(folder: str | os.PathLike, device: str | torch.device = "auto", space: str | None = None,
             text_encoder: str | None = None) -> LoadedTTA:
    """The TTA model at ``folder`` (a model folder or a training run), its caption encoder and latent space
    (``space`` / ``text_encoder`` override the recorded paths). A space of another size or rate, or an encoder
    of another width, is a one-line ConfigError."""
    model, _, resolved = load_model_of_type(folder, TTAModel, "tta", "a text-to-audio model", "train one with `semlat train tta/...`")
    config = model.config
    if not (space or config.space):
        raise ConfigError(f"{resolved}: the model records no latent space; give one (--space)")
    loaded = load(_relative(resolved, space or config.space), device)
    if loaded.latent_dim != config.latent_dim or abs(loaded.frame_rate - config.frame_rate) > 1e-6:
        raise ConfigError(f"{loaded.folder}: a latent space of {loaded.latent_dim} x {loaded.frame_rate:g} Hz, but the "
                          f"model {resolved} was trained on {config.latent_dim} x {config.frame_rate:g} Hz")
    encoder = T5CaptionEncoder(_relative(resolved, text_encoder or config.text_encoder), device=loaded.device)
    if encoder.dim != config.text_dim:
        raise ConfigError(f"{encoder.folder}: a {encoder.dim}-d text encoder, but the model reads {config.text_dim}-d")
    return LoadedTTA(model.to(loaded.device).eval(), encoder, loaded, resolved)


def generate_latents(tta: LoadedTTA, caption: str, seconds: float, *, steps: int | None = None,
                     guidance: float | None = None, sway: float | None = None, seed: int | None = None) -> torch.Tensor:
    """Raw latents ``[1, C, round(seconds · frame_rate)]`` for ``caption`` (steps 1 and 2 of the module docstring;
    the caption encoder refuses an empty caption)."""
    config = tta.model.config
    if seconds <= 0 or seconds > config.max_seconds + 1e-9:
        raise ConfigError(f"--seconds must be in (0, {config.max_seconds:g}] for this model (its window), got {seconds:g}")
    frames = max(1, round(seconds * config.frame_rate))
    hidden, mask = tta.encoder([caption.strip()])  # [1, L, d], [1, L]
    return tta.model.generate(hidden, mask, min(frames, config.max_frames), steps=steps, guidance=guidance, sway_coef=sway,
                              seed=seed)


def decode_latents(tta: LoadedTTA, latents: torch.Tensor, seconds: float, *, seed: int | None = None,
                   decode_options: dict[str, Any] | None = None) -> torch.Tensor:
    """Generated latents -> audio ``[N]`` at the space's output rate, ``seconds`` long (step 3)."""
    options = dict(decode_options or {})
    if seed is not None:  # a sampling decoder (SemanticVocoder) draws its noise from it; others ignore it
        options.setdefault("seed", seed)
    audio = tta.space.decode(latents, **options)[0, 0].cpu()
    return audio[: round(seconds * tta.space.output_rate)]


def generate(tta: LoadedTTA, caption: str, seconds: float, *, steps: int | None = None, guidance: float | None = None,
             sway: float | None = None, seed: int | None = None, decode_options: dict[str, Any] | None = None
             ) -> torch.Tensor:
    """Audio ``[N]`` at ``tta.space.output_rate`` for ``caption`` (module docstring)."""
    latents = generate_latents(tta, caption, seconds, steps=steps, guidance=guidance, sway=sway, seed=seed)
    return decode_latents(tta, latents, seconds, seed=seed, decode_options=decode_options)


def generate_to_file(tta: LoadedTTA, out: str | os.PathLike, caption: str, seconds: float, **options: Any) -> Path:
    """:func:`generate` and write ``out`` (``.wav``/``.flac``) at the space's output rate (atomically)."""
    return tta.space.save(generate(tta, caption, seconds, **options), out)


def read_caption_list(path: str | os.PathLike, out_dir: str | os.PathLike | None) -> list[dict[str, str]]:
    """Rows ``{"caption", "output"}``: a ``.jsonl``/``.tsv`` with both (outputs relative to the list), or a text
    file of one caption per line written to ``out_dir/NNNN.wav``."""
    path = Path(path)
    if path.suffix in (".jsonl", ".tsv"):
        rows = read_rows(path, "caption list", paths=("output",))
        for number, row in enumerate(rows, start=1):
            if not str(row.get("caption") or "").strip() or not str(row.get("output") or "").strip():
                raise DataError(f"{path}: row {number} needs a caption and an output")
    else:
        if not path.is_file():
            raise DataError(f"{path}: no such caption list file")
        text = path.read_text(encoding="utf-8")
        if out_dir is None:
            raise ConfigError(f"{path}: a plain caption list needs --out-dir for the files")
        rows = [{"caption": line.strip(), "output": str(Path(out_dir) / f"{i:04d}.wav")}
                for i, line in enumerate(line for line in text.splitlines() if line.strip())]
    if not rows:
        raise DataError(f"{path}: no captions")
    return rows


def generate_list(tta: LoadedTTA, listing: str | os.PathLike, seconds: float, *, out_dir: str | os.PathLike | None = None,
                  seed: int | None = None, progress: bool = True, **options: Any) -> list[Path]:
    """Every row of a caption list; row ``i`` uses ``chunk_seed(seed, i)``. Returns the files written."""
    from tqdm import tqdm

    rows = read_caption_list(listing, out_dir)
    written = []
    for index, row in enumerate(tqdm(rows, desc="tta", unit="clip", disable=not progress or len(rows) < 2)):
        row_seed = None if seed is None else chunk_seed(seed, index)
        written.append(generate_to_file(tta, row["output"], row["caption"], seconds, seed=row_seed, **options))
    return written
