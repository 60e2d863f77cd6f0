"""The rules behind the verdicts, one by one on hand-made runs: each branch of each decision, the cases that hold
and the cases that must not (the wording that quotes them is tested in test_reproduce.py)."""

from __future__ import annotations

import math

import pytest

from perp_engine.evaluation.recovery import MIN_DAMAGE
from perp_engine.reproduce import decisions
from perp_engine.reproduce.decisions import (
    CLOSE_SHARE,
    CONVERGED,
    COST_MEMORY,
    COST_TIME,
    FAILS,
    GAP_MARGIN,
    HOLDS,
    MATCH_SHARE,
    MEMORY_EFFICIENT,
    PARTLY,
    RULES,
    SIGNIFICANT,
    THRESHOLDS,
    UNDECIDED,
    UNMEASURED,
    VERDICTS,
    best_run,
    claim1_status,
    claim2_status,
    claim3_status,
    closes_gap,
    converged,
    costs_a_fraction,
    damaged,
    gap,
    gap_closed,
    highest,
    kept_sparsity,
    last_change,
    log_change,
    matches_full,
    memory_efficient,
    ratio,
    share_of_full,
    significant_gain,
    status,
    stays_unmerged,
    usable,
)
from perp_engine.reproduce.results import RunNumbers

DENSE, PRUNED = 10.0, 100.0  # one decade of damage: a run ending at 10 ** (2 - r) recovered r of it


def run(end: float | None = None, *, recovered: float | None = None, status: str = "done", mode: str = "retrain",
        dense: float | None = DENSE, pruned: float | None = PRUNED, pruned_sparsity: float | None = 0.5,
        final_sparsity: float | None = 0.5, curve: list[float] | None = None, unmerged: bool = False,
        lr: float = 1e-3) -> RunNumbers:
    """A run that ends at perplexity ``end``, or at the one that recovers ``recovered`` of the damage; ``curve``:
    the perplexities of its learning curve, every 20 steps from step 0."""
    final = 10 ** (2 - recovered) if recovered is not None else end
    return RunNumbers(key="magnitude 50% perp", claims=[1], preset="perp", method="magnitude", sparsity=0.5,
                      pattern="unstructured", mode=mode, lr=None if mode == "none" else lr, steps=100, status=status,
                      dense_ppl=dense, pruned_ppl=pruned, final_ppl=None if mode == "none" else final,
                      pruned_sparsity=pruned_sparsity, final_sparsity=None if mode == "none" else final_sparsity,
                      curve=[{"step": 20 * i, "seconds": 2.0 * i, "ppl": p} for i, p in enumerate(curve or [])],
                      notes=["lora: kept unmerged: merging would make 2 layers dense"] if unmerged else [])


DIVERGED = run(None)  # done, but its repair blew up: no final perplexity
FAILED = run(20.0, status="failed")


def test_the_listed_thresholds_are_the_ones_the_rules_use():
    assert {name: value for name, (value, _) in THRESHOLDS.items()} == {
        name: getattr(decisions, name) for name in
        ("MATCH_SHARE", "CONVERGED", "COST_MEMORY", "COST_TIME", "GAP_MARGIN", "CLOSE_SHARE", "SIGNIFICANT",
         "MEMORY_EFFICIENT")}
    assert (MATCH_SHARE, CONVERGED, COST_MEMORY, COST_TIME, GAP_MARGIN, CLOSE_SHARE, SIGNIFICANT, MEMORY_EFFICIENT) == (
        0.8, 0.02, 0.5, 0.75, 0.05, 0.5, 0.25, 0.5)
    assert all(description.startswith(f"claim {n}:") for n, names in (
        (1, ("MATCH_SHARE", "CONVERGED", "COST_MEMORY", "COST_TIME")), (2, ("GAP_MARGIN", "CLOSE_SHARE")),
        (3, ("SIGNIFICANT", "MEMORY_EFFICIENT"))) for name in names for description in [THRESHOLDS[name][1]])


