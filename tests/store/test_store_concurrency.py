"""Two processes writing one store at the same time: every run complete, nothing lost, no 'database is locked'."""

import os
import subprocess
import sys
import textwrap

from perp_engine.store import RunStore

RUNS_PER_WRITER = 30

WRITER = textwrap.dedent("""
    import pathlib, sys, time
    sys.path.insert(0, {root!r})
    from perp_engine.config import RunConfig
    from perp_engine.result import LayerRecord, RunResult
    from perp_engine.store import RunStore

    store = RunStore({path!r})
    tag = sys.argv[1]
    folder = pathlib.Path({path!r}).parent
    (folder / f"ready-{{tag}}").touch()
    while len(list(folder.glob("ready-*"))) < 2:  # start writing together
        time.sleep(0.01)
    for i in range({n}):
        cfg = RunConfig(model=tag, dataset="wikitext2", seed=i)
        run_id = store.create_run(cfg)
        store.start_run(run_id)
        for step in range(5):
            store.progress(run_id, "train", step / 5, f"step {{step}}")
            store.log(run_id, f"{{tag}} {{i}} {{step}}")
        layers = [LayerRecord(f"l{{k}}", k, "q_proj", 0.5, 0.1) for k in range(8)]
        store.record_result(run_id, RunResult(config=cfg.to_dict(), final_ppl=float(i), layers=layers,
                                              train_loss=[float(s) for s in range(10)]))
""")


def test_two_writer_processes(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    script = WRITER.format(root=os.getcwd(), path=str(path), n=RUNS_PER_WRITER)
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], stderr=subprocess.PIPE) for tag in ("a", "b")]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors

    store = RunStore(path)
    runs = store.list_runs()
    assert len(runs) == 2 * RUNS_PER_WRITER
    assert {r.status for r in runs} == {"done"}
    for tag in ("a", "b"):
        mine = sorted(store.list_runs(model=tag), key=lambda r: r.config["seed"])
        assert [r.final_ppl for r in mine] == [float(i) for i in range(RUNS_PER_WRITER)]
        for row in mine:
            i = row.config["seed"]
            assert store.logs(row.id) == [f"{tag} {i} {step}" for step in range(5)]
            assert [layer["name"] for layer in store.layers(row.id)] == [f"l{k}" for k in range(8)]
            assert store.curve(row.id) == [float(s) for s in range(10)]
