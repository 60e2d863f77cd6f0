"""Layer figures: the local and the accumulated error, before / after repair / their change, sparsity and block
outputs, over layer records of the tiny models of every family (made-up values that encode each layer's place)."""

from __future__ import annotations

import math

import pytest

from app import layer_figures as lf
from perp_engine import palette
from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight, linear_kind
from perp_engine.ticks import tick_label


def layer_records(model, after: bool = True, local: bool = True, sparsity=lambda b, j: 0.5 + 0.01 * j) -> list[dict]:
    """One record per block linear; local error 10^-(b+1) (j+1), halved by repair; drift ten times the local one.
    ``local=False``: a run recorded before local errors existed (drift only)."""
    _, blocks = find_decoder_blocks(model)
    records = []
    for b, block in enumerate(blocks):
        for j, (name, module) in enumerate(find_linears(block).items()):
            err = 10.0 ** -(b + 1) * (j + 1)
            records.append({"name": f"blocks.{b}.{name}", "block": b, "kind": linear_kind(name), "sparsity": sparsity(b, j),
                            "recon_error": err if local else None,
                            "recon_error_after": err / 2 if local and after else None,
                            "drift": 10 * err, "drift_after": 5 * err if after else None,
                            "numel": get_weight(module).numel()})
    return records


def test_layer_matrix_places_every_layer(tiny_model):
    records = layer_records(tiny_model)
    blocks, columns, z = lf.layer_matrix(records, "recon_error")
    assert blocks == [0, 1]
    assert len(columns) == len(set(columns)) == len(records) // 2  # one column per linear of a block, no clash
    for rec, column in zip(records, lf.layer_columns(records)):
        assert z[blocks.index(rec["block"])][columns.index(column)] == rec["recon_error"]


def test_layer_columns_order_and_disambiguate():
    llama = [{"name": f"model.layers.0.{p}", "block": 0, "kind": p.rsplit(".", 1)[1]}
             for p in ("mlp.down_proj", "self_attn.q_proj", "mlp.gate_proj", "self_attn.o_proj")]
    assert lf.layer_matrix(llama, "kind")[1] == ["q_proj", "o_proj", "gate_proj", "down_proj"]
    gpt2 = [{"name": f"transformer.h.0.{p}", "block": 0, "kind": p.rsplit(".", 1)[1]}
            for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert lf.layer_columns(gpt2) == ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]


@pytest.mark.parametrize("quantity, before, after", [("local", "recon_error", "recon_error_after"),
                                                     ("drift", "drift", "drift_after")])
def test_error_heatmaps_show_the_chosen_quantity_before_and_after(tiny_model, quantity, before, after):
    records = layer_records(tiny_model)
    fig = lf.error_heatmaps({"#1": records, "#2": layer_records(tiny_model, after=False)}, quantity, "both")
    assert [t.name for t in fig.data] == ["#1 · before", "#1 · after", "#2 · before"]
    for trace, field in zip(fig.data, (before, after, before)):
        _, columns, raw = lf.layer_matrix(records, field)
        if trace.name.startswith("#1"):
            assert [list(row) for row in trace.customdata] == raw
            assert trace.z[1][0] == pytest.approx(math.log10(raw[1][0]))
    first = fig.data[0]
    assert list(first.x) == [c.removesuffix("_proj") for c in columns]
    assert (fig.layout.yaxis.tickmode, fig.layout.yaxis.dtick) == ("linear", 1)  # whole blocks only
    name = lf.layer_matrix(records, "name")[2][1][0]  # block 1, first column
    hover = first.text[1][0]
    assert name in hover and "block 1" in hover and lf.QUANTITIES[quantity].title in hover
    assert f"{raw_value(records, name, before):.4g}" in hover
    ticks = fig.layout.coloraxis.colorbar
    assert list(ticks.ticktext) == [tick_label(10 ** v) for v in ticks.tickvals]  # 0.001, 0.01...: no log10 digits


def raw_value(records, name, field):
    return next(r[field] for r in records if r["name"] == name)


def test_error_heatmaps_change_view_is_the_ratio_on_a_diverging_scale(tiny_model):
    records = layer_records(tiny_model)
    fig = lf.error_heatmaps({"#1": records}, "local", "change")
    (trace,) = fig.data
    assert all(v == pytest.approx(0.5) for row in trace.customdata for v in row)  # repair halved every error
    assert all(v == pytest.approx(math.log10(0.5)) for row in trace.z for v in row)
    colours = fig.layout.coloraxis
    assert colours.cmid == 0 and colours.cmin == -colours.cmax
    assert "0.5×" in colours.colorbar.ticktext and "1×" in colours.colorbar.ticktext


def test_old_runs_say_they_have_only_the_accumulated_error(tiny_model):
    old = {"#3": layer_records(tiny_model, local=False)}
    assert lf.error_heatmaps(old, "local", "both").data == ()
    (note,) = lf.missing_notes(old, "local", "both")
    assert "recorded before local errors existed: only the accumulated error was measured" in note
    assert len(lf.error_heatmaps(old, "drift", "both").data) == 2 and lf.missing_notes(old, "drift", "both") == []
    prune_only = {"#4": layer_records(tiny_model, after=False)}
    assert "not repaired" in lf.missing_notes(prune_only, "local", "change")[0]