def test_the_rules_quote_the_thresholds_and_the_verdicts_are_five():
    assert VERDICTS == (HOLDS, PARTLY, FAILS, UNDECIDED, UNMEASURED) and UNDECIDED == "undecided at this budget"
    assert set(RULES) == {1, 2, 3}
    assert "within 0.02 in log-perplexity" in RULES[1] and "at least 80% of its recovery" in RULES[1]
    assert "at most 0.5x full retraining's train-stage peak memory and 0.75x its seconds per step" in RULES[1]
    assert "at least 0.05 below perp" in RULES[2] and "at least 50% of the log gap" in RULES[2]
    assert "at least 1% above dense" in RULES[3] and "at least 25% of the damage" in RULES[3]
    assert "at most 0.5x full retraining's" in RULES[3]
    assert all("undecided" in rule for rule in RULES.values())


# -- shared ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("numbers, expected", [
    (run(20.0), True), (run(mode="none"), True),  # a prune-only run ends at its pruned perplexity
    (run(mode="none", pruned=math.inf), False),
    (None, False), (FAILED, False), (run(20.0, status="running"), False), (DIVERGED, False), (run(math.inf), False),
    (run(math.nan), False)])
def test_usable(numbers, expected):
    assert usable(numbers) is expected


@pytest.mark.parametrize("a, b, expected", [(2.0, 4.0, 0.5), (0.0, 4.0, 0.0), (None, 4.0, None), (2.0, None, None),
                                            (2.0, 0, None), (None, None, None)])
def test_ratio(a, b, expected):
    assert ratio(a, b) == expected


@pytest.mark.parametrize("values, expected", [([None, 1.0, 3.0, 2.0], 3.0), ([-1.0, None], -1.0), ([-1.0, 0.0], 0.0),
                                              ([None], None), ([], None)])
def test_highest(values, expected):
    assert highest(values) == expected


@pytest.mark.parametrize("all_ok, any_ok, decided, expected", [
    (True, True, True, HOLDS), (True, False, True, HOLDS), (False, True, True, PARTLY), (False, False, True, FAILS),
    (True, True, False, UNDECIDED), (False, False, False, UNDECIDED)])
def test_status(all_ok, any_ok, decided, expected):
    assert status(all_ok, any_ok, decided=decided) == expected


def test_status_is_decided_unless_told():
    assert status(True, True) == HOLDS and status(False, False) == FAILS


@pytest.mark.parametrize("a, b, expected", [(100.0, 10.0, math.log(10.0)), (10.0, 100.0, -math.log(10.0)),
                                            (5.0, 5.0, 0.0)])
def test_log_change(a, b, expected):
    assert log_change(a, b) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("runs, expected", [
    ([run(30.0, lr=2e-4), run(20.0, lr=5e-4), run(25.0, lr=1e-4)], 5e-4),  # the lowest perplexity of the sweep
    ([run(30.0, lr=2e-4), run(10.0, lr=5e-4, status="failed"), run(None, lr=1e-4)], 2e-4),  # failed, diverged: out
    ([None, run(30.0, lr=2e-4), run(math.inf, lr=1e-4)], 2e-4),  # missing, or a non-finite perplexity: out
    ([run(30.0, lr=2e-4), run(30.0, lr=5e-4)], 2e-4),  # a tie: the first one (the preset's rate)
    ([FAILED, DIVERGED, None], None), ([], None)])
def test_best_run(runs, expected):
    best = best_run(runs)
    assert (best.lr if best is not None else None) == expected


# -- claim 1 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve, expected", [
    ([100.0, 50.0, 30.0, 29.8], math.log(30.0 / 29.8)),  # only the last two points count
    ([100.0, 50.0], math.log(2.0)), ([30.0, 33.0], math.log(1.1)),  # up or down: the size of the change
    ([30.0, 30.0], 0.0),
    ([], None), ([30.0], None),  # no curve, or one point
    ([30.0, math.inf], None), ([math.nan, 30.0], None), ([30.0, None], None), ([30.0, 0.0], None),
    ([math.inf, 40.0, 30.0], math.log(40.0 / 30.0))])  # a non-finite point before the last two does not count
def test_last_change(curve, expected):
    value = last_change(run(20.0, curve=curve))
    assert value == expected if expected is None else value == pytest.approx(expected)


LAST = 20.0


