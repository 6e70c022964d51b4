"""Timing helpers shared by the benchmark scripts (not a test: figures, not assertions)."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

#: CPU features that change which kernels run (AVX-512, its BF16 and VNNI forms, AMX tiles)
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def machine() -> str:
    """One line that every benchmark prints first: the CPU model and its relevant flags, cores, torch, date
    (figures from two machines of the same kind differ: say which one gave a figure)."""
    import torch

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    shown = " ".join(f for f in FLAGS if f in flags) or "flags unknown"
    return (f"machine: {model} ({shown}), {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{datetime.date.today().isoformat()}")


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as an aligned plain-text table."""
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def noise_corpus(root, files: int, seconds: float, sample_rate: int):
    """``files`` noise wavs of ``seconds`` in ``root`` and their manifest (the first file is ``valid``)."""
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    from semlat.data.manifest import Manifest, Utterance

    root = Path(root)
    rng = np.random.default_rng(0)
    utts = []
    for i in range(files):
        audio = (0.1 * rng.standard_normal(round(seconds * sample_rate))).astype(np.float32)
        sf.write(str(root / f"{i}.wav"), audio, sample_rate)
        utts.append(Utterance(f"{i}.wav", seconds, sample_rate, split="valid" if i == 0 else "train"))
    return Manifest(utts, root).write(root / "manifest.jsonl")


def median_step_seconds(config: str, manifest, run_dir, steps: int, overrides: Sequence[str] = ()) -> float:
    """Median seconds of one training step of the shipped recipe ``config`` (the real Trainer, after a
    warm-up step) on ``manifest``; no validation, checkpoints or logs get in the way."""
    from semlat.configs import builtin_config
    from semlat.training.recipes import load_recipe
    from semlat.training.trainer import Trainer

    recipe_cls, cfg = load_recipe(builtin_config(config), [
        f"run_dir={run_dir}", f"data.train={manifest}", "data.min_rms_db=null", "loss.disc_start_step=0",
        f"train.max_steps={steps + 1}", "train.valid_every=1000000", "train.checkpoint_every=1000000",
        "train.log_every=1000000", "train.num_workers=0", "train.progress=false", *overrides])
    trainer = Trainer(cfg, recipe_cls)
    times: list[float] = []
    original = trainer.recipe.train_step

    def timed(batches, step):
        start = time.perf_counter()
        out = original(batches, step)
        times.append(time.perf_counter() - start)
        return out

    trainer.recipe.train_step = timed
    try:
        trainer.fit()
    finally:
        trainer.close()
    return statistics.median(times[1:])


def run_in_subprocess(target, *args: object):
    """``target(*args)`` in a fresh spawned process (so its peak RSS is its own); its return value.
    Raises if the process dies without answering (its traceback is on stderr)."""
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    process = context.Process(target=_answer, args=(answers, target, *args))
    process.start()
    while True:
        try:
            result = answers.get(timeout=1.0)
            break
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"{getattr(target, '__name__', target)}{args} died (exit code {process.exitcode})")
    process.join()
    return result


def _answer(answers, target, *args: object) -> None:
    answers.put(target(*args))
