"""The measured sparsity of a model: the share of zero weights in each decoder-block linear and overall."""

from __future__ import annotations

from torch import nn

from ..model.blocks import find_decoder_blocks, find_linears, get_weight
from ..model.sparsity import zero_count
from ..offload.placement import BlockPlacement, each_block


def model_sparsity(model: nn.Module, placement: BlockPlacement | None = None) -> dict:
    """``{"overall": fraction, "layers": {full_name: fraction}}`` of zero weights in the decoder blocks' linears
    (``placement``: the run's offloading, each block read in turn)."""
    path, blocks = find_decoder_blocks(model)
    layers: dict[str, float] = {}
    zeros = total = 0
    for index, block in each_block(blocks, placement):
        for name, module in find_linears(block).items():
            weight = get_weight(module)
            layer_zeros = zero_count(weight)
            layers[f"{path}.{index}.{name}"] = layer_zeros / weight.numel()
            zeros += layer_zeros
            total += weight.numel()
    return {"overall": zeros / total if total else 0.0, "layers": layers}
