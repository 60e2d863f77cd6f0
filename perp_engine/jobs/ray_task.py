"""What a Ray task runs on a cluster node: one run's pipeline, reporting events to an EventBoard actor; no
store here.

The driver (RayExecutor) takes the board's events into the run store. Events are tuples whose first two items
are the kind and the run id:

- ``("start", run_id, node, pid, gpus)``: the task began on ``node`` in worker process ``pid`` (an attempt;
  a second start means Ray retried it after its worker died);
- ``("progress", run_id, stage, fraction, message)``: the pipeline's progress, at most every
  ``PROGRESS_INTERVAL_S`` within a stage;
- ``("log", run_id, line)``: a line of the run's log.

Why not ``ray.util.queue.Queue``: its ``put`` blocks in ``ray.get``, and Ray lends the CPU of a task blocked in
``ray.get`` to the next task, so more runs would execute than CPUs were asked for. The reporter sends events
without waiting (an actor runs one caller's calls in order) and waits once, at the end, so every event of a
task is on the board before its result is: a driver that takes the events after seeing the result has them all.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path

import ray

from ..config import RunConfig
from ..paths import perp_home
from .outcome import Outcome, attempt

PROGRESS_INTERVAL_S = 0.25


class EventBoard:
    """The events of the driver's runs, kept until the driver takes them (a Ray actor: ``ray.remote(EventBoard)``)."""

    def __init__(self):
        self.events: list[tuple] = []

    def put(self, event: tuple) -> None:
        self.events.append(event)

    def take(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


class Reporter:
    """The pipeline's progress and log callbacks for one run, sent to an EventBoard actor without waiting."""

    def __init__(self, board, run_id: int, interval: float = PROGRESS_INTERVAL_S):
        self.board = board
        self.run_id = run_id
        self.interval = interval
        self._stage: str | None = None
        self._sent = 0.0
        self._last = None

    def started(self) -> None:
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        self._put(("start", self.run_id, platform.node(), os.getpid(), list(gpus)))

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if stage == self._stage and fraction < 1.0 and now - self._sent < self.interval:
            return
        self._stage, self._sent = stage, now
        self._put(("progress", self.run_id, stage, float(fraction), message))

    def log(self, line: str) -> None:
        self._put(("log", self.run_id, str(line)))

    def flush(self) -> None:
        """Wait until the board holds every event sent so far."""
        if self._last is not None:
            ray.get(self._last)

    def _put(self, event: tuple) -> None:
        self._last = self.board.put.remote(event)


def run_on_node(run_id: int, config: dict, *, recompute: bool, keep_dir: str | None, board) -> Outcome:
    """The Ray task: execute ``config`` with this node's artifact cache (``$PERP_HOME/cache`` on the node)
    unless ``recompute``, keeping the final model in ``keep_dir`` when given. Returns the Outcome without its
    exception object (the error text says what happened). ``ray.cancel`` raises KeyboardInterrupt in here,
    which ends the task as cancelled."""
    reporter = Reporter(board, run_id)
    reporter.started()
    outcome = attempt(RunConfig.from_dict(config), reporter.progress, reporter.log,
                      cache_dir=None if recompute else str(perp_home() / "cache"),
                      keep_dir=Path(keep_dir) if keep_dir else None)
    reporter.flush()
    return dataclasses.replace(outcome, exception=None)
