"""Bad input to every subcommand: exit code 2, exactly one line on stderr naming the field (or argparse's usage
error, also one line), no traceback, and the store unchanged: no run, failed or otherwise, is recorded for
anything that can be checked before a run starts.

The table is the regression list of the bad-input campaign (issue 9) plus the cases it found broken."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from app_fixtures import made_up, record
from fixtures_tiny import save_tiny_model, tiny_model_dir, tiny_run_config, tiny_text, tiny_text_file  # noqa: F401
from transformers import LlamaConfig, LlamaForCausalLM

from perp_engine.cli import main
from perp_engine.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
HUGE = "99999999999999999999"  # beyond SQLite's and torch's 64-bit integers
TINY = ["--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "64", "--device", "cpu"]
RETRAIN = ["--mode", "retrain", "--train", "norms"]
USAGE = "usage"  # argparse's error, in one line

# (argv, the field the error names, or USAGE). {placeholders} are files made by the `env` fixture.
RUN = [
    (["--sparsity", "1.5"], "sparsity"),
    (["--sparsity", "half"], USAGE),
    (["--pattern", "4:4"], "pattern"),
    (["--pattern", "2:4", "--sparsity", "0.7"], "sparsity"),
    (["--pattern", "3:7", "--sparsity", "0.428571428571"], "pattern"),  # 32 inputs do not split into groups of 7
    (["--method", "obs"], "method"),
    (["--preset", "perp-everything"], "preset"),
    (["--model", "no-such-org/no-such-model-xyz"], "model"),
    (["--model", "/no/such/folder"], "model"),
    (["--model", "{empty_dir}"], "model"),
    (["--model", "{odd_model}", "--pattern", "2:4", "--sparsity", "0.5"], "pattern"),
    (["--device", "tpu"], "device"),
    (["--device", "cuda:99"], "device"),
    (["--dtype", "float8"], "dtype"),
    (["--offload", "ram"], "offload"),
    ([*RETRAIN, "--steps", "0"], "steps"),
    ([*RETRAIN, "--steps", "2.5"], USAGE),
    ([*RETRAIN, "--steps", HUGE], "steps"),
    ([*RETRAIN, "--steps", "1000000000000"], "steps"),  # terabytes of training windows
    ([*RETRAIN, "--train-samples", "-1"], "train_samples"),
    (["--mode", "retrain", "--adapter", "masklora", "--rank", "0"], "rank"),
    (["--mode", "retrain", "--adapter", "masklora", "--rank", "1000"], "rank"),
    (["--mode", "retrain", "--adapter", "masklora", "--target-modules", "nope_proj"], "target_modules"),
    (["--mode", "retrain", "--train", "weights"], "train"),
    (["--mode", "retrain"], "train"),
    (["--train", "norms"], "mode"),
    (["--mode", "reconstruct", "--train", "head"], "train"),
    (["--mode", "retrain", "--train", "full", "--adapter", "masklora"], "adapter"),
    ([*RETRAIN, "--lr", "2"], "lr"),
    ([*RETRAIN, "--lr", "nan"], "lr"),
    ([*RETRAIN, "--weight-decay", "inf"], "weight_decay"),
    ([*RETRAIN, "--weight-decay", "-1"], "weight_decay"),
    ([*RETRAIN, "--warmup-ratio", "1"], "warmup_ratio"),
    ([*RETRAIN, "--batch-size", "0"], "batch_size"),
    (["--alpha", "0"], "alpha"),
    (["--percdamp", "0"], "percdamp"),
    (["--seqlen", "4"], "seqlen"),
    (["--seqlen", "4096", "--eval-tokens", "4096"], "seqlen"),  # beyond the tiny model's 128 positions
    (["--dataset", "{short_eval}"], "seqlen"),  # its held-out paragraph is shorter than one window
    (["--calib-samples", "1000000000000"], "calib_samples"),
    (["--eval-tokens", "8"], "eval_tokens"),
    (["--seed", "100000000000000000000000"], "seed"),
    (["--seed", "-1"], "seed"),
    (["--dataset", "/no/such/file.txt"], "dataset"),
    (["--dataset", "{binary}"], "dataset"),
    (["--dataset", "{one_paragraph}"], "dataset"),
    (["--dataset", "{short_text}"], "seqlen"),
    (["--dataset", "wikitext2"], "dataset"),  # offline: it cannot be downloaded
    (["--config", "/no/such.json"], "config"),
    (["--config", "{binary}"], "config"),
    (["--config", "{bad_json}"], "config"),
    (["--config", "{list_json}"], "config"),
    (["--config", "{unknown_json}"], "config"),
    (["--config", "{preset_list}"], "preset"),
    (["--config", "{preset_dict}"], "preset"),
    (["--config", "{model_null}"], "model"),
    (["--config", "{sparsity_text}"], "sparsity"),
    (["--config", "{lr_infinity}"], "lr"),
    (["--json", "{tmp}/missing/out.json"], "json"),
    (["--json", "{tmp}"], "json"),
    (["--no-such-flag"], USAGE),
]
SWEEP = [
    (["{binary}"], "sweep"),
    (["/no/such/sweep.yaml"], "sweep"),
    (["{grid_int_key}"], "sweep"),
    (["{grid_int_key}", "--dry-run"], "sweep"),
    (["{top_mixed_keys}"], "sweep"),
    (["{grid_null}"], "sparsity"),
    (["{base_preset_list}"], "preset"),
    (["{base_model_null}"], "model"),
    (["--sparsity", "0.3,x"], "sparsity"),
    (["--method", "obs,wanda"], "sweep"),
    (["--seqlen", "16,200", "--eval-tokens", "200"], "sweep"),  # one point beyond the tiny model's context
    (["--sparsity", "0.3,0.5", "--max-points", "1"], "sweep"),
    (["--sparsity", "0.3,0.5", "--parallel", "0"], "max_parallel"),
    ([], "sweep"),
    (["--nope"], USAGE),
]
RUNS = [
    ([HUGE], "run"),
    (["abc"], "run"),
    (["12345"], "run"),
    (["--sweep", HUGE], "sweep"),
    (["--sweep", "7"], "sweep"),
    (["--status", "bogus"], USAGE),
    (["--limit", "x"], USAGE),
    (["--store", "{tmp}"], "store"),
    (["--store", "{binary}"], "store"),
    (["--store", "{other_sqlite}"], "store"),
]
CANCEL = [([HUGE], "run"), (["abc"], "run"), ([], "id"), (["--sweep", HUGE], "sweep"), (["--sweep", "9"], "sweep"),
          (["--sweep", "x"], USAGE)]
EXPORT = [
    ([HUGE, "{tmp}/out"], "run"),
    (["abc", "{tmp}/out"], "run"),
    (["{failed}", "{tmp}/out"], "run"),
    (["{done}", "{binary}"], "dir"),
    (["{done}", "{nonempty_dir}"], "dir"),
    (["{outside}", "{tmp}/out"], "run"),  # a store edited to name a folder outside its artifacts
    (["{done}"], USAGE),
]
STORE = [(["check", "--store", "/no/such/runs.sqlite"], "store"), (["check", "--store", "{tmp}"], "store"),
         (["frobnicate"], USAGE)]
REPRODUCE = [(["--out", "{binary}"], "out"), (["--parallel", "0"], "parallel"),
             (["--executor", "ray", "--parallel", "2"], "parallel"), (["--ray-cpus", "2"], "executor"),
             (["--quick", "--store", "{tmp}"], "store"), (["--quick", "--out"], USAGE)]
ESTIMATE = [(["--sparsity", "1.5"], "sparsity"), (["--model", "/no/such/folder"], "model"),
            (["--model", "{empty_dir}"], "model"), (["--device", "tpu"], "device"),
            (["--offload", "ram"], "offload"),
            (["--model", "{odd_model}", "--pattern", "2:4", "--sparsity", "0.5"], "pattern"),
            (["--mode", "retrain", "--adapter", "masklora", "--rank", "1000"], "rank"), (["--steps", "x"], USAGE)]
TASKS = [(["--nope"], USAGE), (["rte"], USAGE)]
CASES = ([("run", *c) for c in RUN] + [("estimate", *c) for c in ESTIMATE] + [("sweep", *c) for c in SWEEP]
         + [("runs", *c) for c in RUNS]
         + [("cancel", *c) for c in CANCEL] + [("export", *c) for c in EXPORT] + [("store", *c) for c in STORE]
         + [("reproduce", *c) for c in REPRODUCE] + [("tasks", *c) for c in TASKS])


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir, tiny_text_file):  # noqa: F811
    """A store with one done run, one failed run and one done run whose artifact points outside the store, plus
    every bad file the cases name."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    store_path = tmp / "runs.sqlite"
    store = RunStore(store_path)
    config = tiny_run_config(tiny_model_dir, tiny_text_file)
    done = record(store, config, made_up(config, 10.0, 20.0))
    outside = record(store, config.replace(seed=1), made_up(config, 10.0, 20.0))
    failed = store.create_run(config.replace(seed=2))
    store.start_run(failed)
    store.fail_run(failed, "model: test failure")
    store.close()
    with sqlite3.connect(store_path) as conn:
        conn.execute("UPDATE runs SET artifact = '/etc' WHERE id = ?", (outside,))

    odd = tmp / "odd-model"  # hidden size 30: no N:M pattern with M = 4 fits its layers
    LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=30, intermediate_size=60, num_hidden_layers=1,
                                 num_attention_heads=3, num_key_value_heads=1, max_position_embeddings=128)
                     ).save_pretrained(odd)
    save_tiny_model(tmp / "tok-source")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (odd / name).write_bytes((tmp / "tok-source" / name).read_bytes())
    files = {
        "binary": ("binary.json", bytes(range(256)) * 4),
        "one_paragraph": ("one.txt", b"A single short paragraph."),
        "short_text": ("short.txt", b"Two paragraphs.\n\nBoth short."),
        "short_eval": ("short-eval.txt", f"{tiny_text(9)}\n\nEnd.".encode()),
        "bad_json": ("bad.json", b'{"sparsity": 0.5,'),
        "list_json": ("list.json", b"[1, 2]"),
        "unknown_json": ("unknown.json", b'{"spars": 0.5}'),
        "preset_list": ("preset-list.json", b'{"preset": ["perp"]}'),
        "preset_dict": ("preset-dict.json", b'{"preset": {"perp": 1}}'),
        "model_null": ("model-null.json", b'{"model": null}'),
        "sparsity_text": ("sparsity-text.json", b'{"sparsity": "half"}'),
        "lr_infinity": ("lr-inf.json", b'{"mode": "retrain", "train": ["norms"], "lr": Infinity}'),
        "grid_int_key": ("grid-int-key.yaml", b"grid:\n  1: [2]\n"),
        "top_mixed_keys": ("top-mixed.yaml", b"1: 2\na: 3\n"),
        "grid_null": ("grid-null.yaml", b"grid:\n  sparsity: [0.3, null]\n"),
        "base_preset_list": ("base-preset.yaml", b"base:\n  preset: [perp]\ngrid:\n  sparsity: [0.3, 0.5]\n"),
        "base_model_null": ("base-model.yaml", b"base:\n  model: null\ngrid:\n  sparsity: [0.3, 0.5]\n"),
    }
    paths = {"tmp": str(tmp), "store": str(store_path), "odd_model": str(odd), "done": str(done),
             "failed": str(failed), "outside": str(outside)}
    for key, (name, data) in files.items():
        (tmp / name).write_bytes(data)
        paths[key] = str(tmp / name)
    (tmp / "empty-dir").mkdir()
    paths["empty_dir"] = str(tmp / "empty-dir")
    (tmp / "nonempty").mkdir()
    (tmp / "nonempty" / "keep.txt").write_text("mine")
    paths["nonempty_dir"] = str(tmp / "nonempty")
    other = sqlite3.connect(tmp / "other.sqlite")
    other.execute("CREATE TABLE notes (text TEXT)")
    other.commit()
    other.close()
    paths["other_sqlite"] = str(tmp / "other.sqlite")
    paths["defaults"] = ["--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY]
    return paths


def store_state(path: str) -> tuple:
    conn = sqlite3.connect(path)
    try:
        return tuple(conn.execute(f"SELECT count(*), max(id) FROM {table}").fetchone() for table in ("runs", "sweeps"))
    finally:
        conn.close()


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors exit from parse_args
        code = exit_.code
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("command, args, field", CASES, ids=[f"{c}-{' '.join(a)[:40]}" for c, a, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_records_nothing(command, args, field, env, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # Hub ids fail at once and the same way on every machine
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "home"))
    argv = [command, *(a.format(**{k: v for k, v in env.items() if isinstance(v, str)}) for a in args)]
    if command in ("run", "sweep", "estimate") and args:  # the tiny model and text for every field the case leaves alone
        defaults = env["defaults"]
        argv += [item for flag, value in zip(defaults[::2], defaults[1::2]) if flag not in args for item in (flag, value)]
    if "--store" not in args and command != "estimate":  # estimate reads no store
        argv += ["--store", env["store"]]
    before = store_state(env["store"])

    code, err = run_cli(argv, capsys)

    assert code == 2, (argv, err)
    assert len(err) == 1 and "Traceback" not in err[0], (argv, err)
    if field == USAGE:
        assert re.fullmatch(rf"perp(?: {command})?: error: .+ \(see perp(?: {command})? --help\)", err[0]), err
    else:
        assert err[0].startswith(f"perp: error: {field}: "), (argv, err)
    assert store_state(env["store"]) == before, argv
    assert not (Path(env["tmp"]) / "out").exists()


def test_the_cases_cover_every_subcommand():
    from perp_engine.cli import COMMANDS

    assert {c for c, *_ in CASES} == {name.removesuffix("_cmd") for name in COMMANDS}
    assert len(CASES) >= 100


def test_a_reader_that_closes_the_pipe_ends_quietly(env):
    """`perp runs 1 | head`: no BrokenPipeError traceback, the shell's code for SIGPIPE."""
    proc = subprocess.Popen([sys.executable, "-m", "perp_engine.cli", "runs", env["done"], "--store", env["store"]],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_json_output_is_written_after_a_good_run(env, capsys, tmp_path, monkeypatch):
    """The --json path checks refuse only bad paths: a new file in an existing folder is written."""
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "home"))
    out = tmp_path / "result.json"
    code, err = run_cli(["run", *env["defaults"], "--method", "magnitude", "--no-store", "--quiet", "--json", str(out)],
                        capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["eval_tokens"] == 64
