"""RunTracker: reports a run's progress to the store and turns a cancel request into RunCancelled.

Used by the worker process and by in-process runs (``perp run`` recording to the store)::

    with RunTracker(store, run_id) as tracker:
        result = run_pipeline(config, tracker.progress, log=tracker.log)

A background thread writes the latest (stage, fraction, message) and a heartbeat every ``interval`` seconds,
whatever the pipeline is doing, and reads the run's ``cancel_requested`` flag. The next progress call after a
cancel raises RunCancelled; if none comes within ``grace`` seconds (a long model load, a big matmul), the
thread interrupts the main thread with SIGUSR1, whose handler raises RunCancelled there.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

from ..progress import Progress
from ..store import RunStore

_INTERRUPT = getattr(signal, "SIGUSR1", None)


def where(stage: str | None, fraction: float) -> str:
    """Where a run stood when it stopped: ``during train at 40%`` or ``before its first stage``."""
    return f"during {stage} at {100 * fraction:.0f}%" if stage else "before its first stage"


class RunCancelled(BaseException):
    """A run was cancelled. A BaseException, like KeyboardInterrupt, so ``except Exception`` does not swallow it."""


class RunTracker:
    def __init__(self, store: RunStore, run_id: int, *, forward: Progress | None = None, interval: float = 0.5,
                 grace: float = 2.0):
        self.store = store
        self.run_id = run_id
        self.forward = forward
        self.interval = interval
        self.grace = grace
        self._latest: tuple[str | None, float, str] = (None, 0.0, "starting")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cancelled = threading.Event()
        self._reason = "cancelled by user"
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread().ident
        self._old_handler = None
        self._can_interrupt = False

    @property
    def where(self) -> str:
        stage, fraction, _ = self._latest
        return where(stage, fraction)

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        """The pipeline's progress callback; raises RunCancelled once a cancel was requested."""
        with self._lock:
            self._latest = (stage, float(fraction), message)
        if self.forward:
            self.forward(stage, fraction, message)
        if self._cancelled.is_set():
            raise RunCancelled(f"{self._reason} {self.where}")

    def log(self, line: str) -> None:
        self.store.log(self.run_id, line)

    def cancel(self, reason: str) -> None:
        """Cancel from this process (e.g. a SIGTERM handler in the main thread): raises RunCancelled now."""
        self._reason = reason
        self._cancelled.set()
        raise RunCancelled(f"{reason} {self.where}")

    def __enter__(self) -> "RunTracker":
        if _INTERRUPT is not None and threading.get_ident() == self._main:
            self._old_handler = signal.signal(_INTERRUPT, self._on_interrupt)
            self._can_interrupt = True
        self._thread = threading.Thread(target=self._beat, name=f"run-{self.run_id}-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._can_interrupt:
            signal.signal(_INTERRUPT, self._old_handler)
            self._can_interrupt = False

    def _on_interrupt(self, signum, frame) -> None:
        if self._cancelled.is_set():
            raise RunCancelled(f"{self._reason} {self.where}")

    def _beat(self) -> None:
        cancelled_at = None
        while True:
            with self._lock:
                stage, fraction, message = self._latest
            try:
                requested = self.store.progress(self.run_id, stage, fraction, message)
            except sqlite3.Error:  # a store busy beyond its timeout: skip this beat, never end the heartbeat
                requested = False
            if requested and not self._cancelled.is_set():
                self._cancelled.set()
                cancelled_at = time.monotonic()
            if cancelled_at is not None and time.monotonic() - cancelled_at > self.grace and self._can_interrupt:
                signal.pthread_kill(self._main, _INTERRUPT)
                cancelled_at = None
            if self._stop.wait(self.interval):
                return
