"""RunStore: round trip, transactions, migrations, bad files, crash recovery, cancellation, sweeps, worker registry."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.model.parameters import recorded_trainable_text
from perp_engine.result import ERRORS_FORMAT, BlockRecord, LayerRecord, RunResult
from perp_engine.store import SCHEMA_VERSION, RunStore, StoreError, default_store_path, run_store
from perp_engine.store.run_store import config_key
from perp_engine.store.schema import MIGRATIONS, migrate


def config(**changes) -> RunConfig:
    return RunConfig(model="tiny", dataset="wikitext2", **changes)


def result_for(cfg: RunConfig, scale: float = 1.0) -> RunResult:
    return RunResult(
        config=cfg.to_dict(), dense_ppl=10.0 * scale, pruned_ppl=20.0 * scale, final_ppl=12.5 * scale, sparsity=0.5,
        layers=[LayerRecord(f"model.layers.{b}.{k}", b, k, 0.5, 0.1 * (b + 1), 0.05, 1024)
                for b in range(2) for k in ("q_proj", "down_proj")],
        blocks=[BlockRecord(0, 0.2, 0.1), BlockRecord(1, 0.3, None)],
        timings={"prune": 1.5, "train": 3.0}, total_params=1000, trainable_params=10, trainable_fraction=0.01,
        train_loss=[3.0, 2.5, 2.25], environment={"torch": "2.x", "device": "cpu"}, reused=["dense_ppl"],
        warnings=["tied head"], peak_memory_mb=123.0,
    )


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.sqlite")
    yield s
    s.close()


def test_round_trip(store):
    cfg = config(method="magnitude", seed=3, preset="perp", mode="retrain", train=("norms",))
    run_id = store.create_run(cfg)
    row = store.get_run(run_id)
    assert (row.status, row.config, row.preset, row.result) == ("queued", cfg.to_dict(), "perp", None)
    assert RunConfig.from_dict(row.config) == cfg

    store.start_run(run_id)
    assert store.progress(run_id, "prune", 0.25, "block 1/4") is False
    store.log(run_id, "first")
    store.log(run_id, "second")
    row = store.get_run(run_id)
    assert (row.status, row.stage, row.fraction, row.message, row.pid) == ("running", "prune", 0.25, "block 1/4", os.getpid())

    res = result_for(cfg)
    store.record_result(run_id, res)
    row = store.get_run(run_id)
    assert row.status == "done" and row.finished_at >= row.started_at >= row.created_at
    assert (row.dense_ppl, row.pruned_ppl, row.final_ppl, row.sparsity) == (10.0, 20.0, 12.5, 0.5)
    assert (row.total_params, row.trainable_params, row.trainable_fraction) == (1000, 10, 0.01)
    assert row.timings == res.timings and row.reused == ["dense_ppl"] and row.warnings == ["tied head"]
    assert row.environment["torch"] == "2.x" and row.environment["seed"] == 3
    assert RunResult.from_dict(row.result).layers == res.layers
    assert store.layers(run_id) == [vars(r) for r in res.layers]
    assert store.blocks(run_id) == [vars(b) for b in res.blocks]
    assert store.curve(run_id) == [3.0, 2.5, 2.25]
    assert store.logs(run_id) == ["first", "second"] and store.logs(run_id, tail=1) == ["second"]
    assert store.get_run(str(run_id)).id == run_id


def test_record_result_is_all_or_nothing(store):
    run_id = store.create_run(config())
    store.start_run(run_id)
    broken = result_for(config()).to_dict()
    broken["layers"].append({"name": "x"})  # no block, kind, sparsity: the insert fails half-way through the layers
    with pytest.raises(sqlite3.IntegrityError):
        store.record_result(run_id, broken)
    row = store.get_run(run_id)
    assert (row.status, row.final_ppl, row.result) == ("running", None, None)
    assert store.layers(run_id) == [] and store.curve(run_id) == []
    store.record_result(run_id, result_for(config()))  # the store is still usable
    assert len(store.layers(run_id)) == 4


def test_list_runs_filters_newest_first(store):
    ids = [store.create_run(config(method=m)) for m in ("magnitude", "wanda", "magnitude")]
    other = store.create_run(RunConfig(model="other", dataset="wikitext2"))
    store.start_run(ids[0])
    store.record_result(ids[0], result_for(config(method="magnitude")))
    assert [r.id for r in store.list_runs()] == [other, *reversed(ids)]
    assert [r.id for r in store.list_runs(method="magnitude")] == [ids[2], ids[0]]
    assert [r.id for r in store.list_runs(status="done")] == [ids[0]]
    assert [r.id for r in store.list_runs(status=["queued", "done"], model="tiny", limit=2)] == [ids[2], ids[1]]
    with pytest.raises(PerpError, match="status: 'finished' is not allowed; use one of queued"):
        store.list_runs(status="finished")


def test_unknown_run_and_lifecycle_guards(store):
    with pytest.raises(PerpError, match="run: no run 42; perp runs lists them"):
        store.get_run(42)
    with pytest.raises(PerpError, match="not a run id"):
        store.get_run("abc")
    run_id = store.create_run(config())
    store.start_run(run_id)
    store.record_result(run_id, result_for(config()))
    with pytest.raises(PerpError, match="is done; only a queued run can start"):
        store.start_run(run_id)
    assert store.fail_run(run_id, "late failure") is False
    assert store.request_cancel(run_id) == "done"
    assert store.progress(run_id, "train", 0.5) is False
    row = store.get_run(run_id)
    assert (row.status, row.error, row.stage) == ("done", None, None)



@pytest.mark.parametrize("end", ["cancelled", "failed", "done"])
def test_a_late_result_never_overwrites_a_finished_run(store, end):
    run_id = store.create_run(config())
    store.start_run(run_id)
    if end == "cancelled":
        assert store.mark_cancelled(run_id, "cancelled by user during train at 40%")
    elif end == "failed":
        assert store.fail_run(run_id, "worker died")
    else:
        assert store.record_result(run_id, result_for(config())) is True
    before = store.get_run(run_id)
    assert store.record_result(run_id, result_for(config(), scale=2.0), artifact="/elsewhere") is False
    after = store.get_run(run_id)
    assert (after.status, after.error, after.final_ppl, after.artifact, after.finished_at) == (
        before.status, before.error, before.final_ppl, before.artifact, before.finished_at)
    assert len(store.layers(run_id)) == (4 if end == "done" else 0) and len(store.curve(run_id)) == (3 if end == "done" else 0)

def test_cancel_queued_and_running(store):
    queued = store.create_run(config())
    assert store.request_cancel(queued) == "cancelled"
    assert store.get_run(queued).status == "cancelled"
    assert store.claim_next() is None  # a cancelled run is never claimed

    running = store.create_run(config())
    store.start_run(running)  # this test process runs it, so it is alive
    assert store.request_cancel(running) == "running"
    assert store.progress(running, "train", 0.1) is True
    assert store.mark_cancelled(running, "cancelled by user during train at 10%")
    row = store.get_run(running)
    assert (row.status, row.error) == ("cancelled", "cancelled by user during train at 10%")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recover_marks_runs_of_dead_processes(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    dead, alive, cancelling, recycled = (store.create_run(config()) for _ in range(4))
    store.start_run(dead, dead_pid())
    store.progress(dead, "prune", 0.5)
    store.start_run(alive)
    store.start_run(cancelling, dead_pid())
    store.start_run(recycled)  # our pid, but recorded with another start time: a recycled pid
    store._conn().execute("UPDATE runs SET pid_start = 1.0, cancel_requested = 1 WHERE id = ?", (cancelling,))
    store._conn().execute("UPDATE runs SET pid_start = 1.0 WHERE id = ?", (recycled,))
    store.close()

    reopened = RunStore(path)  # recovery happens on open
    row = reopened.get_run(dead)
    assert row.status == "failed"
    assert row.error.startswith(f"worker died (pid {row.pid}) during prune at 50%")
    assert reopened.get_run(alive).status == "running"
    assert reopened.get_run(cancelling).status == "cancelled"
    assert reopened.get_run(recycled).status == "failed"
    assert reopened.recover() == []


def test_migration_from_schema_1(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    cfg = config(method="sparsegpt")
    conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at, final_ppl)"
                 " VALUES ('done', ?, 'k', 'tiny', 'sparsegpt', 1.0, 33.0)", (cfg.to_json(),))
    conn.execute("INSERT INTO curves (run_id, name, step, value) VALUES (1, 'train_loss', 0, 4.0)")
    conn.close()

    store = RunStore(path)
    assert store.schema_version == SCHEMA_VERSION > 1
    old = store.get_run(1)
    assert (old.status, old.final_ppl, old.sweep_id, old.keep_model, old.config) == ("done", 33.0, None, False, cfg.to_dict())
    assert old.diverged is None  # schema 3: a run from before the diverged column was not judged diverged
    assert store.curve(1) == [4.0]
    sweep = store.create_sweep("after-migration", {"seed": [0, 1]}, [1])
    assert store.get_run(1).sweep_id == sweep
    backup = tmp_path / "old.sqlite.schema-v1.bak"
    assert sqlite3.connect(backup).execute("PRAGMA user_version").fetchone()[0] == 1


def test_runs_recorded_before_local_errors_keep_their_accumulated_errors_as_drift(tmp_path):
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:2]:
        for statement in migration:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at) VALUES ('done', ?, 'k',"
                 " 'tiny', 'wanda', 1.0)", (config().to_json(),))
    conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at) VALUES ('queued', ?, 'q',"
                 " 'tiny', 'wanda', 2.0)", (config().to_json(),))
    conn.execute("INSERT INTO layers (run_id, idx, name, block, kind, sparsity, recon_error, recon_error_after, numel)"
                 " VALUES (1, 0, 'model.layers.0.q_proj', 0, 'q_proj', 0.5, 0.25, 0.125, 64)")
    conn.execute("INSERT INTO blocks (run_id, block, loss_before, loss_after) VALUES (1, 0, 0.5, 0.375)")
    conn.close()

    store = RunStore(path)
    assert store.get_run(1).errors_format == 1 and store.get_run(2).errors_format is None
    [layer] = store.layers(1)
    assert (layer["recon_error"], layer["recon_error_after"], layer["drift"], layer["drift_after"]) == (None, None, 0.25, 0.125)
    [block] = store.blocks(1)
    assert (block["loss_before"], block["loss_after"], block["drift_before"], block["drift_after"]) == (None, None, 0.5, 0.375)
    new = store.create_run(config())
    store.start_run(new, os.getpid())
    store.record_result(new, RunResult(config=config().to_dict(), layers=[LayerRecord("a.0.q", 0, "q", 0.5, 0.1, drift=0.2)]))
    assert store.get_run(new).errors_format == ERRORS_FORMAT == 2
    assert store.layers(new)[0]["recon_error"] == 0.1 and store.layers(new)[0]["drift"] == 0.2


def test_migration_from_schema_2_adds_names_tags_and_stage_times(tmp_path):
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=2) == 2
    conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at, final_ppl)"
                 " VALUES ('done', ?, 'k', 'tiny', 'wanda', 1.0, 21.0)", (config().to_json(),))
    conn.close()

    store = RunStore(path)
    assert store.schema_version == SCHEMA_VERSION >= 3
    old = store.get_run(1)
    assert (old.final_ppl, old.name, old.tags, old.stage_started_at, old.stage_seconds) == (21.0, None, [], None, {})
    store.rename_run(1, "  baseline ")
    assert store.set_tags(1, ["demo", " demo", "", "wanda"]) == ["demo", "wanda"]
    old = store.get_run(1)
    assert (old.name, old.tags) == ("baseline", ["demo", "wanda"])


def test_migration_to_schema_6_rekeys_runs_so_new_default_fields_still_find_them(tmp_path):
    path = tmp_path / "v5.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=5) == 5
    old = {k: v for k, v in config().to_dict().items() if k not in ("allocation", "owl_m", "refine")}  # before them
    full_digest = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()  # the key as it was
    conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at, final_ppl)"
                 " VALUES ('done', ?, ?, 'tiny', 'wanda', 1.0, 21.0)", (json.dumps(old), full_digest))
    conn.close()

    store = RunStore(path)
    assert store.latest_with_config(config()).id == 1
    assert store.latest_with_config(config().replace(allocation="owl")) is None
    assert config_key(config().to_dict()) == config_key(old) != config_key(config().replace(refine="dsnot").to_dict())


REPAIRED = {"steps": 100, "lr": 1e-3, "eval_every": 5, "grad_accum": 2, "max_grad_norm": 0.5, "weight_decay": 0.1}


def test_a_run_that_does_not_repair_is_keyed_without_the_repairs_fields():
    assert config_key(config(**REPAIRED).to_dict()) == config_key(config().to_dict())  # mode none: never read
    assert config_key(config(**REPAIRED).to_dict()) != config_key(config(sparsity=0.6, **REPAIRED).to_dict())
    perp = RunConfig.create("perp", model="tiny", dataset="wikitext2")
    for field, value in REPAIRED.items():  # a repair reads each of them
        assert config_key(perp.replace(**{field: value}).to_dict()) != config_key(perp.to_dict()), field


def test_migration_to_schema_7_rekeys_prune_only_runs_without_the_repairs_fields(tmp_path):
    path = tmp_path / "v6.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("perp_config_key", 1, lambda text: "rekeyed by 6")
    assert migrate(conn, target=6) == 6
    stored = config(steps=100).to_dict()
    conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at, final_ppl)"
                 " VALUES ('done', ?, 'the key before 7', 'tiny', 'wanda', 1.0, 21.0)", (json.dumps(stored),))
    conn.close()

    store = RunStore(path)
    assert store.schema_version == SCHEMA_VERSION >= 7
    assert store.latest_with_config(config()).id == 1  # the form's steps (unused) no longer hide it
    assert store.latest_with_config(config(sparsity=0.6)) is None


def old_result(total: int, by_category: dict[str, int]) -> str:
    """A result as recorded before the model's own count was kept: its share is of every parameter."""
    trainable = sum(by_category.values())
    return json.dumps({"total_params": total, "trainable_params": trainable, "trainable_fraction": trainable / total,
                       "trainable_by_category": by_category})


