"""Speed and memory of SemanticVocoder's parts at released size: Dasheng-base encode, the flow generator per step.

    python benchmarks/bench_semantic_vocoder.py [--threads 2] [--repeats 3] [--seconds 10] [--reference-src DIR]

Random weights, ``torch.inference_mode()``, batch 1, fp32, each part in a fresh process (peak RSS), medians of
``--repeats`` after one warm-up:

- ``dasheng``: Dasheng-base (85 M) on ``--seconds`` of 16 kHz audio -> 25 Hz x 768 frames;
- ``cond``: the generator's condition encoder on those frames (run once per decode);
- ``step``: one network evaluation of the generator (80 M; three STFT branches) on ``--seconds`` of 24 kHz
  audio; a decode with N Euler steps costs ``cond + N · step`` (every step is the same call), from which the
  table gives the real-time factor for N = 1 ... 200 (the reference decodes with 200).

- ``t5``: a FLAN-T5-large-sized encoder (random, 24 layers, 1024-d) on a 20-token caption (once per clip);
- ``udit``: one guided evaluation (conditional + zero-context rows, batch 2) of the text-to-latent UDiT at the
  key listing's assumed size (600 M) on ``--seconds`` of 25 Hz x 768 latents with that caption; text-to-audio
  of ``--seconds`` costs ``t5 + D · udit + cond + N · step`` for D DiT and N vocoder steps.

With ``--reference-src`` (SemanticVocoder's ``src/inference`` folder from a checkout) the reference generator
(``MaeAudioGenerator``) runs ``step`` side by side with the same weights; torchaudio, which it imports only for its
loss spectrogram's buffers, is replaced in that process by a stand-in (``Spectrogram`` keeping a ``window``
buffer, ``linear_fbanks`` giving a zero matrix of the right shape, overwritten by the loaded weights).

The released generator's branch hop lengths are not in its key listing (see the fixture README); the
benchmark uses 240/120/60, the values valid for its 960-sample latent hop.
"""

from __future__ import annotations

import argparse
import resource
import sys

import torch
from timing import machine, median_seconds, print_table, run_in_subprocess

STEPS = (1, 2, 4, 8, 16, 32, 200)


def _peak_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _reference_generator(src: str, kwargs: dict):
    """The reference MaeAudioGenerator from a SemanticVocoder checkout, with torchaudio stood in for."""
    import types

    from torch import nn

    class Spectrogram(nn.Module):
        def __init__(self, n_fft: int = 400, win_length: int | None = None, window_fn=torch.hann_window,
                     wkwargs: dict | None = None, **_: object):
            super().__init__()
            self.register_buffer("window", window_fn(win_length or n_fft, **(wkwargs or {})))

    audio = types.ModuleType("torchaudio")
    audio.transforms = types.SimpleNamespace(Spectrogram=Spectrogram, MelSpectrogram=None)
    audio.functional = types.SimpleNamespace(linear_fbanks=lambda n_freqs, f_min, f_max, n_filter, sample_rate:
                                             torch.zeros(n_freqs, n_filter))
    sys.modules.update({"torchaudio": audio, "torchaudio.transforms": audio.transforms,
                        "torchaudio.functional": audio.functional})
    package = types.ModuleType("reference_flow2gan")
    package.__path__ = [f"{src}/models/autoencoder/waveform/semanticVocoder/flow2gan/models"]
    sys.modules["reference_flow2gan"] = package
    from reference_flow2gan.generator import MaeAudioGenerator

    return MaeAudioGenerator(**kwargs)


