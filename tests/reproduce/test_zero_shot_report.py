"""The reproduction's zero-shot side: `perp reproduce --zero-shot` gives every run of the set the fields, and the
report gets each claim's zero-shot table (per task and the mean, dense / no repair / each recipe), one table per
protocol, kept through report.json and printed in report.md."""

from __future__ import annotations

import json
import math

import pytest
from test_reproduce import mag, scenario
from zero_shot_scores import zero_shot

from perp_engine.cli import main
from perp_engine.config import ZERO_SHOT_TASKS
from perp_engine.errors import PerpError
from perp_engine.reproduce import RunSet, paper_set
from perp_engine.reproduce.accuracy import zero_shot_tables
from perp_engine.reproduce.report import claims_markdown
from perp_engine.reproduce.runset import ZERO_SHOT_CLAIMS
from perp_engine.reproduce.wording import Claim, analyse, fmt

DENSE = {"rte": 0.6, "arc_easy": 0.7}


def scored(runs, limit: int = 100, only=None):
    """The scenario's runs with zero-shot scores: pruned models 10 points below dense, repairs 5 points back
    (full retraining 6)."""
    for key, run in runs.items():
        if only is not None and key not in only:
            continue
        pruned = {t: v - 0.1 for t, v in DENSE.items()}
        gain = 0.06 if run.preset == "full-ft" else 0.05
        final = None if run.mode == "none" else {t: v + gain for t, v in pruned.items()}
        run.zero_shot = zero_shot(DENSE, pruned, final, limit=limit)
    return runs


def test_each_claim_gets_a_papers_table_of_its_runs():
    runs = scored(scenario())
    tables = zero_shot_tables(2, runs.values())
    assert len(tables) == 1
    table = tables[0].table
    assert table.columns == ["pruning", "recipe", "RTE", "ARC-Easy", "mean"]
    assert table.formats == ["text", "text", "accuracy", "accuracy", "accuracy"]
    assert table.rows[0][:2] == ["dense", "–"] and table.rows[0][2] == [0.6, 0.05]
    assert table.rows[0][4] == pytest.approx([0.65, math.sqrt(2 * 0.05 ** 2) / 2])
    labels = [tuple(row[:2]) for row in table.rows]
    assert [recipe for pruning, recipe in labels if pruning == "magnitude 70%"][:8] == [
        "no repair", "perp", "full retraining lr 0.0002", "MaskLoRA", "ScaleLoRA", "the paper's ScaleLoRA", "plain LoRA",
        "full retraining lr 0.0001"]
    assert labels.count(("magnitude 70%", "no repair")) == 1 and len(labels) == 1 + 1 + 8  # dense; none + 8 runs
    assert {pruning for pruning, _ in labels[1:]} == {"magnitude 70%"}  # claim 2 is at 70% only
    perp = table.rows[2]
    assert perp[2][0] == pytest.approx(0.55) and perp[4][0] == pytest.approx(0.6)
    full = next(row for row in table.rows if row[:2] == ["magnitude 70%", "full retraining lr 0.0002"])
    assert full[4][0] == pytest.approx(0.61)
    assert "2 task(s), 100 docs per task (seed 0)" in tables[0].note and "ARC-Easy acc (test, 100 of 2,376)" in tables[0].note
    one = zero_shot_tables(1, runs.values())[0].table  # claim 1 has its own prune-only runs: no extra row
    assert [tuple(r[:2]) for r in one.rows].count(("magnitude 50%", "no repair")) == 1
    assert [tuple(r[:2]) for r in one.rows][:5] == [
        ("dense", "–"), ("magnitude 50%", "no repair"), ("magnitude 50%", "norms only"), ("magnitude 50%", "perp"),
        ("magnitude 50%", "full retraining")]