# model, mode, total, trainable categories as recorded; the model's own count, adapters, head copy, share after 8
RECOUNTED = [
    ("tiny", "none", 1000, {}, (1000, 0, 0, 0.0)),
    ("tiny", "retrain", 1240, {"head-lora": 40, "norms": 10}, (1000, 40, 200, 0.05)),  # tied head: copy + LoRA
    ("tiny", "reconstruct", 1030, {"adapter": 30, "norms": 5}, (1000, 30, 0, 0.035)),
    ("tiny", "retrain", 1000, {"full": 1000}, (1000, 0, 0, 1.0)),
    ("tiny", "retrain", 1010, {"adapter": 30}, None),  # counts that do not add up: left as recorded
    ("alone", "retrain", 1240, {"head-lora": 40, "norms": 10}, None),  # no prune-only run of its model
    ("split", "none", 1000, {}, None),  # its prune-only runs disagree on the model's size
    ("split", "none", 2000, {}, None),
    ("split", "retrain", 1240, {"head-lora": 40, "norms": 10}, None),
]


def test_migration_to_schema_8_recounts_shares_of_the_models_own_parameters(tmp_path):
    path = tmp_path / "v7.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("perp_config_key", 1, lambda text: "rekeyed")
    assert migrate(conn, target=7) == 7
    for model, mode, total, categories, _ in RECOUNTED:
        recorded = json.loads(old_result(total, categories))
        conn.execute("INSERT INTO runs (status, config, config_key, model, method, created_at, total_params,"
                     " trainable_params, trainable_fraction, result) VALUES ('done', ?, 'k', ?, 'wanda', 1.0, ?, ?, ?, ?)",
                     (json.dumps({"model": model, "mode": mode}), model, total, recorded["trainable_params"],
                      recorded["trainable_fraction"], old_result(total, categories)))
    conn.close()

    store = RunStore(path)
    assert store.schema_version == SCHEMA_VERSION >= 8
    for row, (model, _, total, categories, expected) in zip(store.list_runs()[::-1], RECOUNTED, strict=True):
        assert row.config["model"] == model
        if expected is None:  # left as recorded
            assert "model_params" not in row.result
            assert row.trainable_fraction == row.result["trainable_fraction"] == sum(categories.values()) / total
            continue
        own, adapters, head_copy, share = expected
        assert (row.result["model_params"], row.result["adapter_params"], row.result["head_copy_params"]) == expected[:3]
        assert row.trainable_fraction == row.result["trainable_fraction"] == pytest.approx(share, abs=1e-15)
        assert row.result["total_params"] == total == own + adapters + head_copy
    assert recorded_trainable_text(store.get_run(2).result) == "5% of the model's 1.0k parameters (+ 40 adapter weights, + untied head 200)"


