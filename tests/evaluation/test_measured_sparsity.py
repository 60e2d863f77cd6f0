"""perp_engine.evaluation.sparsity on tiny models of every family: per layer, overall, full names."""

from __future__ import annotations

import pytest
import torch

from perp_engine.evaluation.sparsity import model_sparsity
from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight, set_weight


def test_model_sparsity_per_layer_and_overall(tiny_model):
    dense = model_sparsity(tiny_model)
    assert dense["overall"] == 0.0 and set(dense["layers"].values()) == {0.0}

    path, blocks = find_decoder_blocks(tiny_model)
    names = list(find_linears(blocks[0]))
    target = find_linears(blocks[0])[names[0]]
    weight = get_weight(target).clone(memory_format=torch.contiguous_format)
    weight.view(-1)[: weight.numel() // 4] = 0  # exactly a quarter zero, in (out, in) orientation
    set_weight(target, weight)
    sparse = model_sparsity(tiny_model)

    full_name = f"{path}.0.{names[0]}"
    assert sparse["layers"][full_name] == pytest.approx(0.25)
    assert tiny_model.get_submodule(full_name) is target  # names are full module paths
    assert all(v == 0.0 for k, v in sparse["layers"].items() if k != full_name)
    total = sum(get_weight(tiny_model.get_submodule(k)).numel() for k in sparse["layers"])
    assert sparse["overall"] == pytest.approx((weight.numel() // 4) / total)
    assert len(sparse["layers"]) == sum(len(find_linears(b)) for b in blocks)