def test_two_protocols_make_two_tables_and_unscored_runs_none():
    runs = scored(scenario())
    for key in (mag(0.7, "perp"), mag(0.7, "full-ft")):
        runs[key].zero_shot = zero_shot(DENSE, DENSE, DENSE, limit=0)  # every doc: another protocol
    tables = zero_shot_tables(2, runs.values())
    assert len(tables) == 2 and "all docs" in tables[0].note and "100 docs per task" in tables[1].note  # perp first
    assert [row[:2] for row in tables[0].table.rows] == [
        ["dense", "–"], ["magnitude 70%", "no repair"], ["magnitude 70%", "perp"],
        ["magnitude 70%", "full retraining lr 0.0002"]]
    assert all(row[:2] != ["magnitude 70%", "perp"] for row in tables[1].table.rows)  # never in both
    assert zero_shot_tables(2, scenario().values()) == []  # no scores: no table
    runs[mag(0.7, "perp-masklora")].status = "failed"
    assert all(row[:2] != ["magnitude 70%", "MaskLoRA"] for table in zero_shot_tables(2, runs.values())
               for row in table.table.rows)


def test_the_tables_survive_report_json_and_print_in_the_markdown():
    runs = scored(scenario())
    claims = analyse(runs.values(), "TinyLM")
    for claim in claims:
        claim.zero_shot = zero_shot_tables(claim.number, runs.values())
    report = {"claims": [json.loads(json.dumps(c.to_dict())) for c in claims], "figures": {}}
    assert [Claim.from_dict(c).zero_shot for c in report["claims"]] == [c.zero_shot for c in claims]
    text = claims_markdown(report)
    assert "Zero-shot accuracy in points, ± standard error (2 task(s), 100 docs per task (seed 0)" in text
    assert "| pruning | recipe | RTE | ARC-Easy | mean |" in text
    assert "| magnitude 50% | perp | 55.0 ± 5.0 | 65.0 ± 5.0 | 60.0 ± 3.5 |" in text
    old = {k: v for k, v in report["claims"][0].items() if k != "zero_shot"}  # a report made before zero-shot
    assert Claim.from_dict(old).zero_shot == []
    assert (fmt([0.625, None], "accuracy"), fmt(None, "accuracy"), fmt([None, None], "accuracy")) == ("62.5", "–", "–")


def test_the_set_takes_the_zero_shot_fields():
    runset = paper_set(zero_shot={"zero_shot": "paper", "zero_shot_limit": 20, "zero_shot_on": None})
    scored_runs = [p for p in runset.runs if set(p.claims) & set(ZERO_SHOT_CLAIMS)]
    assert len(scored_runs) == 14 and {p.config.zero_shot for p in scored_runs} == {ZERO_SHOT_TASKS}
    assert {p.config.zero_shot_limit for p in scored_runs} == {20}
    assert {p.config.zero_shot for p in runset.runs if p not in scored_runs} == {()}  # claim 3's own runs
    assert runset.zero_shot == {"zero_shot": list(ZERO_SHOT_TASKS), "zero_shot_limit": 20}
    assert RunSet.from_dict(json.loads(json.dumps(runset.to_dict()))) == runset
    plain = paper_set(zero_shot={})  # no zero-shot fields
    assert paper_set(zero_shot={"zero_shot": None, "zero_shot_limit": 5}) == plain  # no tasks: the set as it was
    old = plain.to_dict()
    del old["zero_shot"]  # a report.json written before zero-shot
    assert RunSet.from_dict(old) == plain
    with pytest.raises(PerpError, match="unknown task 'mmlu'"):
        paper_set(zero_shot={"zero_shot": "rte,mmlu"})


@pytest.mark.parametrize("argv, message", [
    (["--zero-shot", "mmlu"], "perp: error: zero_shot: unknown task 'mmlu'"),
    (["--zero-shot", "rte", "--zero-shot-on", "repaired"], "perp: error: zero_shot_on: 'repaired' is not allowed"),
])
def test_bad_zero_shot_flags_stop_the_reproduction_in_one_line(argv, message, capsys, tmp_path):
    code = main(["reproduce", "--dry-run", "--store", str(tmp_path / "runs.sqlite"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and message in err.splitlines()[-1]
