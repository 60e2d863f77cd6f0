"""Inside one layer, the methods of 2024: RIA's mask and score are the pruning package's, the DSnoT variant is
Wanda's result refined by refine_dsnot on every linear (attention or MLP), each row keeping its count of zeros,
and the capture's statistics count the calibration windows as DSnoT's per-sequence statistics need."""

from __future__ import annotations

import pytest
import torch
from test_inspect_layer import tiny  # noqa: F401  (pytest fixture)

from perp_engine.config import RunConfig, parse_pattern
from perp_engine.inspect_layer import DSNOT, INSPECT_METHODS, error_curves, inspect_layer
from perp_engine.pruning import prune_weight
from perp_engine.pruning.dsnot import refine_dsnot
from perp_engine.pruning.ria import ria_score

SETTINGS = [(0.5, "unstructured"), (0.5, "2:4")]


def test_the_page_compares_five_pruned_versions():
    assert INSPECT_METHODS == ("magnitude", "wanda", "sparsegpt", "ria", DSNOT)


def test_the_capture_counts_the_calibration_windows_as_sequences(tiny):  # noqa: F811
    _, layers, calib, heldout = tiny
    for layer in layers.values():
        assert layer.calib.sequences == calib.shape[0] and layer.heldout.sequences == heldout.shape[0]
        x = layer.calib_inputs.reshape(calib.shape[0], calib.shape[1], -1)  # windows x tokens x inputs, in order
        torch.testing.assert_close(layer.calib.mean, x.reshape(-1, x.shape[-1]).mean(0), rtol=1e-4, atol=1e-6)
        within = (x - x.mean(1, keepdim=True)).square().mean((0, 1))  # the variance inside each window, averaged
        torch.testing.assert_close(layer.calib.seq_var, within, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sparsity, pattern", SETTINGS)
def test_ria_is_prune_weights_ria_with_its_score(tiny, sparsity, pattern):  # noqa: F811
    for layer in tiny[1].values():
        ins = inspect_layer(layer, sparsity, pattern)
        weight, mask = prune_weight(layer.weight, "ria", sparsity, pattern, stats=layer.calib)
        assert torch.equal(ins.masks["ria"], mask.cpu()) and torch.equal(ins.weights["ria"], weight.cpu())
        torch.testing.assert_close(ins.ria_score, ria_score(layer.weight, layer.calib.sq_mean, RunConfig.ria_power))


@pytest.mark.parametrize("sparsity, pattern", SETTINGS)
def test_dsnot_refines_wandas_result_on_every_linear(tiny, sparsity, pattern):  # noqa: F811
    refined_somewhere = False
    for name, layer in tiny[1].items():
        ins = inspect_layer(layer, sparsity, pattern)
        weight, mask = refine_dsnot(layer.weight, ins.weights["wanda"], ins.masks["wanda"], layer.calib,
                                    nm=parse_pattern(pattern), name=name, method="wanda", skip_layer="no_skip")
        assert torch.equal(ins.masks[DSNOT], mask.cpu()) and torch.equal(ins.weights[DSNOT], weight.cpu())
        wanda, dsnot = ins.masks["wanda"], ins.masks[DSNOT]
        assert torch.equal(dsnot.sum(1), wanda.sum(1))  # every row keeps its count of zeros
        if pattern == "2:4":
            assert bool((dsnot.reshape(dsnot.shape[0], -1, 4).sum(-1) == 2).all())  # and every group its 2
        regrown = dsnot & ~wanda
        assert torch.equal(ins.weights[DSNOT][regrown], ins.weight[regrown])  # a regrown weight is the dense one
        assert torch.equal(ins.weights[DSNOT][dsnot & wanda], ins.weights["wanda"][dsnot & wanda])
        refined_somewhere |= bool(regrown.any())
    assert refined_somewhere


def test_dsnot_refines_the_mlp_linears_a_runs_default_skips(tiny):  # noqa: F811
    mlp = {n: layer for n, layer in tiny[1].items() if "attn" not in n.split(".")[0]}
    assert mlp
    changed = [n for n, layer in mlp.items() if not torch.equal((ins := inspect_layer(layer, 0.5)).masks[DSNOT],
                                                                ins.masks["wanda"])]
    assert changed, "DSnoT changed no MLP linear of this model"
    for n in changed:  # what a run with the default skip_layer does to it: nothing
        layer = mlp[n]
        start = inspect_layer(layer, 0.5)
        _, mask = refine_dsnot(layer.weight, start.weights["wanda"], start.masks["wanda"], layer.calib, name=n)
        assert torch.equal(mask, start.masks["wanda"])


def test_at_sparsity_zero_every_method_keeps_everything(tiny):  # noqa: F811
    layer = next(iter(tiny[1].values()))
    dense = inspect_layer(layer, 0.0)
    assert all(dense.masks[m].all() for m in INSPECT_METHODS)
    assert dense.local_error == dict.fromkeys(INSPECT_METHODS, 0.0)


def test_error_curves_include_the_new_methods_at_each_point(tiny):  # noqa: F811
    layer = tiny[1][next(iter(tiny[1]))]
    curves = error_curves(layer, sparsities=(0.0, 0.3, 0.6))
    assert set(curves.errors) == set(INSPECT_METHODS)
    for method in ("ria", DSNOT):
        assert curves.errors[method][0] == 0.0
        for i, s in ((1, 0.3), (2, 0.6)):
            assert curves.errors[method][i] == pytest.approx(inspect_layer(layer, s).local_error[method])
