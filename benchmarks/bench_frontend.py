"""Speed of the spectral front-ends and of ``data prepare`` on this machine.

    python benchmarks/bench_frontend.py [--threads N] [--files 200]

Prints one table per part. Figures are medians of 5 runs after a warm-up. The mel rows report
seconds per call and the multiple of real time (audio seconds processed per wall second).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from timing import machine, median_seconds, print_table

from semlat.audio import MelSpectrogram, mel_preset
from semlat.data.prepare import PrepareOptions, prepare_manifest
from semlat.losses import MultiScaleMelLoss


def bench_mels() -> None:
    rows = []
    for preset, batch in [("bigvgan_22k_80", 1), ("bigvgan_22k_80", 16), ("bigvgan_24k_100", 1),
                          ("f5_tts_vocos", 1), ("f5_tts_vocos", 16), ("dasheng_16k_64", 16)]:
        config = mel_preset(preset)
        mel = MelSpectrogram(config)
        x = torch.randn(batch, 10 * config.sample_rate) * 0.1
        with torch.inference_mode():
            t = median_seconds(lambda: mel(x))
        rows.append((preset, f"{batch} x 10 s", f"{t * 1e3:.1f} ms", f"{batch * 10 / t:.0f}x"))
    loss = MultiScaleMelLoss()
    est = (torch.randn(8, 1, 48000) * 0.1).requires_grad_()
    ref = torch.randn(8, 1, 48000) * 0.1

    def step() -> None:
        loss(est, ref).backward()

    t = median_seconds(step)
    rows.append(("semantic-vae mel loss fwd+bwd", "8 x 3 s @16k", f"{t * 1e3:.1f} ms", f"{24 / t:.0f}x"))
    print_table(["front-end", "input", "median", "x real time"], rows)


def bench_prepare(files: int) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "corpus"
        for i in range(files):
            path = root / f"spk{i % 10}" / f"utt{i:05d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), (rng.standard_normal(3 * 22050) * 0.1).astype(np.float32), 22050, subtype="PCM_16")
        rows = []
        for label, workers, resample in [("probe headers", 1, None), ("probe headers", 2, None),
                                         ("resample to 16 kHz flac", 1, 16000), ("resample to 16 kHz flac", 2, 16000)]:
            out = Path(tmp) / f"out-{workers}-{resample}"
            opts = PrepareOptions(inputs=[str(root)], manifest=str(out / "m.jsonl"), resample_to=resample,
                                  workers=workers, progress=False)
            start = time.perf_counter()
            prepare_manifest(opts)
            t = time.perf_counter() - start
            rows.append((label, workers, f"{files} x 3 s", f"{t:.2f} s", f"{files / t:.0f} files/s"))
        print_table(["data prepare", "workers", "input", "time", "rate"], rows)


def main() -> None:
    print(machine())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads\n")
    bench_mels()
    print()
    bench_prepare(args.files)


if __name__ == "__main__":
    main()
