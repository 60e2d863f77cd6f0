"""The bench harness keeps the cases a ``--only`` run does not re-measure, each with the run that measured it."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def harness(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_harness", BENCH / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def args(only: str) -> argparse.Namespace:
    return argparse.Namespace(only=only, quick=False, device="cpu")


def test_a_partial_run_keeps_the_other_cases_with_the_run_that_measured_them(harness, tmp_path):
    old = {"commit": "aaa1111", "date": "2026-12-01 10:00:00 UTC"}
    (tmp_path / "x_bench-cpu.json").write_text(json.dumps(
        {"machine": old, "cases": [{"case": "embedded wanda"}, {"case": "embedded wanda offload disk"},
                                   {"case": "360m perp", "measured_at": "0000000 (2026-11-30)"}]}))
    kept = harness.cases_left_alone("x_bench", args("offload disk"), lambda c: c["case"])
    assert [c["case"] for c in kept] == ["embedded wanda", "360m perp"]
    assert kept[0]["measured_at"] == "aaa1111 or earlier (2026-12-01 10:00:00 UTC or earlier)"
    assert kept[1]["measured_at"] == "0000000 (2026-11-30)"  # a stamped case keeps its own run
    new = harness.stamp({"case": "embedded wanda offload disk"}, {"commit": "bbb2222", "date": "2026-12-02"})
    note = harness.measured_at_note(kept + [new], lambda c: c["case"])
    assert note == ("Cases from more than one run (`--only` re-measured some): at aaa1111 or earlier (2026-12-01 "
                    "10:00:00 UTC or earlier): embedded wanda; at 0000000 (2026-11-30): 360m perp; at bbb2222 "
                    "(2026-12-02): embedded wanda offload disk.")
    assert harness.measured_at_note([new], lambda c: c["case"]) == ""  # one run: the header says it
    assert harness.cases_left_alone("x_bench", args(""), lambda c: c["case"]) == []  # a whole run keeps nothing
