"""Inside one layer, on the tiny models of every family: the capture is what the dense model feeds the layer, the
masks are prune_weight's, the overlaps and local errors are what their definitions say, and the adapter demo
shows LoRA filling the zeros and MaskLoRA keeping them."""

from __future__ import annotations

import math

import pytest
import torch
from fixtures_tiny import perp_home, tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.data.corpora import load_corpus
from perp_engine.data.sampling import measure_windows
from perp_engine.data.tokens import token_ids
from perp_engine.errors import PerpError
from perp_engine.inspect_layer import (
    CURVE_SPARSITIES,
    DSNOT,
    INSPECT_METHODS,
    adapter_zeros,
    block_count,
    capture_block,
    error_curves,
    inspect_layer,
    layer_windows,
    linear_shapes,
)
from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight
from perp_engine.model.load import load_model
from perp_engine.pruning import prune_weight

BLOCK = 1  # the last block of the tiny models: its inputs went through block 0
SETTINGS = [(0.5, "unstructured"), (0.3, "unstructured"), (0.5, "2:4")]


@pytest.fixture(scope="module", params=list(TINY_MODELS))
def tiny(request):
    """(model, captured linears of BLOCK, the calibration and held-out token windows)."""
    model = TINY_MODELS[request.param]()
    calib, heldout = random_tokens(4, 16, seed=0), random_tokens(3, 16, seed=1)
    return model, capture_block(model, BLOCK, calib, heldout, batch_size=2), calib, heldout


