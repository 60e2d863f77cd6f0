"""The worker process: ``python -m perp_engine.jobs.worker --store PATH``.

Claims queued runs one at a time (oldest first) and executes each with :func:`execute_run`; exits when none is
left. SIGTERM cancels the current run and stops the worker. A worker killed outright (kill -9, OOM killer)
leaves its run ``running``; the next RunStore opened on this host marks it failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import PerpError
from ..progress import Progress
from ..run.trust import TRUST_FLAG
from ..store import RunStore
from .outcome import Outcome, attempt, prepare_run, record_outcome
from .tracking import RunCancelled, RunTracker


def execute_run(store: RunStore, run_id: int, on_tracker: Callable[[RunTracker | None], None] | None = None,
                forward: Progress | None = None, reraise: bool = False, trust_remote_code: bool = False) -> str:
    """Execute a claimed (running) run to its end and record the outcome; returns the final status.

    The run is settled by :func:`prepare_run` when possible. Otherwise the pipeline runs with the store's
    artifact cache (dense perplexity, pruned weights) unless ``recompute``, and saves the final model under
    ``store.artifact_dir(run_id)`` when ``keep_model``. ``on_tracker`` receives the RunTracker while the
    pipeline runs (the worker's SIGTERM handler uses it); ``forward`` also receives the progress (e.g. a
    progress bar when a CLI executes a run in its own process after ``store.start_run``).
    ``reraise``: after recording a failure, raise the error again (the CLI turns a PerpError into one line).
    ``trust_remote_code``: the command line or the app session allows the model's own code (see
    perp_engine.run.trust); without it a stored config that asks for it fails.
    """
    config = prepare_run(store, run_id, trust_remote_code=trust_remote_code)
    if config is None:
        return store.get_run(run_id).status
    row = store.get_run(run_id)
    keep_dir = store.artifact_dir(run_id) if row.keep_model else None
    try:
        with RunTracker(store, run_id, forward=forward) as tracker:
            if on_tracker:
                on_tracker(tracker)
            outcome = attempt(config, tracker.progress, tracker.log, keep_dir=keep_dir,
                              cache_dir=None if row.recompute else str(store.cache_dir))
    except RunCancelled as err:
        outcome = Outcome("cancelled", error=str(err))
    finally:
        if on_tracker:
            on_tracker(None)
    record_outcome(store, run_id, outcome, artifact=keep_dir)
    if reraise and outcome.exception is not None:
        raise outcome.exception
    return outcome.status


def work(store: RunStore, trust_remote_code: bool = False) -> int:
    """Claim and execute queued runs until none is left or SIGTERM; returns the number of runs executed.
    ``trust_remote_code``: the worker was started with --trust-remote-code (see :func:`execute_run`)."""
    state: dict = {"tracker": None, "stop": False}

    def on_sigterm(signum, frame):
        state["stop"] = True
        if state["tracker"] is not None:
            state["tracker"].cancel(f"worker {os.getpid()} received SIGTERM")

    def on_tracker(tracker):
        state["tracker"] = tracker
        if tracker is not None and state["stop"]:
            tracker.cancel(f"worker {os.getpid()} received SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    done = 0
    while not state["stop"]:
        run_id = store.claim_next()
        if run_id is None:
            break
        print(f"worker {os.getpid()}: run {run_id} started", flush=True)
        status = execute_run(store, run_id, on_tracker=on_tracker, trust_remote_code=trust_remote_code)
        print(f"worker {os.getpid()}: run {run_id} {status}", flush=True)
        done += 1
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perp_engine.jobs.worker",
                                     description="Execute the queued runs of a PERP Lab store, then exit.")
    parser.add_argument("--store", metavar="PATH", help="run store (default: $PERP_STORE or the PERP home store)")
    parser.add_argument(TRUST_FLAG, dest="trust_remote_code", action="store_true",
                        help="execute queued runs whose config sets trust_remote_code (refused without it)")
    args = parser.parse_args(argv)
    try:
        store = RunStore(Path(args.store) if args.store else None)
    except PerpError as err:
        print(f"perp worker: error: {err}", file=sys.stderr)
        return 2
    work(store, trust_remote_code=args.trust_remote_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
