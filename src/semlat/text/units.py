"""Text units shared by the judges and the text front-ends of TTS: phoneme symbols of espeak-ng IPA,
normalised transcripts and their characters, and the judges' unit tokens (:func:`tokenize`).

Text normalisation (:func:`normalize_text`): Unicode NFKC, lower case, curly apostrophes made straight,
every character that is not a letter, digit, apostrophe or whitespace becomes a space (so "well-known" is
two words), apostrophes not inside a word are dropped, whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["IPA_MODIFIERS", "JUDGE_UNITS", "STRESS_MARKS", "detokenize", "normalize_text", "split_chars",
           "split_phonemes", "tokenize"]

#: IPA primary / secondary stress and syllable marks, dropped from phoneme tokens.
STRESS_MARKS = frozenset("ˈˌ.")
#: Modifier letters that belong to the preceding symbol (length, aspiration, palatalisation, ...).
IPA_MODIFIERS = frozenset("ːˑʰʲʷˠˤ˞ⁿˡ̩̯̃")
_LANGUAGE_SWITCH = re.compile(r"\([a-z\-]+\)")


def split_phonemes(ipa: str) -> list[str]:
    """espeak-ng IPA -> phoneme symbols: one per base letter, with its modifiers attached.

    Stress marks (ˈ ˌ) and word boundaries are dropped; combining marks, length marks and
    modifier letters (``IPA_MODIFIERS``) join the preceding symbol, and a tie bar (U+0361) joins
    the two letters it ties (``t͡ʃ`` is one symbol). espeak's language-switch markers such as
    ``(fr)`` are removed. Diphthongs written as two letters (``aɪ``) are two symbols. Idempotent:
    ``split_phonemes(" ".join(split_phonemes(s))) == split_phonemes(s)``.
    """
    tokens: list[str] = []
    for word in _LANGUAGE_SWITCH.sub(" ", ipa).split():
        start = len(tokens)
        for ch in word:
            if ch in STRESS_MARKS:
                continue
            category = unicodedata.category(ch)
            attach = ch in IPA_MODIFIERS or category == "Mn"
            if len(tokens) > start and (attach or tokens[-1].endswith("\u0361")):
                tokens[-1] += ch
            elif category.startswith("L"):
                tokens.append(ch)
    return tokens


def normalize_text(text: str) -> str:
    """Normalise a transcript for WER / CER (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(ch if ch.isalnum() or ch == "'" or ch.isspace() else " " for ch in text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def split_chars(text: str) -> list[str]:
    """Characters of the normalised ``text``, a single ``" "`` between words."""
    return list(normalize_text(text))


#: what a recognizer transcribes: IPA phonemes or the characters of the text
JUDGE_UNITS = ("phonemes", "chars")


def tokenize(text: str, units: str) -> list[str]:
    """``text`` (IPA for phonemes, orthography for chars) -> unit tokens."""
    if units == "phonemes":
        return split_phonemes(text)
    if units == "chars":
        return split_chars(text)
    from semlat.errors import ConfigError

    raise ConfigError(f"units must be one of {', '.join(JUDGE_UNITS)}, got {units!r}")


def detokenize(tokens: list[str] | tuple[str, ...], units: str) -> str:
    """Tokens -> a string: phonemes space-separated, characters concatenated."""
    return " ".join(tokens) if units == "phonemes" else "".join(tokens).strip()