def dense_inputs(model, samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each linear of BLOCK receives when the whole dense model runs on ``samples`` (hooks on the model)."""
    _, blocks = find_decoder_blocks(model)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=name: seen.__setitem__(n, args[0].reshape(-1, args[0].shape[-1])))
             for name, m in find_linears(blocks[BLOCK]).items()]
    try:
        with torch.no_grad():
            model(input_ids=samples, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_capture_holds_what_the_dense_model_feeds_each_linear(tiny):
    model, layers, calib, heldout = tiny
    _, blocks = find_decoder_blocks(model)
    linears = find_linears(blocks[BLOCK])
    assert list(layers) == list(linears) == list(linear_shapes(model, BLOCK))
    expected_calib, expected_heldout = dense_inputs(model, calib), dense_inputs(model, heldout)
    for name, layer in layers.items():
        assert layer.block == BLOCK and layer.name.endswith(f".{BLOCK}.{name}")
        assert torch.equal(layer.weight, get_weight(linears[name]).float())
        torch.testing.assert_close(layer.calib_inputs, expected_calib[name])
        assert layer.calib.nsamples == calib.numel() and layer.heldout.nsamples == heldout.numel()
        x = expected_heldout[name]
        torch.testing.assert_close(layer.heldout.H, 2 * x.T @ x / x.shape[0], rtol=1e-4, atol=1e-5)
    # linears that read the same tensor (q/k/v, gate/up) share one capture
    for a in layers:
        for b in layers:
            same = torch.equal(expected_calib[a], expected_calib[b])
            assert (layers[a].calib is layers[b].calib) == same


@pytest.mark.parametrize("sparsity, pattern", SETTINGS)
def test_masks_and_weights_are_prune_weights_and_sparsegpt_moves_only_kept_weights(tiny, sparsity, pattern):
    for layer in tiny[1].values():
        ins = inspect_layer(layer, sparsity, pattern)
        for method in (m for m in INSPECT_METHODS if m != DSNOT):  # the refined variant: test_inspect_layer_methods
            weight, mask = prune_weight(layer.weight, method, sparsity, pattern, stats=layer.calib)
            assert torch.equal(ins.masks[method], mask.cpu()) and torch.equal(ins.weights[method], weight.cpu())
        kept = ins.masks["sparsegpt"]
        assert not ins.sparsegpt_update[~kept].any()
        torch.testing.assert_close((ins.weight + ins.sparsegpt_update) * kept, ins.weights["sparsegpt"])
        assert ins.sparsegpt_update[kept].abs().max() > 0


def test_wanda_keeps_the_highest_scores_of_every_row(tiny):
    for layer in tiny[1].values():
        ins = inspect_layer(layer, 0.5)
        score, kept = ins.wanda_score, ins.masks["wanda"]
        lowest_kept = score.masked_fill(~kept, math.inf).amin(dim=1)
        highest_pruned = score.masked_fill(kept, -math.inf).amax(dim=1)
        assert bool((lowest_kept >= highest_pruned).all())
        torch.testing.assert_close(score, ins.weight.abs() * ins.input_norm)


def test_overlap_and_agreement_follow_their_definitions(tiny):
    layer = tiny[1][next(iter(tiny[1]))]
    ins = inspect_layer(layer, 0.5)
    masks = ins.masks
    for a in INSPECT_METHODS:
        assert ins.overlap[a][a] == 1.0
        for b in INSPECT_METHODS:
            union = int((masks[a] | masks[b]).sum())
            assert ins.overlap[a][b] == ins.overlap[b][a] == pytest.approx(int((masks[a] & masks[b]).sum()) / union)
    assert sum(ins.agreement.values()) == layer.weight.numel() and len(ins.agreement) == 2 ** len(INSPECT_METHODS)
    every = torch.stack([masks[k] for k in INSPECT_METHODS])
    assert ins.agreement[INSPECT_METHODS] == int(every.all(0).sum())
    assert ins.agreement[()] == int((~every).all(0).sum())
    others = torch.stack([masks[k] for k in INSPECT_METHODS if k != "wanda"])
    assert ins.agreement[("wanda",)] == int((masks["wanda"] & (~others).all(0)).sum())


def test_local_error_is_zero_at_sparsity_zero_and_the_output_change_on_held_out_inputs(tiny):
    model, layers, _, heldout = tiny
    held_inputs = dense_inputs(model, heldout)
    for name, layer in layers.items():
        dense = inspect_layer(layer, 0.0)
        assert all(dense.masks[m].all() for m in INSPECT_METHODS)
        assert dense.local_error == dict.fromkeys(INSPECT_METHODS, 0.0)
        assert not dense.sparsegpt_update.any()
        ins = inspect_layer(layer, 0.5)
        x = held_inputs[name].double()
        reference = x @ layer.weight.double().T
        for method in INSPECT_METHODS:
            changed = x @ ins.weights[method].double().T
            expected = float((reference - changed).pow(2).sum() / reference.pow(2).sum())
            assert ins.local_error[method] == pytest.approx(expected, rel=1e-3)


def test_error_curves_match_the_inspection_at_each_point(tiny):
    layer = tiny[1][next(iter(tiny[1]))]
    curves = error_curves(layer)
    assert curves.sparsities == CURVE_SPARSITIES and CURVE_SPARSITIES[0] == 0.0 and CURVE_SPARSITIES[-1] == 0.9
    for method in INSPECT_METHODS:
        errors = curves.errors[method]
        assert errors[0] == 0.0 and all(e > 0 and math.isfinite(e) for e in errors[1:])
        for s in (0.3, 0.6):
            assert errors[CURVE_SPARSITIES.index(s)] == pytest.approx(inspect_layer(layer, s).local_error[method])


def test_lora_merge_fills_the_zeros_and_masklora_keeps_them(tiny):
    layer = tiny[1][next(iter(tiny[1]))]
    start = inspect_layer(layer, 0.5).weights["wanda"]
    zeros = start == 0
    outcomes = adapter_zeros(layer, start, rank=4, steps=20)
    lora, masklora = outcomes["lora"], outcomes["masklora"]
    assert lora.pruned == masklora.pruned == int(zeros.sum()) > 0
    assert lora.revived == lora.pruned and bool((lora.merged[zeros] != 0).all())
    assert masklora.revived == 0 and torch.equal(masklora.merged == 0, zeros)
    assert not torch.equal(masklora.merged, start)  # it trained the kept weights
    for out in outcomes.values():
        assert len(out.losses) == 20 and out.losses[-1] < out.losses[0]
        assert out.local_error_before == pytest.approx(inspect_layer(layer, 0.5).local_error["wanda"])


def test_bad_requests_name_the_field(tiny):
    model, layers, calib, heldout = tiny
    layer = next(iter(layers.values()))
    with pytest.raises(PerpError, match="^block: .* blocks 0 to 1"):
        capture_block(model, block_count(model), calib, heldout)
    with pytest.raises(PerpError, match="^heldout_samples: "):
        capture_block(model, 0, calib, torch.zeros(0, 16, dtype=torch.long))
    with pytest.raises(PerpError, match="^sparsity: "):
        inspect_layer(layer, 0.3, "2:4")
    with pytest.raises(PerpError, match="^adapter: "):
        adapter_zeros(layer, layer.weight, kinds=("scalelora",))
    with pytest.raises(PerpError, match="^steps: "):
        adapter_zeros(layer, layer.weight, steps=0)


def test_layer_windows_calibrate_and_hold_out_on_the_calibration_text(tiny_model_dir, tiny_text_file, perp_home):  # noqa: F811
    _, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    calib, heldout = layer_windows(tokenizer, str(tiny_text_file), 3, 16, seed=0)
    corpus = load_corpus(str(tiny_text_file))
    assert calib.shape == heldout.shape == (3, 16)
    assert torch.equal(heldout, measure_windows(tokenizer, corpus.calib_source, 16, n=3))
    calib_ids = token_ids(tokenizer, corpus.calib_text).tolist()
    starts = [[i for i in range(len(calib_ids) - 15) if calib_ids[i:i + 16] == row] for row in calib.tolist()]
    held = [[i for i in range(len(calib_ids) - 15) if calib_ids[i:i + 16] == row] for row in heldout.tolist()]
    assert all(starts) and all(held)
    assert all(abs(s[0] - h[0]) >= 16 for s in starts for h in held)  # no calibration window overlaps a held-out one