def _measure(part: str, seconds: float, threads: int, repeats: int, reference: str | None = None
             ) -> dict[str, float]:
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
        elif part == "t5":
            from transformers import T5Config, T5EncoderModel

            model = T5EncoderModel(T5Config(vocab_size=32128, d_model=1024, d_kv=64, d_ff=2816, num_layers=24,
                                            num_heads=16, feed_forward_proj="gated-gelu")).eval()
            ids = torch.randint(0, 32128, (1, 20))

            def run():
                return model(input_ids=ids).last_hidden_state
        elif part == "udit":
            from semlat.generation.udit import UDiT, UDiTConfig

            model = UDiT(UDiTConfig.released_assumed()).eval()
            x, t = torch.randn(2, 768, frames), torch.full((2,), 0.5)
            context, mask = torch.randn(2, 20, 1024), torch.ones(2, 20, dtype=torch.bool)

            def run():
                return model(x, t, context, mask)
        else:
            from dataclasses import asdict

            model = FlowVocoder(FlowVocoderConfig()).eval()
            latents = torch.randn(1, 768, frames)
            cond = model.cond_encoder(latents)
            x = 0.1 * torch.randn(1, frames * 960)
            t = torch.full((1, 1), 0.5)
            if part == "reference":
                ours = model
                model = _reference_generator(reference, asdict(FlowVocoderConfig())).eval()
                model.load_state_dict(ours.state_dict(), strict=True)
                difference = float((model.process_model(x=x, cond=cond, t=t) - ours.predict(x, cond, t)).abs().max())

                def run():
                    return model.process_model(x=x, cond=cond, t=t)
            else:
                def run():
                    return model.cond_encoder(latents) if part == "cond" else model.predict(x, cond, t)
        params = sum(p.numel() for p in model.parameters())
        baseline = _peak_mib()
        elapsed = median_seconds(run, repeats=repeats, warmup=1)
        peak = _peak_mib() - baseline
    result = {"seconds": elapsed, "params": params, "peak": peak}
    if part == "reference":
        result["max_abs_difference"] = difference
    return result


def main() -> None:
    print(machine())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--vocoder-steps", type=int, default=8, help="the chosen default vocoder steps")
    parser.add_argument("--reference-src", default=None, help="SemanticVocoder's src/inference folder")
    args = parser.parse_args()
    parts = ("dasheng", "cond", "step", "t5", "udit") + (("reference",) if args.reference_src else ())
    r = {part: run_in_subprocess(_measure, part, args.seconds, args.threads, args.repeats, args.reference_src)
         for part in parts}
    print(f"torch {torch.__version__}, {args.threads} thread(s), inference mode, batch 1, fp32, {args.seconds:g} s")
    print_table(["part", "params", "median", "x real time", "peak work"],
                [(name, f"{v['params'] / 1e6:.1f}M", f"{v['seconds']:.3f} s", f"{args.seconds / v['seconds']:.1f}x",
                  f"{v['peak']:.0f} MiB") for name, v in r.items()])
    if "reference" in r:
        ref = r.pop("reference")
        print(f"reference generator step (same weights): {ref['seconds']:.3f} s; semlat {r['step']['seconds']:.3f} s "
              f"= {ref['seconds'] / r['step']['seconds']:.2f}x; max abs difference {ref['max_abs_difference']:.1e}")
    rows = []
    for n in STEPS:
        total = r["cond"]["seconds"] + n * r["step"]["seconds"]
        rows.append((n, f"{total:.2f} s", f"{total / args.seconds:.3f}"))
    print("generator decode = cond + N x step:")
    print_table(["steps", "decode time", "RTF"], rows)
    tta = []
    for dit in (25, 50, 100):
        for n in (args.vocoder_steps, 200):
            total = r["t5"]["seconds"] + dit * r["udit"]["seconds"] + r["cond"]["seconds"] + n * r["step"]["seconds"]
            tta.append((dit, n, f"{total:.1f} s", f"{total / args.seconds:.2f}"))
    print(f"text-to-audio of {args.seconds:g} s = t5 + D x udit + cond + N x step (released sizes, UDiT assumed):")
    print_table(["DiT steps", "vocoder steps", "time", "RTF"], tta)


if __name__ == "__main__":
    main()
