"""The worker process: ``python -m perp_engine.jobs.worker --store PATH``.

Claims queued runs one at a time (oldest first) and executes each with :func:`execute_run`; exits when none is
left. SIGTERM cancels the current run and stops the worker. A worker killed outright (kill -9, OOM killer)
leaves its run ``running``; the next RunStore opened on this host marks it failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from ..config import RunConfig
from ..errors import PerpError
from ..progress import Progress
from ..store import RunStore
from .tracking import RunCancelled, RunTracker


def execute_run(store: RunStore, run_id: int, on_tracker: Callable[[RunTracker | None], None] | None = None,
                forward: Progress | None = None, reraise: bool = False) -> str:
    """Execute a claimed (running) run to its end and record the outcome; returns the final status.

    An identical finished run is reused unless the run asks to recompute or to keep its model. Otherwise the
    pipeline runs with the store's artifact cache (dense perplexity, pruned weights) unless ``recompute``, and
    saves the final model under ``store.artifact_dir(run_id)`` when ``keep_model``. ``on_tracker`` receives the
    RunTracker while the pipeline runs (the worker's SIGTERM handler uses it); ``forward`` also receives the
    progress (e.g. a progress bar when a CLI executes a run in its own process after ``store.start_run``).
    ``reraise``: after recording a failure, raise the error again (the CLI turns a PerpError into one line).
    """
    row = store.get_run(run_id)
    try:
        config = RunConfig.from_dict(row.config)
    except PerpError as err:
        store.fail_run(run_id, str(err))
        return "failed"
    if not row.recompute and not row.keep_model:
        prior = store.reusable(run_id)
        if prior is not None:
            store.log(run_id, f"identical config already ran as run {prior.id}: result reused (recompute to run again)")
            store.record_result(run_id, _reused_result(prior.result, prior.id))
            return "done"
    final = store.artifact_dir(run_id) if row.keep_model else None
    partial = final.with_name(f"{final.name}.partial") if final else None
    from ..pipeline import run_pipeline  # here, not at the top: importing perp_engine.jobs must not load torch

    status = "failed"
    try:
        with RunTracker(store, run_id, forward=forward) as tracker:
            if on_tracker:
                on_tracker(tracker)
            result = run_pipeline(config, tracker.progress, cache_dir=None if row.recompute else str(store.cache_dir),
                                  output_dir=str(partial) if partial else None, log=tracker.log)
            if partial:
                os.replace(partial, final)
            store.record_result(run_id, result, artifact=final)
            status = "done"
    except RunCancelled as err:
        store.mark_cancelled(run_id, str(err))
        status = "cancelled"
    except PerpError as err:
        store.fail_run(run_id, str(err))
        if reraise:
            raise
    except Exception as err:  # any crash of the pipeline ends this run, not the worker
        store.log(run_id, traceback.format_exc())
        store.fail_run(run_id, f"{type(err).__name__}: {err}")
        if reraise:
            raise
    finally:
        if on_tracker:
            on_tracker(None)
        for path in (partial, final if status != "done" else None):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
    return status


def _reused_result(result: dict, prior_id: int) -> dict:
    reused = dict(result)
    reused["reused"] = sorted(set(result.get("reused", [])) | {"result"})
    reused["notes"] = list(result.get("notes", [])) + [f"result reused from run {prior_id}, which had the same config"]
    return reused


def work(store: RunStore) -> int:
    """Claim and execute queued runs until none is left or SIGTERM; returns the number of runs executed."""
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
        status = execute_run(store, run_id, on_tracker=on_tracker)
        print(f"worker {os.getpid()}: run {run_id} {status}", flush=True)
        done += 1
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perp_engine.jobs.worker",
                                     description="Execute the queued runs of a PERP Lab store, then exit.")
    parser.add_argument("--store", metavar="PATH", help="run store (default: $PERP_STORE or the PERP home store)")
    args = parser.parse_args(argv)
    try:
        store = RunStore(Path(args.store) if args.store else None)
    except PerpError as err:
        print(f"perp worker: error: {err}", file=sys.stderr)
        return 2
    work(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
