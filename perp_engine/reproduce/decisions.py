"""The rules of the three claims' verdicts: the thresholds, and small pure functions from a run's numbers to a
decision (has full retraining converged, is there a gap to close, does a recipe match, does an adapter close the
gap, which status a claim gets).

A claim is decided only where its premise holds at the run budget; elsewhere it is "undecided at this budget":
- claim 1 compares with full retraining only where full retraining has converged (its learning curve's last two
  points within ``CONVERGED`` on the log-perplexity scale);
- claim 2 needs a gap to close: full retraining ahead of perp by at least ``GAP_MARGIN``;
- claim 3 needs pruning damage to recover (``MIN_DAMAGE``).

Nothing here builds a sentence or a table: :mod:`perp_engine.reproduce.wording` does, from these decisions, and
quotes the thresholds and the rules (``RULES``) from here. Change a threshold and every report says the new thing.

"Recovered" is :func:`perp_engine.evaluation.recovery.recovered_share`: the share of the pruning damage a repair
undid on the log-perplexity scale (1 = back to dense, 0 = no better than the pruned model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ..evaluation.recovery import MIN_DAMAGE
from .results import RunNumbers

# Claim 1: a recipe matches full retraining when it recovers at least MATCH_SHARE of what full retraining recovers,
# or ends at a perplexity no higher; full retraining is a baseline only once CONVERGED: its last two curve points
# differ by at most this on the log-perplexity scale (2%: ppl 100 -> 98). "A fraction of the memory and time": a
# train-stage peak memory at most COST_MEMORY and seconds per step at most COST_TIME of full retraining's, the
# project's own retraining goals (bench/retrain_bench.py reads them from here).
MATCH_SHARE = 0.8
CONVERGED = 0.02
COST_MEMORY = 0.5
COST_TIME = 0.75
# Claim 2: there is a gap to close when full retraining ends at least GAP_MARGIN below perp on the log-perplexity
# scale (5%); an adapter closes it when it ends below perp and either closes at least CLOSE_SHARE of the gap or ends
# no higher than full retraining, its final weights keeping the pruned model's zeros.
GAP_MARGIN = 0.05
CLOSE_SHARE = 0.5
# Claim 3: reconstruction improves a pruned model significantly when it recovers at least SIGNIFICANT of the
# damage; it is memory-efficient when its train-stage peak is at most MEMORY_EFFICIENT of full retraining's.
SIGNIFICANT = 0.25
MEMORY_EFFICIENT = 0.5

THRESHOLDS = {
    "MATCH_SHARE": (MATCH_SHARE, "claim 1: a recipe matches full retraining when it recovers at least this share "
                                 "of what full retraining recovers, or ends at a perplexity no higher"),
    "CONVERGED": (CONVERGED, "claim 1: full retraining has converged at the budget when the last two points of its "
                             "held-out perplexity curve differ by at most this in log-perplexity"),
    "COST_MEMORY": (COST_MEMORY, "claim 1: at most this share of full retraining's train-stage peak memory (the "
                                 "retraining bench's goal)"),
    "COST_TIME": (COST_TIME, "claim 1: at most this share of full retraining's seconds per step (the retraining "
                             "bench's goal)"),
    "GAP_MARGIN": (GAP_MARGIN, "claim 2: a gap exists when full retraining ends at least this much lower than perp "
                               "in log-perplexity"),
    "CLOSE_SHARE": (CLOSE_SHARE, "claim 2: an adapter closes the gap when it ends below perp and closes at least this "
                                 "share of the log-perplexity gap, or ends no higher than full retraining, its final "
                                 "weights keeping the pruned zeros"),
    "SIGNIFICANT": (SIGNIFICANT, "claim 3: reconstruction improves a pruned model significantly when it recovers "
                                 "at least this share of the pruning damage"),
    "MEMORY_EFFICIENT": (MEMORY_EFFICIENT, "claim 3: reconstruction is memory-efficient when its train-stage peak "
                                           "is at most this share of full retraining's"),
}

HOLDS, PARTLY, FAILS = "holds", "holds in part", "does not hold"
UNDECIDED, UNMEASURED = "undecided at this budget", "not measured"
VERDICTS = (HOLDS, PARTLY, FAILS, UNDECIDED, UNMEASURED)

# The rule under each claim's verdict, as the report prints it.
RULES = {
    1: (f"Decided at a sparsity only where full retraining (the best rate of its sweep) has converged: the last two "
        f"points of its held-out perplexity curve within {CONVERGED:g} in log-perplexity; elsewhere undecided. "
        f"perp matches it with at least {MATCH_SHARE:.0%} of its recovery of the log-perplexity damage, or a "
        f"perplexity no higher. Holds: matched at every sparsity of the set, at most {COST_MEMORY:g}x full "
        f"retraining's train-stage peak memory and {COST_TIME:g}x its seconds per step; in part: matched at one "
        f"decided sparsity; does not hold: matched at none; undecided: no sparsity decided."),
    2: (f"Decided at a sparsity only where there is a gap: full retraining (the best rate of its sweep) ends at least "
        f"{GAP_MARGIN:g} below perp in log-perplexity; elsewhere undecided. An adapter closes it when it ends below "
        f"perp and closes at least {CLOSE_SHARE:.0%} of the log gap or ends no higher than full retraining, and the "
        f"zeros counted in its final weights equal the pruned model's. Holds: MaskLoRA and a ScaleLoRA close it at "
        f"every sparsity of the set; in part: an adapter closes it somewhere; does not hold: none does; undecided: "
        f"no gap anywhere."),
    3: (f"Decided for a pruning only where it did damage (perplexity at least {math.exp(MIN_DAMAGE) - 1:.0%} above "
        f"dense). Significant: a reconstruction with an adapter recovers at least {SIGNIFICANT:.0%} of the damage. "
        f"Holds: significant after every pruning of the set and at most {MEMORY_EFFICIENT:g}x full retraining's "
        f"train-stage peak memory; in part: significant after one (or memory not measured); does not hold: after "
        f"none; undecided: no pruning did damage."),
}


def usable(run: RunNumbers | None) -> bool:
    """A run that finished with a finite perplexity (not a failed, missing or diverged one)."""
    return run is not None and run.done and run.end_ppl is not None and math.isfinite(run.end_ppl)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``; None when either is missing or ``b`` is 0."""
    return a / b if a is not None and b not in (None, 0) else None


