"""Judges: CTC decoding and forced alignment, error rates, the offline CTC judge, and the Whisper /
WavLM-SV / resemblyzer judges (tiny random-weight models saved locally; nothing is downloaded)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from semlat.errors import ConfigError
from semlat.evaluation.ctc_judge import (
    CTCJudge,
    ctc_forced_align,
    greedy_decode,
    load_judge,
    min_frames,
)
from semlat.evaluation.judges import (
    ASRJudge,
    SpeakerJudge,
    WavLMSpeakerJudge,
    WhisperJudge,
    cer,
    edit_distance,
    load_asr_judge,
    load_speaker_judge,
    normalize_text,
    phoneme_error_rate,
    split_phonemes,
    wer,
)
from semlat.training.run import train_judge


def posteriorgram(frame_ids: list[int], vocab: int, sharp: float = 0.9) -> torch.Tensor:
    """``log_probs [T, V]``: each frame puts ``sharp`` on its id and the rest evenly on the others."""
    probs = torch.full((len(frame_ids), vocab), (1 - sharp) / (vocab - 1))
    probs[torch.arange(len(frame_ids)), torch.tensor(frame_ids)] = sharp
    return probs.log()


# --- decoding and alignment -----------------------------------------------------------------

def test_greedy_decode_collapses_repeats_and_blanks():
    assert greedy_decode(posteriorgram([0, 1, 1, 0, 1, 2, 2, 0, 0, 3], 4)) == [1, 1, 2, 3]
    assert greedy_decode(posteriorgram([0, 0, 0], 4)) == []


def test_forced_alignment_finds_the_known_segmentation():
    # blank blank a a a blank b b  -> a on frames 2..4, b on 6..7
    lp = posteriorgram([0, 0, 1, 1, 1, 0, 2, 2], 3)
    assert ctc_forced_align(lp, [1, 2]) == [(2, 5), (6, 8)]
    # a repeated label needs a blank between its two emissions
    lp = posteriorgram([1, 1, 0, 1], 3)
    assert ctc_forced_align(lp, [1, 1]) == [(0, 2), (3, 4)]
    # the targets decide the path even where the posteriors prefer another label
    lp = posteriorgram([2, 2, 2, 2], 3)
    spans = ctc_forced_align(lp, [1])
    assert len(spans) == 1 and spans[0][1] - spans[0][0] >= 1
    assert min_frames([1, 1, 2]) == 4
    with pytest.raises(ValueError, match="too short"):
        ctc_forced_align(posteriorgram([1, 1, 1], 3), [1, 1, 2])


# --- error rates ----------------------------------------------------------------------------

def test_error_rates_on_known_strings():
    assert edit_distance("kitten", "sitting") == 3
    assert wer("the cat sat", "the cat sat on") == pytest.approx(0.25)
    assert wer(["The Cat, sat!"], ["the cat sat"]) == 0.0
    assert normalize_text("It’s a well-known FACT.") == "it's a well known fact"
    # corpus level: (1 + 0) edits over (2 + 2) words
    assert wer(["a x", "c d"], ["a b", "c d"]) == pytest.approx(0.25)
    assert cer("abc", "abd") == pytest.approx(1 / 3)
    assert cer("a b", "ab") == pytest.approx(1 / 2)
    assert split_phonemes("tʃˈiːz (fr)ʒə(en) kˌæt") == ["t", "ʃ", "iː", "z", "ʒ", "ə", "k", "æ", "t"]
    assert split_phonemes("t͡ʃa") == ["t͡ʃ", "a"]
    assert split_phonemes(" ".join(split_phonemes("ðə kˈæt sˈæt"))) == split_phonemes("ðə kˈæt sˈæt")
    assert phoneme_error_rate("ð ə k æ t", "ðə kˈæt") == 0.0
    assert phoneme_error_rate([["k", "æ"]], ["kˈæt"]) == pytest.approx(1 / 3)
    empty = wer([""], [""])
    assert math.isnan(empty) and "no unit" in empty.reason
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])


# --- the offline CTC judge ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ctc_folder(tiny_ctc_judge):
    return tiny_ctc_judge


def test_train_judge_writes_a_loadable_folder(ctc_folder, demo_corpus):
    from semlat.audio.io import load_audio
    from semlat.data.manifest import Manifest

    info = json.loads((ctc_folder / "config.json").read_text(encoding="utf-8"))
    assert info["model_type"] == "ctc_judge" and info["units"] == "phonemes" and info["config"]["vocab"][0] == "<blank>"
    assert info["training"]["step"] == 3 and set(info["heldout"]) == {"valid", "test"}
    assert info["metric"] == "per" and all(0 <= f["per"] for f in info["heldout"].values() if f["per"] is not None)
    assert (ctc_folder / "model.safetensors").is_file()
    run = ctc_folder.parent.parent  # the training run stands for its latest checkpoint
    assert load_judge(run).vocab == load_judge(ctc_folder).vocab

    judge = load_asr_judge(f"ctc:{ctc_folder}")
    assert isinstance(judge, CTCJudge) and isinstance(judge, ASRJudge)
    assert judge.label.startswith("ctc-phonemes (offline, trained on ") and "whisper" not in judge.label.lower()
    manifest = Manifest.read(demo_corpus / "manifest.jsonl")
    index = next(i for i, u in enumerate(manifest) if u.split != "train" and u.phonemes)
    audio, sr = load_audio(manifest.audio_path(index))
    texts = judge.transcribe([audio[0], audio[0, : sr // 2].numpy()], sr)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert judge.transcribe(audio, sr)[0] == texts[0]  # batching does not change a result

    tokens = [t for t in judge.tokenize(manifest[index].phonemes) if t in judge.index]
    segments = judge.align(audio[0], sr, tokens)
    duration = audio.shape[-1] / sr
    assert [s[0] for s in segments] == tokens
    assert all(0 <= a < b <= duration + 1e-9 for _, a, b in segments)
    assert all(prev[2] <= nxt[1] for prev, nxt in itertools.pairwise(segments))
    tiled = judge.align(audio[0], sr, tokens, extend=True)
    assert [s[0] for s in tiled] == tokens and tiled[0][1] == segments[0][1]
    assert all(prev[2] == nxt[1] for prev, nxt in itertools.pairwise(tiled))
    with pytest.raises(ValueError, match="vocabulary"):
        judge.align(audio[0], sr, ["not-a-phoneme"])


def test_train_judge_on_characters(demo_corpus, tmp_path):
    folder = train_judge(demo_corpus / "manifest.jsonl", tmp_path / "chars", units="chars", steps=1,
                         config="judge/tiny", overrides=["model.channels=16"], progress=False)
    judge = load_judge(folder)
    assert judge.units == "chars" and " " in judge.vocab and judge.label.startswith("ctc-chars (offline")
    assert isinstance(judge.transcribe(np.zeros(16000, dtype=np.float32), 16000)[0], str)


def test_wrong_specs_are_one_line_errors(tmp_path):
    for spec, loader in (("kaldi:/x", load_asr_judge), ("whisper", load_asr_judge), ("ctc:", load_asr_judge),
                         ("ecapa:/x", load_speaker_judge), ("resemblyzer:/x", load_speaker_judge), (f"ctc:{tmp_path}", load_asr_judge),
                         (f"whisper:{tmp_path / 'missing'}", load_asr_judge),
                         (f"wavlm-sv:{tmp_path / 'missing'}", load_speaker_judge)):
        with pytest.raises(ConfigError) as caught:
            loader(spec)
        assert "\n" not in str(caught.value), spec


# --- Hugging Face judges (tiny random weights) ----------------------------------------------

def test_whisper_judge_transcribes_with_its_label(tiny_whisper):
    judge = load_asr_judge(f"whisper:{tiny_whisper}")
    assert isinstance(judge, WhisperJudge) and isinstance(judge, ASRJudge)
    judge.max_new_tokens = 4
    assert judge.label.startswith("whisper (tiny-whisper, transformers ") and judge.units == "text"
    rng = np.random.default_rng(0)
    texts = judge.transcribe([0.1 * rng.standard_normal(22050), torch.zeros(1, 11025)], 22050)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


@pytest.fixture(scope="module")
def tiny_wavlm_sv(tmp_path_factory):
    import transformers

    folder = tmp_path_factory.mktemp("wavlm-sv") / "tiny-wavlm-sv"
    torch.manual_seed(0)
    config = transformers.WavLMConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=16, max_bucket_distance=64,
        tdnn_dim=(16, 16, 16, 16, 32), xvector_output_dim=8)
    transformers.WavLMForXVector(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def test_wavlm_speaker_judge_embeds_and_compares(tiny_wavlm_sv):
    judge = load_speaker_judge(f"wavlm-sv:{tiny_wavlm_sv}")
    assert isinstance(judge, WavLMSpeakerJudge) and isinstance(judge, SpeakerJudge)
    assert judge.label.startswith("wavlm-sv (tiny-wavlm-sv")
    rng = np.random.default_rng(0)
    a = 0.1 * rng.standard_normal(16000)
    b = 0.1 * rng.standard_normal(16000)
    assert judge.embed(a, 16000).shape == (8,)
    assert judge.similarity(a, a, 16000) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= judge.similarity(a, b, 16000) <= 1.0
    silent = judge.similarity(np.zeros(16000), a, 16000)
    assert math.isnan(silent) and "silent" in silent.reason


def test_resemblyzer_judge_is_labelled_offline():
    pytest.importorskip("resemblyzer")
    judge = load_speaker_judge("resemblyzer")
    assert "resemblyzer (offline)" in judge.label
    t = np.arange(16000) / 16000
    voice = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    assert judge.embed(voice, 16000).shape == (256,)
    assert judge.similarity(voice, voice, 16000) == pytest.approx(1.0, abs=1e-5)


def test_cli_judge_train_prints_the_heldout_error(demo_corpus, tmp_path, capsys):
    from semlat.cli import main

    out = tmp_path / "cli-judge"
    assert main(["judge", "train", str(demo_corpus / "manifest.jsonl"), str(out), "--units", "chars",
                 "--steps", "1", "--config", "judge/tiny"]) == 0
    printed = capsys.readouterr().out
    assert "held-out valid CER" in printed and f"ctc:{out}" in printed
    assert load_judge(out).units == "chars"


def test_write_alignments_for_the_phoneme_probe(ctc_folder, demo_corpus, tmp_path):
    from semlat.evaluation.ctc_judge import write_alignments

    out = tmp_path / "alignments.jsonl"
    written, skipped = write_alignments(load_judge(ctc_folder), demo_corpus / "manifest.jsonl", out, split="valid",
                                        progress=False)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == len(rows) > 0 and isinstance(skipped, list)
    for row in rows:
        assert row["segments"] and all(0 <= a < b for _, a, b in row["segments"])
    from semlat.cli import main
    from semlat.evaluation.latent_eval import read_alignments

    assert len(read_alignments(out)) == written
    cli_out = tmp_path / "cli.jsonl"
    assert main(["judge", "align", str(ctc_folder), str(demo_corpus / "manifest.jsonl"), str(cli_out),
                 "--split", "valid"]) == 0
    assert cli_out.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    assert main(["judge", "align", str(tmp_path), str(demo_corpus / "manifest.jsonl"), str(cli_out)]) == 1


def test_judge_trains_through_semlat_train_and_resumes_exactly(demo_corpus, tmp_path):
    """The judge is an ordinary recipe: `semlat train judge/tiny`, then --resume, ends where a straight
    run ends (weights equal)."""
    from safetensors.torch import load_file

    from semlat.cli import main

    common = [f"data.train={demo_corpus / 'manifest.jsonl'}", "train.progress=false", "train.checkpoint_every=2"]
    assert main(["train", "judge/tiny", f"run_dir={tmp_path / 'straight'}", "train.max_steps=4", *common]) == 0
    assert main(["train", "judge/tiny", f"run_dir={tmp_path / 'split'}", "train.max_steps=2", *common]) == 0
    assert main(["train", "--resume", str(tmp_path / "split"), "train.max_steps=4"]) == 0
    a = load_file(str(tmp_path / "straight/checkpoints/step-00000004/model.safetensors"))
    b = load_file(str(tmp_path / "split/checkpoints/step-00000004/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_judge(tmp_path / "split").units == "phonemes"
