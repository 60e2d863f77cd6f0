"""The CLI end to end: perp sweep queues a grid that worker processes execute; perp runs lists, filters and shows;
perp cancel; bad inputs give one line and exit code 2, with nothing queued."""

import json

import pytest
from fixtures_tiny import perp_home, tiny_model_dir, tiny_text_file  # noqa: F401 (fixtures)

from perp_engine.cli import main
from perp_engine.store import RunStore

pytestmark = pytest.mark.usefixtures("perp_home")

TINY_FLAGS = ["--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "64", "--batch-size", "2", "--device", "cpu"]


def run_json(capsys, *argv):
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_sweep_runs_cancel(tmp_path, tiny_model_dir, tiny_text_file, capsys, monkeypatch):
    store = str(tmp_path / "runs.sqlite")
    queued = run_json(capsys, "sweep", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY_FLAGS,
                      "--method", "magnitude,wanda", "--sparsity", "0.25,0.5", "--parallel", "2", "--wait", "--json",
                      "--store", store)
    sweep_id, run_ids = queued["sweep_id"], queued["run_ids"]
    assert len(run_ids) == 4 and queued["skipped"] == []

    runs = run_json(capsys, "runs", "--sweep", str(sweep_id), "--json", "--store", store)
    assert [r["id"] for r in runs] == run_ids[::-1]  # newest first
    assert {(r["config"]["method"], r["config"]["sparsity"]) for r in runs} == {
        (m, s) for m in ("magnitude", "wanda") for s in (0.25, 0.5)}
    assert all(r["status"] == "done" and r["sweep_id"] == sweep_id and r["pruned_ppl"] > 0 for r in runs)
    assert all(r["sparsity"] == pytest.approx(r["config"]["sparsity"]) for r in runs)

    monkeypatch.setenv("PERP_STORE", store)  # the environment variable names the same store
    assert [r["id"] for r in run_json(capsys, "runs", "--method", "wanda", "--json")] == run_ids[:1:-1]
    [sweep] = run_json(capsys, "runs", "--sweeps", "--json")
    assert sweep["id"] == sweep_id and sweep["counts"] == {"done": 4}
    detail = run_json(capsys, "runs", str(run_ids[0]), "--json")
    assert len(detail["layers"]) == 14 and detail["logs"] and detail["environment"]["seed"] == 0

    assert main(["runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "STATUS", "MODEL"] and len(table) == 5
    assert main(["runs", str(run_ids[0])]) == 0
    assert "perplexity: dense" in capsys.readouterr().out
    with RunStore(store) as opened:  # named and tagged in the app
        opened.rename_run(run_ids[0], "baseline")
        opened.set_tags(run_ids[0], ["lecture", "wanda"])
    assert main(["runs", str(run_ids[0])]) == 0
    assert "  name: baseline  tags: lecture, wanda" in capsys.readouterr().out.splitlines()

    assert main(["cancel", str(run_ids[0])]) == 0
    assert capsys.readouterr().out.strip() == f"run {run_ids[0]}: already done, nothing to cancel"


def test_bad_inputs_give_one_line_and_change_nothing(tmp_path, capsys):
    store = str(tmp_path / "runs.sqlite")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  sparsity: [0.3, 0.5\n")
    cases = [
        (["sweep", str(bad)], "sweep: "),
        (["sweep", "--pattern", "2:4", "--sparsity", "0.5,0.7"], "nothing was queued"),
        (["sweep", "--sparsity", "0.5,lots"], "sparsity: 'lots' is not a number"),
        (["runs", "7"], "run: no run 7; perp runs lists them"),
        (["runs", "--sweep", "3"], "sweep: no sweep 3"),
        (["cancel", "7"], "run: no run 7"),
        (["cancel"], "id: give run ids to cancel"),
        (["export", "7", str(tmp_path / "out")], "run: no run 7"),
        (["sweep", "--sparsity", "0.5", "--ray-address", "auto", "--retries", "1"],
         "executor: Ray settings (--ray-address, --retries) need --executor ray"),
        (["sweep", "--sparsity", "0.5", "--executor", "ray", "--parallel", "2"], "parallel: --parallel sets local"),
        (["run", "--executor", "ray", "--no-store"], "no_store: --executor ray records runs in the store"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main([*argv, "--store", store]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("perp: error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert run_json(capsys, "runs", "--json", "--store", store) == []
    assert not (tmp_path / "out").exists()

    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("my notes\n" * 100)
    assert main(["runs", "--store", str(not_a_store)]) == 2
    assert "is not a PERP Lab run store" in capsys.readouterr().err
    assert not_a_store.read_text() == "my notes\n" * 100


def test_choosing_ray_without_ray_installed_says_how_to_install_it(tmp_path, capsys, without_ray):
    store = str(tmp_path / "runs.sqlite")
    for argv in (["sweep", "--sparsity", "0.3,0.5"], ["run", "--sparsity", "0.3"]):
        assert main([*argv, "--executor", "ray", "--store", store]) == 2
        assert capsys.readouterr().err == ("perp: error: executor: ray is not installed; install it with "
                                           "pip install 'perp-lab[ray]' (or pip install ray)\n")
    assert main(["runs", "--store", store]) == 0 and "no runs" in capsys.readouterr().out.lower()
