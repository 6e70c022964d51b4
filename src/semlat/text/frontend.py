"""Text front-ends of the TTS models: characters with F5-TTS's vocab files, or espeak-ng phonemes.

**Vocab file** (F5-TTS's format): UTF-8, one token per line, the id is the 0-based line number (CRLF files
read the same); line 0 is a single space, so ``" "`` is id 0, and tokens missing from the vocabulary also
map to 0. A batch of token ids is right-padded with ``-1`` (the backbones shift ids by one, so the pad
becomes their filler 0).

**Characters** (:func:`char_tokens`): F5's text preparation without the Chinese branch: ``;`` becomes ``,``
and curly quotes straight ones; the text is cut into runs of ``[A-Za-z0-9+#&._%-]``, single whitespace
characters and single other characters (what jieba does to text without CJK); each run is emitted
character by character, preceded by a ``" "`` when something was emitted already, the run is longer than
one character and the last token is not a space, ``:``, ``'`` or ``"``. Text with Chinese characters
(U+3100-U+9FFF) takes F5's pinyin branch (:func:`pinyin_tokens`, the optional ``zh`` extra: rjieba and
pypinyin): jieba's words; a word of only CJK characters becomes its tone-numbered pinyin syllables (TONE3,
tone sandhi on, each after a ``" "``), a mixed word is converted character by character.

**Phonemes** (:func:`phoneme_tokens`): espeak-ng's IPA split into symbols (:func:`~semlat.text.units.split_phonemes`)
with ``" "`` between words; the vocabulary is built from the training data (:meth:`Vocab.build`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from semlat.errors import ConfigError, DataError, ToolMissingError
from semlat.text.espeak import phonemize
from semlat.text.units import split_phonemes

UNITS = ("chars", "phonemes")
_RUN = re.compile(r"[A-Za-z0-9+#&._%\-]+|\s|.", re.DOTALL)
_NO_SPACE_AFTER = {" ", ":", "'", '"'}
_TRANSLATE = str.maketrans({";": ",", "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def _is_chinese(c: str) -> bool:
    return "\u3100" <= c <= "\u9fff"


def char_tokens(text: str) -> list[str]:
    """F5-TTS's character tokens of ``text`` (see the module docstring)."""
    text = text.translate(_TRANSLATE)
    if any(_is_chinese(c) for c in text):
        return pinyin_tokens(text)
    tokens: list[str] = []
    for run in _RUN.findall(text):
        if len(run) > 1 and tokens and tokens[-1] not in _NO_SPACE_AFTER:
            tokens.append(" ")
        tokens.extend(run)
    return tokens


def pinyin_tokens(text: str) -> list[str]:
    """F5-TTS's tokens of text with Chinese characters (module docstring); needs rjieba and pypinyin."""
    try:
        import rjieba
        from pypinyin import Style, lazy_pinyin
    except ImportError:
        raise ToolMissingError("Chinese text needs rjieba and pypinyin: pip install 'semlat[zh]'") from None

    def syllables(chars: str) -> list[str]:
        return lazy_pinyin(chars, style=Style.TONE3, tone_sandhi=True)

    tokens: list[str] = []
    for word in rjieba.cut(text.translate(_TRANSLATE)):
        size = len(word.encode("utf-8"))
        if size == len(word):  # letters, digits and symbols only
            if tokens and size > 1 and tokens[-1] not in _NO_SPACE_AFTER:
                tokens.append(" ")
            tokens.extend(word)
        elif size == 3 * len(word):  # CJK only: the word's pinyin (polyphones resolved in context)
            for c, syllable in zip(word, syllables(word), strict=True):
                if _is_chinese(c):
                    tokens.append(" ")
                tokens.append(syllable)
        else:  # mixed: character by character
            for c in word:
                if ord(c) < 256:
                    tokens.append(c)
                elif _is_chinese(c):
                    tokens += [" ", *syllables(c)]
                else:
                    tokens.append(c)
    return tokens


def phoneme_tokens(text: str, language: str = "en-us") -> list[str]:
    """espeak-ng IPA symbols of ``text`` with ``" "`` between words; a one-line error without espeak-ng."""
    return ipa_tokens(phonemize(text, language, needed_for="phoneme inputs (or use chars)"))


def ipa_tokens(ipa: str) -> list[str]:
    """IPA (as the demo corpus's ``phonemes`` field holds it) -> symbols with ``" "`` between words."""
    tokens: list[str] = []
    for word in ipa.split():
        symbols = split_phonemes(word)
        if symbols:
            if tokens:
                tokens.append(" ")
            tokens.extend(symbols)
    return tokens


class Vocab:
    """Tokens <-> ids (see the module docstring)."""

    def __init__(self, tokens: Sequence[str]):
        if not tokens or tokens[0] != " ":
            raise ConfigError("a vocabulary's first token (id 0) must be a single space")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Vocab:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such vocab file")
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: a vocab file must be UTF-8") from None
        if lines and lines[-1] == "":
            lines.pop()
        tokens = [line.removesuffix("\r") for line in lines]
        if not tokens or tokens[0] != " ":
            raise ConfigError(f"{path}: line 1 must be a single space (id 0), as F5-TTS's vocab files have")
        return cls(tokens)

    def write(self, path: str | os.PathLike) -> Path:
        from semlat.utils.files import atomic_write_text

        atomic_write_text(path, "".join(t + "\n" for t in self.tokens))
        return Path(path)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]]) -> Vocab:
        """Every token of ``token_lists``, sorted, after the space."""
        found = sorted({t for tokens in token_lists for t in tokens} - {" "})
        return cls([" ", *found])

    def ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(t, 0) for t in tokens]

    def known(self, tokens: Sequence[str]) -> int:
        """How many of ``tokens`` are in the vocabulary (the space counts)."""
        return sum(t in self.index for t in tokens)


class TextFrontEnd:
    """Texts -> ``[B, Nt]`` ids (``-1`` padded) with ``units`` ``chars`` or ``phonemes`` and a :class:`Vocab`.

    Empty text, or text with no token of the vocabulary (apart from spaces), is a one-line DataError."""

    def __init__(self, vocab: Vocab, units: str = "chars", language: str = "en-us"):
        if units not in UNITS:
            raise ConfigError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
        self.vocab, self.units, self.language = vocab, units, language

    def tokens(self, text: str) -> list[str]:
        if not text or not text.strip():
            raise DataError("the text is empty")
        return char_tokens(text) if self.units == "chars" else phoneme_tokens(text, self.language)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            tokens = self.tokens(text)
            if not any(t in self.vocab.index for t in tokens if t != " "):
                raise DataError(f"no token of {text[:40]!r} is in the model's vocabulary ({self.units})")
            rows.append(self.vocab.ids(tokens))
        width = max(len(r) for r in rows)
        return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)
