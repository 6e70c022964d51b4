"""One way to write a figure (semlat.utils.figures): percent, numbers, dB, intervals, by unit."""

import math

from semlat.utils.figures import decibels, figure, number, percent, percent_interval, with_interval


def test_each_kind_of_figure_with_its_unit():
    assert percent(0.1175) == "11.8 %" and percent(11.75) == "1175.0 %"  # a PER above 1 stays a percent
    assert number(0.69041) == "0.690" and number(2.5, 1) == "2.5"
    assert decibels(-25.04) == "-25.0 dB"
    for write in (percent, number, decibels):
        assert write(None) == "–" and write(math.nan) == "–" and write(None, missing="n/a") == "n/a"


def test_intervals_are_written_in_the_figures_unit_once():
    assert with_interval(0.428, (0.395, 0.462), percent) == "42.8 % [39.5, 46.2]"
    assert with_interval(0.69, [0.674, 0.706]) == "0.690 [0.674, 0.706]"
    assert with_interval(-25.0, (-26.1, -24.0), decibels) == "-25.0 dB [-26.1, -24.0]"
    assert with_interval(0.5, None, percent) == "50.0 %" and with_interval(0.5, (None, 0.6), percent) == "50.0 %"
    assert with_interval(None, (0.1, 0.2), percent) == "–"
    assert percent_interval(0.5, [0.4, 0.6]) == "50.0 % [40.0, 60.0]" and percent_interval(None, None, "n/a") == "n/a"


def test_figures_by_a_metrics_unit_name():
    assert figure(11.75, "fraction") == "1175.0 %"
    assert figure(0.8123, "cosine") == "0.812" and figure(3.1234, "MOS") == "3.12" and figure(-3.2, "dB") == "-3.20 dB"
    assert figure("ðə kæt", "fraction") == "ðə kæt" and figure(None) == "–" and figure(7) == "7.0000"
