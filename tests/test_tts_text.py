"""TTS text front-ends: F5-TTS's vocab format and character rules (against the tokenizer fixture's
examples without Chinese), padding, phonemes through espeak-ng, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import fixture_file
from semlat.errors import ConfigError, DataError
from semlat.text.frontend import TextFrontEnd, Vocab, char_tokens, ipa_tokens, phoneme_tokens


def _has_cjk(text: str) -> bool:
    return any(0x3100 <= ord(c) <= 0x9FFF for c in text)


@pytest.fixture(scope="module")
def examples(fixtures):
    return json.loads(fixture_file(fixtures, "f5_tts/tokenizer_examples.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def vocab_file(examples, tmp_path_factory):
    """A vocab file with every (token, id) pair the fixture reveals at its id (other lines are fillers)."""
    pairs = {t: i for t, i in examples["token_to_id_probe"].items() if i is not None}
    for example in examples["examples"]:
        pairs.update(zip(example["pinyin_tokens"], example["ids"], strict=True))
    pairs = {t: i for t, i in pairs.items() if i != 0 or t == " "}
    lines = [f"<filler {i}>" for i in range(examples["vocab_size"])]
    for token, index in pairs.items():
        lines[index] = token
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")  # the repo's copy is CRLF
    return path


def test_char_tokens_follow_f5_rules(examples):
    assert any(_has_cjk(e["text"]) for e in examples["examples"])  # Chinese: F5's pinyin branch too
    for example in examples["examples"]:
        assert char_tokens(example["text"]) == example["pinyin_tokens"], example["text"]
    assert char_tokens("hi,there") == ["h", "i", ",", " ", "t", "h", "e", "r", "e"]  # a space after ','
    assert char_tokens('say: "ok"') == ["s", "a", "y", ":", " ", '"', "o", "k", '"']


def test_vocab_ids_and_padding(examples, vocab_file):
    vocab = Vocab.read(vocab_file)
    assert len(vocab) == examples["vocab_size"] and vocab.index[" "] == 0
    for token, index in examples["token_to_id_probe"].items():
        assert vocab.ids([token]) == [0 if index is None else index]  # unknown tokens are 0, like the space
    front = TextFrontEnd(vocab)
    texts = [e["text"] for e in examples["examples"]]
    ids = front.encode(texts)
    for row, example in zip(ids, examples["examples"]):
        n = len(example["ids"])
        assert row[:n].tolist() == example["ids"] and bool((row[n:] == -1).all())
    english = examples["batch_padding_example"]["ids"][1]
    assert front.encode([examples["batch_padding_example"]["texts"][1]])[0].tolist() == [i for i in english if i != -1]


def test_phonemes_through_espeak(synth_tools):
    tokens = phoneme_tokens("Hello world")
    assert " " in tokens and tokens[0] == "h" and "ɜː" in tokens
    assert ipa_tokens("həlˈoʊ wˈɜːld") == ["h", "ə", "l", "o", "ʊ", " ", "w", "ɜː", "l", "d"]
    vocab = Vocab.build([tokens])
    ids = TextFrontEnd(vocab, "phonemes").encode(["Hello world", "world"])
    assert ids.shape[0] == 2 and int(ids[1, -1]) == -1 and bool((ids[0] >= 0).all())


def test_chinese_without_the_zh_extra_is_a_one_line_error(monkeypatch):
    import sys

    from semlat.errors import ToolMissingError

    monkeypatch.setitem(sys.modules, "rjieba", None)  # as if not installed
    with pytest.raises(ToolMissingError, match=r"semlat\[zh\]"):
        char_tokens("你好")
    assert char_tokens("hi there") == ["h", "i", " ", "t", "h", "e", "r", "e"]  # English needs neither


def test_bad_text_and_vocab_are_one_line_errors(tmp_path):
    vocab = Vocab([" ", "a", "b"])
    front = TextFrontEnd(vocab)
    with pytest.raises(DataError, match="text is empty"):
        front.encode(["  "])
    with pytest.raises(DataError, match="no token of 'xyz'"):
        front.encode(["xyz"])
    assert front.encode(["ab x"]).tolist() == [[1, 2, 0, 0]]
    (tmp_path / "v.txt").write_text("a\nb\n")
    with pytest.raises(ConfigError, match="line 1 must be a single space"):
        Vocab.read(tmp_path / "v.txt")
    with pytest.raises(ConfigError, match="units must be"):
        TextFrontEnd(vocab, "bytes")
    assert torch.equal(TextFrontEnd(Vocab.read(vocab.write(tmp_path / "w.txt"))).encode(["ab"]), torch.tensor([[1, 2]]))
