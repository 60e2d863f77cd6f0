"""Tiny models with about half of every decoder-block weight zeroed (magnitude, torch ops only), for the
adapter, subset and retraining tests; independent of perp_engine.pruning on purpose."""

from __future__ import annotations

import torch
from tiny_models import TINY_MODELS

from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight, set_weight


def pruned_tiny(family: str, sparsity: float = 0.5, seed: int = 0):
    """A tiny model of ``family`` whose block linears each lose their ``sparsity`` smallest-magnitude weights."""
    model = TINY_MODELS[family](seed)
    _, blocks = find_decoder_blocks(model)
    with torch.no_grad():
        for block in blocks:
            for layer in find_linears(block).values():
                weight = get_weight(layer)
                threshold = weight.abs().flatten().kthvalue(int(weight.numel() * sparsity)).values
                set_weight(layer, torch.where(weight.abs() <= threshold, torch.zeros_like(weight), weight))
    return model
