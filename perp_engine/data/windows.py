"""Where windows of ``seqlen`` tokens are cut from a token stream: held-out measurement windows at fixed places,
calibration and training windows at seeded random places that never overlap them, never crossing a document.

A stream is a 1-D tensor of token ids and its documents, ``segments`` of half-open ``(start, end)`` ranges
(one segment for a plain text). Held-out windows are spread evenly over the stream so that they sample the
whole text, not its last article; random windows are drawn uniformly over every start position whose window
lies inside one document and overlaps no held-out window. Pure index arithmetic, no tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import PerpError

Segment = tuple[int, int]


def held_out_starts(segments: Sequence[Segment], n: int, seqlen: int) -> list[int]:
    """Starts of ``n`` windows spread evenly over the stream, each inside one segment, none overlapping.

    The windows form ``groups`` runs of consecutive windows, run ``g`` ending at the point ``(g + 1) / groups``
    of the stream, so the free text lies in ``groups`` gaps before them: one window per run (``groups = n``) when
    the text is long, fewer runs when gaps that short could not hold a calibration window. A window whose segment
    cannot hold it moves to the next place that can. PerpError("dataset") when they do not fit."""
    total = sum(end - start for start, end in segments)
    groups = max(1, min(n, (total - n * seqlen) // seqlen))
    sizes = [n // groups + (g < n % groups) for g in range(groups)]
    starts: list[int] = []
    floor = segments[0][0]  # a window may not start before the end of the previous one
    for g, size in enumerate(sizes):
        target = segments[0][0] + (g + 1) * total // groups - size * seqlen
        for _ in range(size):
            start = _place(segments, max(target, floor), seqlen)
            if start is None:
                raise PerpError("dataset", f"the calibration text ({total:,} tokens) is too short for {n} held-out "
                                           f"measurement windows of seqlen={seqlen} besides the calibration windows")
            starts.append(start)
            floor = target = start + seqlen
    return starts


def _place(segments: Sequence[Segment], at: int, seqlen: int) -> int | None:
    """The first start >= ``at`` whose window fits inside one segment."""
    for start, end in segments:
        if end - seqlen < max(start, at):
            continue
        return max(start, at)
    return None


def allowed_ranges(segments: Sequence[Segment], seqlen: int, held_out: Sequence[int]) -> list[Segment]:
    """Half-open ranges of start positions whose window fits in a segment and overlaps no held-out window."""
    blocked = sorted((h - seqlen + 1, h + seqlen) for h in held_out)  # starts s with s < h + seqlen and s + seqlen > h
    ranges = []
    for start, end in segments:
        lo, hi = start, end - seqlen + 1
        for b_lo, b_hi in blocked:
            if b_hi <= lo or b_lo >= hi:
                continue
            if b_lo > lo:
                ranges.append((lo, b_lo))
            lo = max(lo, b_hi)
        if lo < hi:
            ranges.append((lo, hi))
    return ranges


def random_starts(ranges: Sequence[Segment], n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` starts drawn uniformly over the union of ``ranges`` (one ``randint`` per start, seeded)."""
    sizes = torch.tensor([hi - lo for lo, hi in ranges], dtype=torch.long)
    offsets = torch.cumsum(sizes, 0)
    picks = torch.randint(0, int(offsets[-1]), (n,), generator=generator)
    which = torch.searchsorted(offsets, picks, right=True)
    lows = torch.tensor([lo for lo, _ in ranges], dtype=torch.long)
    return lows[which] + picks - (offsets[which] - sizes[which])


def cut(ids: torch.Tensor, starts: Sequence[int] | torch.Tensor, seqlen: int) -> torch.Tensor:
    """The windows ``ids[s : s + seqlen]`` stacked into ``(len(starts), seqlen)``."""
    starts = torch.as_tensor(starts, dtype=torch.long)
    return ids[starts.unsqueeze(1) + torch.arange(seqlen)]
