"""Cost of semantic alignment: teacher feature extraction, and the training step with alignment.

    python benchmarks/bench_alignment.py [--threads 2] [--files 9] [--seconds 5] [--teachers base large]

1. Feature extraction (``semlat features extract``): random-weight WavLM teachers at the released
   sizes (base: 12 layers x 768; large: 24 x 1024, the paper's teacher) saved as local Hugging Face
   folders, run over a throw-away manifest of noise files; seconds of audio per second.
2. Training step of the tiny ``semantic_vae`` recipe (batch 8 x 0.5 s, D step + G step): without
   alignment (weight 0), with cached features, and with the teacher run online on every crop.
   The overhead column is relative to the step without alignment. Medians over ``--steps`` steps
   after one warm-up step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from timing import machine, median_step_seconds, noise_corpus, print_table

from semlat.semantic.feature_cache import extract_features

SIZES = {"tiny": (64, 2, 2, 128), "base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096)}


def save_wavlm(folder: Path, size: str) -> Path:
    """A random-weight WavLM of a released size (large-like feature encoder) as a local HF folder."""
    import transformers

    hidden, layers, heads, ffn = SIZES[size]
    torch.manual_seed(0)
    config = transformers.WavLMConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                      intermediate_size=ffn, feat_extract_norm="layer", do_stable_layer_norm=True)
    transformers.WavLMModel(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def step_seconds(manifest: Path, run_dir: Path, steps: int, overrides: list[str]) -> float:
    return median_step_seconds("semantic_vae/tiny", manifest, run_dir, steps, overrides)


def main() -> None:
    print(machine())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--files", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--teachers", nargs="+", default=["base", "large"], choices=list(SIZES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = noise_corpus(root, args.files, args.seconds, 16000)
        rows = []
        teachers = {}
        for size in ["tiny", *args.teachers]:
            teachers[size] = f"hf:{save_wavlm(root / f'wavlm-{size}', size)}@{SIZES[size][1] - 1}"
            start = time.perf_counter()
            extract_features(teachers[size], manifest, root / f"features-{size}", progress=False)
            elapsed = time.perf_counter() - start
            audio = args.files * args.seconds
            rows.append((f"WavLM {size} ({SIZES[size][1]} x {SIZES[size][0]})", f"{audio:g} s", f"{elapsed:.1f} s",
                         f"{audio / elapsed:.1f}"))
        print(f"torch {torch.__version__}, {args.threads} thread(s), CPU, random weights\n")
        print("feature extraction (fp16 cache)")
        print_table(["teacher", "audio", "time", "audio s / s"], rows)

        rows = []
        base = step_seconds(manifest, root / "run-none", args.steps, ["alignment.weight=0",
                                                                         f"alignment.teacher={teachers['tiny']}"])
        rows.append(("no alignment (weight 0)", f"{base:.2f} s", "-"))
        for size in ["tiny", *args.teachers]:
            for mode in ("cached", "online"):
                extra = [f"alignment.teacher={teachers[size]}"]
                if mode == "cached":
                    extra.append(f"alignment.cache={root / f'features-{size}'}")
                seconds = step_seconds(manifest, root / f"run-{size}-{mode}", args.steps, extra)
                rows.append((f"{mode}, WavLM {size}", f"{seconds:.2f} s", f"{100 * (seconds / base - 1):+.0f} %"))
        print()
        print("semantic_vae/tiny training step (8 x 0.5 s, D + G), fp32")
        print_table(["alignment features", "median step", "overhead"], rows)


if __name__ == "__main__":
    main()
