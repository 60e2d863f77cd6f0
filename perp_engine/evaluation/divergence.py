"""A repair that made the model far worse is a diverged run, never a good result.

The run stays ``done`` (its dense and pruned measurements are valid), with ``RunResult.diverged`` saying why;
the final perplexity and the "after" layer errors are dropped (``None``), so charts and tables never show the
diverged value as a normal point, and the model the run leaves (a kept or exported model) is the pruned one:
the pipeline saves the pruned weights before repairing and replaces them only with a repair that did not diverge.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..result import RunResult

# A final perplexity above this multiple of the pruned model's means training diverged: repair exists to lower
# it, and a short run with a too-high learning rate lands orders of magnitude up (measured: 442 -> 2.6e185 with
# full-ft at lr 0.99), while a merely unhelpful repair stays within a small factor of the pruned perplexity.
DIVERGED_FACTOR = 10.0


def divergence(pruned_ppl: float | None, final_ppl: float | None) -> str | None:
    """Why a final perplexity counts as diverged, or None when it does not (or there is none)."""
    if final_ppl is None:
        return None
    if not math.isfinite(final_ppl):
        return f"the final perplexity is {final_ppl}"
    if pruned_ppl is not None and math.isfinite(pruned_ppl) and final_ppl > DIVERGED_FACTOR * pruned_ppl:
        return f"the final perplexity {final_ppl:.4g} is more than {DIVERGED_FACTOR:g}x the pruned model's {pruned_ppl:.4g}"
    return None


def mark_diverged(result: RunResult, log: Callable[[str], None]) -> bool:
    """Judge the repair by its final perplexity; when it diverged, record why and drop the "after" values."""
    reason = divergence(result.pruned_ppl, result.final_ppl)
    if reason is None:
        return False
    losses = [v for v in result.train_loss if math.isfinite(v)]
    trend = f" (training loss {losses[0]:.4g} -> {losses[-1]:.4g})" if len(losses) > 1 else ""
    result.diverged = f"repair diverged: {reason}{trend}; the run's model is the pruned one (try a lower lr)"
    result.final_ppl = None
    for layer in result.layers:
        layer.recon_error_after = layer.drift_after = None
    for block in result.blocks:
        block.loss_after = block.drift_after = None
    result.warnings.append(result.diverged)
    log(result.diverged)
    return True