def highest(values: Iterable[float | None]) -> float | None:
    """The highest of the known values (None when none is known)."""
    return max((v for v in values if v is not None), default=None)


def status(all_ok: bool, any_ok: bool, decided: bool = True) -> str:
    """Holds when every part holds, holds in part when some part does, else does not hold; undecided when no
    part could be decided."""
    if not decided:
        return UNDECIDED
    return HOLDS if all_ok else PARTLY if any_ok else FAILS


def log_change(a: float, b: float) -> float:
    """``log a - log b``: how much higher ``a`` is on the log-perplexity (loss) scale."""
    return math.log(a) - math.log(b)


def best_run(runs: Iterable[RunNumbers | None]) -> RunNumbers | None:
    """The usable run with the lowest final perplexity (a learning-rate sweep's best), None when none is usable."""
    return min((r for r in runs if usable(r)), key=lambda r: r.end_ppl, default=None)


# -- claim 1 --------------------------------------------------------------------------------------------------


def last_change(run: RunNumbers) -> float | None:
    """How much the held-out perplexity changed between the last two points of the run's learning curve, in
    log-perplexity (None without two points, or with a non-finite one)."""
    points = [p["ppl"] for p in run.curve]
    if len(points) < 2 or not all(p is not None and math.isfinite(p) and p > 0 for p in points[-2:]):
        return None
    return abs(log_change(points[-1], points[-2]))


def converged(run: RunNumbers | None) -> bool:
    """Claim 1's premise: the run is usable and its curve's last two points lie within CONVERGED."""
    change = last_change(run) if usable(run) else None
    return change is not None and change <= CONVERGED


def share_of_full(run: RunNumbers, full: RunNumbers) -> float | None:
    """What ``run`` recovered as a share of what full retraining recovered (None when that was nothing)."""
    done, reference = run.recovered, full.recovered
    return done / reference if done is not None and reference is not None and reference > 0 else None


def matches_full(run: RunNumbers | None, full: RunNumbers) -> bool:
    """Claim 1's test: at least MATCH_SHARE of full retraining's recovery, or a perplexity no higher."""
    if not usable(run):
        return False
    share = share_of_full(run, full)
    return run.end_ppl <= full.end_ppl or (share is not None and share >= MATCH_SHARE)


def costs_a_fraction(memory: float | None, time: float | None) -> bool:
    """Claim 1's "a fraction of the memory and time": the train-stage peak memory and the seconds per step, as
    ratios to full retraining's, at most COST_MEMORY and COST_TIME."""
    return memory is not None and time is not None and memory <= COST_MEMORY and time <= COST_TIME


