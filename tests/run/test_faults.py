"""Faults end as described (issue 9): a damaged store fails in one line and is recovered; damaged caches and a
damaged model conversion are rebuilt; an export onto a full disk fails in one line and one killed mid-way is
cleaned up by the next; training that diverges is marked, never stored as a good result."""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from damaged_store import damage_a_page, seeded_store
from fixtures_tiny import perp_home, save_tiny_model, tiny_model_dir, tiny_run_config, tiny_text_file  # noqa: F401
from safetensors import SafetensorError
from safetensors.torch import load_file

from perp_engine.cli import main
from perp_engine.evaluation.divergence import DIVERGED_FACTOR, divergence
from perp_engine.jobs.worker import execute_run
from perp_engine.model import load as models
from perp_engine.paths import atomic_dir
from perp_engine.run.pipeline import run_pipeline
from perp_engine.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "64", "--batch-size", "2", "--device", "cpu"]


def run_cli(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def finished_run(store: RunStore, config, **options) -> int:
    run_id = store.create_run(config, **options)
    assert store.claim_next() == run_id
    assert execute_run(store, run_id) == "done", store.get_run(run_id).error
    return run_id


# -- a damaged store -------------------------------------------------------------------------------------------

def test_a_damaged_store_fails_in_one_line_and_is_recovered(tmp_path, capsys, perp_home, tiny_model_dir, tiny_text_file):  # noqa: F811
    path = tmp_path / "runs.sqlite"
    seeded_store(path)
    damage_a_page(path)
    hint = f"`perp store recover --store {path}`"
    commands = [["runs"], ["runs", "3"], ["runs", "--sweeps"], ["cancel", "3"], ["export", "3", str(tmp_path / "out")],
                ["sweep", "--sparsity", "0.3,0.5", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY],
                ["run", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY]]
    for argv in commands:
        code, _, err = run_cli([*argv, "--store", str(path)], capsys)
        assert code == 2 and len(err) == 1, (argv, err)
        assert err[0].startswith(f"perp: error: store: {path} is damaged (") and hint in err[0], err

    code, out, _ = run_cli(["store", "check", "--store", str(path)], capsys)
    assert code == 2 and out.startswith(f"store {path}: damaged;")

    code, out, _ = run_cli(["store", "recover", "--store", str(path)], capsys)
    assert code == 0, out
    [aside] = tmp_path.glob("runs.sqlite.damaged-*[0-9]")
    assert f"the damaged file is kept as {aside}" in out
    recovered = RunStore(path)
    ids = [r.id for r in recovered.list_runs()]
    assert 0 < len(ids) < 40  # the runs on the damaged page are gone, the others are back
    assert all(len(recovered.layers(i)) == 8 and len(recovered.logs(i)) == 5 for i in ids)
    assert recovered.get_run(ids[0]).result["pruned_ppl"] == 20.0 + ids[0] - 1
    assert run_cli(["store", "check", "--store", str(path)], capsys)[:2] == (0, f"store {path}: no damage found\n")
    assert run_cli(["runs", "--store", str(path)], capsys)[0] == 0


def test_a_run_with_unreadable_json_is_damage_too(tmp_path, capsys):
    path = tmp_path / "runs.sqlite"
    seeded_store(path, runs=3)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET config = '{not json' WHERE id = 2")
    code, _, err = run_cli(["runs", "--store", str(path)], capsys)
    assert code == 2 and len(err) == 1 and "is damaged (a row holds unreadable data" in err[0]
    code, out, _ = run_cli(["store", "check", "--store", str(path)], capsys)
    assert code == 2 and "run 2: a JSON column does not decode" in out
    assert run_cli(["store", "recover", "--store", str(path)], capsys)[0] == 0
    assert [r.id for r in RunStore(path).list_runs()] == [3, 1]


# -- damaged caches --------------------------------------------------------------------------------------------

def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_cache_entries_are_rebuilt(tmp_path, perp_home, tiny_model_dir, tiny_text_file, caplog):  # noqa: F811
    cache = tmp_path / "cache"
    config = tiny_run_config(tiny_model_dir, tiny_text_file, method="wanda")
    first = run_pipeline(config, cache_dir=str(cache))
    [pruned] = (cache / "pruned").iterdir()
    [dense] = (cache / "dense_ppl").iterdir()
    tokens = sorted((perp_home / "tokens").glob("*.safetensors"))
    assert pruned.is_file() and tokens
    truncate(pruned)
    dense.write_text("{ damaged")
    for path in tokens:
        truncate(path)

    lines: list[str] = []
    with caplog.at_level(logging.WARNING, logger="perp_engine.paths"):
        again = run_pipeline(config, cache_dir=str(cache), log=lines.append)
    damaged = [line for line in lines if "is damaged" in line and "rebuilding it" in line]
    assert {Path(line.split()[2]) for line in damaged} == {pruned, dense}  # said in the run's log
    assert len([r for r in caplog.records if "is damaged" in r.getMessage()]) == len(tokens)  # and in the log
    assert again.reused == ["layer_errors", "pruned_ppl"]  # both keyed by the settings, which did not change
    assert (again.dense_ppl, again.pruned_ppl) == (first.dense_ppl, first.pruned_ppl)
    assert set(load_file(pruned)) == {r.name for r in first.layers}  # rebuilt whole
    third = run_pipeline(config, cache_dir=str(cache))
    assert set(third.reused) == {"dense_ppl", "pruned_model", "pruned_ppl", "layer_errors"}


def test_a_damaged_model_conversion_is_converted_again(tmp_path, monkeypatch, caplog):
    """The embedded model's cache folder is stamped with the size and CRC-32 of every file: a truncated file, or
    one with changed bytes, is found and the GGUF converted again (here a fake conversion writes a tiny model)."""
    try:
        models._embedded_gguf("smollm2-135m")
    except Exception:
        pytest.skip("the embedded model's package is not installed")
    conversions = []

    def convert(gguf: Path, cache: Path) -> None:
        conversions.append(cache)
        with atomic_dir(cache) as tmp:
            save_tiny_model(tmp)
            models.write_stamp(tmp, gguf)

    monkeypatch.setattr(models, "_convert_gguf", convert)
    weights = tmp_path / "models" / "smollm2-135m" / "model.safetensors"
    models.load_model("smollm2-135m", device="cpu", home=tmp_path)
    models.load_model("smollm2-135m", device="cpu", home=tmp_path)
    assert len(conversions) == 1
    truncate(weights)
    with caplog.at_level(logging.WARNING, logger="perp_engine.model.load"):
        models.load_model("smollm2-135m", device="cpu", home=tmp_path)
    assert len(conversions) == 2 and "is damaged (model.safetensors changed" in caplog.text
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    weights.write_bytes(bytes(data))
    model, _ = models.load_model("smollm2-135m", device="cpu", home=tmp_path)
    assert len(conversions) == 3 and all(torch.isfinite(p).all() for p in model.parameters())


# -- export: a full disk, a killed export ----------------------------------------------------------------------

@pytest.fixture
def kept_run(tmp_path, perp_home, tiny_model_dir, tiny_text_file):  # noqa: F811
    store = RunStore(tmp_path / "runs.sqlite")
    return store, finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=True)


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "dst/model.safetensors")


