"""Figure builders: given runs (store rows) and layer records, the figures hold the right traces and values."""

from __future__ import annotations

import math

import pytest
from app_fixtures import made_up, record

from app import figures
from app.runs import run_label
from perp_engine.blocks import find_decoder_blocks, find_linears, get_weight, linear_kind
from perp_engine.config import RunConfig
from perp_engine.store import RunStore


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def add(store, preset, dense, pruned, final=None, fraction=0.0, losses=(), **fields):
    config = RunConfig.create(preset, **fields)
    return store.get_run(record(store, config, made_up(config, dense, pruned, final, fraction, losses)))


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
    assert list(traces["dense"].x) == [0.0] and list(traces["dense"].y) == pytest.approx([10.0])
    assert sorted(traces["dense"].customdata[0]) == sorted(r.id for r in runs)
    assert fig.layout.yaxis.type == "log"


def test_ppl_vs_sparsity_averages_seeds_geometrically_and_skips_unfinished(store, tmp_path):
    a = add(store, "perp", 10.0, 30.0, 12.0, 0.01, sparsity=0.5, seed=0)
    b = add(store, "perp", 10.0, 30.0, 27.0, 0.01, sparsity=0.5, seed=1)
    queued = store.get_run(store.create_run(RunConfig.create("perp", sparsity=0.7)))
    traces = by_name(figures.ppl_vs_sparsity([a, b, queued]))
    line = traces["wanda · perp"]
    assert list(line.x) == [0.5]
    assert line.y[0] == pytest.approx(math.sqrt(12.0 * 27.0))
    assert sorted(line.customdata[0]) == [a.id, b.id]


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
    assert list(points.customdata) == [runs[0].id, runs[1].id]
    assert list(traces["wanda 50% · before retraining"].y) == pytest.approx([30.0, 30.0])
    assert list(traces["dense"].y) == pytest.approx([10.0, 10.0])
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert list(fig.layout.xaxis.ticktext) == ["0.5%", "1%", "2%", "5%", "10%", "20%", "50%", "100%"]


def test_ppl_vs_trainable_without_retrained_runs_is_empty(store):
    assert figures.ppl_vs_trainable([add(store, "none", 10.0, 30.0)]).data == ()


def test_ppl_bars_show_dense_pruned_retrained_per_run(store):
    runs = [add(store, "none", 10.0, 30.0, sparsity=0.6), add(store, "perp", 10.0, 20.0, 12.0, 0.005)]
    traces = by_name(figures.ppl_bars(runs))
    assert set(traces) == {"dense", "pruned", "retrained"}
    labels = [run_label(r) for r in runs]
    for name, values in (("dense", [10.0, 10.0]), ("pruned", [30.0, 20.0]), ("retrained", [None, 12.0])):
        assert list(traces[name].x) == labels
        assert list(traces[name].y) == values


def test_loss_curves_overlay_and_smooth():
    fig = figures.loss_curves({"#1": [4.0, 2.0, 3.0, 1.0], "#2": [5.0, 5.0], "#3": []})
    traces = by_name(fig)
    assert set(traces) == {"#1", "#2"}
    assert list(traces["#1"].x) == [1, 2, 3, 4] and list(traces["#1"].y) == [4.0, 2.0, 3.0, 1.0]
    smoothed = by_name(figures.loss_curves({"#1": [4.0, 2.0, 3.0, 1.0]}, window=2))["#1"]
    assert list(smoothed.y) == [4.0, 3.0, 2.5, 2.0]


def layer_records(model, after: bool = True) -> list[dict]:
    """One record per block linear with values that encode its position (block, order in block)."""
    _, blocks = find_decoder_blocks(model)
    records = []
    for b, block in enumerate(blocks):
        for j, (name, module) in enumerate(find_linears(block).items()):
            records.append({"name": f"blocks.{b}.{name}", "block": b, "kind": linear_kind(name),
                            "sparsity": 0.5 + 0.01 * j, "recon_error": 10.0 ** -(b + 1) * (j + 1),
                            "recon_error_after": 10.0 ** -(b + 2) * (j + 1) if after else None,
                            "numel": get_weight(module).numel()})
    return records


