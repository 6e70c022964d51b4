"""The convergence experiment's pure parts: the test set, the NFE choice, convergence to a threshold, paired
differences with their intervals, the paper's ordering and the report."""

import pytest

from semlat.data.manifest import Manifest, Utterance
from semlat.evaluation.recon_eval import paired_ratio_difference, ratio_ci
from semlat.experiments.tts_convergence import cross_sentence_rows, differences, min_nfe, ordering, render, to_threshold


def test_min_nfe_is_the_smallest_within_ten_percent_of_the_largest():
    runs = [{"nfe": 32, "per": 0.20}, {"nfe": 4, "per": 0.40}, {"nfe": 8, "per": 0.219}, {"nfe": 16, "per": 0.18}]
    assert min_nfe(runs) == 8  # 0.219 <= 1.1 * 0.20; 0.40 is not
    assert min_nfe([{"nfe": 4, "per": 0.23}, {"nfe": 32, "per": 0.20}]) == 32
    assert min_nfe([{"nfe": 4, "sim": 0.5}, {"nfe": 32, "sim": 0.6}]) is None  # no error rate, no choice
    assert min_nfe([]) is None


def test_test_set_by_voices_one_row_per_sentence(tmp_path):
    def utt(name, speaker, split, text):
        return Utterance(audio=f"{name}.wav", duration=1.0, sample_rate=16000, text=text, phonemes="a", speaker=speaker, split=split)

    manifest = Manifest([utt("t1", "seen", "train", "x"), utt("a", "seen", "test", "one"),
                         utt("b", "seen", "test", "two"), utt("c", "seen", "test", "one"),
                         utt("d", "new", "test", "three"), utt("e", "new", "test", "four")], tmp_path)
    seen = cross_sentence_rows(manifest, voices="seen", per_sentence=True)
    assert [r["id"] for r in seen] == ["a.wav", "b.wav"]  # "one" counted once; the new voice left out
    assert seen[0]["prompt"].endswith("b.wav") and all(r["cross"] for r in seen)
    assert [r["id"] for r in cross_sentence_rows(manifest, voices="unseen")] == ["d.wav", "e.wav"]
    assert len(cross_sentence_rows(manifest)) == 5
    with pytest.raises(Exception, match="voices must be one of"):
        cross_sentence_rows(manifest, voices="some")


def test_corpus_rate_intervals_and_paired_differences():
    rate, low, high = ratio_ci([1, 2, 3, 0, 5], [10, 10, 10, 10, 10])
    assert rate == pytest.approx(0.22) and low < rate < high
    assert ratio_ci([1, 2], [10, 10]) == ratio_ci([1, 2], [10, 10])  # seeded
    # b is a plus exactly 2 edits on every item: the paired interval is a point, unpaired ones would overlap
    a = [(e, 20) for e in (2, 9, 4, 15, 7, 1, 12, 6)]
    b = [(e + 2, 20) for e, _ in a]
    diff, d_low, d_high = paired_ratio_difference(a, b)
    assert diff == pytest.approx(-0.1) and d_low == pytest.approx(-0.1) and d_high == pytest.approx(-0.1)
    _, a_low, a_high = ratio_ci(*zip(*a, strict=True))
    _, b_low, b_high = ratio_ci(*zip(*b, strict=True))
    assert b_low < a_high  # the separate intervals overlap; the paired one resolves the 10 points
    with pytest.raises(ValueError):
        paired_ratio_difference(a, b[:3])


def _result():
    points = []
    for space, pers in {"semantic": [0.6, 0.4], "mel": [0.7, 0.5], "vanilla": [0.9, 0.8]}.items():
        for step, per in zip((500, 1000), pers, strict=True):
            points.append({"space": space, "step": step, "train_minutes": step / 100, "per": per,
                           "per_ci": [per - 0.05, per + 0.05], "sim": 0.6})
    counts = {name: {f"s{i}": (round(p * 20) + (i % 3), 20) for i in range(30)}
              for name, p in {"semantic": 0.4, "mel": 0.5, "vanilla": 0.8}.items()}
    result = {
        "settings": {"test_utterances": 30, "nfe": 16, "cfg": 2.0, "seed": 0, "self_prompted": 1, "voices": "seen",
                     "threshold": 0.5},
        "judges": {"asr": "offline CTC judge"}, "ground_truth": {"per": 0.1, "per_ci": [0.08, 0.12], "sim": 0.9},
        "spaces": {name: {"latent_dim": 80, "frame_rate": 86.13, "steps_per_second": 3.0, "config": "tts/tiny_mel",
                          "overrides": ["conditioning=durations"]} for name in ("semantic", "mel", "vanilla")},
        "points": points,
        "nfe_sweep": {"mel": [{"nfe": 4, "per": 0.9}, {"nfe": 32, "per": 0.5, "generation_seconds_per_utterance": 1.5}]},
        "min_nfe": {"mel": 32},
    }
    result["to_threshold"] = {name: to_threshold(points, name, "per", 0.5) for name in result["spaces"]}
    result["differences"] = differences(counts)
    result["ordering"] = ordering(result, "per")
    return result


def test_threshold_differences_and_the_papers_ordering():
    result = _result()
    assert result["to_threshold"] == {"semantic": {"step": 1000, "train_minutes": 10.0},
                                      "mel": {"step": 1000, "train_minutes": 10.0}, "vanilla": None}
    by_pair = {(d["a"], d["b"]): d for d in result["differences"]}
    assert by_pair[("semantic", "vanilla")]["resolved"] and by_pair[("semantic", "vanilla")]["difference"] < 0
    assert result["ordering"].startswith("not reproduced")  # semantic and mel reach 50 % at the same minute
    assert "semantic < mel: yes" in result["ordering"] and "mel < vanilla: yes" in result["ordering"]
    result["points"] = [p for p in result["points"] if p["space"] != "mel"]
    assert "needs the semantic, mel and vanilla arms" in ordering(result, "per")


def test_render_reports_points_intervals_and_the_sweep():
    result = _result()
    result["bf16"] = {"mel": {"per": 0.51, "per_ci": [0.46, 0.56], "sim": 0.61}}
    text = render(result)
    assert "| mel | 50.0 % | 51.0 % [46.0, 56.0] | 0.600 | 0.610 |" in text  # bf16 beside the final fp32 point
    assert ("| mel | `tts/tiny_mel conditioning=durations` | 80 × 86.13 Hz | – | 3.00 | 1000 | 10.0 | "
            "50.0 % [45.0, 55.0] | 0.600 |") in text
    assert "| mel | **32** | 50.0 % | – | 1.500 |" in text and "| mel | 4 | 90.0 % |" in text
    assert "1 target(s) prompted by themselves" in text and "- vanilla: not reached" in text
    assert "| semantic | vanilla | 30 |" in text and "The Semantic-VAE paper's ordering: not reproduced" in text