def test_layer_lines_distinct_colours_full_width_and_readable_ticks(tiny_model):
    records = layer_records(tiny_model)
    columns = lf.layer_matrix(records, "recon_error")[1]
    fig = lf.layer_lines({"#1": records}, "local", "both")
    assert len(fig.data) == 2 * len(columns)
    for trace in fig.data:
        mine = sorted((r for r, c in zip(records, lf.layer_columns(records)) if c == trace.meta), key=lambda r: r["block"])
        key = "recon_error_after" if trace.name.endswith("after repair") else "recon_error"
        assert list(trace.x) == [0, 1]
        assert list(trace.y) == [r[key] for r in mine]
        assert trace.line.color == (palette.AFTER if key == "recon_error_after" else palette.BEFORE)
    cols = min(lf.PANEL_COLUMNS, len(columns))
    assert fig.layout.xaxis.domain[0] == 0 and getattr(fig.layout, f"xaxis{cols}").domain[1] == 1  # panels fill the width
    assert fig.layout.yaxis.type == "log"
    assert list(fig.layout.yaxis.ticktext) == [tick_label(v) for v in fig.layout.yaxis.tickvals]
    assert {round(v / 10 ** math.floor(math.log10(v)), 6) for v in fig.layout.yaxis.tickvals} <= {1, 2, 5}


def test_layer_lines_change_view_draws_one_ratio_line_per_run(tiny_model):
    fig = lf.layer_lines({"#1": layer_records(tiny_model), "#2": layer_records(tiny_model)}, "drift", "change")
    assert {t.name for t in fig.data} == {"#1 · after ÷ before", "#2 · after ÷ before"}
    assert all(y == pytest.approx(0.5) for t in fig.data for y in t.y)
    assert 1.0 in fig.layout.yaxis.tickvals
    assert {t.line.dash for t in fig.data} == {"solid", "dash"}
    panels = {t.yaxis for t in fig.data}  # the dashed line at 1 (unchanged) on every panel
    assert {s.yref for s in fig.layout.shapes if s.y0 == s.y1 == 1.0 and s.line.dash == "dash"} == panels


@pytest.mark.parametrize("chart", ["lines", "blocks"])
def test_each_run_has_its_own_shade_dash_and_symbol_after_pruning_and_after_repair(tiny_model, chart):
    """Three runs: no two "after pruning" lines look alike (they were all the same red), reds stay reds."""
    labels = ("#1", "#2", "#3")
    if chart == "lines":
        fig = lf.layer_lines({label: layer_records(tiny_model) for label in labels}, "local", "both")
    else:
        blocks = [{"block": 0, "loss_before": 0.2, "loss_after": 0.1}, {"block": 1, "loss_before": 0.4, "loss_after": 0.3}]
        fig = lf.block_errors({label: blocks for label in labels}, "local", "both")
    for which, shades in (("after pruning", palette.RUN_BEFORE), ("after repair", palette.RUN_AFTER)):
        looks = {(t.line.color, t.line.dash, t.marker.symbol) for t in fig.data if t.name.endswith(which)}
        assert len(looks) == 3 and {color for color, _, _ in looks} == set(shades)


def test_uniform_sparsity_is_said_in_words_and_axes_run_from_0_to_100_percent(tiny_model):
    uniform = layer_records(tiny_model, sparsity=lambda b, j: 0.5)
    n = len(uniform)
    assert lf.uniform_sparsity(uniform) == f"all {n} layers at 50.0%"
    varied = layer_records(tiny_model, sparsity=lambda b, j: 0.48 + 0.01 * b)
    assert lf.uniform_sparsity(varied) is None
    fig = lf.sparsity_heatmaps({"#1": uniform, "#2": varied})
    assert [t.name for t in fig.data] == ["#2"]  # the uniform run is a sentence, not a flat heatmap
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == pytest.approx((0.48, 0.49))
    assert "sparsity 48.00%" in fig.data[0].text[0][0] and "block 0" in fig.data[0].text[0][0]
    lines = lf.sparsity_lines({"#1": uniform, "#2": varied})
    assert tuple(lines.layout.yaxis.range) == (0, 1) and lines.layout.yaxis.tickformat == ".0%"
    assert {t.name for t in lines.data} == {"#1", "#2"}


@pytest.mark.parametrize("quantity, fields", [("local", ("loss_before", "loss_after")),
                                              ("drift", ("drift_before", "drift_after"))])
def test_block_errors(quantity, fields):
    blocks = {"#1": [{"block": 0, "loss_before": 0.2, "loss_after": 0.1, "drift_before": 0.3, "drift_after": 0.2},
                     {"block": 1, "loss_before": 0.4, "loss_after": 0.3, "drift_before": 0.6, "drift_after": 0.5}],
              "#2": [{"block": 0, "loss_before": 0.5, "loss_after": None, "drift_before": 0.7, "drift_after": None}]}
    traces = {t.name: t for t in lf.block_errors(blocks, quantity, "both").data}
    assert set(traces) == {"#1 · after pruning", "#1 · after repair", "#2 · after pruning"}
    assert list(traces["#1 · after repair"].y) == [b[fields[1]] for b in blocks["#1"]]
    assert traces["#1 · after pruning"].line.color == palette.BEFORE and traces["#1 · after repair"].line.color == palette.AFTER
    change = lf.block_errors(blocks, quantity, "change")
    (ratio,) = change.data
    assert list(ratio.y) == pytest.approx([b[fields[1]] / b[fields[0]] for b in blocks["#1"]])
    assert lf.missing_notes(blocks, quantity, "change", blocks=True) == ["#2 was not repaired (prune only): it has no "
                                                                         "error after repair."]
