"""Speed and memory of SemanticVocoder's parts at released size: Dasheng-base encode, the flow generator per step.

    python benchmarks/bench_semantic_vocoder.py [--threads 2] [--repeats 3] [--seconds 10]

Random weights, ``torch.inference_mode()``, batch 1, fp32, each part in a fresh process (peak RSS), medians of
``--repeats`` after one warm-up:

- ``dasheng``: Dasheng-base (85 M) on ``--seconds`` of 16 kHz audio -> 25 Hz x 768 frames;
- ``cond``: the generator's condition encoder on those frames (run once per decode);
- ``step``: one network evaluation of the generator (80 M; three STFT branches) on ``--seconds`` of 24 kHz
  audio; a decode with N Euler steps costs ``cond + N · step`` (every step is the same call), from which the
  table gives the real-time factor for N = 1 ... 200 (the reference decodes with 200).

The released generator's branch hop lengths are not in its key listing (see the fixture README); the
benchmark uses 240/120/60, the values valid for its 960-sample latent hop.
"""

from __future__ import annotations

import argparse
import resource
import sys

import torch
from timing import median_seconds, print_table, run_in_subprocess

STEPS = (1, 2, 4, 8, 16, 32, 200)


def _peak_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _measure(part: str, seconds: float, threads: int, repeats: int) -> dict[str, float]:
    from semlat.semantic.dasheng import Dasheng, DashengConfig
    from semlat.vocoders.flow_vocoder import FlowVocoder, FlowVocoderConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    frames = int(seconds * 25)
    with torch.inference_mode():
        if part == "dasheng":
            model = Dasheng(DashengConfig.base()).eval()
            audio = 0.1 * torch.randn(1, int(seconds * 16000))

            def run():
                return model(audio)
        else:
            model = FlowVocoder(FlowVocoderConfig()).eval()
            latents = torch.randn(1, 768, frames)
            cond = model.cond_encoder(latents)
            x = 0.1 * torch.randn(1, frames * 960)
            t = torch.full((1, 1), 0.5)

            def run():
                return model.cond_encoder(latents) if part == "cond" else model.predict(x, cond, t)
        params = sum(p.numel() for p in model.parameters())
        baseline = _peak_mib()
        elapsed = median_seconds(run, repeats=repeats, warmup=1)
        peak = _peak_mib() - baseline
    return {"seconds": elapsed, "params": params, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    r = {part: run_in_subprocess(_measure, part, args.seconds, args.threads, args.repeats)
         for part in ("dasheng", "cond", "step")}
    print(f"torch {torch.__version__}, {args.threads} thread(s), inference mode, batch 1, fp32, {args.seconds:g} s")
    print_table(["part", "params", "median", "x real time", "peak work"],
                [(name, f"{v['params'] / 1e6:.1f}M", f"{v['seconds']:.3f} s", f"{args.seconds / v['seconds']:.1f}x",
                  f"{v['peak']:.0f} MiB") for name, v in r.items()])
    rows = []
    for n in STEPS:
        total = r["cond"]["seconds"] + n * r["step"]["seconds"]
        rows.append((n, f"{total:.2f} s", f"{total / args.seconds:.3f}"))
    print("generator decode = cond + N x step:")
    print_table(["steps", "decode time", "RTF"], rows)


if __name__ == "__main__":
    main()
