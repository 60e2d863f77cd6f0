"""What the stored learning curves say in one line: reconstruction's per-block curves summed up as one curve.

A retraining run stores one curve, held-out perplexity by step (``RunResult.curve``); a reconstruction stores one per
block (``BlockRecord.curve``: the block's held-out error by the step of that block's training). Blocks start from
errors orders of magnitude apart (the first block's is tiny, the last ones' large), so they are compared relative
to where each started.
"""

from __future__ import annotations

from collections.abc import Sequence


def relative_block_curve(curves: Sequence[Sequence[dict]]) -> tuple[list[int], list[float]]:
    """Steps and the mean over blocks of each block's held-out error divided by its own error at the curve's first
    point (1 = no better than before the block trained); only steps every block has a point at, and only blocks
    whose first error is above 0."""
    usable = [c for c in curves if c and c[0]["error"] > 0]
    if not usable:
        return [], []
    by_block = [{p["step"]: p["error"] / c[0]["error"] for p in c} for c in usable]
    steps = [p["step"] for p in usable[0] if all(p["step"] in b for b in by_block)]
    return steps, [sum(b[step] for b in by_block) / len(by_block) for step in steps]
