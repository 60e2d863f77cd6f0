"""Executing runs in-process (what a worker does with a claimed run): results stored, reuse, reproducibility,
cancellation, failures, kept models, late outcomes, a stored trust_remote_code."""

import json
import math
import os
import threading
import time

import pytest
from fixtures_tiny import perp_home, tiny_model_dir, tiny_run_config, tiny_text_file  # noqa: F401 (fixtures)

from perp_engine.jobs import RunCancelled, RunTracker, local, worker
from perp_engine.jobs.outcome import Outcome, record_outcome
from perp_engine.jobs.worker import execute_run
from perp_engine.result import RunResult
from perp_engine.store import RunStore

pytestmark = pytest.mark.usefixtures("perp_home")

RETRAIN = dict(method="wanda", mode="retrain", train=("norms",), steps=3)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def claimed(store: RunStore, config, **options) -> int:
    run_id = store.create_run(config, **options)
    assert store.claim_next() == run_id
    return run_id


def test_run_is_stored_reused_and_reproducible(store, tiny_model_dir, tiny_text_file):
    cfg = tiny_run_config(tiny_model_dir, tiny_text_file, **RETRAIN)
    first = claimed(store, cfg)
    assert execute_run(store, first) == "done"
    row = store.get_run(first)
    assert row.status == "done" and row.reused == [] and row.error is None
    assert row.final_ppl == row.result["final_ppl"] and math.isfinite(row.final_ppl)
    assert row.sparsity == pytest.approx(0.5)
    assert len(store.layers(first)) == 2 * 7 and all(r["sparsity"] == pytest.approx(0.5) for r in store.layers(first))
    assert len(store.blocks(first)) == 2 and len(store.curve(first)) == 3
    assert row.environment["seed"] == 0 and "torch" in row.environment and row.environment["device"] == "cpu"
    assert any("dense perplexity" in line for line in store.logs(first))

    same = claimed(store, cfg)  # identical config: the result is reused, nothing recomputed
    assert execute_run(store, same) == "done"
    reused = store.get_run(same)
    assert reused.reused == ["result"] and reused.final_ppl == row.final_ppl
    assert f"run {first}" in reused.result["notes"][-1]

    again = claimed(store, cfg, recompute=True)  # same config and seed, computed again: same perplexity
    assert execute_run(store, again) == "done"
    recomputed = store.get_run(again)
    assert recomputed.reused == []
    for name in ("dense_ppl", "pruned_ppl", "final_ppl"):
        assert getattr(recomputed, name) == pytest.approx(getattr(row, name), rel=1e-6)

    longer = claimed(store, cfg.replace(steps=4))  # same pruning settings: dense ppl and pruned model from the cache
    assert execute_run(store, longer) == "done"
    assert {"dense_ppl", "pruned_model"} <= set(store.get_run(longer).reused)


def test_kept_model_lands_in_the_artifact_folder(store, tiny_model_dir, tiny_text_file):
    run_id = claimed(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=True)
    assert execute_run(store, run_id) == "done"
    row = store.get_run(run_id)
    folder = store.artifact_dir(run_id)
    assert row.artifact == str(folder)
    assert {"model.safetensors", "masks.safetensors", "config.json"} <= {p.name for p in folder.iterdir()}
    assert not folder.with_name(f"{folder.name}.partial").exists()


def test_failed_run_records_the_reason(store, tiny_model_dir, tiny_text_file, tmp_path):
    missing = tmp_path / "gone"
    missing.mkdir()  # a folder without a model in it
    run_id = claimed(store, tiny_run_config(missing, tiny_text_file))
    assert execute_run(store, run_id) == "failed"
    row = store.get_run(run_id)
    assert row.status == "failed" and row.error and "\n" not in row.error and row.finished_at


