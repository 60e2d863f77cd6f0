"""Compare's figure builders and the axes they use: given runs (store rows), the figures hold the right traces and
values, one dense reference per evaluation protocol, no diverged run, and readable axes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from app_fixtures import made_up, record

from app import axes, figures, inside_layer_figures
from app.runs import run_label
from perp_engine import palette, ticks
from perp_engine.config import RunConfig
from perp_engine.reproduce.figures import build_figures
from perp_engine.reproduce.report import load_report, run_numbers
from perp_engine.reproduce.runset import CLAIM2_RECIPES, CLAIM3_PRUNINGS
from perp_engine.reproduce.wording import NAMES
from perp_engine.store import RunStore


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def add(store, preset, dense, pruned, final=None, fraction=0.0, losses=(), diverged=None, **fields):
    config = RunConfig.create(preset, **fields)
    result = made_up(config, dense, pruned, final, fraction, losses).to_dict()
    if diverged:
        result["diverged"] = diverged  # the RunResult field another branch adds; read with .get
    return store.get_run(record(store, config, result))


def by_name(fig):
    return {t.name: t for t in fig.data}


def test_ppl_vs_sparsity_one_line_per_method_and_recipe(store):
    runs = [
        add(store, "none", 10.0, 20.0, method="magnitude", sparsity=0.3),
        add(store, "none", 10.0, 40.0, method="magnitude", sparsity=0.5),
        add(store, "perp", 10.0, 30.0, 12.0, 0.005, method="wanda", sparsity=0.5),
        add(store, "perp", 10.0, 15.0, 11.0, 0.005, method="wanda", sparsity=0.3),
    ]
    fig = figures.ppl_vs_sparsity(runs)
    traces = by_name(fig)
    assert set(traces) == {"dense", "magnitude · no retraining", "wanda · no retraining", "wanda · perp"}
    assert list(traces["wanda · perp"].x) == [0.3, 0.5]
    assert list(traces["wanda · perp"].y) == pytest.approx([11.0, 12.0])
    assert list(traces["wanda · no retraining"].y) == pytest.approx([15.0, 30.0])
    assert list(traces["magnitude · no retraining"].y) == pytest.approx([20.0, 40.0])
    dense = traces["dense"]  # a dashed line across the chart, labelled with its value
    assert list(dense.y) == pytest.approx([10.0, 10.0]) and dense.line.dash == "dash" and dense.text[-1] == "dense 10.0"
    assert fig.layout.yaxis.type == "log"
    assert list(fig.layout.yaxis.ticktext) == ["10", "15", "20", "30"]  # readable values, never a bare minor digit
    assert fig.layout.yaxis.range[0] < 1.0  # the dense line (10) is inside the axis, under its lowest tick
    low, high = fig.layout.xaxis.range  # the sparsity axis fits the data (30-50%) with a little room
    assert 0.2 <= low < 0.3 and 0.5 < high <= 0.6 and list(fig.layout.xaxis.tickvals)[0] >= 0.2
    assert list(dense.x) == [low, high]


def test_ppl_vs_sparsity_averages_seeds_geometrically_and_skips_unfinished(store, tmp_path):
    a = add(store, "perp", 10.0, 30.0, 12.0, 0.01, sparsity=0.5, seed=0)
    b = add(store, "perp", 10.0, 30.0, 27.0, 0.01, sparsity=0.5, seed=1)
    queued = store.get_run(store.create_run(RunConfig.create("perp", sparsity=0.7)))
    traces = by_name(figures.ppl_vs_sparsity([a, b, queued]))
    line = traces["wanda · perp"]
    assert list(line.x) == [0.5]
    assert line.y[0] == pytest.approx(math.sqrt(12.0 * 27.0))
    assert line.customdata[0] == f"#{a.id}, #{b.id}"


def test_ppl_vs_sparsity_names_patterns_models_and_custom_recipes(store):
    runs = [
        add(store, "perp-masklora", 10.0, 30.0, 14.0, 0.03, method="sparsegpt", sparsity=0.5, pattern="2:4"),
        add(store, None, 50.0, 90.0, 60.0, 0.001, model="other/model", mode="retrain", train=("norms",), lr=5e-3),
    ]
    names = set(by_name(figures.ppl_vs_sparsity(runs)))
    assert "smollm2-135m · sparsegpt 2:4 · perp-masklora" in names
    assert "other/model · wanda · retrain: norms, lr 0.005" in names
    assert {"smollm2-135m · dense", "other/model · dense"} <= names


def test_ppl_vs_trainable_plots_fraction_against_final_with_reference_lines(store):
    runs = [
        add(store, "perp", 10.0, 30.0, 13.0, 0.005, sparsity=0.5),
        add(store, "full-ft", 10.0, 30.0, 11.0, 1.0, sparsity=0.5),
        add(store, "none", 10.0, 30.0, sparsity=0.5),
    ]
    fig = figures.ppl_vs_trainable(runs)
    traces = by_name(fig)
    points = traces["wanda 50%"]
    assert list(points.x) == pytest.approx([0.5, 100.0])
    assert list(points.y) == pytest.approx([13.0, 11.0])
    assert list(points.text) == ["perp", "full-ft"]
    assert list(points.customdata) == [runs[0].ref, runs[1].ref]  # a gallery run would read g12
    assert list(traces["wanda 50% · before retraining"].y) == pytest.approx([30.0, 30.0])
    assert list(traces["dense"].y) == pytest.approx([10.0, 10.0])
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert list(fig.layout.xaxis.ticktext) == ["0.5%", "1%", "2%", "5%", "10%", "20%", "50%", "100%"]


def test_ppl_vs_trainable_without_retrained_runs_is_empty(store):
    assert figures.ppl_vs_trainable([add(store, "none", 10.0, 30.0)]).data == ()


def test_ppl_bars_show_dense_pruned_retrained_per_run(store):
    runs = [add(store, "none", 10.0, 30.0, sparsity=0.6), add(store, "perp", 10.0, 20.0, 12.0, 0.005)]
    fig = figures.ppl_bars(runs)
    traces = by_name(fig)
    assert set(traces) == {"dense", "pruned", "retrained"}
    for name, values in (("dense", [10.0, 10.0]), ("pruned", [30.0, 20.0]), ("retrained", [None, 12.0])):
        assert list(traces[name].x) == [f"#{r.id}" for r in runs]  # short ids under the bars
        assert list(traces[name].hovertext) == [run_label(r) for r in runs]  # the settings on hover
        assert list(traces[name].y) == values
        assert traces[name].texttemplate == "%{y:,.1f}"  # every bar says its value
    assert fig.layout.yaxis.type == "linear" and fig.layout.yaxis.rangemode == "tozero"  # 10..30: from 0


def test_ppl_bars_on_a_log_axis_start_a_decade_below_the_dense_bar(store):
    runs = [add(store, "perp", 25.0, 926.0, 322.0, 0.005)]
    fig = figures.ppl_bars(runs)
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.range[0] == 1  # 10: the dense bar (25) is 40% of a decade tall, not a sliver
    assert list(fig.layout.yaxis.ticktext) == ["10", "20", "50", "100", "200", "500", "1k"]


def test_ppl_bars_stay_readable_with_many_runs(store):
    """Nine runs: the x labels are short ids (no smear of long names) and the values move to the hover."""
    runs = [add(store, "perp", 10.0, 20.0 + i, 12.0, 0.005, seed=i) for i in range(figures.MANY_RUNS + 1)]
    fig = figures.ppl_bars(runs)
    assert max(len(x) for x in fig.data[0].x) <= 4 and len(set(fig.data[0].x)) == len(runs)
    assert all(t.texttemplate is None for t in fig.data)


def test_loss_curves_overlay_and_smooth():
    fig = figures.loss_curves({"#1": [4.0, 2.0, 3.0, 1.0], "#2": [5.0, 5.0], "#3": []})
    traces = by_name(fig)
    assert set(traces) == {"#1", "#2"}
    assert list(traces["#1"].x) == [1, 2, 3, 4] and list(traces["#1"].y) == [4.0, 2.0, 3.0, 1.0]
    smoothed = by_name(figures.loss_curves({"#1": [4.0, 2.0, 3.0, 1.0]}, window=2))["#1"]
    assert list(smoothed.y) == [4.0, 3.0, 2.5, 2.0]


CURVE = [{"step": 0, "seconds": 0.0, "ppl": 900.0}, {"step": 5, "seconds": 2.5, "ppl": 300.0},
         {"step": 7, "seconds": 3.6, "ppl": 280.0}]


@pytest.mark.parametrize("x, xs", [("step", [0, 5, 7]), ("seconds", [0.0, 2.5, 3.6])])
def test_learning_curves_plot_held_out_perplexity_against_steps_or_seconds(x, xs):
    fig = figures.learning_curves({"#1 perp": CURVE, "#2 none": []}, x)
    traces = by_name(fig)
    assert set(traces) == {"#1 perp"} and fig.layout.yaxis.type == "log"
    assert list(traces["#1 perp"].x) == xs and list(traces["#1 perp"].y) == [900.0, 300.0, 280.0]
    assert list(fig.layout.yaxis.ticktext) == ["300", "500", "700", "1k"]  # finer 1-2-5 steps, never a bare digit


def block(index: int, errors: list[float]) -> dict:
    return {"block": index, "curve": [{"step": 2 * i, "seconds": float(i), "error": e} for i, e in enumerate(errors)]}


def test_block_learning_curves_average_each_block_relative_to_its_start():
    fig = figures.block_learning_curves({"#3 recon": [block(0, [0.01, 0.005, 0.004])["curve"],
                                                      block(1, [1.0, 0.9, 0.2])["curve"]]})
    trace = by_name(fig)["#3 recon"]
    assert list(trace.x) == [0, 2, 4]
    assert list(trace.y) == pytest.approx([1.0, (0.5 + 0.9) / 2, (0.4 + 0.2) / 2])


def test_a_run_s_block_curves_are_one_line_per_block():
    fig = figures.block_curves_of_run([block(0, [0.01, 0.005]), {"block": 1, "curve": []}, block(2, [2.0, 1.5])])
    assert set(by_name(fig)) == {"block 0", "block 2"} and list(by_name(fig)["block 2"].y) == [2.0, 1.5]


def test_each_protocol_gets_its_own_lines_and_dense_reference(store):
    runs = [add(store, "none", 25.0, 60.0, seqlen=256, eval_tokens=4096),
            add(store, "none", 28.0, 70.0, seqlen=128, eval_tokens=2048),
            add(store, "perp", 25.0, 60.0, 40.0, 0.005, seqlen=256, eval_tokens=4096)]
    traces = by_name(figures.ppl_vs_sparsity(runs))
    long, short = "[wiki-embedded, seqlen 256, 4,096 tokens]", "[wiki-embedded, seqlen 128, 2,048 tokens]"
    assert list(traces[f"{long} · dense"].y) == pytest.approx([25.0, 25.0])
    assert list(traces[f"{short} · dense"].y) == pytest.approx([28.0, 28.0])
    assert traces[f"{short} · dense"].text[-1] == f"{short} · dense 28.0"
    assert list(traces[f"{long} · wanda · no retraining"].y) == pytest.approx([60.0])
    assert list(traces[f"{short} · wanda · no retraining"].y) == pytest.approx([70.0])
    trainable = by_name(figures.ppl_vs_trainable(runs))
    assert set(trainable) == {"wanda 50%", "wanda 50% · before retraining", "dense"}  # one protocol retrained


def test_diverged_runs_are_not_drawn(store):
    ok = add(store, "perp", 10.0, 30.0, 12.0, 0.005)
    blown = add(store, "perp", 10.0, 30.0, 1e30, 0.005, diverged="final perplexity 1e+30", sparsity=0.7)
    overflow = add(store, "none", 10.0, float("inf"), sparsity=0.9)
    assert figures.charted([ok, blown, overflow]) == [ok]
    for fig in (figures.ppl_vs_sparsity([ok, blown, overflow]), figures.ppl_bars([ok, blown, overflow])):
        assert max(y for t in fig.data for y in t.y if y is not None) == pytest.approx(30.0)  # no 1e30, no inf
    assert [list(t.customdata) for t in figures.ppl_bars([ok, blown, overflow]).data] == [[ok.ref]] * 3


def test_value_axis_is_linear_for_close_values_and_ignores_missing_ones():
    assert axes.value_axis([25.0, 60.0, None, float("inf")])["type"] == "linear"
    log = axes.value_axis([25.0, 926.0])
    assert log["type"] == "log" and log["range"][0] < math.log10(25) < math.log10(926) < log["range"][1]
    assert all(ticks.tick_label(v) == t for v, t in zip(log["tickvals"], log["ticktext"]))
    assert axes.value_axis([None, 0.0]) == {}
    assert 1.0 in axes.ratio_axis([0.2, 0.5])["tickvals"]  # "unchanged" is always on a ratio axis


PAPER = Path(__file__).resolve().parents[2] / "docs" / "paper" / "report.json"


def _line_colors(fig) -> dict:
    return {t.name: t.line.color for t in fig.data if t.type == "scatter" and t.line.color}


def test_a_method_and_a_recipe_keep_their_colour_on_every_chart(store):
    """The colour of a method (a model not repaired) and of a recipe is one on Compare's tabs, on Inside a layer
    and on the Paper figures, whatever else is charted beside it (it used to follow the sorted series names)."""
    alone = [add(store, "none", 30.9, 500.0, method="magnitude", sparsity=0.5),
             add(store, "perp", 30.9, 500.0, 90.0, 0.005, method="magnitude", sparsity=0.5)]
    crowd = alone + [add(store, p, 30.9, 60.0, 40.0, 0.01, method="wanda", sparsity=s)
                     for p in ("perp-masklora", "full-ft") for s in (0.3, 0.5)]
    magnitude, perp = palette.method_color("magnitude"), palette.recipe_color("perp")
    for rows in (alone, crowd):
        lines = _line_colors(figures.ppl_vs_sparsity(rows))
        assert lines["magnitude · no retraining"] == magnitude and lines["magnitude · perp"] == perp
        trainable = by_name(figures.ppl_vs_trainable(rows))
        assert trainable["magnitude 50% · before retraining"].line.color == magnitude
        assert list(trainable["magnitude 50%"].marker.color) == [perp]
    assert inside_layer_figures.METHOD_COLORS["magnitude"] == magnitude
    paper = build_figures(run_numbers(load_report(PAPER)))
    claim1 = _line_colors(paper["claim1"])
    assert claim1[NAMES["none"]] == magnitude and claim1[NAMES["perp"]] == perp
    assert {t.marker.color for t in paper["claim1"].data if t.type == "bar" and t.name == NAMES["perp"]} == {perp}
    claim2 = paper["claim2"].data[0]
    assert claim2.marker.color[list(CLAIM2_RECIPES).index("perp")] == perp
    no_repair = next(t for t in paper["claim3"].data if t.name == "no repair")
    assert list(no_repair.marker.color) == [palette.method_color(m) for m, _ in CLAIM3_PRUNINGS]


def test_every_log_axis_of_the_paper_reads_at_1_2_5_and_labels_the_dense_line():
    """The Paper figures' log axes carry the one tick rule (they read "5, 2, 10k, 5, 2, 1000" before) and the
    dense line says its value."""
    report = load_report(PAPER)
    dense = next(r["dense_ppl"] for r in report["runs"] if r.get("dense_ppl"))
    for name, fig in build_figures(run_numbers(report)).items():
        axes_ = [a for key in fig.layout if key.startswith("yaxis") and (a := fig.layout[key]).type == "log"]
        for axis in axes_:
            assert list(axis.ticktext) == [ticks.tick_label(v) for v in axis.tickvals], name
            assert all(t.rstrip("kM").lstrip("0.")[:1] in "1235" for t in axis.ticktext), name
            assert axis.range[0] < math.log10(dense) < axis.range[1], name
        if name != "claim3" and name != "curves3":
            assert palette.dense_label(dense) in [a.text for a in fig.layout.annotations], name