@pytest.mark.parametrize("numbers, expected", [
    (run(LAST, curve=[100.0, 30.0, LAST * math.exp(CONVERGED * 0.99), LAST]), True),  # within CONVERGED
    (run(LAST, curve=[100.0, 30.0, LAST * math.exp(-CONVERGED * 0.99), LAST]), True),  # still rising a little
    (run(LAST, curve=[LAST, LAST]), True),
    (run(LAST, curve=[100.0, 30.0, LAST * math.exp(CONVERGED * 1.01), LAST]), False),  # still falling
    (run(LAST, curve=[100.0, LAST]), False),
    (run(LAST, curve=[]), False), (run(LAST, curve=[LAST]), False),  # no curve, one point
    (run(LAST, curve=[30.0, math.inf]), False), (run(LAST, curve=[math.nan, LAST]), False),  # a non-finite point
    (run(None, curve=[LAST, LAST]), False),  # diverged: a flat curve does not make it a baseline
    (run(LAST, curve=[LAST, LAST], status="failed"), False), (None, False)])
def test_converged(numbers, expected):
    assert converged(numbers) is expected


@pytest.mark.parametrize("numbers, full, expected", [
    (run(recovered=0.4), run(recovered=0.8), 0.5), (run(recovered=-0.2), run(recovered=0.8), -0.25),
    (run(recovered=0.4), run(recovered=0.0), None),  # full retraining recovered nothing: no share of it
    (run(recovered=0.4), run(recovered=-0.1), None), (DIVERGED, run(recovered=0.8), None),
    (run(recovered=0.4), DIVERGED, None)])
def test_share_of_full(numbers, full, expected):
    value = share_of_full(numbers, full)
    assert value == expected if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize("numbers, full, expected", [
    (run(recovered=0.8), run(recovered=1.0), True),  # exactly MATCH_SHARE of full retraining's recovery
    (run(recovered=0.9), run(recovered=1.0), True),
    (run(150.0), run(200.0), True),  # full retraining made it worse: no share, but a perplexity no higher
    (run(200.0), run(200.0), True),
    (run(recovered=0.79), run(recovered=1.0), False), (run(250.0), run(200.0), False),
    (DIVERGED, run(recovered=0.5), False), (FAILED, run(200.0), False), (None, run(200.0), False)])
def test_matches_full(numbers, full, expected):
    assert matches_full(numbers, full) is expected


@pytest.mark.parametrize("memory, time, expected", [
    (0.5, 0.75, True), (0.1, 0.1, True),  # at most COST_MEMORY and COST_TIME
    (0.51, 0.5, False), (0.4, 0.76, False), (0.6, 0.9, False),
    (None, 0.5, False), (0.4, None, False)])  # not measured: not shown to be a fraction
def test_costs_a_fraction(memory, time, expected):
    assert costs_a_fraction(memory, time) is expected


SET1 = (0.5, 0.7)


@pytest.mark.parametrize("decided, matched, cheap, expected", [
    (SET1, SET1, True, HOLDS),
    (SET1, SET1, False, PARTLY),  # as good, not a fraction of the cost
    (SET1, [0.5], True, PARTLY), (SET1, [0.7], False, PARTLY),
    ([0.5], [0.5], True, PARTLY),  # full retraining not converged at 70%: that sparsity is undecided
    (SET1, [], True, FAILS), ([0.5], [], True, FAILS),
    ([], [], True, UNDECIDED), ([], [], False, UNDECIDED)])  # converged nowhere: nothing decided
def test_claim1_status(decided, matched, cheap, expected):
    assert claim1_status(SET1, decided, matched, cheap) == expected


# -- claim 2 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("perp, full, expected", [
    (run(40.0), run(20.0), math.log(2.0)),
    (run(20.0 * math.exp(GAP_MARGIN)), run(20.0), GAP_MARGIN),  # just the margin
    (run(20.0 * math.exp(GAP_MARGIN * 0.99)), run(20.0), None),  # below the margin: no gap to close
    (run(20.0), run(20.0), None), (run(19.0), run(20.0), None),  # perp no worse than full retraining
    (run(2654.0), run(5197.0), None),  # the shipped 70% run: perp far below full retraining
    (DIVERGED, run(20.0), None), (run(40.0), FAILED, None), (None, run(20.0), None), (run(40.0), None, None)])
