"""Figures of one layer up close: each trace carries exactly the values of the inspection, on the right crop."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_MODELS, random_tokens

from app import inside_layer_figures as lf
from perp_engine.inspect_layer import INSPECT_METHODS, adapter_zeros, capture_block, error_curves, inspect_layer

LINEAR = "mlp.down_proj"  # (32, 64) in the tiny LLaMA: a crop of 16 can sit anywhere


@pytest.fixture(scope="module")
def layer():
    model = TINY_MODELS["llama"]()
    return capture_block(model, 1, random_tokens(4, 16, seed=0), random_tokens(2, 16, seed=1))[LINEAR]


@pytest.fixture(scope="module")
def ins(layer):
    return inspect_layer(layer, 0.5)


@pytest.fixture
def crop():
    return lf.crop_at((32, 64), 8, 40, size=16)


def part(matrix: torch.Tensor) -> list[list]:
    return matrix[8:24, 40:56].tolist()


def test_crop_stays_inside_the_matrix():
    assert lf.crop_at((32, 64), 8, 40, size=16) == lf.Crop(row=8, col=40, rows=16, cols=16)
    assert lf.crop_at((32, 64), 30, 60, size=16) == lf.Crop(row=16, col=48, rows=16, cols=16)
    assert lf.crop_at((32, 96), -5, 50) == lf.Crop(row=0, col=32, rows=32, cols=64)


def test_score_heatmaps_show_abs_weight_wanda_and_ria_scores_with_real_indices(ins, crop):
    weight, score, ria = lf.score_heatmaps(ins, crop).data
    assert [list(r) for r in weight.z] == part(ins.weight.abs())
    assert [list(r) for r in score.z] == part(ins.wanda_score)
    assert [list(r) for r in ria.z] == part(ins.ria_score) and "RIA score" in ria.hovertemplate
    assert len({weight.coloraxis, score.coloraxis, ria.coloraxis}) == 3  # each its own colour bar
    assert list(weight.x) == list(range(40, 56)) and list(weight.y) == list(range(8, 24))
    w, norm = score.customdata[0][0]
    assert w == pytest.approx(float(ins.weight[8, 40].abs())) and norm == pytest.approx(float(ins.input_norm[40]))
    assert "row %{y}, column %{x}" in weight.hovertemplate and "Wanda score" in score.hovertemplate


def test_mask_heatmaps_colour_each_methods_kept_and_pruned_weights(ins, crop):
    fig = lf.mask_heatmaps(ins, crop)
    assert [t.name for t in fig.data] == [lf.LABELS[m] for m in INSPECT_METHODS]
    for trace, method in zip(fig.data, INSPECT_METHODS):
        mask = part(ins.masks[method])
        assert [list(r) for r in trace.z] == [[int(v) for v in row] for row in mask]
        assert [list(r) for r in trace.text] == [["kept" if v else "pruned" for v in row] for row in mask]
        assert trace.colorscale[0][1] == lf.PRUNED and trace.colorscale[-1][1] == lf.KEPT
    titles = [a.text for a in fig.layout.annotations]
    assert titles[1] == f"Wanda: keeps {float(ins.masks['wanda'][8:24, 40:56].float().mean()):.0%}"


def test_overlap_figures_carry_the_jaccard_matrix_and_every_agreement_count(ins):
    (heat,) = lf.jaccard_heatmap(ins).data
    assert [list(r) for r in heat.z] == [[ins.overlap[a][b] for b in INSPECT_METHODS] for a in INSPECT_METHODS]
    (bars,) = lf.agreement_bars(ins).data
    # all keep, all but one (5), kept by 3 and by 2 of five, only one (5), all prune
    assert len(bars.y) == 14 and bars.y[0] == "all five keep" and bars.y[-1] == "all five prune"
    assert sum(bars.customdata) == ins.weight.numel() and sum(bars.x) == pytest.approx(1.0)
    counts = dict(zip(bars.y, bars.customdata))
    assert counts["only Wanda keeps"] == ins.agreement[("wanda",)]
    assert counts["all but RIA keep"] == ins.agreement[("magnitude", "wanda", "sparsegpt", "wanda+dsnot")]
    assert counts["kept by 2 of five"] == sum(n for methods, n in ins.agreement.items() if len(methods) == 2)
    assert list(bars.marker.color[:2]) == [lf.KEPT, lf.SPLIT] and bars.marker.color[-1] == lf.PRUNED


def test_error_figures_plot_the_local_errors_and_curves(layer, ins):
    (bars,) = lf.local_error_bars(ins).data
    assert list(bars.y) == [ins.local_error[m] for m in INSPECT_METHODS]
    curves = error_curves(layer)
    fig = lf.error_curve_figure(curves, ins)
    lines = {t.name: t for t in fig.data}
    for method in INSPECT_METHODS:
        assert list(lines[lf.LABELS[method]].y) == list(curves.errors[method])
        assert list(lines[lf.LABELS[method]].x) == list(curves.sparsities)
    stars = lines["now: 50% sparsity"]
    assert set(stars.x) == {0.5} and list(stars.y) == [ins.local_error[m] for m in INSPECT_METHODS]


def test_update_heatmap_is_blank_where_pruned_and_centred_at_zero(ins, crop):
    (heat,) = lf.update_heatmap(ins, crop).data
    kept, update = part(ins.masks["sparsegpt"]), part(ins.sparsegpt_update)
    for z_row, k_row, u_row in zip(heat.z, kept, update):
        assert list(z_row) == [u if k else None for u, k in zip(u_row, k_row)]
    assert heat.zmid == 0 and heat.zmin == -heat.zmax
    before, after = heat.customdata[0][0]
    assert before == pytest.approx(float(ins.weight[8, 40])) and after == pytest.approx(float(ins.weights["sparsegpt"][8, 40]))


def test_adapter_zero_maps_show_the_pruned_and_merged_zero_patterns(layer, ins, crop):
    start = ins.weights["wanda"]
    outcomes = adapter_zeros(layer, start, rank=4, steps=5)
    fig = lf.adapter_zero_maps(start, "wanda", outcomes, crop)
    assert [a.text for a in fig.layout.annotations] == ["pruned by Wanda", "LoRA merged", "MaskLoRA merged"]
    pruned, lora, masklora = fig.data
    assert [list(r) for r in pruned.z] == [[int(v != 0) for v in row] for row in part(start)]
    assert all(v == 1 for row in lora.z for v in row)
    assert [list(r) for r in masklora.z] == [list(r) for r in pruned.z]
    assert [list(r) for r in masklora.customdata] == part(outcomes["masklora"].merged)
