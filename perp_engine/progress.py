"""Progress reporting: the engine calls a plain function, the CLI and the job worker decide what to show."""

from __future__ import annotations

from typing import Protocol

STAGES = ("load", "data", "dense_eval", "dense_zero_shot", "prune", "pruned_eval", "pruned_zero_shot", "train",
          "final_eval", "final_zero_shot")


class Progress(Protocol):
    def __call__(self, stage: str, fraction: float, message: str = "") -> None: ...


def silent(stage: str, fraction: float, message: str = "") -> None:
    """A progress callback that ignores everything."""
