"""The executor interface: where runs execute. The pipeline, the CLI and the app only ever talk to this.

LocalExecutor runs jobs in worker processes on this machine; RayExecutor runs them as Ray tasks on a cluster.
Another engine (Slurm, a cloud queue...) implements the same methods and writes progress and results to a
RunStore, so sweeps can be dispatched elsewhere without touching the pipeline. See docs/architecture.md.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..config import RunConfig
from ..errors import PerpError
from ..store import RunRow
from ..store.schema import FINISHED


@dataclass(frozen=True)
class JobStatus:
    """Where a run stands: ``status`` is queued | running | done | failed | cancelled."""

    status: str
    stage: str | None = None
    fraction: float = 0.0
    message: str = ""
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_row(cls, row: RunRow) -> "JobStatus":
        return cls(row.status, row.stage, row.fraction, row.message, row.error)


class Executor(ABC):
    """Submit runs, ask where they stand, cancel them. Run ids are the store's ids.

    ``detached``: whether runs go on after the process that submitted them exits (else that process must wait
    for them, and :meth:`close` ends what it still holds)."""

    detached = True

    @abstractmethod
    def submit(self, config: RunConfig, *, sweep_id: int | None = None, keep_model: bool = False,
               recompute: bool = False, checked: bool = False) -> int:
        """Queue ``config`` and return its run id at once; the run executes elsewhere.

        Before anything is recorded the config is checked against the machine, model and text
        (:func:`perp_engine.run.preflight.check_run`; PerpError when it cannot run), unless ``checked`` says the
        caller just did (a sweep checks its whole grid first). ``keep_model`` keeps the final model for
        ``perp export``; ``recompute`` runs it even when an identical run or cached artifacts exist.
        """

    @abstractmethod
    def status(self, run_id: int) -> JobStatus:
        """The run's current status; unknown ids raise PerpError."""

    @abstractmethod
    def cancel(self, run_id: int) -> JobStatus:
        """Cancel a queued run at once or ask a running one to stop (it ends ``cancelled`` within seconds);
        a finished run is left as it is. Returns the status after the request."""

    def describe(self) -> str:
        """Where runs execute, in one line for people (the app's sidebar)."""
        return type(self).__name__

    def ensure_workers(self) -> list:
        """Make the store's queued runs execute (after a crash or a reboot left some queued); returns what
        it started. An executor whose runs cannot be left queued has nothing to do."""
        return []

    def close(self) -> None:
        """Release what this executor holds; the runs of a detached executor go on without it."""

    def wait(self, run_ids: Iterable[int], timeout: float | None = None, poll: float = 0.5,
             on_poll: Callable[[dict[int, JobStatus]], None] | None = None) -> dict[int, JobStatus]:
        """Poll until every run has finished; PerpError after ``timeout`` seconds. ``on_poll`` sees each poll."""
        ids = list(run_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            statuses = {i: self.status(i) for i in ids}
            if on_poll:
                on_poll(statuses)
            if all(s.finished for s in statuses.values()):
                return statuses
            if deadline is not None and time.monotonic() > deadline:
                pending = [str(i) for i, s in statuses.items() if not s.finished]
                raise PerpError("timeout", f"runs {', '.join(pending)} still not finished after {timeout:g} s")
            time.sleep(poll)
