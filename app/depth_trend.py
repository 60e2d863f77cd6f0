"""What a run's per-block errors do along the depth of the model, in words read from the numbers: where they rise,
stay level or drop. The Layers page shows these sentences under its depth charts instead of a fixed claim (the
accumulated error often grows with depth, but a later block can undo part of the damage)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

STEP = 0.25  # a block-to-block change of more than 25% (either way) is a rise or a drop; less is level
MOST_PARTS = 4  # more segments than this are summarised: overall change, largest rise and largest drop
_WHAT = {0: "after pruning", 1: "after repair"}


def _segments(points: list[tuple[int, float]], step: float) -> list[tuple[str, int, int, float]]:
    """Consecutive block-to-block changes of one kind merged: (kind, first block, last block, factor)."""
    parts: list[tuple[str, int, int, float]] = []
    for (a, va), (b, vb) in zip(points, points[1:]):
        ratio = vb / va
        kind = "rise" if ratio > 1 + step else "drop" if ratio < 1 / (1 + step) else "level"
        if parts and parts[-1][0] == kind:
            parts[-1] = (kind, parts[-1][1], b, parts[-1][3] * ratio)
        else:
            parts.append((kind, a, b, ratio))
    return parts


def _factor(ratio: float) -> str:
    return f"×{ratio:.2g}" if ratio >= 1 else f"÷{1 / ratio:.2g}"


def _phrase(kind: str, first: int, last: int, ratio: float, step: float) -> str:
    span = f"at block {last}" if last == first + 1 and kind != "level" else f"from block {first} to block {last}"
    if kind == "level":
        return f"stays level {span} (under {step:.0%} per block)"
    return f"{'rises' if kind == 'rise' else 'drops'} {span} ({_factor(ratio)})"


def depth_trend(values: Sequence[float | None], step: float = STEP) -> str | None:
    """``rises from block 0 to block 3 (×12), stays level from block 3 to block 10 (under 25% per block), drops at
    block 11 (÷2.1)``: the error's course over the blocks with a value (None, non-finite or non-positive values
    are skipped). None with fewer than two values."""
    points = [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v) and v > 0]
    if len(points) < 2:
        return None
    parts = _segments(points, step)
    if len(parts) <= MOST_PARTS:
        return ", ".join(_phrase(kind, a, b, ratio, step) for kind, a, b, ratio in parts)
    ratios = [(vb / va, b) for (_, va), (b, vb) in zip(points, points[1:])]
    up, down = max(ratios, key=lambda r: r[0]), min(ratios, key=lambda r: r[0])  # the first of equals
    return (f"goes up and down: {_factor(points[-1][1] / points[0][1])} from block {points[0][0]} to block "
            f"{points[-1][0]} overall, the largest rise at block {up[1]} ({_factor(up[0])})"
            + (f", the largest drop at block {down[1]} ({_factor(down[0])})" if down[0] < 1 else ""))


def trend_sentences(blocks_by_run: Mapping[str, Sequence[Mapping]], fields: tuple[str, str], title: str,
                    view: str) -> list[str]:
    """One sentence per run and shown state (``view``: both, before, after or change) on the block errors
    ``fields`` (after pruning, after repair), e.g. ``#3 ...: the accumulated error after pruning rises ...``."""
    shown = {"both": (0, 1), "before": (0,), "after": (1,), "change": (0, 1)}[view]
    sentences = []
    for label, records in blocks_by_run.items():
        ordered = sorted(records, key=lambda r: r.get("block", 0))
        for which in shown:
            trend = depth_trend([r.get(fields[which]) for r in ordered])
            if trend:
                sentences.append(f"{label}: the {title} {_WHAT[which]} {trend}.")
    return sentences
