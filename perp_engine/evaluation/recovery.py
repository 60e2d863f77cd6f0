"""How much of the pruning damage a repair undid: the one home of both scales and of the words that name them.

The number the app's tables, the benches and the paper reproduction report is the share of the **log-perplexity
gap** (the loss gap): a perplexity 505.66 -> 174.72 with a dense 30.93 recovers 38% of it. On the linear
perplexity scale the same run recovers 70% of the gap; :func:`recovery_text` says which is which, both beside
each other."""

from __future__ import annotations

import math

MIN_DAMAGE = math.log(1.01)  # below a 1% perplexity increase there is nothing meaningful to recover
SCALE = "of the log-ppl gap"  # what the headline share is a share of, wherever it is shown
LINEAR_SCALE = "of the linear ppl gap"


def _valid(dense: float | None, pruned: float | None, final: float | None) -> bool:
    """Every perplexity finite and positive, and pruning cost at least 1% perplexity."""
    if any(v is None or not math.isfinite(v) or v <= 0 for v in (dense, pruned, final)):
        return False
    return math.log(pruned) - math.log(dense) >= MIN_DAMAGE


def recovered_share(dense: float | None, pruned: float | None, final: float | None) -> float | None:
    """(log pruned - log final) / (log pruned - log dense): 1 = back to dense, 0 = no better than pruned,
    negative = worse. None when a perplexity is missing or not finite, or pruning cost under 1% perplexity."""
    if not _valid(dense, pruned, final):
        return None
    return (math.log(pruned) - math.log(final)) / (math.log(pruned) - math.log(dense))


def recovered_linear_share(dense: float | None, pruned: float | None, final: float | None) -> float | None:
    """(pruned - final) / (pruned - dense) on the perplexities themselves; None as :func:`recovered_share`."""
    if not _valid(dense, pruned, final):
        return None
    return (pruned - final) / (pruned - dense)


def recovery_text(dense: float | None, pruned: float | None, final: float | None) -> str | None:
    """``recovered 38% of the log-ppl gap (70% of the linear ppl gap)``; None when there is no share to give."""
    log_share = recovered_share(dense, pruned, final)
    if log_share is None:
        return None
    return (f"recovered {log_share:.0%} {SCALE} "
            f"({recovered_linear_share(dense, pruned, final):.0%} {LINEAR_SCALE})")
