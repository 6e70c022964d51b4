"""The convergence experiment's pure parts: the NFE choice and the report."""

from semlat.experiments.tts_convergence import min_nfe, render


def test_min_nfe_is_the_smallest_within_ten_percent_of_the_largest():
    runs = [{"nfe": 32, "per": 0.20}, {"nfe": 4, "per": 0.40}, {"nfe": 8, "per": 0.219}, {"nfe": 16, "per": 0.18}]
    assert min_nfe(runs) == 8  # 0.219 <= 1.1 * 0.20; 0.40 is not
    assert min_nfe([{"nfe": 4, "per": 0.23}, {"nfe": 32, "per": 0.20}]) == 32
    assert min_nfe([{"nfe": 4, "sim": 0.5}, {"nfe": 32, "sim": 0.6}]) is None  # no error rate, no choice
    assert min_nfe([]) is None


def test_render_reports_points_and_the_sweep():
    result = {
        "settings": {"test_utterances": 3, "nfe": 16, "cfg": 2.0, "seed": 0, "self_prompted": 1},
        "judges": {"asr": "offline CTC judge"}, "ground_truth": {"per": 0.1, "sim": 0.9},
        "spaces": {"mel": {"latent_dim": 80, "frame_rate": 86.13, "steps_per_second": 3.0}},
        "points": [{"space": "mel", "step": 10, "train_minutes": 0.5, "per": 0.5, "sim": 0.7}],
        "nfe_sweep": {"mel": [{"nfe": 4, "per": 0.9}, {"nfe": 32, "per": 0.5, "generation_seconds_per_utterance": 1.5}]},
        "min_nfe": {"mel": 32},
    }
    text = render(result)
    assert "| mel | 80 × 86.13 Hz | 3.00 | 10 | 0.5 | 50.0 % | 0.700 |" in text
    assert "| mel | **32** | 50.0 % | – | 1.500 |" in text and "| mel | 4 | 90.0 % |" in text
    assert "1 target(s) prompted by themselves" in text
