"""True-sequential pruning (``sequential="layer"``) against the official SparseGPT ``--true-sequential``, frozen in
tests/pruning/references/sparsegpt_true_sequential_*.safetensors, and Wanda against a group-by-group reference.

The references were written by ``scripts/reference_sparsegpt.py`` (commit, functions and every argument in each
file's metadata) on a tiny random LLaMA and OPT of 3 blocks: per case the official masks of every linear with
``--true-sequential`` (LLaMA: ``llama_sequential``; OPT, whose official script lacks the flag: the official
``SparseGPT`` driven group by group as ``llama_sequential`` does) and without it (the default). Here the same weights
and calibration ids go through our pipeline: ``layer`` must give the true-sequential masks, ``block`` the default ones,
and the two differ.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from official_references import assert_pruned_as_official, block_linears, load_reference, unpack

from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight, in_features, set_weight
from perp_engine.model.capture import BlockInputs, capture_block_inputs, run_block
from perp_engine.pruning import LayerStats, prune_weight
from perp_engine.pruning.sequential import prune_model

FAMILIES = ["llama", "opt"]


def reference(family: str):
    return load_reference(f"sparsegpt_true_sequential_{family}")


def cases():
    for family in FAMILIES:
        _, _, meta = reference(family)
        for index, case in enumerate(json.loads(meta["cases"])):
            pattern = f"{case['prunen']}:{case['prunem']}" if case["prunen"] else "unstructured"
            yield pytest.param(family, index, case["sparsity"], pattern, id=f"{family}-{pattern}-{case['sparsity']}")


def official_count(n: int, sparsity: float) -> int:
    """The official threshold (the sorted score at index int(numel * sparsity), compared with <=) prunes one weight
    more than floor(numel * sparsity) per block of columns; as prune_count, each block's share being the difference
    of the counts at its two ends, that is int(n * sparsity) + 1 for n > 0."""
    return int(n * sparsity) + (n > 0)


@pytest.mark.parametrize("mode, batch_size", [("layer", 4), ("layer", 5), ("layer", 16), ("block", 4)])
@pytest.mark.parametrize("family, index, sparsity, pattern", list(cases()))
def test_sparsegpt_masks_equal_the_official_code(family, index, sparsity, pattern, mode, batch_size, monkeypatch):
    """Every linear of every block, with the calibration set in chunks of 4, 5 (the last one shorter) or all 16."""
    monkeypatch.setattr("perp_engine.pruning.sparsegpt.prune_count", official_count)
    model, ref, _ = reference(family)
    inputs = capture_block_inputs(model, ref["ids"].long(), batch_size=batch_size)
    prune_model(model, inputs, method="sparsegpt", sparsity=sparsity, pattern=pattern, sequential=mode)
    assert_pruned_as_official(model, ref, f"case{index}.{mode}")


@pytest.mark.parametrize("family, index, sparsity, pattern", list(cases()))
def test_the_official_modes_differ_after_the_first_group(family, index, sparsity, pattern):
    """Block 0's first group (q, k, v) reads the block's own inputs in both modes; every later group reads inputs
    changed by the pruning before it, and somewhere that changes its mask."""
    model, ref, meta = reference(family)
    path, _ = find_decoder_blocks(model)
    first = json.loads(meta["groups"])[0]
    differ = set()
    for name, linear in block_linears(model).items():
        layer, block = (unpack(ref[f"case{index}.{mode}.pruned.{path}.{name}"], [linear.weight.shape])[0]
                        for mode in ("layer", "block"))
        if not torch.equal(layer, block):
            differ.add(name)
    assert differ and not differ & {f"0.{name}" for name in first}


# ---- Wanda against a group-by-group reference -----------------------------------------------------------------

def group_by_group(model, inputs: BlockInputs, groups: list[list[str]], **prune) -> None:
    """The straightforward true-sequential Wanda: in every block, for each group in turn, one forward over every
    chunk gathers the group's inputs (a hook on each linear), the group is pruned with prune_weight, and the next
    group's forward sees it pruned; one more forward gives the next block's inputs."""
    _, blocks = find_decoder_blocks(model)
    for block in blocks:
        linears = find_linears(block)
        for group in groups:
            stats = {name: LayerStats(in_features(linears[name]), hessian=False) for name in group}
            handles = [linears[name].register_forward_pre_hook(lambda _m, args, s=stats[name]: s.add_batch(args[0]))
                       for name in group]
            run_block(block, inputs)
            for handle in handles:
                handle.remove()
            for name in group:
                new_w, _ = prune_weight(get_weight(linears[name]), "wanda", stats=stats[name], **prune)
                set_weight(linears[name], new_w)
        inputs = inputs.with_hidden(run_block(block, inputs))


def weights(model) -> dict[str, torch.Tensor]:
    return {name: get_weight(linear) for name, linear in block_linears(model).items()}


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
@pytest.mark.parametrize("family", FAMILIES)
def test_wanda_layer_mode_equals_pruning_group_by_group(family, pattern):
    """The official groups (the reference's metadata); ``block`` mode differs from them, so the comparison can fail."""
    model, ref, meta = reference(family)
    inputs = capture_block_inputs(model, ref["ids"].long(), batch_size=4)
    expected, block = copy.deepcopy(model), copy.deepcopy(model)
    group_by_group(expected, inputs, json.loads(meta["groups"]), sparsity=0.5, pattern=pattern)
    prune_model(model, inputs, method="wanda", sparsity=0.5, pattern=pattern, sequential="layer")
    prune_model(block, inputs, method="wanda", sparsity=0.5, pattern=pattern, sequential="block")
    want, got, other = weights(expected), weights(model), weights(block)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name] == 0, want[name] == 0) and torch.equal(got[name], want[name]), name
    assert any(not torch.equal(other[name] == 0, want[name] == 0) for name in want)
