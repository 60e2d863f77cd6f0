"""DSnoT against the official code (zyxxmu/DSnoT), frozen in tests/pruning/references/dsnot_*.safetensors, and its
invariants on single layers.

The references were written by ``scripts/reference_dsnot.py``, which ran the official ``prune_DSnoT`` (LLaMA) and
``prune_DSnoT_opt`` (OPT) whole (commit and every argument in each file's metadata) on a tiny random model of each
family: the official final mask of every linear, for Wanda and magnitude starts, unstructured and N:M, with the
official default knobs and others. Here the same weights and calibration ids go through our pipeline, and every
mask must be equal.
"""

from __future__ import annotations

import json

import pytest
import torch
from official_references import assert_pruned_as_official, load_reference

from perp_engine.errors import PerpError
from perp_engine.model.capture import capture_block_inputs
from perp_engine.pruning import LayerStats, magnitude, prune_weight
from perp_engine.pruning.dsnot import refine_dsnot
from perp_engine.pruning.patterns import select_mask
from perp_engine.pruning.sequential import prune_model

FAMILIES = ["llama", "opt"]


def our_knobs(case: dict) -> dict:
    """The official arguments as refine_dsnot's knobs (pow_of_var_pruning is parsed by main.py but never read)."""
    unstructured = case["sparsity_type"] == "unstructured"
    return {"skip_layer": case["skip_layer"], "max_cycles": case["max_cycle_time"],
            "update_threshold": case["update_threshold"], "pow_of_var_regrowing": case["pow_of_var_regrowing"],
            "same_sign": True if unstructured and not case["without_same_sign"] else None}


def cases():
    for family in FAMILIES:
        _, _, meta = load_reference(f"dsnot_{family}")
        for index, case in enumerate(json.loads(meta["cases"])):
            name = f"{family}-{case['initial_method']}-{case['sparsity_type']}-{case['sparsity_ratio']}-case{index}"
            yield pytest.param(family, index, case, id=name)


@pytest.mark.parametrize("family, index, case", list(cases()))
def test_masks_equal_the_official_code(family, index, case, monkeypatch):
    """The official magnitude start compares |W| per output row; PERP Lab's magnitude uses one threshold per matrix.
    With the official start (patched in here), every mask is equal."""
    if case["initial_method"] == "magnitude":
        monkeypatch.setattr(magnitude, "select_mask", lambda score, sparsity, nm, per_row: select_mask(score, sparsity, nm, True))
    model, ref, _ = load_reference(f"dsnot_{family}")
    inputs = capture_block_inputs(model, ref["ids"].long(), batch_size=8)
    prune_model(model, inputs, method=case["initial_method"], sparsity=case["sparsity_ratio"],
                pattern=case["sparsity_type"], refine="dsnot", dsnot=our_knobs(case))
    assert_pruned_as_official(model, ref, f"case{index}")


# ---- single layers ----------------------------------------------------------------------------------------------

