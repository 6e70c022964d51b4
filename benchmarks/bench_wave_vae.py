"""Speed and memory of the waveform VAE (Semantic-VAE generator): encode and decode, tiny and paper sizes.

    python benchmarks/bench_wave_vae.py [--threads 2] [--seconds 10] [--repeats 3] [--configs tiny paper]
                                        [--train-steps 3]

Configs: ``tiny`` is ``configs/wave_vae/tiny.yaml`` (log-mel + ConvNeXt encoder, ConvNeXt + iSTFT decoder),
``tiny_bigvgan`` a tiny DAC encoder with a tiny BigVGAN-v2 decoder (``WaveVAEConfig.tiny()``), ``paper`` the
published vae64.
Random weights, weight norm removed, ``torch.inference_mode()``, batch 1. Encode takes ``--seconds``
of 16 kHz audio; decode takes the matching number of latent frames (40 per second). Times are
medians of ``--repeats`` runs after one warm-up run.

Memory: each (config, operation) runs in a fresh process, and ``resource.getrusage(RUSAGE_SELF)
.ru_maxrss`` (the process's peak resident set) is read once the model and its input are built
("model") and again after the warm-up and timed runs ("peak"); "work" is the difference, the extra
memory the operation needed at its worst. ``tracemalloc`` would not see tensors (torch allocates them in C++).

Train step: one full step of the ``wave_vae`` recipe (discriminator step, then generator step with
mel, adversarial, feature-matching and KL losses), run by the real Trainer on a throw-away corpus
of noise files; the median over ``--train-steps`` steps after one warm-up step. Tiny: the shipped
``wave_vae/tiny`` batch (4 x 0.5 s); paper: batch 1 x 1 s (the published 3 s x 3 per GPU is a GPU job).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

import torch
from timing import machine, median_seconds, median_step_seconds, noise_corpus, print_table, run_in_subprocess

from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig


def _tiny_yaml() -> WaveVAEConfig:
    """The model of configs/wave_vae/tiny.yaml (mel encoder, ConvNeXt + iSTFT decoder)."""
    from semlat.configs import builtin_config
    from semlat.training.recipes import load_recipe

    return load_recipe(builtin_config("wave_vae/tiny"))[1].model


CONFIGS = {"tiny": _tiny_yaml, "tiny_bigvgan": WaveVAEConfig.tiny, "paper": WaveVAEConfig.paper}


def _peak_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _measure(config_name: str, operation: str, seconds: float, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = WaveVAE(CONFIGS[config_name]()).eval().remove_weight_norm()
    params = sum(p.numel() for p in model.parameters())
    with torch.inference_mode():
        audio = 0.1 * torch.randn(1, 1, round(seconds * model.sample_rate))
        latents = torch.randn(1, model.latent_dim, round(seconds * model.frame_rate))

        def run() -> torch.Tensor:
            return model.encode(audio) if operation == "encode" else model.decode(latents)

        baseline = _peak_mib()
        median = median_seconds(run, repeats=repeats, warmup=1)
        peak = _peak_mib()
    return {"params": params, "seconds": median, "model": baseline, "peak": peak}


def measure_in_subprocess(*args: object) -> dict:
    """Run :func:`_measure` in a fresh process so its peak RSS is its own."""
    return run_in_subprocess(_measure, *args)


TRAIN_SHAPES = {"tiny": (4, 0.5), "paper": (1, 1.0)}


def train_step_seconds(config_name: str, steps: int, threads: int) -> tuple[float, int, float]:
    """Median seconds of one recipe step (after a warm-up step); returns (seconds, batch, segment)."""
    torch.set_num_threads(threads)
    batch, segment = TRAIN_SHAPES[config_name]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = noise_corpus(tmp, max(4, 2 * batch), 3.0, 16000)
        seconds = median_step_seconds(f"wave_vae/{config_name}", manifest, Path(tmp) / "run", steps,
                                      [f"data.batch_size={batch}", f"data.segment_seconds={segment}"])
    return seconds, batch, segment


def main() -> None:
    print(machine())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length (encode) / latent length (decode)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per config (0: skip)")
    args = parser.parse_args()
    rows = []
    for name in args.configs:
        for operation in ("encode", "decode"):
            r = measure_in_subprocess(name, operation, args.seconds, args.threads, args.repeats)
            frames = round(args.seconds * 40)
            what = f"{args.seconds:g} s audio" if operation == "encode" else f"{frames} frames"
            rows.append((name, f"{r['params'] / 1e6:.2f}M", operation, what, f"{r['seconds']:.3f} s",
                         f"{args.seconds / r['seconds']:.1f}x", f"{r['model']:.0f} MiB", f"{r['peak']:.0f} MiB",
                         f"{r['peak'] - r['model']:.0f} MiB"))
    print(f"torch {torch.__version__}, {args.threads} thread(s), inference mode, weight norm removed, batch 1")
    print_table(["config", "params", "op", "input", "median", "x real time", "model", "peak", "work"], rows)
    if args.train_steps:
        rows = []
        for name in (n for n in args.configs if n in TRAIN_SHAPES):
            seconds, batch, segment = train_step_seconds(name, args.train_steps, args.threads)
            rows.append((name, f"{batch} x {segment:g} s", f"{seconds:.2f} s", f"{batch * segment / seconds:.1f}"))
        print()
        print("train step of the wave_vae recipe (D step + G step), fp32, CPU")
        print_table(["config", "batch", "median step", "audio s / s"], rows)


if __name__ == "__main__":
    main()
