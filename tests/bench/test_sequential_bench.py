"""The layer / block perplexity report over calibration draws (bench/sequential_bench.py)."""

import math
import sys

import pytest


@pytest.fixture
def bench(bench_module):
    return bench_module("sequential_bench")


def test_goal_reads_the_geometric_mean_of_each_draws_ratio(bench):
    ratios = {("wanda", "2:4"): [1.10, 0.95, 0.90]}  # worse once, better twice
    rows = []
    for method in bench.METHODS:
        for pattern in bench.PATTERNS:
            for draw, ratio in enumerate(ratios.get((method, pattern), [1.0, 1.0, 1.0])):
                rows += [{"method": method, "pattern": pattern, "draw": draw, "sequential": "block", "ppl": 100.0},
                         {"method": method, "pattern": pattern, "draw": draw, "sequential": "layer",
                          "ppl": 100.0 * ratio}]
    text, payload = bench.report(rows, 3)
    wanda_nm = next(s for s in payload["summary"] if (s["method"], s["pattern"]) == ("wanda", "2:4"))
    assert wanda_nm["geometric_mean"] == pytest.approx(math.exp((math.log(1.1) + math.log(0.95) + math.log(0.9)) / 3))
    assert wanda_nm["draws_layer_better"] == 2
    goal = next(g for g in payload["goals"] if g["line"].startswith("- wanda 2:4"))
    assert goal["met"] is (wanda_nm["geometric_mean"] <= 1.0)
    assert "| wanda | 2:4 | 0 | 100.00 | 110.00 | +10.0% |" in text


@pytest.mark.parametrize("draws", ["0", "-1", "two"])
def test_a_draw_count_below_one_or_not_a_number_is_refused_in_one_line(bench, monkeypatch, capsys, draws):
    monkeypatch.setattr(sys, "argv", ["sequential_bench.py", "--draws", draws])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    assert f"argument --draws: {draws!r} is not allowed; use an integer >= 1" in capsys.readouterr().err
