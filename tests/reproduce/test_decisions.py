"""The rules behind the verdicts, one by one on hand-made runs: each branch of each decision, the cases that hold
and the cases that must not (the wording that quotes them is tested in test_reproduce.py)."""

from __future__ import annotations

import math

import pytest

from perp_engine.evaluation.recovery import MIN_DAMAGE
from perp_engine.reproduce import decisions
from perp_engine.reproduce.decisions import (
    FAILS,
    HOLDS,
    PARTLY,
    THRESHOLDS,
    claim1_measured,
    claim1_status,
    claim2_measured,
    claim2_status,
    claim3_measured,
    claim3_status,
    closes_gap,
    costs_a_fraction,
    gap_closed,
    gap_left,
    highest,
    matches_full,
    memory_efficient,
    merged_sparsities,
    ratio,
    same_sparsity,
    share_of_full,
    significant_gain,
    sparsity_kept,
    status,
    stays_unmerged,
    usable,
)
from perp_engine.reproduce.results import RunNumbers

DENSE, PRUNED = 10.0, 100.0  # one decade of damage: a run ending at 10 ** (2 - r) recovered r of it


def run(end: float | None = None, *, recovered: float | None = None, status: str = "done", mode: str = "retrain",
        sparsity: float = 0.5, measured: float | None = 0.5, unmerged: bool = False) -> RunNumbers:
    """A run that ends at perplexity ``end``, or at the one that recovers ``recovered`` of the damage."""
    final = 10 ** (2 - recovered) if recovered is not None else end
    return RunNumbers(key="magnitude 50% perp", claims=[1], preset="perp", method="magnitude", sparsity=sparsity,
                      pattern="unstructured", mode=mode, lr=None if mode == "none" else 1e-3, steps=10, status=status,
                      dense_ppl=DENSE, pruned_ppl=PRUNED, final_ppl=final, measured_sparsity=measured,
                      notes=["lora: kept unmerged: merging would make 2 layers dense"] if unmerged else [])


DIVERGED = run(None)  # done, but its repair blew up: no final perplexity
FAILED = run(20.0, status="failed")


def test_the_listed_thresholds_are_the_ones_the_rules_use():
    assert {name: value for name, (value, _) in THRESHOLDS.items()} == {
        name: getattr(decisions, name) for name in
        ("MATCH_SHARE", "COST_MEMORY", "COST_TIME", "CLOSE_SHARE", "SIGNIFICANT", "MEMORY_EFFICIENT")}


# -- shared ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("numbers, expected", [
    (run(20.0), True), (run(mode="none"), True),  # a prune-only run ends at its pruned perplexity
    (None, False), (FAILED, False), (DIVERGED, False), (run(math.inf), False), (run(math.nan), False)])
def test_usable(numbers, expected):
    assert usable(numbers) is expected


@pytest.mark.parametrize("a, b, expected", [(2.0, 4.0, 0.5), (0.0, 4.0, 0.0), (None, 4.0, None), (2.0, None, None),
                                            (2.0, 0, None)])
def test_ratio(a, b, expected):
    assert ratio(a, b) == expected


@pytest.mark.parametrize("values, expected", [([None, 1.0, 3.0, 2.0], 3.0), ([-1.0, None], -1.0), ([-1.0, 0.0], 0.0),
                                              ([None], None), ([], None)])
def test_highest(values, expected):
    assert highest(values) == expected


@pytest.mark.parametrize("all_ok, any_ok, expected", [(True, True, HOLDS), (True, False, HOLDS),
                                                      (False, True, PARTLY), (False, False, FAILS)])
def test_status(all_ok, any_ok, expected):
    assert status(all_ok, any_ok) == expected


# -- claim 1 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("perp, full, expected", [
    (run(20.0), run(15.0), True), (DIVERGED, run(15.0), True),  # a diverged perp is judged, as failing
    (None, run(15.0), False), (FAILED, run(15.0), False), (run(20.0), DIVERGED, False), (run(20.0), FAILED, False),
    (run(20.0), None, False)])
def test_claim1_measured(perp, full, expected):
    assert claim1_measured(perp, full) is expected