def test_layer_matrix_places_every_layer(tiny_model):
    records = layer_records(tiny_model)
    blocks, columns, z = figures.layer_matrix(records, "recon_error")
    assert blocks == [0, 1]
    assert len(columns) == len(set(columns)) == len(records) // 2  # one column per linear of a block, no clash
    for rec, column in zip(records, figures.layer_columns(records)):
        assert z[blocks.index(rec["block"])][columns.index(column)] == rec["recon_error"]


def test_layer_columns_order_and_disambiguate():
    llama = [{"name": f"model.layers.0.{p}", "block": 0, "kind": p.rsplit(".", 1)[1]}
             for p in ("mlp.down_proj", "self_attn.q_proj", "mlp.gate_proj", "self_attn.o_proj")]
    assert figures.layer_matrix(llama, "kind")[1] == ["q_proj", "o_proj", "gate_proj", "down_proj"]
    gpt2 = [{"name": f"transformer.h.0.{p}", "block": 0, "kind": p.rsplit(".", 1)[1]}
            for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert figures.layer_columns(gpt2) == ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]


def test_error_heatmaps_before_and_after_per_run(tiny_model):
    records = layer_records(tiny_model)
    fig = figures.error_heatmaps({"#1": records, "#2": layer_records(tiny_model, after=False)})
    assert [t.name for t in fig.data] == ["#1 · after pruning", "#1 · after retraining", "#2 · after pruning"]
    first = fig.data[0]
    _, columns, raw = figures.layer_matrix(records, "recon_error")
    assert [list(row) for row in first.customdata] == raw
    assert first.z[1][0] == pytest.approx(math.log10(raw[1][0]))
    assert list(first.y) == [0, 1]
    assert list(first.x) == [c.removesuffix("_proj") for c in columns]
    assert (fig.layout.yaxis.tickmode, fig.layout.yaxis.dtick) == ("linear", 1)  # whole blocks only


def test_sparsity_heatmaps_one_panel_per_run(tiny_model):
    records = layer_records(tiny_model)
    fig = figures.sparsity_heatmaps({"#1": records, "#2": records})
    assert [t.name for t in fig.data] == ["#1", "#2"]
    assert [list(r) for r in fig.data[0].z] == figures.layer_matrix(records, "sparsity")[2]


def test_layer_lines_one_panel_per_kind_with_before_and_after(tiny_model):
    records = layer_records(tiny_model)
    columns = figures.layer_matrix(records, "recon_error")[1]
    fig = figures.layer_lines({"#1": records}, "recon_error")
    assert len(fig.data) == 2 * len(columns)
    for trace in fig.data:
        mine = sorted((r for r, c in zip(records, figures.layer_columns(records)) if c == trace.meta), key=lambda r: r["block"])
        key = "recon_error_after" if trace.name.endswith("after retraining") else "recon_error"
        assert list(trace.x) == [0, 1]
        assert list(trace.y) == [r[key] for r in mine]
        assert trace.line.dash == ("dash" if key == "recon_error_after" else "solid")
    sparsity = figures.layer_lines({"#1": records, "#2": records}, "sparsity")
    assert len(sparsity.data) == 2 * len(columns)
    assert {t.name for t in sparsity.data} == {"#1", "#2"}


def test_block_losses_before_and_after():
    fig = figures.block_losses({"#1": [{"block": 0, "loss_before": 0.2, "loss_after": 0.1},
                                       {"block": 1, "loss_before": 0.4, "loss_after": 0.3}],
                                "#2": [{"block": 0, "loss_before": 0.5, "loss_after": None}]})
    traces = by_name(fig)
    assert set(traces) == {"#1 · after pruning", "#1 · after retraining", "#2 · after pruning"}
    assert list(traces["#1 · after retraining"].y) == [0.1, 0.3]
