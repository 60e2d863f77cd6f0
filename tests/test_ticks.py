"""The one tick rule of every log axis (perp_engine.ticks): 1-2-5 values labelled with k and M, never a digit alone."""

from __future__ import annotations

import pytest

from perp_engine.ticks import log_axis, log_ticks, tick_label


@pytest.mark.parametrize("value, text", [(0.001, "0.001"), (0.5, "0.5"), (20, "20"), (500, "500"), (1000, "1k"),
                                         (1500, "1.5k"), (20000, "20k"), (2e6, "2M"), (1e-5, "1e-5"),
                                         (2e-4, "2e-4"), (5e9, "5e9")])
def test_tick_labels(value, text):
    assert tick_label(value) == text


@pytest.mark.parametrize("low, high, expected", [
    (18, 600, [20, 50, 100, 200, 500]),
    (0.04, 0.7, [0.05, 0.1, 0.2, 0.5]),
    (0.001, 20, [0.001, 0.01, 0.1, 1, 10]),  # 1-2-5 would be 14 ticks: decades only
    (1e-9, 1, [1e-8, 1e-6, 1e-4, 0.01, 1]),  # too many decades: every other one
    (22, 65, [30, 50]),  # fewer than three 1-2-5 values: the finer 1-1.5-2-3-5-7 steps
])
def test_log_ticks_are_decades_and_readable_values(low, high, expected):
    assert log_ticks(low, high) == pytest.approx(expected)


def test_a_log_axis_over_thousands_reads_at_1_2_5_with_k():
    """The Paper figures' axis over 700-30,000 read "5, 2, 10k, 5, 2, 1000" (Plotly's minor digits)."""
    axis = log_axis(700, 30000, pad=0.06)
    assert axis["ticktext"] == ["1k", "2k", "5k", "10k", "20k"]
    assert axis["range"][0] < 2.84 and axis["range"][1] > 4.47  # the values inside, with room
    assert all(text[0] in "125" for text in axis["ticktext"])