def test_concurrent_first_open_migrates_once(tmp_path):
    path = tmp_path / "runs.sqlite"
    script = f"import sys; sys.path.insert(0, {os.getcwd()!r}); from perp_engine.store import RunStore; RunStore({str(path)!r})"
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(3)]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert RunStore(path).schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("content", [b"this is a text file, not a store\n" * 20, "sqlite-other"])
def test_not_a_store_is_refused_untouched(tmp_path, content):
    path = tmp_path / "file.db"
    if content == "sqlite-other":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a PERP Lab run store") as err:
        RunStore(path)
    assert str(err.value).startswith(f"store: {path}")
    assert path.read_bytes() == before


def test_newer_schema_and_folder_are_refused(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this perp-lab"):
        RunStore(path)
    with pytest.raises(StoreError, match="is a folder"):
        RunStore(tmp_path)


def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PERP_STORE", str(tmp_path / "mine.sqlite"))
    assert default_store_path() == tmp_path / "mine.sqlite"
    monkeypatch.delenv("PERP_STORE")
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / "runs.sqlite"


def test_sweeps(store):
    ids = [store.create_run(config(sparsity=s)) for s in (0.3, 0.5)]
    loose = store.create_run(config())
    sweep = store.create_sweep("sparsity", {"sparsity": [0.3, 0.5]}, ids)
    store.request_cancel(ids[1])
    [info] = store.list_sweeps()
    assert (info["id"], info["name"], info["grid"], info["runs"]) == (sweep, "sparsity", {"sparsity": [0.3, 0.5]}, 2)
    assert info["counts"] == {"queued": 1, "cancelled": 1}
    assert [r.id for r in store.sweep_runs(sweep)] == ids
    assert [r.id for r in store.list_runs(sweep_id=sweep)] == ids[::-1] and loose not in ids
    with pytest.raises(PerpError, match="sweep: no sweep 9"):
        store.sweep_runs(9)


def test_worker_registry_spawns_claims_and_retires(store):
    spawned = []

    def spawn():
        spawned.append(os.getpid())  # this live process stands in for a worker
        return os.getpid()

    assert store.spawn_worker(2, spawn) is None and spawned == []  # nothing queued
    first, second = store.create_run(config()), store.create_run(config())
    assert store.spawn_worker(1, spawn) == os.getpid()
    assert store.spawn_worker(1, spawn) is None and len(spawned) == 1  # max_parallel reached
    assert store.live_workers() == [os.getpid()]
    assert store.claim_next() == first  # oldest first
    assert store.get_run(first).status == "running"
    assert store.claim_next() == second
    assert store.claim_next() is None
    assert store.live_workers() == []  # retired when the queue was empty


def test_reusable_finds_identical_done_run(store):
    done = store.create_run(config(seed=1))
    store.start_run(done)
    store.record_result(done, result_for(config(seed=1)))
    same, other = store.create_run(config(seed=1)), store.create_run(config(seed=2))
    assert store.reusable(same).id == done
    assert store.reusable(other) is None
    assert json.loads(json.dumps(store.reusable(same).result))["final_ppl"] == 12.5


def test_rename_and_tag_check_their_input(store):
    run_id = store.create_run(config())
    store.rename_run(run_id, "first try")
    store.rename_run(run_id, "   ")
    assert store.get_run(run_id).name is None
    with pytest.raises(PerpError, match="name: 101 characters is too long; use at most 100"):
        store.rename_run(run_id, "x" * 101)
    with pytest.raises(PerpError, match="tags: 'a,b' is not allowed"):
        store.set_tags(run_id, ["a,b"])
    with pytest.raises(PerpError, match="run: no run 99"):
        store.rename_run(99, "ghost")
    assert store.get_run(run_id).tags == []


def test_delete_keeps_active_runs_and_the_shared_cache(store, tmp_path):
    active = store.create_run(config())
    with pytest.raises(PerpError, match=f"run: run {active} is queued; cancel it before deleting it"):
        store.delete_run(active)
    done = store.create_run(config())
    store.start_run(done)
    store.log(done, "a line")
    kept = store.artifact_dir(done)
    (kept / "model").mkdir(parents=True)
    store.record_result(done, result_for(config()), artifact=kept)
    cached = store.cache_dir / "dense_ppl.json"
    cached.parent.mkdir(parents=True)
    cached.write_text("{}")
    outside = tmp_path / "my-export"
    outside.mkdir()
    other = store.create_run(config())
    store.start_run(other)
    store.record_result(other, result_for(config()), artifact=outside)

    assert store.delete_run(done) == kept
    assert not kept.exists() and cached.exists()
    with pytest.raises(PerpError, match=f"no run {done}"):
        store.get_run(done)
    assert (store.layers(done), store.blocks(done), store.curve(done), store.logs(done)) == ([], [], [], [])
    assert store.delete_run(other) is None and outside.is_dir()  # a folder outside the store is the user's
    assert [r.id for r in store.list_runs()] == [active]


def test_stage_seconds_of_a_running_run(store, monkeypatch):
    clock = iter([100.0, 101.0, 103.5, 104.0, 110.0])
    monkeypatch.setattr(run_store.time, "time", lambda: next(clock))
    run_id = store.create_run(config())  # 100
    store.start_run(run_id)  # 101
    store.progress(run_id, "load", 0.0)  # 103.5: load starts
    store.progress(run_id, "load", 1.0)  # 104: same stage
    store.progress(run_id, "data", 0.0)  # 110: load took 6.5 s
    row = store.get_run(run_id)
    assert (row.stage, row.stage_started_at, row.stage_seconds) == ("data", 110.0, {"load": 6.5})
