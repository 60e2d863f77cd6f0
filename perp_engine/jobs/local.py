"""LocalExecutor: runs execute in detached worker processes on this machine, coordinated through the store.

``submit`` inserts the run as queued and starts ``python -m perp_engine.jobs.worker --store PATH`` in a new
session when fewer than ``max_parallel`` workers of this host are alive (and some queued run has no idle
worker). Workers claim queued runs one at a time and exit when none is left. The caller may exit, a
Streamlit script may rerun, a browser tab may close: workers keep going, and nothing is run twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..config import NAMED_DATASETS, RunConfig
from ..errors import PerpError
from ..resources.heap import tuned_environ
from ..run.trust import TRUST_FLAG
from ..store import RunStore
from .executor import Executor, JobStatus

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class LocalExecutor(Executor):
    """``store_path`` None means the default store; ``max_parallel`` caps the worker processes of this host.
    ``trust_remote_code``: the workers it starts may execute runs whose config sets trust_remote_code (given on
    the command line; see perp_engine.run.trust); a worker started without it fails such a run."""

    def __init__(self, store_path: str | os.PathLike | None = None, max_parallel: int = 1, *,
                 trust_remote_code: bool = False):
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise PerpError("max_parallel", f"{max_parallel!r} is not allowed; use an integer >= 1")
        self.store = RunStore(store_path)
        self.max_parallel = max_parallel
        self.trust_remote_code = trust_remote_code

    def submit(self, config: RunConfig, *, sweep_id: int | None = None, keep_model: bool = False,
               recompute: bool = False, checked: bool = False) -> int:
        if not checked:
            from ..run.preflight import check_run  # torch loads here: importing perp_engine.jobs must not load it

            check_run(config)
        run_id = self.store.create_run(portable_config(config), sweep_id, keep_model=keep_model, recompute=recompute)
        self.ensure_workers()
        return run_id

    def status(self, run_id: int) -> JobStatus:
        self.store.recover()
        return JobStatus.from_row(self.store.get_run(run_id))

    def cancel(self, run_id: int) -> JobStatus:
        self.store.request_cancel(run_id)
        return self.status(run_id)

    def describe(self) -> str:
        return f"local worker processes, {self.max_parallel} at a time"

    def ensure_workers(self) -> list[int]:
        """Start workers for queued runs, up to ``max_parallel`` live ones; returns the pids started.

        Call it after a crash or a reboot to resume the queue (``perp sweep --resume`` does)."""
        started = []
        while len(started) < self.max_parallel:
            pid = self.store.spawn_worker(self.max_parallel, self._spawn)
            if pid is None:
                break
            started.append(pid)
        return started

    @property
    def worker_log(self) -> Path:
        """Where workers write their stdout/stderr (tracebacks of crashes outside any run end up here)."""
        return self.store.root / "logs" / "workers.log"

    def _spawn(self) -> int:
        env = tuned_environ(os.environ)  # see perp_engine.resources.heap
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        if self.max_parallel > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.max_parallel))
        self.worker_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.worker_log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "perp_engine.jobs.worker", "--store", str(self.store.path),
                 *([TRUST_FLAG] if self.trust_remote_code else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                close_fds=True,
            )
        return proc.pid


def portable_config(config: RunConfig) -> RunConfig:
    """The config with local model folders and text files made absolute, so a worker started from another
    folder (or a later export) finds the same files."""
    changes = {}
    if Path(config.model).expanduser().exists():
        changes["model"] = str(Path(config.model).expanduser().resolve())
    for name in ("dataset", "calib_dataset"):
        value = getattr(config, name)
        if value and value not in NAMED_DATASETS and not value.startswith("file:") and os.path.isfile(value):
            changes[name] = str(Path(value).resolve())
    return config.replace(**changes) if changes else config
