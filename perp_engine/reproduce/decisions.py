"""The rules of the three claims' verdicts: the thresholds, and small pure functions from a run's numbers to a
decision (does a recipe match full retraining, does an adapter close the gap, which status a claim gets).

Nothing here builds a sentence or a table: :mod:`perp_engine.reproduce.wording` does, from these decisions, and
quotes the thresholds from here. Nothing is written by hand per result: change a threshold and every report
says the new thing.

"Recovered" is :func:`perp_engine.evaluation.recovery.recovered_share`: the share of the pruning damage a repair undid on
the log-perplexity scale (1 = back to dense, 0 = no better than the pruned model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ..evaluation.recovery import MIN_DAMAGE
from .results import RunNumbers
from .runset import CLAIM1_SPARSITIES, CLAIM2_SPARSITIES, CLAIM3_PRUNINGS

# Claim 1: a recipe matches full retraining when it recovers at least MATCH_SHARE of what full retraining
# recovers, or ends at a perplexity no higher; "a fraction of the memory and time": its train-stage peak memory
# at most COST_MEMORY and its seconds per step at most COST_TIME of full retraining's.
MATCH_SHARE = 0.8
COST_MEMORY = 0.8
COST_TIME = 0.9
# Claim 2: an adapter closes the remaining gap when it closes at least CLOSE_SHARE of the log-perplexity gap
# between perp and full retraining, or ends at a perplexity no higher than full retraining's, and its merged
# model keeps the sparsity of the pruned model.
CLOSE_SHARE = 0.5
# Claim 3: reconstruction improves a pruned model significantly when it recovers at least SIGNIFICANT of the
# damage; it is memory-efficient when its train-stage peak is at most MEMORY_EFFICIENT of full retraining's.
SIGNIFICANT = 0.25
MEMORY_EFFICIENT = 0.5

THRESHOLDS = {
    "MATCH_SHARE": (MATCH_SHARE, "claim 1: a recipe matches full retraining when it recovers at least this share "
                                 "of what full retraining recovers, or ends at a perplexity no higher"),
    "COST_MEMORY": (COST_MEMORY, "claim 1: at most this share of full retraining's train-stage peak memory"),
    "COST_TIME": (COST_TIME, "claim 1: at most this share of full retraining's seconds per step"),
    "CLOSE_SHARE": (CLOSE_SHARE, "claim 2: an adapter closes the remaining gap when it closes at least this share "
                                 "of the log-perplexity gap between perp and full retraining, or ends no higher "
                                 "than full retraining, its merged model keeping the pruned sparsity"),
    "SIGNIFICANT": (SIGNIFICANT, "claim 3: reconstruction improves a pruned model significantly when it recovers "
                                 "at least this share of the pruning damage"),
    "MEMORY_EFFICIENT": (MEMORY_EFFICIENT, "claim 3: reconstruction is memory-efficient when its train-stage peak "
                                           "is at most this share of full retraining's"),
}

HOLDS, PARTLY, FAILS, UNMEASURED = "holds", "holds in part", "does not hold", "not measured"
VERDICTS = (HOLDS, PARTLY, FAILS, UNMEASURED)


def usable(run: RunNumbers | None) -> bool:
    """A run that finished with a finite perplexity (not a failed, missing or diverged one)."""
    return run is not None and run.done and run.end_ppl is not None and math.isfinite(run.end_ppl)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``; None when either is missing or ``b`` is 0."""
    return a / b if a is not None and b not in (None, 0) else None


def highest(values: Iterable[float | None]) -> float | None:
    """The highest of the known values (None when none is known)."""
    return max((v for v in values if v is not None), default=None)


def status(all_ok: bool, any_ok: bool) -> str:
    """Holds when every part holds, holds in part when some part does, else does not hold."""
    return HOLDS if all_ok else PARTLY if any_ok else FAILS


# -- claim 1 --------------------------------------------------------------------------------------------------


def claim1_measured(perp: RunNumbers | None, full: RunNumbers | None) -> bool:
    """Whether claim 1 can judge a sparsity: full retraining usable and perp finished (diverged counts, as failing)."""
    return usable(full) and perp is not None and perp.done


def share_of_full(run: RunNumbers, full: RunNumbers) -> float | None:
    """What ``run`` recovered as a share of what full retraining recovered (None when that was nothing)."""
    done, reference = run.recovered, full.recovered
    return done / reference if done is not None and reference is not None and reference > 0 else None


def matches_full(run: RunNumbers, full: RunNumbers) -> bool:
    """Claim 1's test: at least MATCH_SHARE of full retraining's recovery, or a perplexity no higher."""
    if not usable(run):
        return False
    share = share_of_full(run, full)
    return run.end_ppl <= full.end_ppl or (share is not None and share >= MATCH_SHARE)


def costs_a_fraction(memory: float | None, time: float | None) -> bool:
    """Claim 1's "a fraction of the memory and time": the train-stage peak memory and the seconds per step, as
    ratios to full retraining's, at most COST_MEMORY and COST_TIME."""
    return memory is not None and time is not None and memory <= COST_MEMORY and time <= COST_TIME