def test_cancel_requested_stops_the_run(store, tiny_model_dir, tiny_text_file):
    cfg = tiny_run_config(tiny_model_dir, tiny_text_file, **{**RETRAIN, "steps": 100_000, "train_samples": 8})
    run_id = claimed(store, cfg)

    def cancel_when_training():
        while store.get_run(run_id).stage != "train":
            time.sleep(0.1)
        store.request_cancel(run_id)

    threading.Thread(target=cancel_when_training, daemon=True).start()
    assert execute_run(store, run_id) == "cancelled"
    row = store.get_run(run_id)
    assert row.status == "cancelled" and row.error.startswith("cancelled by user during train at")
    assert row.result is None and store.layers(run_id) == []


def test_tracker_interrupts_a_main_thread_that_reports_nothing(store):
    run_id = store.create_run(tiny_run_config("m", __file__))
    store.start_run(run_id)
    store.request_cancel(run_id)
    started = time.monotonic()
    with pytest.raises(RunCancelled, match="cancelled by user before its first stage"):
        with RunTracker(store, run_id, interval=0.05, grace=0.2):
            while time.monotonic() - started < 60:  # a long computation that never calls progress
                time.sleep(0.01)
    assert store.get_run(run_id).heartbeat_at >= store.get_run(run_id).started_at


def test_an_outcome_arriving_after_the_run_ended_leaves_it_as_it_ended(store):
    config = tiny_run_config("m", __file__)
    run_id = store.create_run(config)
    store.start_run(run_id)
    assert store.mark_cancelled(run_id, "cancelled by user during train at 40%")
    late = Outcome("done", result=RunResult(config=config.to_dict(), pruned_ppl=10.0).to_dict())
    assert record_outcome(store, run_id, late) == "cancelled"
    row = store.get_run(run_id)
    assert (row.status, row.error, row.pruned_ppl) == ("cancelled", "cancelled by user during train at 40%", None)
    assert store.logs(run_id)[-1] == "the run ended done after it had been marked cancelled; it stays cancelled"


def test_a_kept_model_folder_that_already_exists_is_left_alone(store, tiny_model_dir, tiny_text_file):
    run_id = claimed(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=True)
    stale = store.artifact_dir(run_id)  # e.g. left by a run of a store that was replaced by hand
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_text("another run's model")
    assert execute_run(store, run_id) == "failed"
    row = store.get_run(run_id)
    assert row.error == (f"keep_model: {stale} already exists (left by an earlier run or attempt); it is left as it is: "
                         "move it away, or run without keeping the model") and row.artifact is None
    assert [p.name for p in stale.iterdir()] == ["model.safetensors"]
    assert (stale / "model.safetensors").read_text() == "another run's model"


def asks_remote_code(store: RunStore, config) -> int:
    """A queued run whose stored config sets trust_remote_code, as anyone who can write the store file can make."""
    run_id = store.create_run(config)
    stored = dict(store.get_run(run_id).config, trust_remote_code=True)
    store._conn().execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(stored), run_id))
    return run_id


def test_a_stored_trust_remote_code_runs_only_when_the_worker_was_given_it(store, monkeypatch, tiny_model_dir,
                                                                           tiny_text_file):
    monkeypatch.setattr(worker.signal, "signal", lambda *args: None)  # the worker's SIGTERM handler stays out of pytest
    config = tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude")
    refused = asks_remote_code(store, config)
    assert worker.main(["--store", str(store.path)]) == 0
    row = store.get_run(refused)
    assert (row.status, row.error) == ("failed", f"trust_remote_code: run {refused}'s stored config sets "
                                       "trust_remote_code, which runs Python code from the model's files; refused "
                                       "unless the command that runs it gives --trust-remote-code")
    allowed = asks_remote_code(store, config.replace(seed=1))
    assert worker.main(["--store", str(store.path), "--trust-remote-code"]) == 0
    assert store.get_run(allowed).status == "done"


def test_local_workers_get_the_flag_only_from_an_executor_given_it(tmp_path, monkeypatch):
    started = []

    class Started:
        def __init__(self, argv, **options):
            started.append(argv)
            self.pid = os.getpid()

    monkeypatch.setattr(local.subprocess, "Popen", Started)
    for trusted in (False, True):
        local.LocalExecutor(tmp_path / f"{trusted}.sqlite", trust_remote_code=trusted)._spawn()
    assert ["--trust-remote-code" in argv for argv in started] == [False, True]