@pytest.mark.parametrize("numbers, full, expected", [
    (run(recovered=0.4), run(recovered=0.8), 0.5), (run(recovered=-0.2), run(recovered=0.8), -0.25),
    (run(recovered=0.4), run(recovered=0.0), None),  # full retraining recovered nothing: no share of it
    (run(recovered=0.4), run(recovered=-0.1), None), (DIVERGED, run(recovered=0.8), None)])
def test_share_of_full(numbers, full, expected):
    value = share_of_full(numbers, full)
    assert value == expected if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize("numbers, full, expected", [
    (run(recovered=0.8), run(recovered=1.0), True),  # exactly MATCH_SHARE of full retraining's recovery
    (run(recovered=0.9), run(recovered=1.0), True),
    (run(150.0), run(200.0), True),  # full retraining made it worse: no share, but a perplexity no higher
    (run(200.0), run(200.0), True),
    (run(recovered=0.79), run(recovered=1.0), False), (run(250.0), run(200.0), False),
    (DIVERGED, run(recovered=0.5), False), (FAILED, run(200.0), False)])
def test_matches_full(numbers, full, expected):
    assert matches_full(numbers, full) is expected


@pytest.mark.parametrize("memory, time, expected", [
    (0.8, 0.9, True), (0.1, 0.1, True), (0.81, 0.5, False), (0.5, 0.91, False), (None, 0.5, False),
    (0.5, None, False)])
def test_costs_a_fraction(memory, time, expected):
    assert costs_a_fraction(memory, time) is expected


EVERY1 = [0.3, 0.5, 0.6, 0.7]


@pytest.mark.parametrize("measured, matched, cheap, expected", [
    (EVERY1, EVERY1, True, HOLDS),
    (EVERY1, EVERY1, False, PARTLY),  # as good, not a fraction of the cost
    (EVERY1[:3], EVERY1[:3], True, PARTLY),  # a sparsity not measured
    (EVERY1, [0.3, 0.5], True, PARTLY),
    (EVERY1, [], True, FAILS), ([], [], True, FAILS)])
def test_claim1_status(measured, matched, cheap, expected):
    assert claim1_status(measured, matched, cheap) == expected


# -- claim 2 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("perp, full, expected", [
    (run(40.0), run(20.0), True), (DIVERGED, run(20.0), False), (run(40.0), FAILED, False), (None, run(20.0), False),
    (run(40.0), None, False)])
def test_claim2_measured(perp, full, expected):
    assert claim2_measured(perp, full) is expected


@pytest.mark.parametrize("perp, full, expected", [
    (run(40.0), run(20.0), math.log(2.0)),
    (run(20.1), run(20.0), None),  # perp within 1% of full retraining: no gap left
    (run(19.0), run(20.0), None), (DIVERGED, run(20.0), None), (run(40.0), FAILED, None)])
def test_gap_left(perp, full, expected):
    value = gap_left(perp, full)
    assert value == expected if expected is None else value == pytest.approx(expected)
    assert value is None or value >= MIN_DAMAGE


@pytest.mark.parametrize("end, perp, full, expected", [
    (40.0, 80.0, 20.0, 0.5), (20.0, 80.0, 20.0, 1.0), (10.0, 80.0, 20.0, 1.5), (160.0, 80.0, 20.0, -0.5),
    (19.0, 20.1, 20.0, None),  # no gap left
    (None, 80.0, 20.0, None), (40.0, None, 20.0, None), (40.0, 80.0, None, None)])
def test_gap_closed(end, perp, full, expected):
    value = gap_closed(run(end), run(perp), run(full))
    assert value == expected if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize("a, b, expected", [(0.5, 0.5, True), (0.5, 0.5 + 1e-10, True), (0.65, 0.7, False),
                                            (None, 0.5, False), (0.5, None, False)])
def test_same_sparsity(a, b, expected):
    assert same_sparsity(run(20.0, measured=a), run(20.0, measured=b)) is expected


@pytest.mark.parametrize("numbers, perp, full, expected", [
    (run(80.0 ** 0.4 * 20.0 ** 0.6), run(80.0), run(20.0), True),  # closes 60% of the gap
    (run(20.0), run(80.0), run(20.0), True), (run(15.0), run(80.0), run(20.0), True),
    (run(20.0), run(20.1), run(20.0), True),  # no gap left, and no higher than full retraining
    (run(80.0 ** 0.6 * 20.0 ** 0.4), run(80.0), run(20.0), False),  # closes 40%
    (run(20.05), run(20.1), run(20.0), False),  # no gap left, but above full retraining
    (run(20.0, measured=0.45), run(80.0), run(20.0), False),  # the merge changed the sparsity
    (run(20.0), run(80.0, measured=None), run(20.0), False),
    (DIVERGED, run(80.0), run(20.0), False), (run(20.0), run(80.0), FAILED, False)])
