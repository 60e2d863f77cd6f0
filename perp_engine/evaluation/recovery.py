"""How much of the pruning damage a repair undid, on the log-perplexity (loss) scale: the number the app's
tables, the benches and the paper reproduction all report."""

from __future__ import annotations

import math

MIN_DAMAGE = math.log(1.01)  # below a 1% perplexity increase there is nothing meaningful to recover


def recovered_share(dense: float | None, pruned: float | None, final: float | None) -> float | None:
    """(log pruned - log final) / (log pruned - log dense): 1 = back to dense, 0 = no better than pruned,
    negative = worse. None when a perplexity is missing or not finite, or pruning cost under 1% perplexity."""
    if any(v is None or not math.isfinite(v) or v <= 0 for v in (dense, pruned, final)):
        return None
    gap = math.log(pruned) - math.log(dense)
    if gap < MIN_DAMAGE:
        return None
    return (math.log(pruned) - math.log(final)) / gap
