"""Executing one run, in parts every executor shares: settle it from the store when it need not run
(:func:`prepare_run`), run the pipeline once without touching the store (:func:`attempt`, which a process on
another machine can call), and write how it ended (:func:`record_outcome`)."""

from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from ..errors import PerpError
from ..progress import Progress
from ..run.trust import check_trusted
from ..store import RunStore


@dataclass
class Outcome:
    """How a pipeline attempt ended: ``status`` done (with the RunResult dict), failed or cancelled (with why).
    ``exception`` is the PerpError or crash behind a failure, for a caller that raises it again."""

    status: str
    result: dict | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)


def prepare_run(store: RunStore, run_id: int, *, trust_remote_code: bool = False) -> RunConfig | None:
    """The config to execute for run ``run_id``, or None when the run was settled here without computing:
    its stored config is invalid or asks for remote code that ``trust_remote_code`` (the command line's or the
    app session's) does not give (failed), or an identical finished run's result is reused (done).

    An identical finished run is reused unless the run asks to recompute or to keep its model."""
    row = store.get_run(run_id)
    try:
        config = RunConfig.from_dict(row.config)
        check_trusted(config, trust_remote_code, f"run {run_id}'s stored config")
    except PerpError as err:
        store.fail_run(run_id, str(err))
        return None
    if not row.recompute and not row.keep_model:
        prior = store.reusable(run_id)
        if prior is not None:
            store.log(run_id, f"identical config already ran as run {prior.id}: result reused (recompute to run again)")
            store.record_result(run_id, _reused_result(prior.result, prior.id))
            return None
    return config


def attempt(config: RunConfig, progress: Progress, log: Callable[[str], None], *, cache_dir: str | None,
            keep_dir: Path | None) -> Outcome:
    """Run the pipeline once; never touches a store, so a process on another machine can call it.

    ``keep_dir``: save the final model there (written to a ``.partial`` sibling, renamed on success, removed on
    failure). A ``keep_dir`` that already exists was not written by this attempt: it is left as it is and the
    attempt fails. A PerpError or any crash of the pipeline is a failed Outcome (a
    crash's traceback goes to ``log``); RunCancelled and KeyboardInterrupt propagate."""
    from ..run.pipeline import run_pipeline  # here, not at the top: importing perp_engine.jobs must not load torch

    if keep_dir is not None and os.path.lexists(keep_dir):
        err = PerpError("keep_model", f"{keep_dir} already exists (left by an earlier run or attempt); it is left "
                                      "as it is: move it away, or run without keeping the model")
        return Outcome("failed", error=str(err), exception=err)
    partial = keep_dir.with_name(f"{keep_dir.name}.partial") if keep_dir else None
    try:
        result = run_pipeline(config, progress, cache_dir=cache_dir, output_dir=str(partial) if partial else None,
                              log=log)
        if partial:
            os.replace(partial, keep_dir)
        return Outcome("done", result=result.to_dict())
    except PerpError as err:
        return Outcome("failed", error=str(err), exception=err)
    except Exception as err:  # any crash of the pipeline ends this run, not the process running it
        log(traceback.format_exc())
        return Outcome("failed", error=f"{type(err).__name__}: {err}", exception=err)
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def record_outcome(store: RunStore, run_id: int, outcome: Outcome, artifact: Path | None = None) -> str:
    """Write how the run ended into the store; returns the status the run has there. A run that had already
    ended (cancelled or failed meanwhile, e.g. by ``perp cancel`` or its driver stopping) keeps that status: the
    late outcome is only said in its log."""
    if outcome.status == "done":
        settled = store.record_result(run_id, outcome.result, artifact=artifact)
    elif outcome.status == "cancelled":
        settled = store.mark_cancelled(run_id, outcome.error)
    else:
        settled = store.fail_run(run_id, outcome.error)
    if settled:
        return outcome.status
    status = store.get_run(run_id).status
    store.log(run_id, f"the run ended {outcome.status} after it had been marked {status}; it stays {status}")
    return status


def _reused_result(result: dict, prior_id: int) -> dict:
    reused = dict(result)
    reused["reused"] = sorted(set(result.get("reused", [])) | {"result"})
    reused["notes"] = list(result.get("notes", [])) + [f"result reused from run {prior_id}, which had the same config"]
    return reused
