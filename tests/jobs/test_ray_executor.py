"""RayExecutor on the session's local Ray instance (the ``ray_local`` fixture: 2 CPUs) with the tiny saved model:
a sweep lands in the store with live progress and reuse, the local executor's numbers, cancel from another
process, a killed worker (with and without retries), a killed driver, resume and close, the CLI, and the
resource request."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from fixtures_tiny import perp_home, tiny_model_dir, tiny_run_config, tiny_text_file  # noqa: F401 (fixtures)
from waiting import TIMEOUT_S, wait_until

from perp_engine.cli import main
from perp_engine.config import RunConfig
from perp_engine.jobs import make_executor, ray_executor
from perp_engine.jobs.worker import execute_run
from perp_engine.resources import heap
from perp_engine.run.sweep import SweepSpec, queue_sweep
from perp_engine.store import RunStore

pytestmark = pytest.mark.usefixtures("perp_home", "ray_local")

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(seqlen=16, calib_samples=4, eval_tokens=64, eval_batch_size=4, batch_size=2, device="cpu")
TINY_FLAGS = ["--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "64", "--batch-size", "2", "--device", "cpu"]
RETRAIN = dict(method="wanda", mode="retrain", train=("norms",), steps=20)
SLOW = dict(method="magnitude", mode="retrain", train=("norms",), steps=100_000, train_samples=8)  # runs until stopped
PERP = [sys.executable, "-c", "import sys; from perp_engine.cli import main; sys.exit(main())"]  # `perp` in a process


def executor(tmp_path, **options):
    return make_executor("ray", tmp_path / "runs.sqlite", **options)


def training(store: RunStore, run_id: int) -> bool:
    row = store.get_run(run_id)
    assert not row.finished, (row.status, row.error)
    return row.status == "running" and row.stage == "train"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def worker_pids(store: RunStore, run_id: int) -> list[int]:
    """The Ray worker processes that ran ``run_id``, from its log (one per attempt)."""
    return [int(m.group(1)) for line in store.logs(run_id) if (m := re.search(r"worker pid (\d+)", line))]


def test_sweep_on_ray_lands_in_the_store_with_live_progress(tmp_path, tiny_model_dir, tiny_text_file, ray_local):
    ex = executor(tmp_path)
    base = dict(model=str(tiny_model_dir), dataset=str(tiny_text_file), **TINY, **RETRAIN)
    spec = SweepSpec(grid={"sparsity": [0.3, 0.5, 0.7]}, base={**base, "steps": 600})  # a second or more of training
    sweep_id, run_ids, _ = queue_sweep(spec, ex, ex.store)
    seen = []
    final = ex.wait(run_ids, timeout=TIMEOUT_S, poll=0.1, on_poll=lambda statuses: seen.extend(statuses.values()))

    assert [s.status for s in final.values()] == ["done"] * 3, [s.error for s in final.values()]
    training_seen = [s for s in seen if s.status == "running" and s.stage == "train" and 0 < s.fraction < 1]
    assert training_seen and "step" in training_seen[-1].message  # progress reached the store while runs ran
    store = ex.store
    assert store.get_sweep(sweep_id)["counts"] == {"done": 3}
    for run_id, sparsity in zip(run_ids, (0.3, 0.5, 0.7)):
        row = store.get_run(run_id)
        assert row.sparsity == pytest.approx(sparsity, abs=0.02) and row.final_ppl > 0 and row.pid == os.getpid()
        assert len(store.curve(run_id)) == 600 and len(store.layers(run_id)) == 2 * 7 and len(store.blocks(run_id)) == 2
        log = store.logs(run_id)
        assert log[0].startswith("started on Ray node") and any(line.startswith("loading") for line in log)
    assert (ray_local / "cache").is_dir() and not (store.root / "cache").exists()  # the node's cache, not the driver's

    again = ex.submit(RunConfig.from_dict(store.get_run(run_ids[0]).config))  # identical: reused, no Ray task
    assert ex.status(again).status == "done" and "result" in store.get_run(again).reused
    assert store.get_run(again).final_ppl == store.get_run(run_ids[0]).final_ppl


def test_ray_gives_the_local_executors_numbers(tmp_path, tiny_model_dir, tiny_text_file):
    ex = executor(tmp_path)
    config = tiny_run_config(tiny_model_dir, tiny_text_file, **RETRAIN)
    local = ex.store.create_run(config, recompute=True)
    ex.store.start_run(local)
    assert execute_run(ex.store, local) == "done"
    remote = ex.submit(config, recompute=True)
    assert ex.wait([remote], timeout=TIMEOUT_S)[remote].status == "done", ex.store.get_run(remote).error

    here, there = ex.store.get_run(local), ex.store.get_run(remote)
    assert here.reused == there.reused == []
    for name in ("dense_ppl", "pruned_ppl", "final_ppl", "sparsity"):
        assert getattr(there, name) == pytest.approx(getattr(here, name), rel=1e-6), name
    assert ex.store.curve(remote) == pytest.approx(ex.store.curve(local), rel=1e-6)
    for a, b in zip(ex.store.layers(local), ex.store.layers(remote), strict=True):
        assert (a["name"], a["sparsity"]) == (b["name"], b["sparsity"])
        assert b["recon_error"] == pytest.approx(a["recon_error"], rel=1e-6)


def test_cancel_reaches_ray_tasks_from_another_process(tmp_path, tiny_model_dir, tiny_text_file):
    ex = executor(tmp_path)
    ids = [ex.submit(tiny_run_config(tiny_model_dir, tiny_text_file, seed=i, **SLOW)) for i in range(3)]
    try:
        wait_until(lambda: training(ex.store, ids[0]) and training(ex.store, ids[1]), "two runs training on 2 CPUs")
        assert ex.status(ids[2]).status == "queued"  # no CPU left: Ray holds its task back
        assert ex.cancel(ids[2]).status == "cancelled"  # queued: at once, and its task never starts
        cancel = subprocess.run([*PERP, "cancel", str(ids[0]),
                                 "--store", str(ex.store.path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert cancel.returncode == 0 and f"run {ids[0]}: cancel requested" in cancel.stdout, cancel.stderr
        assert ex.cancel(ids[1]).status == "running"  # running: its driver stops the Ray task
        final = ex.wait(ids, timeout=60)
    finally:
        ex.close()
    assert [s.status for s in final.values()] == ["cancelled"] * 3
    assert final[ids[0]].error.startswith("cancelled by user during train at")
    assert final[ids[2]].error == "cancelled before it started" and ex.store.get_run(ids[2]).started_at is None
    assert ex.store.layers(ids[0]) == [] and ex.store.get_run(ids[0]).result is None


def test_killed_worker_fails_its_run_and_the_sweep_goes_on(tmp_path, tiny_model_dir, tiny_text_file):
    ex = executor(tmp_path)
    sweep_id = ex.store.create_sweep("kill", {})
    slow = [ex.submit(tiny_run_config(tiny_model_dir, tiny_text_file, seed=i, **SLOW), sweep_id=sweep_id)
            for i in range(2)]
    quick = ex.submit(tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), sweep_id=sweep_id)
    try:
        wait_until(lambda: training(ex.store, slow[0]) and training(ex.store, slow[1]), "two runs training on 2 CPUs")
        assert ex.status(quick).status == "queued"
        (pid,) = worker_pids(ex.store, slow[0])
        os.kill(pid, signal.SIGKILL)
        done = ex.wait([slow[0], quick], timeout=TIMEOUT_S)  # the freed CPU takes the queued run
        ex.cancel(slow[1])
        ex.wait([slow[1]], timeout=60)
    finally:
        ex.close()
    assert done[slow[0]].status == "failed"
    assert re.fullmatch(rf"its Ray worker died on Ray node \S+ \(worker pid {pid}\) during train at \d+%: .+",
                        done[slow[0]].error), done[slow[0]].error
    assert done[quick].status == "done" and ex.store.get_run(quick).pruned_ppl > 0
    assert ex.store.get_sweep(sweep_id)["counts"] == {"failed": 1, "done": 1, "cancelled": 1}


def test_retries_rerun_a_run_whose_worker_died_and_say_so(tmp_path, tiny_model_dir, tiny_text_file):
    ex = executor(tmp_path, retries=1)
    run_id = ex.submit(tiny_run_config(tiny_model_dir, tiny_text_file, **SLOW))
    try:
        wait_until(lambda: training(ex.store, run_id), "the run to train")
        os.kill(worker_pids(ex.store, run_id)[0], signal.SIGKILL)
        wait_until(lambda: second_attempt_trains(ex.store, run_id), "the second attempt to train")
        first, second = worker_pids(ex.store, run_id)
        os.kill(second, signal.SIGKILL)
        final = ex.wait([run_id], timeout=60)[run_id]
    finally:
        ex.close()
    assert any(line.startswith("attempt 2 on Ray node") and f"worker pid {second}" in line
               for line in ex.store.logs(run_id))
    assert final.status == "failed" and f"(worker pid {second}) during train at" in final.error
    assert "after 2 attempts" in final.error


def second_attempt_trains(store: RunStore, run_id: int) -> bool:
    log = store.logs(run_id)
    retried = [i for i, line in enumerate(log) if line.startswith("attempt 2 on Ray node")]
    return bool(retried) and any(line.startswith("retrain: training") for line in log[retried[0]:]) and training(
        store, run_id)


def test_killed_driver_leaves_no_run_running_and_resume_picks_up_the_queue(tmp_path, tiny_model_dir, tiny_text_file):
    store_path = tmp_path / "runs.sqlite"
    store = RunStore(store_path)
    driver = subprocess.Popen(
        [*PERP, "sweep", "--model", str(tiny_model_dir), "--dataset",
         str(tiny_text_file), *TINY_FLAGS, "--method", "magnitude", "--mode", "retrain", "--train", "norms",
         "--steps", "100000", "--train-samples", "8", "--seed", "0,1,2", "--executor", "ray",
         "--ray-address", ray.get_runtime_context().gcs_address, "--store", str(store_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(store.list_runs()) == 3, "the sweep to be queued")
        first, second, third = sorted(r.id for r in store.list_runs())
        wait_until(lambda: training(store, first) and training(store, second), "two runs training on 2 CPUs")
    finally:
        driver.kill()
        driver.wait()
    (pid,) = worker_pids(store, first)
    recovered = RunStore(store_path)  # opening the store notices the driver is gone
    for run_id in (first, second):
        row = recovered.get_run(run_id)
        assert row.status == "failed" and row.error.startswith(f"worker died (pid {driver.pid}) during train at")
    assert recovered.get_run(third).status == "queued"  # never started: left for --resume
    wait_until(lambda: gone(pid), "Ray to end the killed driver's tasks", timeout=60)

    ex = executor(tmp_path)
    try:
        assert ex.ensure_workers() == [third]
        wait_until(lambda: training(ex.store, third), "the resumed run to train")
    finally:
        ex.close()  # this driver ends: what it holds is cancelled, with the reason
    row = ex.store.get_run(third)
    assert row.status == "cancelled" and row.error.startswith(f"cancelled: its Ray driver (pid {os.getpid()}) stopped "
                                                             "during train at")


def test_close_records_the_results_that_are_in_and_cancels_the_rest(tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):
    ex = executor(tmp_path)
    monkeypatch.setattr(ex, "_drain_loop", lambda: None)  # no driver thread: only close takes what the tasks return
    done = ex.submit(tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"))
    slow = ex.submit(tiny_run_config(tiny_model_dir, tiny_text_file, **SLOW))
    assert ray.wait([ex._held[done].ref], timeout=TIMEOUT_S)[0], "the short run's task to return"
    ex.close()
    row = ex.store.get_run(done)
    assert row.status == "done" and row.pruned_ppl > 0 and row.error is None
    assert ex.store.logs(done)[0].startswith("started on Ray node")  # its events were taken before its result
    row = ex.store.get_run(slow)
    assert row.status == "cancelled" and row.error.startswith(f"cancelled: its Ray driver (pid {os.getpid()}) stopped")


def test_a_driver_that_cannot_reach_ray_fails_its_runs(tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):
    ex = executor(tmp_path)
    monkeypatch.setattr(ray_executor, "MAX_FAILED_STEPS", 3)

    def lost(held):
        raise ConnectionError("GCS unreachable")

    monkeypatch.setattr(ex, "_step", lost)
    run_id = ex.submit(tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"))
    final = ex.wait([run_id], timeout=60)[run_id]
    assert final.status == "failed" and final.error == (
        f"its Ray driver (pid {os.getpid()}) failed 3 times in a row to reach Ray or the store: ConnectionError: "
        "GCS unreachable (before its first stage)")


def test_cli_runs_and_sweeps_through_ray(tmp_path, tiny_model_dir, tiny_text_file, capsys):
    store = str(tmp_path / "runs.sqlite")
    common = ["--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY_FLAGS, "--method", "magnitude",
              "--executor", "ray", "--store", store]
    assert main(["run", *common, "--sparsity", "0.4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "pruned ppl" in out and "recorded as run 1" in out
    assert main(["sweep", *common, "--sparsity", "0.2,0.6", "--ray-cpus", "1"]) == 0  # waits for its runs
    out = capsys.readouterr().out
    assert "queued 2 runs (2-3), on Ray cluster" in out and "run 2 done: final ppl" in out and "run 3 done" in out
    assert [r.status for r in RunStore(store).list_runs()] == ["done"] * 3


@pytest.mark.parametrize("device, cluster_gpus, gpus", [
    ("cpu", 0, 0), ("cpu", 2, 0), ("auto", 0, 0), ("auto", 2, 0.5), ("cuda", 2, 0.5), ("cuda:1", 2, 0.5)])
def test_a_run_asks_ray_for_gpus_only_when_it_can_use_them(tmp_path, monkeypatch, device, cluster_gpus, gpus):
    ex = executor(tmp_path, num_cpus=2, num_gpus=0.5)
    cluster = {"CPU": 8.0, **({"GPU": cluster_gpus} if cluster_gpus else {})}
    monkeypatch.setattr(ray, "cluster_resources", lambda: cluster)
    assert ex.resources(RunConfig(device=device)) == {"num_cpus": 2, "num_gpus": gpus}


@pytest.mark.skipif(not heap.needs_tuning(), reason="this C library needs no tunables")
def test_ray_tasks_start_with_a_local_workers_heap_settings(tmp_path):
    """A run's task options give its Ray worker the glibc tunables at start (the session's Ray instance was started
    by this untuned process): glibc's fast bins are off in it, as mxfast=0 asks, and on in a task without them."""
    def fast_bin_bytes() -> tuple[str | None, int]:
        import ctypes

        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Info
        libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

        def grown() -> int:  # another thread's large allocation may empty the fast bins meanwhile: take the most
            before = libc.mallinfo2().fsmblks
            chunks = [libc.malloc(40) for _ in range(1000)]
            for chunk in chunks[::2]:
                libc.free(chunk)
            after = libc.mallinfo2().fsmblks
            for chunk in chunks[1::2]:
                libc.free(chunk)
            return after - before

        return os.environ.get("GLIBC_TUNABLES"), max(grown() for _ in range(5))

    ex = executor(tmp_path)
    options = ex.task_options(RunConfig(device="cpu"))
    probe = ray.remote(fast_bin_bytes)
    tunables, grown = ray.get(probe.options(**options).remote(), timeout=TIMEOUT_S)
    assert tunables == heap.tuned_environ(os.environ)["GLIBC_TUNABLES"] and grown == 0
    assert ray.get(probe.options(num_cpus=1).remote(), timeout=TIMEOUT_S)[1] > 0
