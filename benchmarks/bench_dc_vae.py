"""Speed and memory of DC-Speech-VAE (mel DCAE) and the BigVGAN-v2 vocoder at their released sizes.

    python benchmarks/bench_dc_vae.py [--threads 2] [--repeats 3] [--ops dcae_encode dcae_decode vocode ...]
                                      [--train-steps 3]

Random weights, weight norm removed, ``torch.inference_mode()``, batch 1, fp32; medians of
``--repeats`` runs after one warm-up run; each operation in a fresh process (peak RSS, as in
``bench_wave_vae.py``). The inputs are those of ``../shared/PERFORMANCE.md``, whose reference times
are printed beside ours:

- ``dcae_encode``: 960 mel frames (11.15 s at 22.05 kHz) -> 60 latent frames (reference 2.1 s);
- ``dcae_decode``: 60 latent frames -> 960 mel frames (reference 3.65 s);
- ``vocode``: BigVGAN-v2 22 kHz / 80-band / 256x (112 M) on 861 mel frames (10 s; reference 23-24 s),
  in one pass;
- ``space_decode``: the whole ``mel_dcae`` latent space through semlat's codec (what ``semlat decode``
  runs): 60 latent frames -> 11.15 s of audio.

Chunking the vocoder into short overlapping pieces (1 s + 0.25 s of context each side) made it
slower here (18.5 s against 10.7 s for 10 s of audio): semlat's BigVGAN does not slow down on long
inputs the way the reference does, so the codec's default 30 s chunks are kept.

Train step: one step of the ``mel_dcae`` recipe (D then G, Muon) on the tiny config's batch
(8 x 1.11 s) by the real Trainer on a throw-away corpus of noise files.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

import torch
from timing import machine, median_seconds, median_step_seconds, noise_corpus, print_table, run_in_subprocess

REFERENCE = {"dcae_encode": "2.1 s", "dcae_decode": "3.65 s", "vocode": "23-24 s", "space_decode": "~30 s (3.65 + ~26)"}
OPS = tuple(REFERENCE)


def _peak_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _build(operation: str):
    from semlat.autoencoders.mel_dcae import MelDCAE, MelDCAEConfig
    from semlat.autoencoders.mel_space import MelDCAESpace
    from semlat.inference import Codec
    from semlat.vocoders.mel_vocoder import MelVocoder, MelVocoderConfig

    torch.manual_seed(0)
    if operation.startswith("dcae"):
        model = MelDCAE(MelDCAEConfig.paper()).eval().remove_weight_norm()
        if operation == "dcae_encode":
            x = torch.randn(1, 80, 960)
            return model, lambda: model.encode(x), "960 mel frames"
        z = torch.randn(1, 80, 60)
        return model, lambda: model.decode(z), "60 latent frames"
    vocoder = MelVocoder(MelVocoderConfig()).eval()
    vocoder.remove_weight_norm()
    if operation == "vocode":
        mel = torch.randn(1, 80, 861) - 5
        return vocoder, lambda: vocoder.decode(mel), "861 mel frames"
    space = MelDCAESpace(MelDCAE(MelDCAEConfig.paper()), vocoder).eval()
    space.autoencoder.remove_weight_norm()
    codec = Codec(space, Path("."), "mel_dcae", torch.device("cpu"))
    z = torch.randn(1, 80, 60)
    return space, lambda: codec.decode(z), "60 latent frames"


def _measure(operation: str, threads: int, repeats: int) -> dict[str, object]:
    torch.set_num_threads(threads)
    with torch.inference_mode():
        model, run, what = _build(operation)
        params = sum(t.numel() for t in model.state_dict().values())
        baseline = _peak_mib()
        seconds = median_seconds(run, repeats=repeats, warmup=1)
        peak = _peak_mib()
    return {"params": params, "seconds": seconds, "model": baseline, "peak": peak, "input": what}


def measure_in_subprocess(*args: object) -> dict:
    """Run :func:`_measure` in a fresh process so its peak RSS is its own."""
    return run_in_subprocess(_measure, *args)


def train_step_seconds(steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = noise_corpus(tmp, 16, 3.0, 22050)
        return median_step_seconds("mel_dcae/tiny", manifest, Path(tmp) / "run", steps)


def main() -> None:
    print(machine())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    parser.add_argument("--train-steps", type=int, default=3, help="timed mel_dcae/tiny steps (0: skip)")
    args = parser.parse_args()
    audio_seconds = {"dcae_encode": 960 * 256 / 22050, "dcae_decode": 960 * 256 / 22050, "vocode": 861 * 256 / 22050,
                     "space_decode": 60 * 4096 / 22050}
    rows = []
    for op in args.ops:
        r = measure_in_subprocess(op, args.threads, args.repeats)
        rows.append((op, f"{r['params'] / 1e6:.1f}M", r["input"], f"{r['seconds']:.2f} s", REFERENCE[op],
                     f"{audio_seconds[op] / r['seconds']:.2f}x", f"{r['model']:.0f} MiB", f"{r['peak']:.0f} MiB",
                     f"{r['peak'] - r['model']:.0f} MiB"))
    print(f"torch {torch.__version__}, {args.threads} thread(s), inference mode, weight norm removed, batch 1, fp32")
    print_table(["operation", "params", "input", "median", "reference", "x real time", "model", "peak", "work"],
                rows)
    if args.train_steps:
        seconds = train_step_seconds(args.train_steps, args.threads)
        print()
        print("train step of mel_dcae/tiny (8 x 1.11 s, D step + G step, Muon), fp32, CPU")
        print_table(["median step", "audio s / s"], [(f"{seconds:.2f} s", f"{8 * 24576 / 22050 / seconds:.1f}")])


if __name__ == "__main__":
    main()