def test_closes_gap(numbers, perp, full, expected):
    assert closes_gap(numbers, perp, full) is expected


ADAPTERS = ("perp-masklora", "perp-scalelora", "perp-scalelora-paper")
EVERY2 = [0.6, 0.7]


@pytest.mark.parametrize("measured, closes, expected", [
    (EVERY2, (EVERY2, EVERY2, EVERY2), HOLDS),
    (EVERY2, (EVERY2, [], EVERY2), HOLDS),  # the paper's ScaleLoRA is enough
    (EVERY2, (EVERY2, EVERY2, []), HOLDS),
    (EVERY2, (EVERY2, [0.6], [0.7]), PARTLY),  # no ScaleLoRA closes it at every sparsity
    (EVERY2, ([0.6], EVERY2, EVERY2), PARTLY), (EVERY2, ([], EVERY2, EVERY2), PARTLY),
    ([0.6], ([0.6], [0.6], [0.6]), PARTLY),  # a sparsity not measured
    (EVERY2, ([], [], [0.7]), PARTLY), (EVERY2, ([], [], []), FAILS)])
def test_claim2_status(measured, closes, expected):
    assert claim2_status(measured, dict(zip(ADAPTERS, closes))) == expected


def test_merged_sparsities_by_the_sparsity_asked_for():
    runs = [run(sparsity=0.6, measured=0.6), run(sparsity=0.6, measured=0.6 + 1e-12), run(sparsity=0.7, measured=0.65),
            run(sparsity=0.7, measured=0.7), run(sparsity=0.7, measured=None)]
    assert merged_sparsities(runs) == {0.6: {0.6}, 0.7: {0.65, 0.7}}
    assert merged_sparsities([run(measured=None)]) == {}


@pytest.mark.parametrize("by_sparsity, expected", [
    ({0.6: {0.6}, 0.7: {0.7}}, True), ({}, True), ({0.6: {0.6}, 0.7: {0.65, 0.7}}, False)])
def test_sparsity_kept(by_sparsity, expected):
    assert sparsity_kept(by_sparsity) is expected


@pytest.mark.parametrize("flags, expected", [((True, True), True), ((True, False), False), ((False,), False),
                                             ((), True)])
def test_stays_unmerged(flags, expected):
    assert stays_unmerged([run(20.0, unmerged=f) for f in flags]) is expected


# -- claim 3 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pruned, finished, expected", [
    (run(mode="none"), [run(20.0)], True), (run(mode="none"), [], False),
    (run(mode="none", status="failed"), [run(20.0)], False), (None, [run(20.0)], False)])
def test_claim3_measured(pruned, finished, expected):
    assert claim3_measured(pruned, finished) is expected


@pytest.mark.parametrize("recovered, expected", [(0.25, True), (0.9, True), (0.2499, False), (-0.5, False),
                                                 (None, False)])
def test_significant_gain(recovered, expected):
    assert significant_gain(recovered) is expected


@pytest.mark.parametrize("peak, reference, expected", [(500.0, 1000.0, True), (100.0, 1000.0, True),
                                                       (501.0, 1000.0, False), (None, 1000.0, False)])
def test_memory_efficient(peak, reference, expected):
    assert memory_efficient(peak, reference) is expected


PRUNINGS = [("wanda", "unstructured"), ("wanda", "2:4"), ("sparsegpt", "unstructured"), ("sparsegpt", "2:4")]


@pytest.mark.parametrize("significant, efficient, expected", [
    (PRUNINGS, True, HOLDS), (PRUNINGS, False, PARTLY), (PRUNINGS[:3], True, PARTLY), (PRUNINGS[:1], False, PARTLY),
    ([], True, FAILS), ([], False, FAILS)])
def test_claim3_status(significant, efficient, expected):
    assert claim3_status(significant, efficient) == expected
