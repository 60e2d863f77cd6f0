"""perp_engine.evaluation.recovery: the share of the pruning gap a repair closed, on the log scale the tables report
and on the linear one shown beside it, and the words that say which is which."""

import math

import pytest

from perp_engine.evaluation.recovery import recovered_linear_share, recovered_share, recovery_text

DENSE, PRUNED, FINAL = 30.93, 505.66, 174.72  # the run: 38% on the log scale, 70% on the linear one


def test_the_two_scales_of_one_run():
    assert recovered_share(DENSE, PRUNED, FINAL) == pytest.approx(
        (math.log(PRUNED) - math.log(FINAL)) / (math.log(PRUNED) - math.log(DENSE)))
    assert round(recovered_share(DENSE, PRUNED, FINAL), 2) == 0.38
    assert recovered_linear_share(DENSE, PRUNED, FINAL) == pytest.approx((PRUNED - FINAL) / (PRUNED - DENSE))
    assert round(recovered_linear_share(DENSE, PRUNED, FINAL), 2) == 0.70


def test_the_words_name_each_scale():
    assert recovery_text(DENSE, PRUNED, FINAL) == "recovered 38% of the log-ppl gap (70% of the linear ppl gap)"


@pytest.mark.parametrize("dense, pruned, final", [
    (10.0, 10.05, 10.0),  # pruning cost under 1%: nothing meaningful to recover
    (10.0, 20.0, None),  # not repaired
    (10.0, float("inf"), 12.0),
    (0.0, 20.0, 12.0),
])
def test_no_share_without_a_gap_or_a_number(dense, pruned, final):
    assert recovered_share(dense, pruned, final) is None
    assert recovered_linear_share(dense, pruned, final) is None
    assert recovery_text(dense, pruned, final) is None


@pytest.mark.parametrize("final, expected", [(10.0, 1.0), (20.0, 0.0)])
def test_back_to_dense_is_everything_and_no_better_is_nothing(final, expected):
    assert recovered_share(10.0, 20.0, final) == pytest.approx(expected)
    assert recovered_linear_share(10.0, 20.0, final) == pytest.approx(expected)
