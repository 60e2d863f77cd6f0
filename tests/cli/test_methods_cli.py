"""The newer pruning modes on the command line: a run with OWL and DSnoT, and what `perp runs` shows of it."""

import re

import pytest

from fixtures_tiny import perp_home, tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)

from perp_engine.cli import main

TINY = ["--seqlen", "16", "--calib-samples", "4", "--eval-tokens", "64", "--device", "cpu", "--quiet"]


def test_runs_names_the_allocation_and_refinement_and_shows_each_blocks_sparsity(
        tiny_model_dir, tiny_text_file, tmp_path, capsys, perp_home):  # noqa: F811
    store = str(tmp_path / "runs.sqlite")
    assert main(["run", "--model", str(tiny_model_dir), "--dataset", str(tiny_text_file), *TINY, "--store", store,
                 "--method", "ria", "--sparsity", "0.6", "--allocation", "owl", "--refine", "dsnot"]) == 0
    capsys.readouterr()
    assert main(["runs", "--store", store]) == 0
    assert "ria + OWL + DSnoT" in capsys.readouterr().out
    assert main(["runs", "1", "--store", store]) == 0
    shown = re.search(r"blocks \(OWL\): sparsity \(outlier share\)  0: (0\.\d+) \([\d.]+%\)  1: (0\.\d+)",
                      capsys.readouterr().out)
    assert shown and (float(shown[1]) + float(shown[2])) / 2 == pytest.approx(0.6)
