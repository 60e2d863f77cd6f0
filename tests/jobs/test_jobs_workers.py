"""Real worker processes: parallel limit, queueing, detachment, progress heartbeat, cancel, kill -9 recovery."""

import os
import signal

import pytest
from fixtures_tiny import perp_home, tiny_model_dir, tiny_run_config, tiny_text_file  # noqa: F401 (fixtures)
from waiting import TIMEOUT_S, wait_until

from perp_engine.jobs import LocalExecutor
from perp_engine.store import RunStore

pytestmark = pytest.mark.usefixtures("perp_home")

SLOW = dict(method="magnitude", mode="retrain", train=("norms",), steps=100_000, train_samples=8)  # minutes if not stopped


def training(executor: LocalExecutor, run_id: int) -> bool:
    status = executor.status(run_id)
    assert not status.finished, status
    return status.status == "running" and status.stage == "train"


def test_parallel_workers_queue_and_cancel(tmp_path, tiny_model_dir, tiny_text_file):
    executor = LocalExecutor(tmp_path / "runs.sqlite", max_parallel=2)
    ids = [executor.submit(tiny_run_config(tiny_model_dir, tiny_text_file, seed=i, **SLOW)) for i in range(3)]
    try:
        wait_until(lambda: training(executor, ids[0]) and training(executor, ids[1]), "two runs training at once")
        first, second, third = (executor.store.get_run(i) for i in ids)
        assert first.pid != second.pid and third.status == "queued"  # at most max_parallel run at once
        assert sorted(executor.store.live_workers()) == sorted([first.pid, second.pid])
        assert os.getsid(first.pid) != os.getsid(0)  # detached: a new session, not killed with the caller
        wait_until(lambda: executor.store.get_run(ids[0]).heartbeat_at > first.heartbeat_at, "a progress report")

        assert executor.cancel(ids[2]).status == "cancelled"  # queued: at once
        assert executor.cancel(ids[0]).status == "running"  # running: asked to stop
        os.kill(second.pid, signal.SIGTERM)  # a terminated worker cancels its run and exits
        final = executor.wait(ids, timeout=60)
    finally:
        for run_id in ids:
            executor.cancel(run_id)
    assert [s.status for s in final.values()] == ["cancelled"] * 3
    assert final[ids[0]].error.startswith("cancelled by user during train at")
    assert final[ids[1]].error.startswith(f"worker {second.pid} received SIGTERM during train at")
    assert executor.store.layers(ids[0]) == [] and executor.store.get_run(ids[0]).result is None
    wait_until(lambda: executor.store.live_workers() == [], "the workers to exit once the queue is empty", timeout=60)


def test_killed_worker_fails_its_run_and_the_queue_goes_on(tmp_path, tiny_model_dir, tiny_text_file):
    path = tmp_path / "runs.sqlite"
    executor = LocalExecutor(path)
    slow = executor.submit(tiny_run_config(tiny_model_dir, tiny_text_file, **SLOW))
    wait_until(lambda: training(executor, slow), "the run to train")
    pid = executor.store.get_run(slow).pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: RunStore(path).get_run(slow).status != "running", "the kill to be noticed on open", timeout=30)

    row = executor.store.get_run(slow)
    assert row.status == "failed"
    assert row.error.startswith(f"worker died (pid {pid}) during train at")
    assert executor.store.live_workers() == []

    quick = executor.submit(tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"))
    done = executor.wait([quick], timeout=TIMEOUT_S)[quick]
    assert done.status == "done", done.error
    assert executor.store.get_run(quick).final_ppl is None and executor.store.get_run(quick).pruned_ppl > 0
