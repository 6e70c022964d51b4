"""``semlat data prepare --corpus NAME ROOT OUT``: the papers' corpora, each in its released layout.

Speech corpora go through Lhotse's recipes (:mod:`semlat.data.corpora.speech`: LibriTTS, LibriTTS-R,
LibriSpeech, LJSpeech, VCTK, HiFiTTS, Emilia, WenetSpeech4TTS), except Emilia's WebDataset release
(``emilia_wds``: tar archives, read and unpacked here beside the manifest); LibriSpeech-PC's punctuated transcripts and the
audio-caption and sound-event corpora, which Lhotse has no recipe for, are read here
(:mod:`semlat.data.corpora.transcripts`, :mod:`semlat.data.corpora.captions`: AudioCaps, Clotho, WavCaps,
ESC-50, AudioSet-style label CSVs). Every preparer returns :class:`Gathered` (the files to keep, with their
text, caption or label, speaker and split, and the files it had to leave out, each with its reason);
:func:`prepare_corpus` then probes and writes them with ``data prepare``'s own writer, so a corpus manifest
is the same JSON Lines manifest as any other, with ``<name>.rejects.tsv`` listing every audio file left out
(a missing transcript is counted and reported there, never dropped silently) and ``<name>.config.json``.

A root in the wrong layout is a one-line :class:`~semlat.errors.DataError` that names the file or folder
that is missing; nothing is written then.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from semlat.data.corpora.base import Corpus, Gathered
from semlat.data.corpora.captions import CAPTION_CORPORA
from semlat.data.corpora.speech import SPEECH_CORPORA
from semlat.data.corpora.transcripts import TRANSCRIPT_CORPORA
from semlat.data.manifest import Manifest
from semlat.data.prepare import PrepareOptions, write_candidates
from semlat.errors import DataError

__all__ = ["Corpus", "Gathered", "corpora", "prepare_corpus"]


def corpora() -> dict[str, Corpus]:
    """Every corpus ``--corpus`` accepts, by name."""
    table = {}
    for group in (SPEECH_CORPORA, TRANSCRIPT_CORPORA, CAPTION_CORPORA):
        for corpus in group:
            table[corpus.name] = corpus
    return table


def prepare_corpus(name: str, root: str | os.PathLike, opts: PrepareOptions,
                   **options) -> tuple[Manifest, list[tuple[str, str]]]:
    """Prepare corpus ``name`` found at ``root`` into ``opts.manifest``; returns the manifest and its rejects.

    ``options`` are the corpus's own (``language`` for Emilia, ``parts`` for the multi-part corpora,
    ``test_fold`` for ESC-50, ``mic`` for VCTK); an option the corpus does not take is an error.
    """
    table = corpora()
    if name not in table:
        raise DataError(f"unknown corpus {name!r}; known: {', '.join(sorted(table))}")
    corpus = table[name]
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (the root of {name})")
    given = {k: v for k, v in options.items() if v is not None}
    if not corpus.archived:
        return _write(name, root, corpus.gather(root, given), opts, options)
    manifest = Path(opts.manifest)
    extract_to = manifest.with_name(f"{manifest.stem}.audio")
    if extract_to.exists():
        raise DataError(f"{extract_to}: exists (the unpacked audio of an earlier run); remove it or choose another OUT")
    try:
        return _write(name, root, corpus.gather(root, given, extract_to), opts, options)
    except BaseException:
        shutil.rmtree(extract_to, ignore_errors=True)  # nothing half-done stays behind
        raise


def _write(name: str, root: Path, gathered: Gathered, opts: PrepareOptions,
           options: dict) -> tuple[Manifest, list[tuple[str, str]]]:
    if not gathered.candidates:
        first = f"; first left out: {gathered.rejects[0][0]}: {gathered.rejects[0][1]}" if gathered.rejects else ""
        raise DataError(f"{root}: no usable {name} files found{first}")
    return write_candidates(gathered.candidates, opts, gathered.rejects,
                            extra_config={"corpus": name, "root": str(root.resolve()), "corpus_options": options})