def test_gap(perp, full, expected):
    value = gap(perp, full)
    assert value == expected if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize("end, perp, full, expected", [
    (40.0, 80.0, 20.0, 0.5), (20.0, 80.0, 20.0, 1.0), (10.0, 80.0, 20.0, 1.5), (160.0, 80.0, 20.0, -0.5),
    (80.0, 80.0, 20.0, 0.0),
    (19.0, 20.1, 20.0, None),  # no gap
    (3094.0, 2654.0, 5197.0, None),  # perp below full retraining: no gap
    (None, 80.0, 20.0, None), (40.0, None, 20.0, None), (40.0, 80.0, None, None)])
def test_gap_closed(end, perp, full, expected):
    value = gap_closed(run(end), run(perp), run(full))
    assert value == expected if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize("pruned, final, expected", [
    (0.5, 0.5, True), (0.5, 0.5 + 1e-12, True), (0.7, 0.65, False), (0.7, 0.75, False),
    (0.5, None, None), (None, 0.5, None), (None, None, None)])
def test_kept_sparsity(pruned, final, expected):
    assert kept_sparsity(run(20.0, pruned_sparsity=pruned, final_sparsity=final)) is expected


def test_kept_sparsity_of_no_run_is_unknown():
    assert kept_sparsity(None) is None


CLOSES_60 = 80.0 ** 0.4 * 20.0 ** 0.6  # closes 60% of the log gap between perp at 80 and full retraining at 20
CLOSES_40 = 80.0 ** 0.6 * 20.0 ** 0.4
HALF = 80.0 ** (1 - CLOSE_SHARE) * 20.0 ** CLOSE_SHARE  # 40: closes CLOSE_SHARE


@pytest.mark.parametrize("numbers, perp, full, expected", [
    (run(CLOSES_60), run(80.0), run(20.0), True),
    (run(HALF * (1 - 1e-9)), run(80.0), run(20.0), True),  # just over CLOSE_SHARE of the gap
    (run(HALF * (1 + 1e-9)), run(80.0), run(20.0), False),  # just under it
    (run(20.0), run(80.0), run(20.0), True), (run(15.0), run(80.0), run(20.0), True),  # no higher than full
    (run(CLOSES_40), run(80.0), run(20.0), False),  # below perp, but not half of the gap
    (run(80.0), run(80.0), run(20.0), False),  # no better than perp
    (run(120.0), run(80.0), run(20.0), False),  # worse than perp
    (run(3094.0), run(2654.0), run(2000.0), False),  # the shipped MaskLoRA, worse than perp, with a gap
    (run(3094.0), run(2654.0), run(5197.0), False),  # the shipped 70% runs: no gap, and worse than perp
    (run(20.0), run(20.5), run(20.0), False),  # no gap (under the margin), even at full retraining's level
    (run(CLOSES_60, final_sparsity=0.45), run(80.0), run(20.0), False),  # the merge changed the sparsity
    (run(20.0, final_sparsity=0.55), run(80.0), run(20.0), False),
    (run(CLOSES_60, final_sparsity=None), run(80.0), run(20.0), False),  # final sparsity not recorded
    (run(CLOSES_60, pruned_sparsity=None), run(80.0), run(20.0), False),
    (DIVERGED, run(80.0), run(20.0), False), (FAILED, run(80.0), run(20.0), False), (None, run(80.0), run(20.0), False),
    (run(20.0), run(80.0), FAILED, False), (run(20.0), DIVERGED, run(20.0), False)])
def test_closes_gap(numbers, perp, full, expected):
    assert closes_gap(numbers, perp, full) is expected


ADAPTERS = ("perp-masklora", "perp-scalelora", "perp-scalelora-paper")
SET2 = (0.6, 0.7)  # two sparsities, to reach every branch (the set has one)


