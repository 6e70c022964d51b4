"""Speed of latent TTS: one DiT step against the reference F5-TTS, and real-time factor against frame rate.

    python benchmarks/bench_tts.py dit-step [--size base|small] [--frames 938] [--reference-src F5-TTS/src]
    python benchmarks/bench_tts.py rtf --experiment DEMO/tts [--seconds 10] [--nfe 32] [--precision both]
    python benchmarks/bench_tts.py rtf-size [--size small] [--seconds 10] [--nfe 32]
    python benchmarks/bench_tts.py gemm [--threads 2]
    python benchmarks/bench_tts.py ar [--seconds 10] [--nfe 32] [--head-steps 4,8,16]

Everything runs in ``torch.inference_mode()``, fp32, ``--threads`` threads (default 2), each measurement in a
fresh process (peak RSS), medians of ``--repeats`` after one warm-up.

``dit-step``: one classifier-free-guidance step of the F5-TTS v1 DiT (``cfg_infer``: batch 2, the
conditional and the unconditional row) at ``--frames`` frames (938 = 10 s of F5's 24 kHz mel) with a
``--text``-token text, random weights (every tensor, AdaLN-zero layers included, so nothing is zero).
With ``--reference-src`` (the ``src`` folder of a checkout of the F5-TTS GitHub repository) the reference DiT
runs in the same process with the **same weights** (semlat's keys are the release's), alternating with
semlat's so that machine load hits both alike; the table gives both medians, the ratio and the largest
output difference. The reference imports torchaudio (for its mel front-end, unused by the DiT) and its
tokenizer's packages; the benchmark loads ``f5_tts.model.backbones.dit`` with those imports stubbed, so it
needs only ``x_transformers`` (``pip install x_transformers -c <your torch pin>``) and librosa.

``rtf``: the trained TTS of a convergence experiment (``semlat demo --tts-experiment`` writes
``DEMO/tts``): for each latent space, the final checkpoint generates ``--seconds`` of speech after a test
prompt at NFE 32 and at the experiment's ``min_nfe`` (the smallest NFE whose judge error rate is within 10 %
of NFE 32's), the whole pipeline (prompt encoding, the sampler, decoding); real-time factor = wall time /
seconds generated; with ``--precision both`` (default) each setting also with the DiT in bf16
(``load_tts(..., precision="bf16")``: the weights and products in bf16, AVX-512 BF16 / AMX on CPUs).

``gemm``: the product behind the DiT's linear layers (1876 x 1024 -> 2048, the CFG batch's rows of one F5 v1
Base projection) in GFLOP/s, through semlat's prepacked oneDNN :class:`~semlat.nn.linear.Linear` and through
PyTorch's default ``nn.Linear``: why the DiT step is faster on one CPU than on another.

``ar``: the autoregressive TTS against the DiT at the shipped tiny sizes (``ar_tts/tiny_*`` and ``tts/tiny_*``,
random weights, the sampler only, no decoding), on the 40 Hz waveform-VAE latents and the 5.4 Hz DC-VAE latents:
one KV-cached step of the transformer (CFG batch of 2, after a 3 s prompt and its text), the head's sampling of
one patch at each of ``--head-steps``, and ``--seconds`` of speech after the prompt (the stop classifier held
off, so every run makes the same frames) against the DiT's whole sampler at ``--nfe`` and at NFE 16.

``rtf-size``: the same frame rates (93.75 Hz F5 mel, 40 Hz waveform VAE, 5.4 Hz DC-VAE with ``frame_split``
4) at an equal, larger DiT (``--size``, random weights, DiT steps only): how the sampler's cost scales with
the latent frame rate when the backbone is big.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
import time
import types
from pathlib import Path

import torch
from timing import machine, median_seconds, print_table, run_in_subprocess

SIZES = {"base": {}, "small": {"dim": 768, "depth": 18, "heads": 12}, "tiny": {"dim": 128, "depth": 4, "heads": 2}}
#: F5 mel, the 16 kHz waveform VAE (hop 400) and the 5.4 Hz DC-VAE whose frames split into 4 positions.
RATES = (("mel 24 kHz / 256", 93.75, 100, 1), ("wave VAE", 40.0, 64, 1), ("DC-VAE", 22050 / 256 / 16, 256, 4))


def _peak_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random (the releases zero-init AdaLN and the output layer: a zero step is no test)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.5 / max(1, p.shape[-1]) ** 0.5))


def _reference_dit_class(src: str):
    """``f5_tts.model.backbones.dit.DiT`` from a source checkout, without its package ``__init__`` (which
    imports the trainer) and with the imports the DiT never uses stubbed."""
    src_path = Path(src).expanduser().resolve()
    if not (src_path / "f5_tts" / "model" / "backbones" / "dit.py").is_file():
        raise SystemExit(f"{src_path}: not F5-TTS's src folder (no f5_tts/model/backbones/dit.py)")
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # the mel front-end only
    for name, folder in (("f5_tts", "f5_tts"), ("f5_tts.model", "f5_tts/model"),
                         ("f5_tts.model.backbones", "f5_tts/model/backbones")):
        package = types.ModuleType(name)
        package.__path__ = [str(src_path / folder)]
        sys.modules[name] = package
    utils = types.ModuleType("f5_tts.model.utils")  # the tokenizer helpers (rjieba, pypinyin)
    utils.is_package_available = lambda name: False  # no flash-attn
    sys.modules["f5_tts.model.utils"] = utils
    return importlib.import_module("f5_tts.model.backbones.dit").DiT


def _dit_step(size: str, frames: int, text_len: int, threads: int, repeats: int, reference: str | None):
    from semlat.generation.dit import DiT, DiTConfig

    torch.set_num_threads(threads)
    config = DiTConfig(**SIZES[size], attn_mask=False)
    with torch.inference_mode():
        model = DiT(config).eval()
        _randomize(model)
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(1, frames, config.mel_dim, generator=generator)
        cond = torch.randn(1, frames, config.mel_dim, generator=generator)
        cond[:, frames // 3:] = 0
        text = torch.randint(0, config.text_num_embeds, (1, text_len), generator=generator)
        time_ = torch.tensor([0.4])

        def ours():
            return model(x, cond, text, time_, cfg_infer=True)

        result = {"params": sum(p.numel() for p in model.parameters())}
        if reference is None:
            baseline = _peak_mib()
            result["ours"] = median_seconds(ours, repeats=repeats, warmup=1)
            result["peak"] = _peak_mib() - baseline
            return result
        ref_cls = _reference_dit_class(reference)
        ref = ref_cls(dim=config.dim, depth=config.depth, heads=config.heads, dim_head=config.dim_head,
                      ff_mult=config.ff_mult, mel_dim=config.mel_dim, text_num_embeds=config.text_num_embeds,
                      text_dim=config.text_dim, conv_layers=config.conv_layers, text_mask_padding=True,
                      pe_attn_head=None, attn_backend="torch", attn_mask_enabled=False).eval()
        ref.load_state_dict(model.state_dict(), strict=True)

        def theirs():
            return ref(x, cond, text, time_, cfg_infer=True)

        result["max_abs_diff"] = float((ours() - theirs()).abs().max())
        result["max_abs"] = float(theirs().abs().max())
        ours_times, theirs_times = [], []
        for _ in range(repeats):  # alternate so that load on the machine hits both alike
            for fn, times in ((ours, ours_times), (theirs, theirs_times)):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
        result["ours"] = sorted(ours_times)[len(ours_times) // 2]
        result["theirs"] = sorted(theirs_times)[len(theirs_times) // 2]
    return result


def _rtf_size(size: str, rate: float, latent_dim: int, split: int, seconds: float, nfe: int, threads: int):
    from semlat.generation.dit import DiT, DiTConfig
    from semlat.generation.flow import sample

    torch.set_num_threads(threads)
    config = DiTConfig(**SIZES[size], mel_dim=latent_dim // split)
    with torch.inference_mode():
        model = DiT(config).eval()
        _randomize(model)
        prompt = round(3.0 * rate) * split  # a 3 s prompt, then `seconds` of speech
        total = prompt + round(seconds * rate) * split
        cond = torch.randn(1, prompt, config.mel_dim)
        text = torch.randint(0, config.text_num_embeds, (1, max(1, total // 2)))
        baseline = _peak_mib()
        start = time.perf_counter()
        sample(model, cond, text, torch.tensor([total]), steps=nfe, guidance=3.0, seed=0)
        elapsed = time.perf_counter() - start
    return {"frames": total, "seconds": elapsed, "peak": _peak_mib() - baseline}


def _rtf(experiment: str, name: str, nfe: int, seconds: float, threads: int, repeats: int, precision: str = "fp32"):
    from semlat.data.manifest import Manifest
    from semlat.experiments.tts_convergence import cross_sentence_rows
    from semlat.generation.synthesis import load_tts, synthesize

    torch.set_num_threads(threads)
    folder = Path(experiment)
    result = json.loads((folder / "tts_experiment.json").read_text())
    row = cross_sentence_rows(Manifest.read(result["settings"]["manifest"]))[0]
    final = max((folder / name / "run" / "checkpoints").glob("step-*"))
    tts = load_tts(final, "cpu", precision=precision)
    with torch.inference_mode():
        def run():
            return synthesize(tts, row["text"], row["prompt"], row["prompt_text"], steps=nfe, seconds=seconds, seed=0)

        baseline = _peak_mib()
        audio = run()
        elapsed = median_seconds(run, repeats=repeats, warmup=0)
        peak = _peak_mib() - baseline
    return {"seconds": elapsed, "generated": audio.shape[-1] / tts.space.output_rate, "peak": peak,
            "rate": tts.space.frame_rate, "min_nfe": result.get("min_nfe", {}).get(name)}


def _batch(experiment: str, name: str, nfe: int, rows: int, batch: int, threads: int) -> dict[str, float]:
    """Seconds to speak ``rows`` cross-sentence rows of the experiment's test set with ``semlat tts --list
    --batch`` (prompt encoding, sampler, decoding, writing)."""
    import tempfile
    import time

    from semlat.data.manifest import Manifest
    from semlat.experiments.tts_convergence import cross_sentence_rows
    from semlat.generation.synthesis import load_tts, synthesize_list

    torch.set_num_threads(threads)
    folder = Path(experiment)
    result = json.loads((folder / "tts_experiment.json").read_text())
    chosen = cross_sentence_rows(Manifest.read(result["settings"]["manifest"]))[:rows]
    final = max((folder / name / "run" / "checkpoints").glob("step-*"))
    tts = load_tts(final, "cpu")
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        listing = Path(tmp) / "rows.jsonl"
        listing.write_text("".join(json.dumps({"prompt": r["prompt"], "prompt_text": r["prompt_text"],
                                               "text": r["text"], "output": f"{tmp}/{i}.wav"}) + "\n"
                                   for i, r in enumerate(chosen)))
        started = time.monotonic()
        written = synthesize_list(tts, listing, seed=0, batch=batch, steps=nfe, progress=False)
        seconds = time.monotonic() - started
        import soundfile as sf

        generated = sum(sf.info(str(w)).duration for w in written)
    return {"seconds": seconds, "generated": generated, "rows": len(chosen)}


#: ``ar``: latent kinds (label, frame rate, latent size, DiT recipe, AR recipe)
AR_KINDS = (("wave VAE", 40.0, 16, "tts/tiny_wave_vae", "ar_tts/tiny_wave_vae"),
            ("DC-VAE", 22050 / 256 / 16, 80, "tts/tiny_mel_dcae", "ar_tts/tiny_mel_dcae"))


def _recipe_model(name: str) -> dict:
    from semlat.config import read_yaml
    from semlat.configs import builtin_config

    data = read_yaml(builtin_config(name))
    return {"model": dict(data.get("model", {})), "frame_split": int(data.get("frame_split", 1))}


def _ar_speed(rate: float, latent_dim: int, dit_recipe: str, ar_recipe: str, seconds: float, nfes: list[int],
              head_steps: list[int], threads: int, repeats: int) -> dict:
    from semlat.generation.ar_tts import ARTTSConfig, ARTTSModel, KVCache
    from semlat.generation.tts import TTSConfig, TTSModel

    torch.set_num_threads(threads)
    vocab = [" ", *"abcdefghijklmnopqrstuvwxyz"]
    prompt_frames, frames = round(3.0 * rate), round(seconds * rate)
    text = torch.randint(1, len(vocab), (1, round(14 * (3.0 + seconds))))  # ~14 phoneme tokens a second
    out: dict = {"frames": frames}
    with torch.inference_mode():
        ar = ARTTSModel(ARTTSConfig(**_recipe_model(ar_recipe)["model"], vocab=vocab, latent_dim=latent_dim,
                                    frame_rate=rate)).eval()
        _randomize(ar)
        ar.stop.bias.copy_(torch.tensor([30.0] + [-30.0] * ar.config.patch))  # never stops: the same frames each run
        out["ar_params"] = sum(p.numel() for p in ar.parameters())
        prompt = torch.randn(1, prompt_frames, latent_dim)
        h_text, valid = ar.embed_text(text.expand(2, -1))
        context = ar.patches(prompt).expand(2, -1, -1)
        h = torch.cat([h_text, ar.bos.expand(2, 1, -1), ar.audio_in(context)], dim=1)
        full_valid = torch.cat([valid, torch.ones(2, h.shape[1] - valid.shape[1], dtype=torch.bool)], dim=1)

        def cached_step():
            cache = KVCache(ar.config.depth)
            ar.run(h, full_valid, text.shape[1], cache)
            step = ar.audio_in(torch.randn(2, 1, ar.config.patch * latent_dim))
            started = time.perf_counter()
            ar.run(step, torch.ones(2, 1, dtype=torch.bool), text.shape[1], cache)
            return time.perf_counter() - started

        cached_step()
        out["cached_step"] = sorted(cached_step() for _ in range(max(5, repeats)))[max(5, repeats) // 2]
        z = torch.randn(2, ar.config.dim)
        from semlat.sampling import guide, time_grid
        from semlat.sampling import sample as flow_sample

        out["head"] = {}
        for steps in head_steps:
            grid = time_grid(steps)
            x = torch.randn(1, ar.config.patch * latent_dim)

            def head(grid=grid, x=x):
                return flow_sample(lambda x_t, t: guide(*ar.head(x_t.expand(2, -1), t.expand(2), z).chunk(2), 3.0),
                                   x, grid)

            out["head"][steps] = median_seconds(head, repeats=max(5, repeats), warmup=1)
        out["ar_total"] = {}
        for steps in head_steps:
            out["ar_total"][steps] = median_seconds(
                lambda steps=steps: ar.generate(prompt, text, max_frames=frames, steps=steps, guidance=3.0, seed=0),
                repeats=repeats, warmup=0)
        spec = _recipe_model(dit_recipe)
        split = spec["frame_split"]
        dit = TTSModel(TTSConfig(arch={k: v for k, v in spec["model"].items()}, vocab=vocab, latent_dim=latent_dim,
                                 frame_rate=rate, frame_split=split, max_frames=65536)).eval()
        _randomize(dit)
        out["dit_params"] = sum(p.numel() for p in dit.parameters())
        out["dit_total"] = {}
        for nfe in nfes:
            out["dit_total"][nfe] = median_seconds(
                lambda nfe=nfe: dit.generate(prompt, text, torch.tensor([prompt_frames + frames]), steps=nfe,
                                             guidance=3.0, seed=0), repeats=repeats, warmup=0)
    return out


def _gemm(threads: int, repeats: int, rows: int = 1876, inner: int = 1024, outer: int = 2048) -> dict[str, float]:
    from semlat.nn.linear import Linear, onednn_linear_enabled

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    default = torch.nn.Linear(inner, outer)
    packed = Linear(inner, outer)
    packed.load_state_dict(default.state_dict())
    x = torch.randn(rows, inner)
    flops = 2.0 * rows * inner * outer
    with torch.inference_mode():
        ours = median_seconds(lambda: packed(x), repeats=max(repeats, 10), warmup=3)
        theirs = median_seconds(lambda: default(x), repeats=max(repeats, 10), warmup=3)
        diff = float((packed(x) - default(x)).abs().max())
    return {"ours": flops / ours / 1e9, "theirs": flops / theirs / 1e9, "onednn": onednn_linear_enabled(),
            "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("op", choices=("dit-step", "rtf", "rtf-size", "gemm", "batch", "ar"))
    parser.add_argument("--head-steps", default="4,8,16", help="ar: the head's sampler steps to time")
    parser.add_argument("--rows", type=int, default=16, help="batch: rows of the test set to speak")
    parser.add_argument("--batches", default="1,4,8", help="batch: --batch values to compare")
    parser.add_argument("--size", choices=tuple(SIZES), default=None, help="dit-step: base; rtf-size: small")
    parser.add_argument("--frames", type=int, default=938)
    parser.add_argument("--text", type=int, default=300, help="dit-step: text tokens")
    parser.add_argument("--reference-src", default=None, help="F5-TTS's src folder (dit-step side by side)")
    parser.add_argument("--experiment", default=None, help="rtf: the experiment folder (DEMO/tts)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=("fp32", "bf16", "both"), default="both", help="rtf: the DiT's dtype")
    parser.add_argument("--spaces", default=None, help="rtf: comma-separated arms of the experiment [default: all]")
    args = parser.parse_args()
    print(machine())
    print(f"{args.threads} thread(s), inference mode, fp32")
    if args.op == "gemm":
        r = run_in_subprocess(_gemm, args.threads, args.repeats)
        print_table(["product 1876 x 1024 -> 2048", "semlat Linear (prepacked oneDNN)", "nn.Linear (default)",
                     "ratio", "max |diff|"],
                    [["GFLOP/s", f"{r['ours']:.0f}" + ("" if r["onednn"] else " (oneDNN off)"), f"{r['theirs']:.0f}",
                      f"{r['ours'] / r['theirs']:.2f}x", f"{r['max_abs_diff']:.1e}"]])
    elif args.op == "dit-step":
        size = args.size or "base"
        r = run_in_subprocess(_dit_step, size, args.frames, args.text, args.threads, args.repeats, args.reference_src)
        row = [f"F5 v1 {size}", f"{r['params'] / 1e6:.0f}M", f"{args.frames}", f"{r['ours']:.3f} s"]
        if "theirs" in r:
            row += [f"{r['theirs']:.3f} s", f"{r['theirs'] / r['ours']:.2f}x",
                    f"{r['max_abs_diff']:.1e} (of {r['max_abs']:.1f})"]
            print_table(["DiT", "params", "frames", "semlat", "reference", "speed-up", "max |diff|"], [row])
        else:
            print_table(["DiT", "params", "frames", "semlat", "peak work"], [row + [f"{r['peak']:.0f} MiB"]])
    elif args.op == "batch":
        if not args.experiment:
            raise SystemExit("batch needs --experiment DEMO/tts (from `semlat demo --tts-experiment`)")
        names = list(json.loads((Path(args.experiment) / "tts_experiment.json").read_text())["spaces"])
        names = [n for n in names if not args.spaces or n in args.spaces.split(",")]
        rows = []
        for name in names:
            base = None
            for batch in (int(b) for b in args.batches.split(",")):
                r = run_in_subprocess(_batch, args.experiment, name, args.nfe, args.rows, batch, args.threads)
                base = base or r["seconds"]
                rows.append((name, batch, r["rows"], f"{r['generated']:.1f} s", f"{r['seconds']:.1f} s",
                             f"{r['seconds'] / r['generated']:.3f}", f"{base / r['seconds']:.2f}x"))
        print(f"semlat tts --list of the experiment's cross-sentence rows, NFE {args.nfe}, whole pipeline")
        print_table(["space", "--batch", "rows", "generated", "time", "RTF", "speed-up"], rows)
    elif args.op == "ar":
        head_steps = [int(v) for v in args.head_steps.split(",")]
        nfes = sorted({16, args.nfe})
        rows, parts = [], []
        for label, rate, dim, dit_recipe, ar_recipe in AR_KINDS:
            r = run_in_subprocess(_ar_speed, rate, dim, dit_recipe, ar_recipe, args.seconds, nfes, head_steps,
                                  args.threads, args.repeats)
            parts.append((label, f"{rate:.4g} Hz", f"{r['cached_step'] * 1e3:.2f} ms",
                          ", ".join(f"{s}: {r['head'][s] * 1e3:.2f} ms" for s in head_steps)))
            for steps in head_steps:
                t = r["ar_total"][steps]
                rows.append((label, f"AR ({r['ar_params'] / 1e6:.2f} M)", f"{steps} head steps", r["frames"],
                             f"{t:.2f} s", f"{t / args.seconds:.3f}"))
            for nfe in nfes:
                t = r["dit_total"][nfe]
                rows.append((label, f"DiT ({r['dit_params'] / 1e6:.2f} M)", f"NFE {nfe}", r["frames"], f"{t:.2f} s",
                             f"{t / args.seconds:.3f}"))
        print(f"tiny configs, random weights, {args.seconds:g} s after a 3 s prompt, CFG, sampler only (no decoding)")
        print_table(["latent", "rate", "KV-cached step (batch 2)", "head, one patch"], parts)
        print_table(["latent", "model", "steps", "frames", "time", "RTF"], rows)
    elif args.op == "rtf-size":
        size = args.size or "small"
        rows = []
        for label, rate, dim, split in RATES:
            r = run_in_subprocess(_rtf_size, size, rate, dim, split, args.seconds, args.nfe, args.threads)
            rows.append((label, f"{rate:.4g} Hz", f"{dim}" + (f" (split {split})" if split > 1 else ""),
                         r["frames"], args.nfe, f"{r['seconds']:.2f} s", f"{r['seconds'] / args.seconds:.3f}",
                         f"{r['peak']:.0f} MiB"))
        print(f"DiT {size}, random weights, {args.seconds:g} s after a 3 s prompt, CFG sampler only")
        print_table(["latent", "rate", "dim", "positions", "NFE", "time", "RTF", "peak work"], rows)
    else:
        if not args.experiment:
            raise SystemExit("rtf needs --experiment DEMO/tts (from `semlat demo --tts-experiment`)")
        names = list(json.loads((Path(args.experiment) / "tts_experiment.json").read_text())["spaces"])
        names = [n for n in names if not args.spaces or n in args.spaces.split(",")]
        precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
        rows = []
        for name in names:
            first = run_in_subprocess(_rtf, args.experiment, name, args.nfe, args.seconds, args.threads, args.repeats)
            nfes = [args.nfe] + ([first["min_nfe"]] if first["min_nfe"] and first["min_nfe"] != args.nfe else [])
            for nfe in nfes:
                for precision in precisions:
                    r = first if (nfe, precision) == (args.nfe, "fp32") else run_in_subprocess(
                        _rtf, args.experiment, name, nfe, args.seconds, args.threads, args.repeats, precision)
                    rows.append((name, f"{r['rate']:.4g} Hz", nfe, precision, f"{r['generated']:.2f} s",
                                 f"{r['seconds']:.2f} s", f"{r['seconds'] / r['generated']:.3f}", f"{r['peak']:.0f} MiB"))
        print("trained tiny TTS of the experiment, whole pipeline (prompt encoding, sampler, decoding); "
              "bf16: the DiT's weights and products in bf16")
        print_table(["space", "rate", "NFE", "DiT", "generated", "time", "RTF", "peak work"], rows)


if __name__ == "__main__":
    main()
