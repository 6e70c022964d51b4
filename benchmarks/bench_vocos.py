"""Speed and memory of Vocos (F5-TTS's vocoder) at the released mel size (13.5 M parameters).

    python benchmarks/bench_vocos.py [--threads 2] [--repeats 3] [--ops decode encode space_decode]

Random weights, ``torch.inference_mode()``, batch 1, fp32; medians of ``--repeats`` runs after one
warm-up; each operation in a fresh process (peak RSS):

- ``decode``: 938 mel frames (10 s at 24 kHz) -> audio, one pass (backbone + iSTFT head);
- ``encode``: 10 s of audio -> the 100-band log-mel (Vocos' front-end, also F5-TTS's with another floor);
- ``space_decode``: the same 938 frames through ``semlat.load``'s latent space (30 s chunks: one pass here).

The reference implementation (the ``vocos`` package) imports torchaudio at load time, which does not
work on this machine, so no side-by-side figure is printed; ``../shared/PERFORMANCE.md`` has none either.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import torch
from timing import machine, median_seconds, print_table, run_in_subprocess

OPS = ("decode", "encode", "space_decode")


def _peak_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _measure(operation: str, threads: int, repeats: int) -> dict[str, object]:
    from semlat.inference import LoadedSpace
    from semlat.vocoders.vocos import Vocos, VocosConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with torch.inference_mode():
        model = Vocos(VocosConfig.mel_24khz()).eval()
        params = sum(p.numel() for p in model.parameters())
        mel = torch.randn(1, 100, 938) - 4
        audio = 0.1 * torch.randn(1, 1, 240_000)
        if operation == "decode":
            def run():
                return model.decode(mel)
        elif operation == "encode":
            def run():
                return model.encode(audio)
        else:
            space = LoadedSpace(model, Path("."), "vocos", torch.device("cpu"))

            def run():
                return space.decode(mel)
        baseline = _peak_mib()
        seconds = median_seconds(run, repeats=repeats, warmup=1)
        peak = _peak_mib()
    return {"params": params, "seconds": seconds, "model": baseline, "peak": peak}


def main() -> None:
    print(machine())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    args = parser.parse_args()
    rows = []
    for op in args.ops:
        r = run_in_subprocess(_measure, op, args.threads, args.repeats)
        rows.append((op, f"{r['params'] / 1e6:.2f}M", "10 s", f"{r['seconds']:.3f} s", f"{10 / r['seconds']:.0f}x",
                     f"{r['model']:.0f} MiB", f"{r['peak']:.0f} MiB", f"{r['peak'] - r['model']:.0f} MiB"))
    print(f"torch {torch.__version__}, {args.threads} thread(s), inference mode, batch 1, fp32")
    print_table(["operation", "params", "audio", "median", "x real time", "model", "peak", "work"], rows)


if __name__ == "__main__":
    main()