@pytest.mark.parametrize("sparsities, decided, closes, expected", [
    (SET2, SET2, (SET2, SET2, SET2), HOLDS),
    (SET2, SET2, (SET2, [], SET2), HOLDS),  # the paper's ScaleLoRA is enough
    (SET2, SET2, (SET2, SET2, []), HOLDS),
    (SET2, SET2, (SET2, [0.6], [0.7]), PARTLY),  # no ScaleLoRA closes it at every sparsity
    (SET2, SET2, ([0.6], SET2, SET2), PARTLY), (SET2, SET2, ([], SET2, SET2), PARTLY),
    (SET2, SET2, (SET2, [], []), PARTLY),  # MaskLoRA alone
    (SET2, [0.7], ([0.7], [0.7], [0.7]), PARTLY),  # no gap at 60%: that sparsity undecided
    (SET2, SET2, ([], [], [0.7]), PARTLY), (SET2, SET2, ([], [], []), FAILS),
    (SET2, [], ([], [], []), UNDECIDED),  # no gap anywhere
    ((0.7,), (0.7,), ([0.7], [0.7], []), HOLDS), ((0.7,), (0.7,), ([0.7], [], []), PARTLY),
    ((0.7,), (0.7,), ([], [], []), FAILS), ((0.7,), (), ([], [], []), UNDECIDED)])
def test_claim2_status(sparsities, decided, closes, expected):
    assert claim2_status(sparsities, decided, dict(zip(ADAPTERS, closes))) == expected


def test_claim2_status_without_an_adapter_s_entry():
    assert claim2_status((0.7,), (0.7,), {"perp-scalelora": [0.7]}) == PARTLY  # no MaskLoRA entry: not closing


@pytest.mark.parametrize("flags, expected", [((True, True), True), ((True, False), False), ((False,), False),
                                             ((), True)])
def test_stays_unmerged(flags, expected):
    assert stays_unmerged([run(20.0, unmerged=f) for f in flags]) is expected


# -- claim 3 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pruned, expected", [
    (run(mode="none", pruned=30.0, dense=20.0), True),
    (run(mode="none", pruned=20.0 * math.exp(MIN_DAMAGE), dense=20.0), True),  # just the least damage that counts
    (run(mode="none", pruned=20.0 * math.exp(MIN_DAMAGE * 0.9), dense=20.0), False),  # under 1%
    (run(mode="none", pruned=20.0, dense=20.0), False),  # pruning did no damage
    (run(mode="none", pruned=19.0, dense=20.0), False),  # pruning helped
    (run(mode="none", pruned=30.0, dense=None), False),  # no dense perplexity
    (run(mode="none", pruned=math.inf, dense=20.0), False), (run(mode="none", pruned=None, dense=20.0), False),
    (run(mode="none", pruned=30.0, status="failed"), False), (None, False)])
def test_damaged(pruned, expected):
    assert damaged(pruned) is expected


@pytest.mark.parametrize("recovered, expected", [(0.25, True), (0.9, True), (0.2499, False), (-0.5, False),
                                                 (None, False)])
def test_significant_gain(recovered, expected):
    assert significant_gain(recovered) is expected


@pytest.mark.parametrize("peak, reference, expected", [
    (500.0, 1000.0, True), (100.0, 1000.0, True), (501.0, 1000.0, False), (1000.0, 1000.0, False),
    (None, 1000.0, None), (500.0, None, None), (None, None, None)])  # a side not measured: unknown, not False
def test_memory_efficient(peak, reference, expected):
    assert memory_efficient(peak, reference) is expected


PRUNINGS = [("wanda", "unstructured"), ("wanda", "2:4"), ("sparsegpt", "unstructured"), ("sparsegpt", "2:4")]


@pytest.mark.parametrize("decided, significant, efficient, expected", [
    (PRUNINGS, PRUNINGS, True, HOLDS),
    (PRUNINGS, PRUNINGS, False, PARTLY),  # significant, but not memory-efficient
    (PRUNINGS, PRUNINGS, None, PARTLY),  # memory not measured: holds in part at best
    (PRUNINGS, PRUNINGS[:3], True, PARTLY), (PRUNINGS, PRUNINGS[:1], False, PARTLY),
    (PRUNINGS, PRUNINGS[:1], None, PARTLY),
    (PRUNINGS[:3], PRUNINGS[:3], True, PARTLY),  # a pruning did no damage: not every pruning decided
    (PRUNINGS, [], True, FAILS), (PRUNINGS, [], None, FAILS), (PRUNINGS[:1], [], False, FAILS),
    ([], [], True, UNDECIDED), ([], [], None, UNDECIDED)])  # no pruning did damage
def test_claim3_status(decided, significant, efficient, expected):
    assert claim3_status(PRUNINGS, decided, significant, efficient) == expected