def _layer(rows=16, cols=32, sequences=6, tokens=10, seed=0):
    """A dense weight and the LayerStats of inputs whose columns have means of both signs (so D = W * s matters)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(sequences, tokens, cols, generator=g) + 2 * torch.randn(cols, generator=g)
    stats = LayerStats(cols, hessian=False, moments=True)
    stats.add_batch(x)
    return w, stats


def _hand_made_stats():
    """Four inputs, each 1 +- 0.5 alternating over 8 tokens: mean 1, variance 0.25 within every sequence, so
    s_j = 8 (a sequence's sum) and D_ij = 8 W_ij."""
    x = torch.tensor([1.5, 0.5] * 4).reshape(1, 8, 1).expand(3, 8, 4)
    stats = LayerStats(4, hessian=False, moments=True)
    stats.add_batch(x)
    return stats


def test_one_swap_that_obviously_reduces_the_error():
    w = torch.tensor([[2.0, 0.1, -0.3, 0.2], [0.001, 1.0, 1.0, 0.001]])
    mask = torch.tensor([[False, True, True, False], [False, True, True, False]])
    new_w = w * mask
    got_w, got_mask = refine_dsnot(w, new_w, mask, _hand_made_stats(), name="self_attn.q_proj")
    # row 0: e = 8 (2 + 0.2) = 17.6; regrow the 2.0, prune the only kept weight with D < 0 (-0.3): e = -0.8, and
    # no pruned weight with D < 0 is left to regrow. Row 1: |e| = 0.016 is under the threshold 0.1.
    assert got_mask.tolist() == [[True, True, False, False], [False, True, True, False]]
    assert torch.equal(got_w, torch.tensor([[2.0, 0.1, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]))
    before, after = (8 * float((w[0] - v[0]).sum()) for v in (new_w, got_w))  # the row's error over a sequence
    assert before == pytest.approx(17.6) and after == pytest.approx(-0.8)
    kept_sign, _ = refine_dsnot(w, new_w, mask, _hand_made_stats(), name="self_attn.q_proj", same_sign=True)
    assert torch.equal(kept_sign, new_w)  # that swap flips e's sign


@pytest.mark.parametrize("pattern", ["unstructured", "per-matrix", "2:4", "4:8"])
@pytest.mark.parametrize("knobs", [{}, {"same_sign": True, "pow_of_var_regrowing": 2.0}, {"update_threshold": 0.0},
                                   {"pow_of_var_regrowing": 0.0, "same_sign": False, "max_cycles": 7}])
def test_counts_zeros_and_inputs_are_kept(pattern, knobs):
    w, stats = _layer()
    nm = tuple(map(int, pattern.split(":"))) if ":" in pattern else None
    if pattern == "per-matrix":  # rows lose different counts
        new_w, mask = prune_weight(w, "magnitude", sparsity=0.5)
    else:
        new_w, mask = prune_weight(w, "wanda", sparsity=0.5, pattern=pattern if nm else "unstructured", stats=stats)
    saved = w.clone(), new_w.clone(), mask.clone()
    got_w, got_mask = refine_dsnot(w, new_w, mask, stats, nm=nm, name="fc1", skip_layer="no_skip", **knobs)
    assert all(torch.equal(a, b) for a, b in zip((w, new_w, mask), saved))
    assert not torch.equal(got_mask, mask)
    if nm is None:
        assert torch.equal(got_mask.sum(dim=1), mask.sum(dim=1))
    else:
        assert torch.equal(got_mask.reshape(-1, nm[1]).sum(dim=1), mask.reshape(-1, nm[1]).sum(dim=1))
    assert torch.equal(got_w == 0, ~got_mask) and not got_w.signbit()[~got_mask].any()
    assert torch.equal(got_w[got_mask], w[got_mask])


def test_kept_weights_keep_the_methods_values_and_regrown_ones_come_back_dense():
    w, stats = _layer()
    _, mask = prune_weight(w, "wanda", sparsity=0.6, stats=stats)
    new_w = (w + 0.1) * mask  # as SparseGPT leaves it: the kept weights updated
    got_w, got_mask = refine_dsnot(w, new_w, mask, stats, name="self_attn.v_proj")
    stayed, regrown = got_mask & mask, got_mask & ~mask
    assert regrown.any()
    assert torch.equal(got_w[stayed], new_w[stayed]) and torch.equal(got_w[regrown], w[regrown])


def test_low_precision_weights_come_back_in_their_dtype():
    w, stats = _layer()
    w = w.to(torch.bfloat16)
    new_w, mask = prune_weight(w, "wanda", sparsity=0.5, stats=stats)
    got_w, got_mask = refine_dsnot(w, new_w, mask, stats, name="self_attn.q_proj")
    assert got_w.dtype == torch.bfloat16 and torch.equal(got_w == 0, ~got_mask)


@pytest.mark.parametrize("name, skip_layer, refined", [
    ("self_attn.q_proj", "mlp", True), ("mlp.up_proj", "mlp", False), ("fc1", "mlp", False),
    ("attn.c_attn", "self_attn", False), ("mlp.c_fc", "self_attn", True), ("mlp.down_proj", "no_skip", True),
])
def test_skip_layer_leaves_the_skipped_family_as_pruned(name, skip_layer, refined):
    w, stats = _layer()
    new_w, mask = prune_weight(w, "wanda", sparsity=0.5, stats=stats)
    _, got_mask = refine_dsnot(w, new_w, mask, stats, name=name, skip_layer=skip_layer)
    assert torch.equal(got_mask, mask) is not refined


def test_zero_cycles_change_nothing():
    w, stats = _layer()
    new_w, mask = prune_weight(w, "wanda", sparsity=0.5, stats=stats)
    got_w, got_mask = refine_dsnot(w, new_w, mask, stats, name="self_attn.q_proj", max_cycles=0)
    assert torch.equal(got_w, new_w) and torch.equal(got_mask, mask)


@pytest.mark.parametrize("knob, value", [
    ("max_cycles", -1), ("max_cycles", 2.5), ("update_threshold", -0.1), ("update_threshold", float("inf")),
    ("pow_of_var_regrowing", -1.0), ("same_sign", "yes"), ("skip_layer", "attention"),
])
def test_bad_knobs_are_refused(knob, value):
    w, stats = _layer()
    new_w, mask = prune_weight(w, "wanda", sparsity=0.5, stats=stats)
    with pytest.raises(PerpError):
        refine_dsnot(w, new_w, mask, stats, name="self_attn.q_proj", **{knob: value})


def test_stats_without_inputs_are_refused():
    w, _ = _layer()
    with pytest.raises(PerpError, match="stats"):
        refine_dsnot(w, w.clone(), torch.ones_like(w, dtype=torch.bool), LayerStats(32, moments=True), name="fc1")
