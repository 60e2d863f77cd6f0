"""Each claim's zero-shot table, as the pruning papers print theirs: one row per model (the dense model, then
for each pruned model: it before repair and each of its repairs, in the set's order), one column per task and the mean, every cell the task's
headline metric (acc or acc_norm) with its standard error.

One table per zero-shot protocol (tasks, docs per task, seed, data source): runs scored under different protocols
are never in one table, so no mean mixes them. Runs without scores (a set run without ``--zero-shot``, a run
that did not finish) are not in any table; a claim with none has no table.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..evaluation.zero_shot_table import Protocol, mean_accuracy, mean_stderr, protocol, task_rows
from .results import RunNumbers
from .wording import NAMES, AccuracyTable, Table, recipe_label

DENSE_ROW = ("dense", "–")
UNREPAIRED = "none"  # the preset of the set's prune-only runs


def pruning_name(run: RunNumbers) -> str:
    """``magnitude 50%`` or ``wanda 2:4``."""
    return f"{run.method} {run.pattern if run.pattern != 'unstructured' else f'{run.sparsity:.0%}'}"


def _cells(zero_shot: dict, which: str, tasks: tuple[str, ...]) -> list:
    """``[value, standard error]`` per task (None where a task was not scored), then the mean's."""
    scores = {s["task"]: s for s in zero_shot.get(which) or []}
    cells = [[scores[t]["value"], scores[t]["stderr"]] if t in scores else None for t in tasks]
    return [*cells, [mean_accuracy(zero_shot, which), mean_stderr(zero_shot, which)]]


def _table(protocol_: Protocol, runs: list[RunNumbers]) -> AccuracyTable:
    rows_of_tasks = task_rows(runs[0].zero_shot)
    rows = []
    dense = next((r for r in runs if r.zero_shot.get("dense")), None)
    if dense:
        rows.append([*DENSE_ROW, *_cells(dense.zero_shot, "dense", protocol_.tasks)])
    unrepaired = {pruning_name(r) for r in runs if r.preset == UNREPAIRED}
    order = list(dict.fromkeys(pruning_name(r) for r in runs))
    for run in sorted(runs, key=lambda r: order.index(pruning_name(r))):  # by pruned model, then in set order
        pruning = pruning_name(run)
        if pruning not in unrepaired and run.zero_shot.get("pruned"):  # the pruned model, once, as "no repair"
            unrepaired.add(pruning)
            rows.append([pruning, NAMES[UNREPAIRED], *_cells(run.zero_shot, "pruned", protocol_.tasks)])
        which = "pruned" if run.mode == "none" else "final"
        if run.zero_shot.get(which):
            rows.append([pruning, recipe_label(run), *_cells(run.zero_shot, which, protocol_.tasks)])
    note = (f"{protocol_.describe()}; headline metric and split per task: "
            + ", ".join(f"{t.title} {t.metric} ({t.split}, {t.docs:,} of {t.total:,})" for t in rows_of_tasks))
    titles = [t.title for t in rows_of_tasks]
    return AccuracyTable(note=note, table=Table(["pruning", "recipe", *titles, "mean"],
                                                ["text", "text", *["accuracy"] * (len(titles) + 1)], rows))


def zero_shot_tables(number: int, runs: Iterable[RunNumbers]) -> list[AccuracyTable]:
    """Claim ``number``'s zero-shot tables from the set's runs (those of the claim that finished with scores),
    one per protocol in the order the runs first use them."""
    groups: dict[Protocol, list[RunNumbers]] = {}
    for run in runs:
        found = protocol(run.zero_shot) if run.done and number in run.claims else None
        if found is not None:
            groups.setdefault(found, []).append(run)
    return [_table(p, group) for p, group in groups.items()]
