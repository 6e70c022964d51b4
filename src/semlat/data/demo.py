"""``semlat data demo``: an offline speech corpus synthesised with flite and espeak-ng.

Text comes from ``sentences.txt`` (shipped with semlat: 758 original, phonetically varied English
sentences). Each utterance gets its text, espeak-ng IPA phonemes (of the voice that spoke it; en-us
for flite voices) and a speaker id. Sentences are split into train/valid/test by a hash of their
text, so no sentence crosses splits; the test split also holds speakers never heard in training
(:attr:`DemoVoice.held_out`). The corpus is a deterministic function of its options and the tool
versions: the same ``minutes`` gives the same files and the same manifest bytes.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from tqdm import tqdm

from semlat.audio.io import load_audio, save_audio
from semlat.audio.processing import peak_normalize
from semlat.data.manifest import Manifest, Utterance
from semlat.data.splits import assign_split
from semlat.errors import DataError, SemlatError, ToolMissingError
from semlat.text.espeak import phonemize
from semlat.utils.files import atomic_dir
from semlat.utils.parallel import default_workers, parallel_map

INSTALL_HINT = ("install them with `sudo apt-get install flite espeak-ng` (Debian/Ubuntu), "
                "`sudo dnf install flite espeak-ng` (Fedora) or `brew install flite espeak-ng` (macOS)")
CONFIG_NAME = "demo_config.json"


@dataclass(frozen=True)
class DemoVoice:
    """One synthetic speaker: an engine, its voice, and (espeak-ng) a fixed pitch."""

    speaker: str
    engine: str          # "flite" or "espeak-ng"
    voice: str           # flite -voice name, or espeak-ng "language+variant"
    pitch: int = 50      # espeak-ng -p, 0..99
    held_out: bool = False


DEMO_VOICES: tuple[DemoVoice, ...] = (
    DemoVoice("flite_kal16", "flite", "kal16"),
    DemoVoice("flite_awb", "flite", "awb"),
    DemoVoice("flite_slt", "flite", "slt"),
    DemoVoice("flite_rms", "flite", "rms", held_out=True),
    DemoVoice("espeak_us_m1", "espeak-ng", "en-us+m1", 45),
    DemoVoice("espeak_us_m3", "espeak-ng", "en-us+m3", 38),
    DemoVoice("espeak_us_f1", "espeak-ng", "en-us+f1", 62),
    DemoVoice("espeak_us_f3", "espeak-ng", "en-us+f3", 70),
    DemoVoice("espeak_gb_m2", "espeak-ng", "en-gb+m2", 50),
    DemoVoice("espeak_gb_f2", "espeak-ng", "en-gb+f2", 66),
    DemoVoice("espeak_scot_m4", "espeak-ng", "en-gb-scotland+m4", 42),
    DemoVoice("espeak_rp_f5", "espeak-ng", "en-gb-x-rp+f5", 58),
    DemoVoice("espeak_carib_m5", "espeak-ng", "en-029+m5", 48),
    DemoVoice("espeak_us_klatt2", "espeak-ng", "en-us+klatt2", 52),
    DemoVoice("espeak_lanc_m7", "espeak-ng", "en-gb-x-gbclan+m7", 40, held_out=True),
    DemoVoice("espeak_us_f4", "espeak-ng", "en-us+f4", 60, held_out=True),
)

#: Further voices, none of them a demo voice (another engine variant, accent or pitch): a corpus spoken by
#: these (``--voices``) shares no speaker with the demo corpus, e.g. to train a supervised teacher that
#: must not have heard the judge's voices (:mod:`semlat.experiments.phonetic_teacher`).
EXTRA_VOICES: tuple[DemoVoice, ...] = (
    DemoVoice("espeak_us_m2", "espeak-ng", "en-us+m2", 44),
    DemoVoice("espeak_us_f2", "espeak-ng", "en-us+f2", 64),
    DemoVoice("espeak_us_f5", "espeak-ng", "en-us+f5", 56),
    DemoVoice("espeak_gb_m4", "espeak-ng", "en-gb+m4", 46),
    DemoVoice("espeak_gb_f4", "espeak-ng", "en-gb+f4", 68),
    DemoVoice("espeak_wmid_m6", "espeak-ng", "en-gb-x-gbcwmd+m6", 43),
    DemoVoice("espeak_nyc_m7", "espeak-ng", "en-us-nyc+m7", 39),
    DemoVoice("espeak_scot_f3", "espeak-ng", "en-gb-scotland+f3", 66),
    DemoVoice("espeak_carib_f4", "espeak-ng", "en-029+f4", 61),
    DemoVoice("espeak_rp_m5", "espeak-ng", "en-gb-x-rp+m5", 47),
    DemoVoice("espeak_us_andy", "espeak-ng", "en-us+Andy", 50),
    DemoVoice("espeak_us_david", "espeak-ng", "en-us+david", 50),
)

#: Of every 10 planned utterances, 8 go to train, 1 to valid and 1 to test (valid and test come
#: early in the cycle so even a very short corpus has all three splits).
_SPLIT_CYCLE = ("train", "valid", "test") + ("train",) * 7


@dataclass(frozen=True)
class DemoItem:
    """One planned utterance."""

    number: int
    split: str
    text: str
    voice: DemoVoice
    rate: float          # espeak-ng words per minute, or flite duration stretch

    @property
    def path(self) -> str:
        return f"wavs/{self.voice.speaker}/{self.voice.speaker}-{self.number:05d}.wav"


def load_sentences() -> list[str]:
    """The sentence list shipped with semlat."""
    text = resources.files("semlat.data").joinpath("sentences.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_sentences(path: str | Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file; a one-line DataError naming the file when it has none or
    cannot be read."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read sentences ({err.__class__.__name__}: {err})") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise DataError(f"{path}: holds no sentence (one per line)")
    return texts


def check_tools() -> None:
    """Raise ToolMissingError naming what is missing and how to install it."""
    missing = [tool for tool in ("flite", "espeak-ng") if shutil.which(tool) is None]
    if missing:
        raise ToolMissingError(f"{' and '.join(missing)} not found on PATH: the demo corpus is "
                               f"synthesised with flite and espeak-ng; {INSTALL_HINT}")


def tool_versions() -> dict[str, str]:
    """Version strings of the synthesisers (recorded with the corpus: they determine the audio)."""
    out = {}
    for tool, flag in (("flite", "--version"), ("espeak-ng", "--version")):
        proc = subprocess.run([tool, flag], capture_output=True, text=True, timeout=30, check=False)
        out[tool] = " ".join((proc.stdout or proc.stderr).split())[:120]
    return out


def scrambled_sentences(source: Sequence[str], count: int, *, seed: int = 0, words: tuple[int, int] = (6, 13)
                        ) -> list[str]:
    """``count`` new sentences made of the words of ``source`` (lower-cased, punctuation dropped), each
    ``words[0]`` to ``words[1] - 1`` words drawn at random; none equals a sentence of ``source`` or another
    new one. Speech with new word sequences and ordinary phonetics: the sentences of a corpus that must share
    no sentence with another (a supervised teacher's, beside the judge's)."""
    vocabulary = sorted({w for text in source for w in re.findall(r"[a-z']+", text.lower())})
    if len(vocabulary) < words[1]:
        raise DataError(f"the source sentences give {len(vocabulary)} distinct words; {words[1]} are needed")
    taken = {" ".join(re.findall(r"[a-z']+", text.lower())) for text in source}
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < count:
        picked = " ".join(vocabulary[k] for k in rng.choice(len(vocabulary), int(rng.integers(*words)), replace=False))
        if picked not in taken:
            taken.add(picked)
            out.append(picked[0].upper() + picked[1:] + ".")
    return out


def plan(seed: int = 0, voices: tuple[DemoVoice, ...] = DEMO_VOICES,
         sentences: Sequence[str] | None = None) -> Iterator[DemoItem]:
    """The endless, deterministic sequence of utterances the corpus is cut from (``sentences``: the shipped
    list by default)."""
    sentences = load_sentences() if sentences is None else list(sentences)
    by_split = {s: [t for t in sentences if assign_split(t, 0.1, 0.1, salt="demo") == s]
                for s in ("train", "valid", "test")}
    rng = np.random.default_rng(seed)
    cursors = {}
    for split, texts in by_split.items():
        if not texts:
            raise DataError(f"the sentence list gives no {split} sentences")
        cursors[split] = itertools.cycle([texts[i] for i in rng.permutation(len(texts))])
    seen = [v for v in voices if not v.held_out]
    unseen = [v for v in voices if v.held_out]
    test_count = 0
    for number in itertools.count():
        split = _SPLIT_CYCLE[number % len(_SPLIT_CYCLE)]
        if split == "test" and unseen and test_count % 2 == 0:
            voice = unseen[rng.integers(len(unseen))]
        else:
            voice = seen[rng.integers(len(seen))]
        test_count += split == "test"
        rate = float(rng.integers(135, 196)) if voice.engine == "espeak-ng" else round(float(rng.uniform(0.85, 1.2)), 2)
        yield DemoItem(number, split, next(cursors[split]), voice, rate)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise SemlatError(f"{cmd[0]} failed (exit {proc.returncode}): {' '.join(proc.stderr.split())[:200]}")
    return proc.stdout


def synthesize(item: DemoItem, out_root: Path, sample_rate: int) -> Utterance:
    """Speak ``item`` into ``out_root / item.path`` at ``sample_rate`` (peak -3 dBFS)."""
    v = item.voice
    with tempfile.TemporaryDirectory(prefix="semlat-demo-") as tmp:
        raw = Path(tmp) / "raw.wav"
        if v.engine == "flite":
            _run(["flite", "-voice", v.voice, "--setf", f"duration_stretch={item.rate}",
                  "-t", item.text, "-o", str(raw)])
            phonemes = phonemize(item.text, "en-us")
        else:
            out = _run(["espeak-ng", "-v", v.voice, "-p", str(v.pitch), "-s", str(int(item.rate)),
                        "--ipa", "-w", str(raw), item.text])
            phonemes = " ".join(out.split())
        audio, _ = load_audio(raw, sample_rate)
    audio = peak_normalize(audio, -3.0)
    save_audio(out_root / item.path, audio, sample_rate)
    return Utterance(
        audio=item.path, duration=audio.shape[-1] / sample_rate, sample_rate=sample_rate,
        text=item.text, phonemes=phonemes, speaker=v.speaker, split=item.split,
        extra={"engine": v.engine, "rate": item.rate},
    )


def _synthesize_star(args: tuple) -> Utterance:
    return synthesize(*args)


def select_voices(names: Sequence[str] | None) -> tuple[DemoVoice, ...]:
    """The voices named, from :data:`DEMO_VOICES` and :data:`EXTRA_VOICES` (the demo voices for None); a
    one-line DataError for an unknown name."""
    if names is None:
        return DEMO_VOICES
    known = {v.speaker: v for v in (*DEMO_VOICES, *EXTRA_VOICES)}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise DataError(f"unknown demo voice {unknown[0]!r} (known: {', '.join(known)})" if unknown
                        else "no demo voice given")
    return tuple(known[n] for n in dict.fromkeys(names))


def make_demo_corpus(out: str | Path, minutes: float = 10.0, *, sample_rate: int = 22050, seed: int = 0,
                     workers: int | None = None, voices: Sequence[str] | None = None,
                     sentences: Sequence[str] | None = None, progress: bool = True) -> Manifest:
    """Synthesise at least ``minutes`` of speech into ``out`` and write ``out/manifest.jsonl``.

    Utterances are taken from :func:`plan` in order until their total duration reaches
    ``minutes``. ``voices`` (speaker names of :data:`DEMO_VOICES` or :data:`EXTRA_VOICES`) chooses the
    speakers; when none of them is held out, the test split is spoken by the training voices. ``sentences``
    replaces the shipped sentence list (each split needs at least one of them). The folder is built aside and
    swapped in when complete. An existing ``out`` is replaced only if it is empty or an earlier demo corpus.
    """
    if minutes <= 0:
        raise DataError(f"--minutes must be positive, got {minutes}")
    chosen = select_voices(voices)
    if all(v.held_out for v in chosen):
        raise DataError("the demo voices chosen are all held-out test voices: give a training voice too")
    check_tools()
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CONFIG_NAME).exists())):
        raise DataError(f"{out}: exists and is not a semlat demo corpus; choose a new or empty folder")
    workers = workers or default_workers()
    target = minutes * 60.0
    utterances: list[Utterance] = []
    total = 0.0
    items = plan(seed, chosen, sentences)
    bar = tqdm(total=round(target), desc="synthesising", unit="s", disable=not progress, dynamic_ncols=True)
    with atomic_dir(out) as tmp:
        while total < target:
            wave = [next(items) for _ in range(max(8, 4 * workers))]
            done = parallel_map(_synthesize_star, [(item, tmp, sample_rate) for item in wave],
                                workers=workers, threads=True, progress=False)
            for utt in done:
                if total >= target:
                    (tmp / utt.audio).unlink()  # synthesised past the cut: not part of the corpus
                    continue
                utterances.append(utt)
                total += utt.duration
                bar.update(min(round(total), round(target)) - bar.n)
        manifest = Manifest(utterances, tmp)
        manifest.write(tmp / "manifest.jsonl")
        config = {"minutes": minutes, "sample_rate": sample_rate, "seed": seed,
                  "sentences": "shipped" if sentences is None else f"{len(sentences)} given",
                  "utterances": len(utterances), "seconds": round(total, 3),
                  "tools": tool_versions(), "voices": [asdict(v) for v in chosen]}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    bar.close()
    return Manifest.read(out / "manifest.jsonl")
