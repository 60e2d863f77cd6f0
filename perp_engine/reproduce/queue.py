"""Putting a run set through the normal store and executor: a run that finished before is taken from the
store (not queued again), one queued or running is waited for, the others are checked and submitted.

So a second ``perp reproduce`` recomputes nothing, and one started after a crash or a reboot resumes: the
runs that had finished stay, the rest run (a killed run is marked failed when the store is opened, and is
submitted again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import RunConfig
from ..jobs import Executor
from ..jobs.local import portable_config
from ..store import RunRow, RunStore
from .runset import RunSet

SWEEP_NAME = "paper reproduction"


@dataclass
class Queued:
    """What :func:`queue_set` did: the run id of every key, split by what happened to it."""

    run_ids: dict[str, int] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)  # finished before: taken from the store
    waiting: list[str] = field(default_factory=list)  # queued or running already: waited for
    submitted: list[str] = field(default_factory=list)
    sweep_id: int | None = None  # the sweep the submitted runs belong to (perp runs --sweep N)


def latest_rows(store: RunStore, runset: RunSet) -> dict[str, RunRow | None]:
    """The newest store row of each run of the set (None where it never ran on this store)."""
    return {p.key: store.latest_with_config(portable_config(p.config)) for p in runset.runs}


def queue_set(runset: RunSet, executor: Executor, store: RunStore,
              check: Callable[[RunConfig], object] | None = None) -> Queued:
    """Queue what the set still needs on ``executor``. ``check`` (e.g. a Preflight's) sees every config to
    submit before anything is recorded; its PerpError stops it all.

    A queued run is left to the local workers (a detached executor starts them); an executor that drives its
    own runs (Ray) cancels such a leftover and submits the run again."""
    rows = latest_rows(store, runset)
    queued = Queued()
    todo = []
    for planned in runset.runs:
        row = rows[planned.key]
        if row is not None and row.status == "done":
            queued.run_ids[planned.key] = row.id
            queued.reused.append(planned.key)
        elif row is not None and (row.status == "running" or (row.status == "queued" and executor.detached)):
            queued.run_ids[planned.key] = row.id
            queued.waiting.append(planned.key)
        else:
            todo.append(planned)
    if check is not None:
        for planned in todo:
            check(planned.config)
    if todo:
        queued.sweep_id = store.create_sweep(f"{SWEEP_NAME}{' (quick)' if runset.quick else ''}",
                                             {"base": dict(runset.sizes), "runs": [p.key for p in todo]})
    for planned in todo:
        row = rows[planned.key]
        if row is not None and row.status == "queued":
            store.request_cancel(row.id)
        queued.run_ids[planned.key] = executor.submit(planned.config, sweep_id=queued.sweep_id, checked=True)
        queued.submitted.append(planned.key)
    if queued.waiting:
        executor.ensure_workers()
    return queued


def breakdowns(runset: RunSet) -> dict[str, dict[str, float]]:
    """The cost model's seconds per stage of every run of the set (:func:`perp_engine.resources.estimate.estimate_run`)."""
    from ..resources.estimate import estimate_run

    return {p.key: estimate_run(p.config).breakdown for p in runset.runs}


def set_seconds(runset: RunSet, stages: dict[str, dict[str, float]], keys: list[str] | None = None) -> float:
    """Cost-model seconds of the set's runs (``keys``, default all) from their ``stages`` (:func:`breakdowns`),
    the dense and pruned models they share counted once (:func:`perp_engine.resources.estimate.sweep_seconds`)."""
    from ..resources.estimate import sweep_seconds

    chosen = [p for p in runset.runs if keys is None or p.key in keys]
    return sweep_seconds([p.config for p in chosen], [stages[p.key] for p in chosen])