def no_space_safetensors(*args, **kwargs):
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("target, writer, keep", [("perp_engine.run.export.shutil.copyfile", no_space, True),
                                                  ("perp_engine.run.save.save_file", no_space_safetensors, False)],
                         ids=["copying a kept model", "recomputing"])
def test_export_onto_a_full_disk_is_one_line(target, writer, keep, tmp_path, capsys, monkeypatch, perp_home,  # noqa: F811
                                             tiny_model_dir, tiny_text_file):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = finished_run(store, tiny_run_config(tiny_model_dir, tiny_text_file, method="magnitude"), keep_model=keep)
    monkeypatch.setattr(target, writer)
    dest = tmp_path / "export"
    code, _, err = run_cli(["export", str(run_id), str(dest), "--quiet", "--store", str(store.path)], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0] == f"perp: error: dir: cannot write the export to {tmp_path}: No space left on device; {dest} was left as it was"
    assert not dest.exists() and not list(tmp_path.glob(".export.export-*"))


def test_a_killed_export_is_cleaned_up_by_the_next(kept_run, tmp_path, capsys):
    store, run_id = kept_run
    dest = tmp_path / "killed"
    started = tmp_path / "started"
    script = ("import sys, time\nfrom perp_engine.run import export\nfrom perp_engine.store import RunStore\n"
              "def stall(staging, dest):\n    open(sys.argv[3], 'w').close()\n    time.sleep(600)\n"
              "export._move_into = stall\n"
              "export.export_run(RunStore(sys.argv[1]), int(sys.argv[2]), sys.argv[4])\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(store.path), str(run_id), str(started), str(dest)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the export did not start"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    [left] = tmp_path.glob(".killed.export-*")
    assert (left / "model.safetensors").is_file() and not dest.exists()

    code, _, err = run_cli(["export", str(run_id), str(dest), "--store", str(store.path)], capsys)
    assert code == 0, err
    assert not list(tmp_path.glob(".killed.export-*")) and (dest / "model.safetensors").is_file()


def test_export_keeps_the_temporary_folder_of_a_live_export(kept_run, tmp_path):
    """Only folders of processes that are gone are removed: a concurrent export into the same place goes on."""
    from perp_engine.run.export import export_run

    store, run_id = kept_run
    live = tmp_path / f".dest.export-{os.getpid()}-live"
    live.mkdir()
    export_run(store, run_id, tmp_path / "dest")
    assert live.is_dir()


# -- diverged training -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("pruned, final, diverged", [
    (100.0, 99.0, False), (100.0, 9.99 * 100, False), (100.0, 10.01 * 100, True), (100.0, math.inf, True),
    (100.0, math.nan, True), (100.0, None, False), (math.inf, 5.0, False),
])
def test_divergence_rule(pruned, final, diverged):
    assert DIVERGED_FACTOR == 10.0
    assert (divergence(pruned, final) is not None) == diverged


