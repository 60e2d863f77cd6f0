"""A run's zero-shot scores as tables: per task, dense -> pruned -> final; the mean over tasks; and the protocol
(tasks, docs per task, seed, data source) that decides which runs' accuracies may be compared or averaged.

Plain values from ``RunResult.zero_shot`` (stored with the run), shared by the CLI, the app and the paper report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import ZERO_SHOT_MODELS


@dataclass(frozen=True)
class TaskRow:
    """One task: its headline metric on each scored model (None where that model was not scored), with standard
    errors."""

    task: str
    title: str
    metric: str
    split: str
    docs: int
    total: int
    chance: float
    value: dict[str, float | None]
    stderr: dict[str, float | None]


@dataclass(frozen=True)
class Protocol:
    """What makes two runs' accuracies comparable: the same tasks, the same docs (limit and seed) and source."""

    tasks: tuple[str, ...]
    limit: int
    seed: int
    source: str

    def describe(self) -> str:
        docs = "all docs" if self.limit == 0 else f"{self.limit} docs per task (seed {self.seed})"
        return f"{len(self.tasks)} task(s), {docs}, data: {self.source}"


def task_rows(zero_shot: dict[str, list[dict]] | None) -> list[TaskRow]:
    """One row per task, in the order scored, with every scored model's headline value."""
    zero_shot = zero_shot or {}
    rows: dict[str, TaskRow] = {}
    for which in ZERO_SHOT_MODELS:
        for score in zero_shot.get(which, []):
            row = rows.setdefault(score["task"], TaskRow(
                task=score["task"], title=score["title"], metric=score["metric"], split=score["split"],
                docs=score["docs"], total=score["total"], chance=score["chance"], value={}, stderr={}))
            row.value[which] = score["value"]
            row.stderr[which] = score["stderr"]
    return list(rows.values())


def mean_accuracy(zero_shot: dict[str, list[dict]] | None, which: str) -> float | None:
    """The mean headline value over the tasks ``which`` (dense, pruned, final) was scored on; None if it was not."""
    scores = (zero_shot or {}).get(which) or []
    return sum(s["value"] for s in scores) / len(scores) if scores else None


def mean_stderr(zero_shot: dict[str, list[dict]] | None, which: str) -> float | None:
    """The standard error of :func:`mean_accuracy`, the tasks' samples being independent: sqrt(sum se^2) / n.
    None when ``which`` was not scored or a task has no standard error."""
    errors = [s["stderr"] for s in (zero_shot or {}).get(which) or []]
    if not errors or any(e is None for e in errors):
        return None
    return math.sqrt(sum(e * e for e in errors)) / len(errors)


def protocol(zero_shot: dict[str, list[dict]] | None) -> Protocol | None:
    """The protocol of a run's scores (None when nothing was scored)."""
    for which in ZERO_SHOT_MODELS:
        scores = (zero_shot or {}).get(which)
        if scores:
            first = scores[0]
            return Protocol(tasks=tuple(s["task"] for s in scores), limit=first["limit"], seed=first["seed"],
                            source=first["source"])
    return None
