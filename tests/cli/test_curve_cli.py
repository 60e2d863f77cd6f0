"""--eval-every on the command line and the learning curve `perp runs ID` shows."""

import re

import pytest
from fixtures_tiny import perp_home, tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)

from perp_engine.cli import main

TINY = ["--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "64", "--device", "cpu", "--quiet",
        "--method", "magnitude"]


@pytest.mark.parametrize("preset, shown", [("perp", r"learning curve \(\d+\.\d s of measuring, \d+\.\d\d s per point\): step ppl  0: [\d.,]+"
                                                    r"  2: [\d.,]+  4: [\d.,]+  5: [\d.,]+"),
                                           ("recon-norms", r"block learning curves \(\d+\.\d s of measuring\), "
                                                           r"held-out error at step 0 -> last step: 0: ")])
def test_runs_shows_the_learning_curve(preset, shown, tiny_model_dir, tiny_text_file, tmp_path, capsys,  # noqa: F811
                                       perp_home):  # noqa: F811
    store = str(tmp_path / "runs.sqlite")
    assert main(["run", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY, "--store", store,
                 "--preset", preset, "--steps", "5", "--eval-every", "2"]) == 0
    capsys.readouterr()
    assert main(["runs", "1", "--store", store]) == 0
    assert re.search(shown, capsys.readouterr().out)


def test_a_bad_interval_is_one_line_and_exit_2(capsys, tiny_text_file, perp_home):  # noqa: F811
    code = main(["run", "--no-store", "--dataset", str(tiny_text_file), *TINY, "--preset", "perp",
                 "--eval-every", "-2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines()[-1].startswith("perp: error: eval_every: -2 is not allowed")
