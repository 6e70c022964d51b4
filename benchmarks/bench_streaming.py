"""Streaming at constant memory: peak memory of one rank reading its share of a corpus of N utterances, as shards
(semlat.data.shards: Lhotse Shar, read shard by shard) against the whole-file JSONL manifest every rank reads
today; and the audio loader's throughput against what the paper recipes' training steps consume.

    python benchmarks/bench_streaming.py memory --sizes 10000 100000 1000000 10000000
    python benchmarks/bench_streaming.py throughput --corpus demo/corpus/manifest.jsonl

``memory`` writes synthetic metadata-only shards (cuts naming one short audio file; 1 000 utterances a shard)
and the same utterances as a semlat manifest, then measures each reader in a fresh process (peak RSS, VmHWM):
the stream reads rank 0's share of 8 ranks to its end (shuffle buffer 500, batches of 16); the manifest reader
loads the file as training does now. Not a test: figures, not assertions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from timing import machine  # noqa: E402

SHARD = 1_000
RANKS = 8


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthesize(folder: Path, n: int) -> None:
    """Metadata-only shards and a JSONL manifest of ``n`` utterances naming one 1-second file."""
    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / "one.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    cut = ('{{"id": "u{i:09d}", "start": 0.0, "duration": 1.0, "channel": 0, "supervisions": [{{"id": "u{i:09d}", '
           '"recording_id": "u{i:09d}", "start": 0.0, "duration": 1.0, "channel": 0, "text": "utterance number {i}", '
           '"speaker": "s{s}", "custom": {{"source": "one.wav"}}}}], "recording": {{"id": "u{i:09d}", "sources": '
           '[{{"type": "file", "channels": [0], "source": "' + str(wav) + '"}}], "sampling_rate": 16000, '
           '"num_samples": 16000, "duration": 1.0, "channel_ids": [0]}}, "type": "MonoCut"}}\n')
    line = '{{"audio": "one.wav", "duration": 1.0, "sample_rate": 16000, "text": "utterance number {i}", "speaker": "s{s}", "split": "train"}}\n'
    shards = []
    with open(folder / "manifest.jsonl", "w") as manifest:
        for start in range(0, n, SHARD):
            name = f"cuts.{start // SHARD:06d}.jsonl.gz"
            count = min(SHARD, n - start)
            with gzip.open(folder / name, "wt", compresslevel=1) as f:
                f.write("".join(cut.format(i=i, s=i % 1000) for i in range(start, start + count)))
            manifest.write("".join(line.format(i=i, s=i % 1000) for i in range(start, start + count)))
            shards.append({"cuts": name, "items": count, "seconds": float(count)})
    index = {"format": "lhotse-shar", "shard_size": SHARD, "items": n, "seconds": float(n), "shards": shards}
    (folder / "shards.json").write_text(json.dumps(index) + "\n")


def _measure(kind: str, folder: str) -> None:
    """Runs in a fresh process: import both readers (so both pay the same imports), read as ``kind``, print a JSON
    line with the peak RSS and its growth over the RSS after the imports."""
    from semlat.data.manifest import Manifest
    from semlat.data.shards import ShardBatches, ShardSet

    base = _peak_mb()
    started = time.monotonic()
    if kind == "stream":
        sampler = ShardBatches(ShardSet(folder), batch_size=16, seed=0, rank=0, world_size=RANKS)
        items = sum(len(batch) for batch in sampler)
    else:
        items = len(Manifest.read_split(Path(folder) / "manifest.jsonl", "train"))
    seconds = time.monotonic() - started
    print(json.dumps({"kind": kind, "items": items, "seconds": seconds, "peak_mb": _peak_mb(),
                      "growth_mb": _peak_mb() - base}))


def memory(sizes: list[int], whole_max: int) -> None:
    print(machine())
    print(f"| utterances | stream, rank 0 of {RANKS}: peak RSS (growth while reading) | utterances read | time | "
          "whole manifest: peak RSS (growth) | time |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            synthesize(Path(tmp), n)
            rows = {}
            for kind in ("stream", "whole"):
                if kind == "whole" and n > whole_max:
                    continue
                out = subprocess.run([sys.executable, __file__, "_measure", kind, tmp], capture_output=True,
                                     text=True, check=True)
                rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            s, w = rows["stream"], rows.get("whole")
            whole = (f"{w['peak_mb']:.0f} MB (+{w['growth_mb']:.0f}) | {w['seconds']:.1f} s" if w
                     else f"not run (> {whole_max:,}) | —")
            print(f"| {n:,} | {s['peak_mb']:.0f} MB (+{s['growth_mb']:.0f}) | {s['items']:,} | {s['seconds']:.1f} s | "
                  f"{whole} |", flush=True)


def store_throughput(store: str, seconds: float) -> None:
    """Batches per second from a latent store (the TTS recipes' loader: frame budgets over duration buckets), with
    tts/paper's budget."""
    from semlat.configs import builtin_config
    from semlat.data.samplers import FrameBudgetBatchSampler
    from semlat.data.store import TensorStore
    from semlat.data.store_dataset import StoreDataset, collate_tensors
    from semlat.training.recipes import load_recipe

    _, config = load_recipe(builtin_config("tts/paper"), [])
    tensors = TensorStore(store)
    dataset = StoreDataset(tensors, [item["id"] for item in tensors.items], normalize=False, fields=("text",))
    sampler = FrameBudgetBatchSampler(dataset.durations, config.data.max_frames, tensors.frame_rate, max_batch_size=
                                      config.data.batch_size, num_buckets=config.data.buckets, seed=0)
    started, batches, items, frames = time.monotonic(), 0, 0, 0
    while time.monotonic() - started < seconds:
        sampler.set_epoch(batches)
        for keys in sampler:
            batch = collate_tensors([dataset[k] for k in keys])
            batches, items, frames = batches + 1, items + len(keys), frames + int(batch["frames"].sum())
            if time.monotonic() - started > seconds:
                break
    took = time.monotonic() - started
    print(f"tts/paper: a frame budget of {config.data.max_frames} frames a batch, store {store} "
          f"({len(dataset)} items, {tensors.frame_rate:g} Hz)")
    print("| loader (1 process) | batches/s | items/s | latent frames/s |")
    print("|---|---|---|---|")
    print(f"| latent store | {batches / took:.1f} | {items / took:.0f} | {frames / took:.0f} |")


def throughput(corpus: str, seconds: float) -> None:
    """Crops per second from shards of ``corpus`` (semantic_vae/paper's segment and batch) and from the manifest,
    on one process, against the paper recipe's consumption at a measured step time."""
    import torch

    from semlat.configs import builtin_config
    from semlat.data.datasets import AudioCropDataset
    from semlat.data.manifest import Manifest
    from semlat.data.shards import ShardBatches, ShardSet, crop_cut, write_shards
    from semlat.training.recipes import load_recipe

    torch.set_num_threads(1)
    print(machine())
    _, config = load_recipe(builtin_config("semantic_vae/paper"), [])
    rate, segment, batch = config.model.sample_rate, config.data.segment_seconds, config.data.batch_size
    manifest = Manifest.read_split(corpus, "train")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_shards(manifest, Path(tmp) / "shards", shard_size=200, progress=False)
        sampler = ShardBatches(ShardSet(folder), batch_size=batch, seed=0)
        started, items = time.monotonic(), 0
        for keys in sampler:
            for key in keys:
                crop_cut(*key, sample_rate=rate, segment_seconds=segment)
                items += 1
            if time.monotonic() - started > seconds:
                break
        stream_rate = items / (time.monotonic() - started)
    crops = AudioCropDataset(manifest, rate, segment, seed=0)
    started, items = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        crops[items % len(crops)]
        items += 1
    file_rate = items / (time.monotonic() - started)
    print(f"semantic_vae/paper: {segment:g} s crops at {rate} Hz, batch {batch}")
    print("| loader (1 process, 1 thread) | crops/s | audio s/s | batches/s |")
    print("|---|---|---|---|")
    for name, r in (("shards (Lhotse Shar, FLAC in tar)", stream_rate), ("manifest (files on disk)", file_rate)):
        print(f"| {name} | {r:.0f} | {r * segment:.0f} | {r / batch:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        _measure(sys.argv[2], sys.argv[3])
        sys.exit()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    m.add_argument("--whole-max", type=int, default=10_000_000, help="largest N for the whole-manifest reader")
    t = sub.add_parser("throughput")
    t.add_argument("--corpus", required=True)
    t.add_argument("--seconds", type=float, default=20.0)
    t.add_argument("--store", default=None, help="a latent store (semlat encode) for the TTS loader's figures")
    args = parser.parse_args()
    if args.mode == "memory":
        memory(args.sizes, args.whole_max)
    else:
        throughput(args.corpus, args.seconds)
        if args.store:
            store_throughput(args.store, args.seconds)