def test_diverging_training_is_marked_and_keeps_the_pruned_weights(tmp_path, capsys, perp_home, tiny_model_dir,  # noqa: F811
                                                                   tiny_text_file):
    """PERP at lr 0.99 on the tiny model: the final perplexity lands orders of magnitude above the pruned one.
    The run is done, marked diverged everywhere, and the model it keeps is the pruned one."""
    store = tmp_path / "runs.sqlite"
    code, out, err = run_cli(["run", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY,
                              "--method", "magnitude", "--preset", "perp", "--lr", "0.99", "--steps", "12",
                              "--keep-model", "--quiet", "--store", str(store)], capsys)
    assert code == 0, err
    assert "final ppl   DIVERGED    after retrain: repair diverged: the final perplexity" in out
    row = RunStore(store).get_run(1)
    assert row.status == "done" and row.diverged.startswith("repair diverged: the final perplexity")
    assert row.final_ppl is None and row.result["final_ppl"] is None and row.result["diverged"] == row.diverged
    assert all(layer["recon_error_after"] is None for layer in RunStore(store).layers(1))

    code, out, _ = run_cli(["runs", "--store", str(store)], capsys)
    assert out.splitlines()[1].split()[9] == "diverged"
    code, out, _ = run_cli(["runs", "1", "--store", str(store)], capsys)
    assert f"DIVERGED: {row.diverged}" in out and "final diverged" in out

    kept = load_file(Path(row.artifact) / "model.safetensors")
    [pruned] = (tmp_path / "cache" / "pruned").iterdir()
    for name, weight in load_file(pruned).items():
        assert torch.equal(kept[f"{name}.weight"], weight), name  # the pruned weights, not the diverged ones
    original = load_file(tiny_model_dir / "model.safetensors")
    norms = [n for n in original if "norm" in n]
    assert norms and all(torch.equal(kept[n], original[n]) for n in norms)  # norms as before the repair
