"""RayExecutor: each run is a Ray task on a cluster (or on a local Ray instance); this process is the driver.

SQLite stays here: tasks get the run's config and return an Outcome (the RunResult dict, or why it failed);
they report progress and log lines to an EventBoard actor (see ray_task). A thread of the process that owns
the executor takes those events into the store every ``POLL_S`` seconds, so ``perp runs`` and the app's progress
bars work unchanged, records each result, and turns the store's cancel requests (``perp cancel`` from any
process, the app's button) into ``ray.cancel``.

A run stays ``queued`` in the store until its task starts; the driver then marks it ``running`` in its own
pid. The first to claim a queued run executes it: if a LocalExecutor worker (or another driver) took it first,
this driver cancels its task and leaves the run alone.

The driver must outlive its runs (Ray ends a driver's tasks when it exits): ``perp run`` and ``perp sweep``
with ``--executor ray`` wait, and the app's server is the driver of the runs it launches. When the driver exits
normally (Ctrl-C, end of the process), :meth:`close` cancels the Ray tasks and marks their runs cancelled
with the reason; when it is killed, its running runs are marked failed the next time the store is opened on
its host (the pid is gone) and its queued runs stay queued for ``perp sweep --resume``.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.exceptions import NodeDiedError, OutOfMemoryError, RayError, RayTaskError, WorkerCrashedError

from ..config import RunConfig
from ..errors import PerpError
from ..resources.heap import worker_env_vars
from ..store import RunStore
from .executor import Executor, JobStatus
from .local import portable_config
from .outcome import Outcome, prepare_run, record_outcome
from .ray_task import EventBoard, run_on_node
from .tracking import where

POLL_S = 0.5
CANCEL_GRACE_S = 5.0  # a task that ignores ray.cancel's KeyboardInterrupt this long is killed (force=True)
MAX_FAILED_STEPS = 60  # this many failed driver steps in a row (30 s): Ray is lost, the held runs are failed
LOST = {WorkerCrashedError: "its Ray worker died", NodeDiedError: "its Ray node died",
        OutOfMemoryError: "Ray killed it for lack of memory"}


@dataclass
class _Held:
    """A run this driver submitted to Ray, and what the driver knows of it."""

    ref: ray.ObjectRef
    keep_dir: Path | None
    stage: str | None = None
    fraction: float = 0.0
    message: str = "starting"
    attempts: int = 0  # "start" events seen: 2 or more when Ray retried after a worker died
    node: str | None = None
    pid: int | None = None
    cancel: str | None = None  # why it is being cancelled; the run ends cancelled with it
    cancel_at: float | None = None
    forced: bool = False
    foreign: bool = False  # someone else settled or claimed the run first: never record it


class RayExecutor(Executor):
    """``address`` None starts or joins a local Ray instance, ``"auto"`` or ``host:port`` joins a running
    cluster, ``ray://host:port`` connects through Ray Client (a process already connected to Ray keeps its
    connection). Each run asks Ray for ``num_cpus`` CPUs, plus ``num_gpus`` GPUs when its device is ``cuda``
    or ``auto`` and the cluster has GPUs. ``retries``: how many times Ray may rerun a run whose worker or node
    died (each attempt is logged); 0 marks it failed at once. ``trust_remote_code``: runs whose config sets
    trust_remote_code may execute (given on the command line; see perp_engine.run.trust), else they fail."""

    detached = False

    def __init__(self, address: str | None = None, store_path: str | os.PathLike | None = None, *,
                 num_cpus: float = 1, num_gpus: float = 1, retries: int = 0, trust_remote_code: bool = False):
        for name, value, low in (("num_cpus", num_cpus, 0), ("num_gpus", num_gpus, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
                raise PerpError(name, f"{value!r} is not allowed; use a number >= {low}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise PerpError("retries", f"{retries!r} is not allowed; use an integer >= 0")
        self.store = RunStore(store_path)
        self.address = address
        self.num_cpus, self.num_gpus, self.retries = num_cpus, num_gpus, retries
        self.trust_remote_code = trust_remote_code
        connect(address)
        self._task = ray.remote(run_on_node)
        self._board = None  # the EventBoard actor, created with the first task
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        atexit.register(self.close)

    # -- the executor interface -----------------------------------------------------------------------------

    def submit(self, config: RunConfig, *, sweep_id: int | None = None, keep_model: bool = False,
               recompute: bool = False, checked: bool = False) -> int:
        if not checked:
            from ..run.preflight import check_run

            check_run(config)
        run_id = self.store.create_run(portable_config(config), sweep_id, keep_model=keep_model, recompute=recompute)
        self._dispatch(run_id)
        return run_id

    def status(self, run_id: int) -> JobStatus:
        self.store.recover()
        return JobStatus.from_row(self.store.get_run(run_id))

    def cancel(self, run_id: int) -> JobStatus:
        """A queued run is cancelled at once, a running one gets the store's cancel flag, which the driver
        holding it (this one or another process) turns into ``ray.cancel`` within ``POLL_S`` seconds."""
        self.store.request_cancel(run_id)
        return self.status(run_id)

    def ensure_workers(self) -> list[int]:
        """Submit to Ray the store's queued runs this driver does not hold (left by a driver that was killed,
        or queued by another executor: the first to claim a run executes it); returns their ids."""
        with self._lock:
            held = set(self._held)
        ids = [r.id for r in reversed(self.store.list_runs(status="queued")) if r.id not in held]
        return [run_id for run_id in ids if self._dispatch(run_id)]

    def close(self) -> None:
        """Record the runs whose tasks have returned (their events first), then cancel the Ray tasks of every
        other run this driver holds and mark those runs cancelled: without a driver, nothing would record them.
        Called at exit; ``perp sweep --executor ray`` calls it on Ctrl-C."""
        with self._lock:
            held = dict(self._held)
        try:
            ready = self._ready(held) if held else []
        except RayError:  # Ray already shut down: its tasks ended with it
            ready = []
        for run_id in ready:
            self._finish(run_id, held[run_id])
        with self._lock:
            held, self._held = self._held, {}
        for run_id, run in held.items():
            if run.foreign:
                continue
            try:
                ray.cancel(run.ref, force=True)
            except RayError:  # Ray already shut down: its tasks ended with it
                pass
            self.store.mark_cancelled(run_id, f"cancelled: its Ray driver (pid {os.getpid()}) stopped "
                                              f"{where(run.stage, run.fraction)}")

    def describe(self) -> str:
        total, free = ray.cluster_resources(), ray.available_resources()
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        gpus = f", {total.get('GPU', 0):g} GPUs ({free.get('GPU', 0):g} free)" if total.get("GPU") else ", no GPU"
        at = self.address or os.environ.get("RAY_ADDRESS") or "(local)"
        return (f"Ray cluster {at}: {nodes} node(s), {total.get('CPU', 0):g} CPUs "
                f"({free.get('CPU', 0):g} free){gpus}")

    def resources(self, config: RunConfig) -> dict:
        """Ray's resource request for a run: ``num_gpus`` GPUs when it may use CUDA and the cluster has GPUs
        (Ray then shows the task only its GPUs, as ``cuda:0``...), else CPUs only (the task sees no GPU)."""
        wants_gpu = config.device == "auto" or config.device.startswith("cuda")
        gpus = self.num_gpus if wants_gpu and ray.cluster_resources().get("GPU", 0) > 0 else 0
        return {"num_cpus": self.num_cpus, "num_gpus": gpus}

    def task_options(self, config: RunConfig) -> dict:
        """A run's Ray task options: its resources, the retries, and the heap settings a local worker starts with
        (perp_engine.resources.heap, decided by this driver's C library) as the task's environment variables. Ray starts
        the task's worker with them (a worker per runtime environment; a job's own ``runtime_env`` is merged,
        its other variables kept), so glibc reads them when the worker starts."""
        options = {**self.resources(config), "max_retries": self.retries, "retry_exceptions": False}
        env_vars = worker_env_vars(os.environ)
        if env_vars:
            options["runtime_env"] = {"env_vars": env_vars}
        return options

    # -- submitting -----------------------------------------------------------------------------------------

    def _dispatch(self, run_id: int) -> bool:
        """Submit a queued run's task, unless :func:`prepare_run` settles it here (reused, invalid)."""
        config = prepare_run(self.store, run_id, trust_remote_code=self.trust_remote_code)
        if config is None:
            return False
        row = self.store.get_run(run_id)
        keep_dir = self.store.artifact_dir(run_id) if row.keep_model else None
        options = {**self.task_options(config), "name": f"perp-run-{run_id}"}
        with self._lock:
            if self._board is None:
                self._board = ray.remote(EventBoard).options(num_cpus=0).remote()
            ref = self._task.options(**options).remote(run_id, config.to_dict(), recompute=row.recompute,
                                                       keep_dir=str(keep_dir) if keep_dir else None,
                                                       board=self._board)
            self._held[run_id] = _Held(ref, keep_dir)
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain_loop, name="perp-ray-driver", daemon=True)
                self._thread.start()
        return True

    # -- the driver thread ----------------------------------------------------------------------------------

    def _drain_loop(self) -> None:
        """Every ``POLL_S`` seconds: events, heartbeats and cancel checks, results. Ends when nothing is held
        (the next submit starts it again)."""
        failed_steps = 0
        while True:
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                held = dict(self._held)
            try:
                self._step(held)
                failed_steps = 0
            except Exception as err:  # a busy store or a Ray hiccup must not end the thread: runs would stay running
                traceback.print_exc()
                failed_steps += 1
                if failed_steps >= MAX_FAILED_STEPS:
                    self._abandon(f"its Ray driver (pid {os.getpid()}) failed {failed_steps} times in a row to reach "
                                  f"Ray or the store: {type(err).__name__}: {first_line(err)}")
            time.sleep(POLL_S)

    def _abandon(self, reason: str) -> None:
        """Fail every run held (a driver that cannot reach Ray must not leave them running) and drop them."""
        with self._lock:
            held, self._held = self._held, {}
        for run_id, run in held.items():
            try:
                ray.cancel(run.ref, force=True)
            except Exception:  # best effort: Ray may be what failed
                pass
            if not run.foreign:
                try:
                    self.store.fail_run(run_id, f"{reason} ({where(run.stage, run.fraction)})")
                except Exception:  # the store may be what failed: nothing else can record the run
                    traceback.print_exc()

    def _ready(self, held: dict[int, _Held]) -> list[int]:
        """The runs of ``held`` whose tasks have returned, after taking the board's events into the store."""
        refs = {run.ref: run_id for run_id, run in held.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        self._apply(self._take())  # after ray.wait: a finished task's events are all on the board
        return [refs[ref] for ref in ready]

    def _step(self, held: dict[int, _Held]) -> None:
        ready = self._ready(held)
        queued = {r.id for r in self.store.list_runs(status="queued")}
        for run_id, run in held.items():
            if run.attempts == 0 and run_id not in queued and not run.foreign:
                self._drop(run)  # cancelled before it started, or claimed by another executor
            elif run.attempts and not run.foreign and self.store.progress(run_id, run.stage, run.fraction, run.message):
                self._cancel(run, "cancelled by user")
            if run.cancel_at is not None and not run.forced and time.monotonic() - run.cancel_at > CANCEL_GRACE_S:
                ray.cancel(run.ref, force=True)
                run.forced = True
        for run_id in ready:
            self._finish(run_id, held[run_id])

    def _take(self) -> list[tuple]:
        try:
            return ray.get(self._board.take.remote())
        except RayError:  # the board's actor is gone with its node: tasks fail to report and say so themselves
            return []

    def _apply(self, events: list[tuple]) -> None:
        with self._lock:
            held = dict(self._held)
        for kind, run_id, *data in events:
            run = held.get(run_id)
            if run is None or run.foreign:
                continue
            if kind == "start":
                self._started(run_id, run, *data)
            elif kind == "progress":
                run.stage, run.fraction, run.message = data
            else:
                self.store.log(run_id, data[0])

    def _started(self, run_id: int, run: _Held, node: str, pid: int, gpus: list) -> None:
        run.attempts += 1
        run.node, run.pid = node, pid
        on = f"Ray node {node} (worker pid {pid}" + (f", GPU {','.join(map(str, gpus))})" if gpus else ")")
        if run.attempts > 1:
            self.store.log(run_id, f"attempt {run.attempts} on {on}: the previous attempt's worker died "
                                   f"{where(run.stage, run.fraction)}")
            run.stage, run.fraction, run.message = None, 0.0, "restarting"
            return
        try:
            self.store.start_run(run_id, os.getpid())
        except PerpError:
            self._drop(run)
            return
        self.store.log(run_id, f"started on {on}; driver pid {os.getpid()}")

    def _cancel(self, run: _Held, reason: str) -> None:
        if run.cancel is None:
            run.cancel = f"{reason} {where(run.stage, run.fraction)}"
            run.cancel_at = time.monotonic()
            ray.cancel(run.ref)

    def _drop(self, run: _Held) -> None:
        """The store settled the run elsewhere: stop its task and never write to the run."""
        run.foreign = True
        ray.cancel(run.ref, force=True)

    def _finish(self, run_id: int, run: _Held) -> None:
        with self._lock:
            if self._held.pop(run_id, None) is None:
                return  # closed meanwhile
        if run.foreign:
            return
        try:
            outcome = ray.get(run.ref)
        except RayError as err:
            outcome = Outcome("failed", error=self._lost(run, err))
        if run.cancel is not None:
            outcome = Outcome("cancelled", error=run.cancel)
        artifact = run.keep_dir if outcome.status == "done" and run.keep_dir and run.keep_dir.is_dir() else None
        if outcome.status == "done" and run.keep_dir and artifact is None:
            self.store.log(run_id, f"the final model was kept on Ray node {run.node} in {run.keep_dir}, which this "
                                   "machine cannot see (no shared file system); perp export will recompute the run")
        record_outcome(self.store, run_id, outcome, artifact=artifact)

    def _lost(self, run: _Held, err: RayError) -> str:
        """Why a task ended without an Outcome, in one line."""
        on = f" on Ray node {run.node} (worker pid {run.pid})" if run.node else ""
        if isinstance(err, RayTaskError):  # the task raised outside the pipeline (e.g. perp-lab missing there)
            cause = err.cause if err.cause is not None else err
            return f"{type(cause).__name__} in the Ray task{on}: {first_line(cause)}"
        what = next((text for kind, text in LOST.items() if isinstance(err, kind)),
                    f"its Ray task was lost ({type(err).__name__})")
        tries = f" after {run.attempts} attempts" if run.attempts > 1 else ""
        return f"{what}{on} {where(run.stage, run.fraction)}{tries}: {first_line(err)}"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def connect(address: str | None) -> None:
    """Join Ray at ``address`` (see RayExecutor) unless this process is already connected."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where_to = address or "a local instance"
        raise PerpError("ray_address", f"cannot join Ray at {where_to}: {first_line(err)}") from None