def claim1_status(measured: Sequence[float], matched: Sequence[float], cheap: bool) -> str:
    """Holds when perp matches full retraining at every sparsity of the set, at a fraction of its cost; in part
    when it matches at one of the ``measured`` sparsities."""
    every = len(measured) == len(CLAIM1_SPARSITIES) and len(matched) == len(measured)
    return status(every and cheap, bool(matched))


# -- claim 2 --------------------------------------------------------------------------------------------------


def claim2_measured(perp: RunNumbers | None, full: RunNumbers | None) -> bool:
    """Whether claim 2 can judge a sparsity: perp and full retraining both usable."""
    return usable(perp) and usable(full)


def gap_left(perp: RunNumbers, full: RunNumbers) -> float | None:
    """The log-perplexity gap between perp and full retraining (None when perp already ends within 1% of full
    retraining, MIN_DAMAGE, or a number is missing)."""
    if not (usable(perp) and usable(full)):
        return None
    gap = math.log(perp.end_ppl) - math.log(full.end_ppl)
    return gap if gap >= MIN_DAMAGE else None


def gap_closed(run: RunNumbers, perp: RunNumbers, full: RunNumbers) -> float | None:
    """Share of the log-perplexity gap between perp and full retraining that ``run`` closed (None when there is
    no gap left, or a number is missing)."""
    gap = gap_left(perp, full)
    if gap is None or not usable(run):
        return None
    return (math.log(perp.end_ppl) - math.log(run.end_ppl)) / gap


def same_sparsity(run: RunNumbers, reference: RunNumbers) -> bool:
    """Whether both measured the same sparsity (after the merge)."""
    return (run.measured_sparsity is not None and reference.measured_sparsity is not None
            and abs(run.measured_sparsity - reference.measured_sparsity) < 1e-9)


def closes_gap(run: RunNumbers, perp: RunNumbers, full: RunNumbers) -> bool:
    """Claim 2's test: at least CLOSE_SHARE of the gap closed, or a perplexity no higher than full retraining's,
    with the sparsity of the pruned model kept through the merge (perp's, measured the same way)."""
    if not (usable(run) and usable(full)) or not same_sparsity(run, perp):
        return False
    closed = gap_closed(run, perp, full)
    return run.end_ppl <= full.end_ppl or (closed is not None and closed >= CLOSE_SHARE)


def claim2_status(measured: Sequence[float], closes: Mapping[str, Sequence[float]]) -> str:
    """Holds when MaskLoRA and one of the ScaleLoRAs close the gap at every sparsity of the set; in part when an
    adapter closes it at one of the ``measured`` sparsities. ``closes``: the sparsities where each adapter does."""
    every = len(measured) == len(CLAIM2_SPARSITIES)
    masklora = every and len(closes["perp-masklora"]) == len(measured)
    scalelora = every and any(len(closes[p]) == len(measured) for p in ("perp-scalelora", "perp-scalelora-paper"))
    return status(masklora and scalelora, any(closes.values()))


def merged_sparsities(runs: Iterable[RunNumbers]) -> dict[float, set[float]]:
    """The sparsities the merged models measured (to 9 digits), by the sparsity their pruning asked for."""
    by_sparsity: dict[float, set[float]] = {}
    for run in runs:
        if run.measured_sparsity is not None:
            by_sparsity.setdefault(run.sparsity, set()).add(round(run.measured_sparsity, 9))
    return by_sparsity


def sparsity_kept(by_sparsity: Mapping[float, set[float]]) -> bool:
    """Whether the merged models of each sparsity level all measured one sparsity."""
    return all(len(values) == 1 for values in by_sparsity.values())


def stays_unmerged(runs: Iterable[RunNumbers]) -> bool:
    """Whether every plain LoRA was kept beside its sparse layers, as it must be (merging would densify them)."""
    return all(r.unmerged for r in runs)


# -- claim 3 --------------------------------------------------------------------------------------------------


def claim3_measured(pruned: RunNumbers | None, finished: Sequence[RunNumbers]) -> bool:
    """Whether claim 3 can judge a pruning: its prune-only run usable and a reconstruction with an adapter
    ``finished``."""
    return usable(pruned) and bool(finished)


def significant_gain(recovered: float | None) -> bool:
    """Claim 3's "significantly improves": at least SIGNIFICANT of the pruning damage recovered."""
    return recovered is not None and recovered >= SIGNIFICANT


def memory_efficient(peak: float | None, reference: float) -> bool:
    """Claim 3's "memory-efficient": a train-stage peak at most MEMORY_EFFICIENT of full retraining's."""
    return peak is not None and peak <= MEMORY_EFFICIENT * reference


def claim3_status(significant: Sequence[tuple[str, str]], efficient: bool) -> str:
    """Holds when reconstruction is significant after every pruning of the set and memory-efficient; in part when
    it is significant after one."""
    return status(len(significant) == len(CLAIM3_PRUNINGS) and efficient, bool(significant))
