"""LibriSpeech-PC test-clean cross-sentence evaluation in one command (``semlat eval cross-sentence``).

The protocol of F5-TTS and of the Semantic-VAE paper's TTS table: each line of the list pairs a prompt
utterance with another utterance of the same speaker; the model says the target's text in the prompt's voice,
Whisper transcribes the result (WER against the target text) and a speaker-verification model compares it
with the prompt (SIM). The list is F5-TTS's ``librispeech_pc_test_clean_cross_sentence.lst`` (1127 pairs of
4–10 s utterances), tab-separated, one pair per line::

    ref_utt <TAB> ref_dur <TAB> ref_txt <TAB> gen_utt <TAB> gen_dur <TAB> gen_txt

Utterance ids are LibriSpeech's ``speaker-chapter-index``; audio is read from ``ROOT/speaker/chapter/<id>.flac``
(``ROOT`` = the ``LibriSpeech/test-clean`` folder). Durations: F5's ratio rule from the prompt (the paper's
setting) or, with ``truth_duration``, the target's real duration (``gen_dur``).

Output (``out/``): ``audio/<gen_utt>.wav`` (resumes: existing files are kept), ``generated.jsonl`` (the
listing :func:`~semlat.evaluation.generation_eval.evaluate_tts` scores), ``scores/`` (its report), and
``config.json`` (the resolved settings).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semlat.chunking import chunk_seed
from semlat.errors import DataError
from semlat.evaluation.generation_eval import ROWS_NAME, evaluate_tts
from semlat.evaluation.recon_eval import RUN_NAME
from semlat.generation.synthesis import synthesize_to_file
from semlat.models import load
from semlat.utils.files import atomic_write_text, sha256_file

FIELDS = ("ref_utt", "ref_dur", "ref_txt", "gen_utt", "gen_dur", "gen_txt")


@dataclass(frozen=True)
class Pair:
    """One line of the list: the prompt utterance and the target utterance (same speaker)."""

    prompt: Path
    prompt_text: str
    target_id: str
    target_seconds: float
    target_text: str


def librispeech_path(root: Path, utterance: str) -> Path:
    """``ROOT/speaker/chapter/<utterance>.flac`` for a LibriSpeech id ``speaker-chapter-index``."""
    parts = utterance.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{utterance!r} is not a LibriSpeech utterance id (speaker-chapter-index)")
    return root / parts[0] / parts[1] / f"{utterance}.flac"


def read_cross_sentence_list(path: str | os.PathLike, root: str | os.PathLike) -> list[Pair]:
    """The pairs of an F5-TTS cross-sentence list (module docstring); one-line errors name the file and line,
    and a missing audio file is reported before anything is generated."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise DataError(f"{path}: no such list file")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (give LibriSpeech's test-clean folder)")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != len(FIELDS):
            raise DataError(f"{where}: expected {len(FIELDS)} tab-separated fields ({', '.join(FIELDS)}), "
                            f"got {len(fields)}")
        ref_utt, _, ref_txt, gen_utt, gen_dur, gen_txt = (f.strip() for f in fields)
        try:
            prompt = librispeech_path(root, ref_utt)
            librispeech_path(root, gen_utt)
            seconds = float(gen_dur)
        except ValueError as err:
            raise DataError(f"{where}: {err}") from None
        if not ref_txt or not gen_txt:
            raise DataError(f"{where}: empty prompt or target text")
        if not prompt.is_file():
            raise DataError(f"{where}: prompt audio {prompt} not found")
        pairs.append(Pair(prompt, ref_txt, gen_utt, seconds, gen_txt))
    if not pairs:
        raise DataError(f"{path}: no pairs")
    return pairs


