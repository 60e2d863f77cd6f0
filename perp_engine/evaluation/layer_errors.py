"""The two layer-wise errors against the dense model, per linear and per block, measured in situ, block by block.

- **local**: ``||f_dense(X) - f(X)||^2 / ||f_dense(X)||^2`` with ``X`` the inputs the layer (or block) sees in
  the model being measured: the dense and the current weights applied to the same inputs. It is what pruning
  and reconstruction minimise, and 0 for a layer equal to its dense version.
- **drift** (accumulated): ``||f_dense(X_dense) - f(X)||^2 / ||f_dense(X_dense)||^2``, each model on its own
  propagated activations: how far the model's internal state has moved, upstream damage included.

``f`` is the whole layer (its bias included) or the whole block. Both models see the same windows (the
held-out measurement windows of :func:`perp_engine.data.sampling.measure_windows`). Memory: one dense block on the device
at a time and the activations of the windows at one depth, for each model.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..model.blocks import find_decoder_blocks, find_linears
from ..model.capture import BlockInputs, block_forward
from ..offload.dense_reference import DenseReference
from ..offload.placement import BlockPlacement, each_block
from .relative_error import ErrorSums


@dataclass
class ErrorReport:
    local: dict[str, float] = field(default_factory=dict)  # full linear name -> local error
    drift: dict[str, float] = field(default_factory=dict)  # full linear name -> accumulated error
    block_local: list[float] = field(default_factory=list)
    block_drift: list[float] = field(default_factory=list)


@torch.no_grad()
def measure_errors(model: nn.Module, dense: DenseReference, dense_inputs: BlockInputs, inputs: BlockInputs,
                   progress: Callable[[float, str], None] | None = None,
                   placement: BlockPlacement | None = None) -> ErrorReport:
    """Both errors of every linear and block of ``model`` against ``dense``.

    ``dense_inputs`` are the dense model's block-0 inputs of the measurement windows (captured before pruning),
    ``inputs`` the current model's block-0 inputs of the same windows; ``placement``: the run's offloading."""
    path, blocks = find_decoder_blocks(model)
    device = inputs.hidden[0].device
    report = ErrorReport()
    for i, block in each_block(blocks, placement):
        local: dict[str, ErrorSums] = defaultdict(ErrorSums)
        drift: dict[str, ErrorSums] = defaultdict(ErrorSums)
        d_out, c_out = _measure_block(block, dense.block(i, device), dense_inputs, inputs, local, drift)
        for name in local:
            if name != "":
                report.local[f"{path}.{i}.{name}"] = local[name].value
                report.drift[f"{path}.{i}.{name}"] = drift[name].value
        report.block_local.append(local[""].value)
        report.block_drift.append(drift[""].value)
        dense_inputs, inputs = dense_inputs.with_hidden(d_out), inputs.with_hidden(c_out)
        if progress:
            progress((i + 1) / len(blocks), f"layer errors: block {i + 1}/{len(blocks)}")
    return report


def _measure_block(block: nn.Module, dense: nn.Module, dense_inputs: BlockInputs, inputs: BlockInputs,
                   local: dict[str, ErrorSums], drift: dict[str, ErrorSums]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Accumulate the errors of one block (key "") and of its linears (by name); returns both models' outputs.

    Per chunk: the dense block on the dense activations records each dense linear's output; the current block
    on its own activations compares each linear's output with that record (drift) and with the dense linear
    applied to the same input (local, through ``forward`` so no hook fires); the dense block on the current
    activations gives the block's local error."""
    dense_linears = find_linears(dense)
    recorded: dict[str, torch.Tensor] = {}
    recording = [True]

    def record(name):
        def hook(_module, _args, out):
            if recording[0]:
                recorded[name] = out
        return hook

    def compare(name, dense_linear):
        def hook(_module, args, out):
            drift[name].add(recorded[name], out)
            local[name].add(dense_linear.forward(args[0]), out)
        return hook

    # the current block's layers are looked up by the dense names: an unmerged adapter sits under that name
    handles = [m.register_forward_hook(record(n)) for n, m in dense_linears.items()]
    handles += [block.get_submodule(n).register_forward_hook(compare(n, m)) for n, m in dense_linears.items()]
    d_out, c_out = [], []
    try:
        for (dh, dkw), (ch, ckw) in zip(zip(dense_inputs.hidden, dense_inputs.kwargs), zip(inputs.hidden, inputs.kwargs)):
            recording[0] = True
            d = block_forward(dense, dh, dkw)
            c = block_forward(block, ch, ckw)
            recording[0] = False
            drift[""].add(d, c)
            local[""].add(block_forward(dense, ch, ckw), c)
            d_out.append(d)
            c_out.append(c)
            recorded.clear()
    finally:
        for h in handles:
            h.remove()
    return d_out, c_out
