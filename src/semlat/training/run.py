"""Running a recipe to its end: the one function behind ``semlat train`` and the demo's stages, and the
thin ``semlat teacher train`` / ``semlat judge train`` wrappers over the ``teacher`` and ``judge`` recipes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from semlat.configs import resolve_config
from semlat.errors import ConfigError
from semlat.training.recipes import load_recipe
from semlat.training.trainer import Trainer, latest_checkpoint


def train_recipe(config: str | os.PathLike, overrides: Sequence[str] = (), *,
                 resume: bool | None = None) -> tuple[Path, Trainer]:
    """Train the recipe ``config`` (a YAML path or a shipped name such as ``teacher/tiny``) with
    ``key=value`` overrides. ``resume=None`` resumes when the run folder already holds checkpoints
    and refuses a non-empty folder that is not a run. Returns the latest checkpoint and the (closed)
    trainer, whose ``step`` is where training stopped."""
    recipe_cls, cfg = load_recipe(resolve_config(config), list(overrides))
    out = Path(cfg.run_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if resume is None:
        resume = latest_checkpoint(out) is not None
        own = {"config.yaml", *recipe_cls.run_files}
        if not resume and out.is_dir() and any(p.name not in own for p in out.iterdir()) \
                and not (out / "config.yaml").is_file():
            raise ConfigError(f"{out}: a folder that is not a training run; refusing to write into it")
    trainer = Trainer(cfg, recipe_cls, resume=resume)
    try:
        checkpoint = trainer.fit()
    finally:
        trainer.close()
    if checkpoint is None:
        raise ConfigError(f"{out}: training wrote no checkpoint")
    return checkpoint, trainer


def train_teacher(manifest: str | os.PathLike, out: str | os.PathLike, *, steps: int | None = None,
                  minutes: float | None = None, config: str = "teacher/default", overrides: Sequence[str] = (),
                  progress: bool = True) -> Path:
    """``semlat teacher train``: the ``teacher`` recipe with ``run_dir=out`` (resumed when ``out`` holds
    checkpoints). Returns the latest checkpoint, a model folder usable as ``semlat:<folder>``."""
    settings = [f"run_dir={out}", f"data.train={manifest}", f"train.progress={progress}"]
    if steps is not None:
        settings.append(f"train.max_steps={steps}")
    if minutes is not None:
        settings.append(f"train.max_minutes={minutes}")
    return train_recipe(config, [*settings, *overrides])[0]


def train_judge(manifest: str | os.PathLike, out: str | os.PathLike, *, units: str = "phonemes",
                steps: int | None = None, minutes: float | None = None, config: str = "judge/default",
                overrides: Sequence[str] = (), progress: bool = True) -> Path:
    """``semlat judge train``: the ``judge`` recipe with ``run_dir=out`` (resumed when ``out`` holds
    checkpoints). Returns the latest checkpoint, a model folder usable as ``ctc:<folder>``."""
    settings = [f"run_dir={out}", f"data.train={manifest}", f"data.units={units}", f"train.progress={progress}"]
    if steps is not None:
        settings.append(f"train.max_steps={steps}")
    if minutes is not None:
        settings.append(f"train.max_minutes={minutes}")
    return train_recipe(config, [*settings, *overrides])[0]