def ranks_from_env() -> tuple[int, int]:
    """``(rank, world_size)`` that torchrun gives each process (``(0, 1)`` outside torchrun)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def run_cross_sentence(model: str | os.PathLike, listing: str | os.PathLike, root: str | os.PathLike,
                       out: str | os.PathLike, *, asr: str | None, speaker: str | None, mos: str | None = None,
                       steps: int = 32, guidance: float = 3.0, sway: float = -1.0, seed: int = 0,
                       truth_duration: bool = False, device: str = "cpu", batch_size: int = 8,
                       progress: bool = True, rank: int | None = None, world_size: int | None = None,
                       wait_seconds: float = 0.5) -> dict[str, Any] | None:
    """Generate every pair of ``listing`` with the TTS ``model`` and score it (module docstring); returns the
    evaluation report. Pair ``i`` is seeded ``chunk_seed(seed, i)``.

    Under torchrun (``rank``/``world_size``, default from the environment) each process generates and scores the
    pairs ``i`` with ``i % world_size == rank`` into ``scores/rank-R/``; rank 0 then waits for every rank's report,
    merges their per-utterance scores and writes the one report of the whole list (the same as one process
    would: every pair keeps its seed). Other ranks return None."""
    from tqdm import tqdm

    if rank is None or world_size is None:
        rank, world_size = ranks_from_env()
    pairs = read_cross_sentence_list(listing, root)
    out = Path(out)
    tts = load(model, device, expect="tts")
    settings = {"model": str(Path(model).resolve()), "list": str(Path(listing).resolve()),
                "root": str(Path(root).resolve()), "pairs": len(pairs), "steps": steps, "guidance": guidance, "sway": sway,
                "seed": seed, "duration": "the target's real duration" if truth_duration else
                "F5's ratio rule from the prompt", "asr": asr, "speaker": speaker, "mos": mos}
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        atomic_write_text(out / "config.json", json.dumps(settings, indent=2) + "\n")
    rows = []
    mine = [(index, pair) for index, pair in enumerate(pairs) if index % world_size == rank]
    for index, pair in tqdm(mine, desc="tts", unit="utt", disable=not progress):
        audio = out / "audio" / f"{pair.target_id}.wav"
        if not audio.is_file():
            synthesize_to_file(tts, audio, text=pair.target_text, prompt=pair.prompt, prompt_text=pair.prompt_text,
                               steps=steps, guidance=guidance, sway=sway, seed=chunk_seed(seed, index),
                               seconds=pair.target_seconds if truth_duration else None)
    for pair in pairs:
        rows.append(json.dumps({"id": pair.target_id, "audio": f"audio/{pair.target_id}.wav", "text": pair.target_text,
                                "prompt": str(pair.prompt)}, ensure_ascii=False))
    scoring = {"asr": asr, "speaker": speaker, "mos": mos, "device": device, "batch_size": batch_size,
               "progress": progress}
    if world_size == 1:
        atomic_write_text(out / "generated.jsonl", "\n".join(rows) + "\n")
        return evaluate_tts(out / "generated.jsonl", out / "scores", **scoring)
    shard = out / f"generated.rank-{rank}.jsonl"
    atomic_write_text(shard, "\n".join(rows[i] for i, _ in mine) + "\n" if mine else "")
    if mine:
        evaluate_tts(shard, out / "scores" / f"rank-{rank}", **scoring)
    if rank != 0:
        return None
    others = [r for r in range(1, world_size) if any(i % world_size == r for i in range(len(pairs)))]
    while not all((out / "scores" / f"rank-{r}" / "report.json").is_file() for r in others):
        time.sleep(wait_seconds)  # (torchrun ends the job if a rank fails)
    merged: dict[str, str] = {}
    for r in range(world_size):
        part = out / "scores" / f"rank-{r}" / ROWS_NAME
        if part.is_file():
            for line in part.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    merged[json.loads(line)["id"]] = line
    listing_path = out / "generated.jsonl"
    atomic_write_text(listing_path, "\n".join(rows) + "\n")
    (out / "scores").mkdir(parents=True, exist_ok=True)
    # the merged rows, as one process would have written them for the whole list (its run identity too)
    run = json.loads((out / "scores" / "rank-0" / RUN_NAME).read_text(encoding="utf-8"))
    run.update(listing=str(listing_path.resolve()), listing_sha256=sha256_file(listing_path))
    atomic_write_text(out / "scores" / RUN_NAME, json.dumps(run, indent=2) + "\n")
    atomic_write_text(out / "scores" / ROWS_NAME, "".join(merged[p.target_id] + "\n" for p in pairs
                                                        if p.target_id in merged))
    return evaluate_tts(listing_path, out / "scores", **scoring)  # scores nothing again: merges
