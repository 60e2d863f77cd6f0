"""Progress reporting: the engine calls a plain function, the CLI and the job worker decide what to show."""

from __future__ import annotations

from typing import Callable, Protocol

STAGES = ("load", "data", "dense_eval", "dense_zero_shot", "prune", "pruned_eval", "pruned_zero_shot", "train",
          "final_eval", "final_zero_shot")


class Progress(Protocol):
    def __call__(self, stage: str, fraction: float, message: str = "") -> None: ...


def part(progress: Callable[..., None] | None, lo: float, hi: float) -> Callable[..., None] | None:
    """A ``(fraction, message)`` callback that reports into [lo, hi] of ``progress`` (None stays None)."""
    if progress is None:
        return None
    return lambda fraction, message="": progress(lo + (hi - lo) * fraction, message)


def silent(stage: str, fraction: float, message: str = "") -> None:
    """A progress callback that ignores everything."""