def claim1_status(sparsities: Sequence[float], decided: Sequence[float], matched: Sequence[float], cheap: bool) -> str:
    """Holds when perp matches converged full retraining at every sparsity of the set at a fraction of its cost; in
    part when it matches at one decided sparsity; undecided when full retraining converged nowhere."""
    every = len(decided) == len(sparsities) and len(matched) == len(decided)
    return status(every and cheap, bool(matched), decided=bool(decided))


# -- claim 2 --------------------------------------------------------------------------------------------------


def gap(perp: RunNumbers | None, full: RunNumbers | None) -> float | None:
    """How far full retraining ends below perp in log-perplexity, when that is at least GAP_MARGIN (claim 2's
    premise); None when there is no such gap or a run is not usable."""
    if not (usable(perp) and usable(full)):
        return None
    distance = log_change(perp.end_ppl, full.end_ppl)
    return distance if distance >= GAP_MARGIN else None


def gap_closed(run: RunNumbers | None, perp: RunNumbers, full: RunNumbers) -> float | None:
    """Share of the log-perplexity gap between perp and full retraining that ``run`` closed (None when there is
    no gap, or the run is not usable)."""
    distance = gap(perp, full)
    if distance is None or not usable(run):
        return None
    return log_change(perp.end_ppl, run.end_ppl) / distance


def kept_sparsity(run: RunNumbers | None) -> bool | None:
    """Whether the zeros counted in the run's final weights equal its pruned model's (None: not measured)."""
    if run is None or run.final_sparsity is None or run.pruned_sparsity is None:
        return None
    return abs(run.final_sparsity - run.pruned_sparsity) < 1e-9


def closes_gap(run: RunNumbers | None, perp: RunNumbers, full: RunNumbers) -> bool:
    """Claim 2's test, where there is a gap: ends below perp, closes at least CLOSE_SHARE of the gap or ends no
    higher than full retraining, and keeps the pruned zeros in its final weights."""
    closed = gap_closed(run, perp, full)
    if closed is None or kept_sparsity(run) is not True or not run.end_ppl < perp.end_ppl:
        return False
    return run.end_ppl <= full.end_ppl or closed >= CLOSE_SHARE


def claim2_status(sparsities: Sequence[float], decided: Sequence[float], closes: Mapping[str, Sequence[float]]) -> str:
    """Holds when MaskLoRA and one of the ScaleLoRAs close a gap at every sparsity of the set; in part when an
    adapter closes it at one; undecided when there is no gap. ``closes``: the sparsities where each adapter does."""
    every = len(decided) == len(sparsities)
    masklora = every and len(closes.get("perp-masklora", ())) == len(decided)
    scalelora = every and any(len(closes.get(p, ())) == len(decided) for p in ("perp-scalelora", "perp-scalelora-paper"))
    return status(masklora and scalelora, any(closes.values()), decided=bool(decided))


def stays_unmerged(runs: Iterable[RunNumbers]) -> bool:
    """Whether every plain LoRA was kept beside its sparse layers, as it must be (merging would densify them)."""
    return all(r.unmerged for r in runs)


# -- claim 3 --------------------------------------------------------------------------------------------------


def damaged(pruned: RunNumbers | None) -> bool:
    """Claim 3's premise: the pruned model is usable and pruning cost at least MIN_DAMAGE."""
    return (usable(pruned) and pruned.dense_ppl is not None
            and log_change(pruned.pruned_ppl, pruned.dense_ppl) >= MIN_DAMAGE)


def significant_gain(recovered: float | None) -> bool:
    """Claim 3's "significantly improves": at least SIGNIFICANT of the pruning damage recovered."""
    return recovered is not None and recovered >= SIGNIFICANT


def memory_efficient(peak: float | None, reference: float | None) -> bool | None:
    """Claim 3's "memory-efficient": a train-stage peak at most MEMORY_EFFICIENT of full retraining's (None when
    either is not measured)."""
    if peak is None or reference is None:
        return None
    return peak <= MEMORY_EFFICIENT * reference


def claim3_status(prunings: Sequence, decided: Sequence, significant: Sequence, efficient: bool | None) -> str:
    """Holds when reconstruction is significant after every pruning of the set and memory-efficient; in part when
    it is significant after one (or everywhere with the memory not measured); undecided when no pruning did damage."""
    every = len(decided) == len(prunings) and len(significant) == len(decided)
    return status(every and efficient is True, bool(significant), decided=bool(decided))
