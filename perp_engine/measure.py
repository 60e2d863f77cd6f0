"""Layer-wise reconstruction error, measured in situ against the dense model.

For every linear: relative ||f_dense(X_dense) - f(X)||^2 / ||f_dense(X_dense)||^2, where each model sees its own
propagated activations on the same calibration samples. The same for every block's output. Measured right
after pruning ("before") and after retraining or reconstruction ("after"), so the two are comparable and include
what norms, biases and adapters changed. Runs block by block: memory is bounded by one block.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .blocks import find_decoder_blocks, find_linears
from .calibrate import BlockInputs, block_forward


@dataclass
class ErrorReport:
    layers: dict[str, float]  # full linear name -> relative error
    blocks: list[float]  # per block output relative error


def snapshot_blocks(model: nn.Module) -> nn.ModuleList:
    """A CPU copy of the decoder blocks (the dense reference), made one block at a time."""
    _, blocks = find_decoder_blocks(model)
    return nn.ModuleList(copy.deepcopy(b).to("cpu").requires_grad_(False) for b in blocks)


def on_device(block: nn.Module, device: torch.device) -> nn.Module:
    """The block on ``device``: itself when already there, else a copy (the CPU reference stays intact)."""
    current = next(block.parameters()).device
    return block if current == device else copy.deepcopy(block).to(device)


@torch.no_grad()
def measure_errors(model: nn.Module, dense_blocks: nn.ModuleList, dense_inputs: BlockInputs, inputs: BlockInputs,
                   progress: Callable[[float, str], None] | None = None) -> ErrorReport:
    """Compare ``model``'s blocks with ``dense_blocks``; ``dense_inputs``/``inputs``: each model's block-0 inputs."""
    path, blocks = find_decoder_blocks(model)
    device = inputs.hidden[0].device
    layer_errors: dict[str, float] = {}
    block_errors: list[float] = []
    d_inputs, c_inputs = dense_inputs, inputs
    for i, (block, dense_cpu) in enumerate(zip(blocks, dense_blocks)):
        dense = on_device(dense_cpu, device)
        names = list(find_linears(dense))
        num = dict.fromkeys(names, 0.0)
        den = dict.fromkeys(names, 0.0)
        ref: dict[str, torch.Tensor] = {}

        def keep(name):
            return lambda _m, _a, out: ref.__setitem__(name, out)

        def compare(name):
            def hook(_m, _a, out):
                r = ref[name]
                num[name] += float((r - out).pow(2).sum(dtype=torch.float64))
                den[name] += float(r.pow(2).sum(dtype=torch.float64))

            return hook

        handles = [dense.get_submodule(n).register_forward_hook(keep(n)) for n in names]
        handles += [block.get_submodule(n).register_forward_hook(compare(n)) for n in names]
        d_out, c_out = [], []
        block_num = block_den = 0.0
        try:
            for (dh, dkw), (ch, ckw) in zip(zip(d_inputs.hidden, d_inputs.kwargs), zip(c_inputs.hidden, c_inputs.kwargs)):
                d = block_forward(dense, dh, dkw)
                c = block_forward(block, ch, ckw)
                block_num += float((d - c).pow(2).sum(dtype=torch.float64))
                block_den += float(d.pow(2).sum(dtype=torch.float64))
                d_out.append(d)
                c_out.append(c)
                ref.clear()
        finally:
            for h in handles:
                h.remove()
        for n in names:
            layer_errors[f"{path}.{i}.{n}"] = num[n] / den[n] if den[n] > 0 else 0.0
        block_errors.append(block_num / block_den if block_den > 0 else 0.0)
        d_inputs, c_inputs = d_inputs.with_hidden(d_out), c_inputs.with_hidden(c_out)
        if progress:
            progress((i + 1) / len(blocks), f"layer errors: block {i + 1}/{len(blocks)}")
    return ErrorReport(layers=layer_errors, blocks=block_errors)
