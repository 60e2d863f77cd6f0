"""Model-level pruning: sequential, block by block, each block calibrated on what it will really see.

Block 0's inputs are captured once; for each block the linears' input statistics are collected on the current
(already pruned upstream) activations, every linear is pruned, and the block is re-run with its pruned weights
to produce the next block's inputs. Linears that read the same tensor (q/k/v, gate/up) share one LayerStats
(:class:`~perp_engine.pruning.input_owners.InputOwners`), so the statistics (and SparseGPT's factored inverse
Hessian) are computed once per distinct input. Magnitude and
random pruning need no data and skip the forward passes entirely.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ..config import SEQUENTIAL_MODES, parse_pattern
from ..errors import check_choice
from ..model.blocks import find_decoder_blocks, find_linears, get_weight, linear_kind, set_weight
from ..model.capture import BlockInputs, block_forward, run_block
from ..offload.placement import BlockPlacement, each_block
from ..result import LayerRecord
from . import LayerStats, prune_weight
from .dsnot import refine_dsnot
from .input_owners import InputOwners
from .one_pass import prune_block_in_one_pass

DATA_FREE_METHODS = ("magnitude", "random")


def prune_model(
    model: nn.Module,
    inputs: BlockInputs | None,
    *,
    method: str,
    sparsity: float,
    pattern: str = "unstructured",
    blocksize: int = 128,
    percdamp: float = 0.01,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    placement: BlockPlacement | None = None,
    block_sparsity: Sequence[float] | None = None,
    ria_power: float = 0.5,
    ria_permute: str = "none",
    refine: str = "none",
    dsnot: Mapping[str, object] | None = None,
    sequential: str = "block",
) -> list[LayerRecord]:
    """Prune every linear of every decoder block in place; returns one LayerRecord per linear (sparsity set).

    ``inputs`` are block 0's calibration inputs (:func:`perp_engine.model.capture.capture_block_inputs`); they may be
    None for the data-free methods. ``placement``: the run's offloading (each block visits the device in turn).
    ``block_sparsity``: each block's own sparsity (an allocation such as :func:`perp_engine.pruning.owl.owl_allocation`)
    instead of ``sparsity`` everywhere. ``refine="dsnot"`` reworks every pruned linear's mask with DSnoT
    (:func:`perp_engine.pruning.dsnot.refine_dsnot`, keyword arguments ``dsnot``) before the block's outputs are
    recomputed. ``sequential="layer"`` prunes each linear on inputs that reflect the pruning of the linears before it
    in its block, in one forward per block (:func:`perp_engine.pruning.one_pass.prune_block_in_one_pass`);
    ``"block"`` gathers every linear's statistics from the block as it is, then recomputes its outputs.
    """
    path, blocks = find_decoder_blocks(model)
    needs_data = needs_calibration(method, refine=refine)
    if needs_data and inputs is None:
        raise ValueError(f"{method} needs calibration inputs")
    check_choice("sequential", sequential, SEQUENTIAL_MODES)
    if block_sparsity is not None and len(block_sparsity) != len(blocks):
        raise ValueError(f"{len(block_sparsity)} block sparsities for {len(blocks)} blocks")
    records: list[LayerRecord] = []
    for i, block in each_block(blocks, placement, writes=True):
        linears = find_linears(block)
        target = sparsity if block_sparsity is None else block_sparsity[i]
        seeds = {name: seed * 100_003 + len(records) + k for k, name in enumerate(linears)}
        done: dict[str, LayerRecord] = {}

        def prune(name: str, module: nn.Module, linear_stats: LayerStats | None, b: int = i) -> None:
            w = get_weight(module)
            note = (lambda msg: log(f"block {b} {name}: {msg}")) if log else None
            new_w, mask = prune_weight(
                w, method, sparsity=target, pattern=pattern, stats=linear_stats, blocksize=blocksize,
                percdamp=percdamp, seed=seeds[name], log=note, ria_power=ria_power, ria_permute=ria_permute,
            )
            if refine == "dsnot":
                new_w, mask = refine_dsnot(w, new_w, mask, linear_stats, nm=parse_pattern(pattern), name=name,
                                           method=method, **(dsnot or {}))
            set_weight(module, new_w)
            done[name] = LayerRecord(
                name=f"{path}.{b}.{name}", block=b, kind=linear_kind(name),
                sparsity=1.0 - int(mask.sum()) / mask.numel(), recon_error=float("nan"), numel=mask.numel(),
            )

        hessian, moments = method == "sparsegpt", refine == "dsnot"
        if needs_data and sequential == "layer":
            outputs = prune_block_in_one_pass(block, linears, inputs, prune, hessian=hessian, moments=moments)
            inputs = inputs.with_hidden(outputs)
        else:
            stats = collect_stats(block, linears, inputs, hessian=hessian, moments=moments) if needs_data else {}
            for name, module in linears.items():
                prune(name, module, stats.get(name))
            del stats
            if needs_data and i + 1 < len(blocks):  # the last block's pruned outputs feed nothing here
                inputs = inputs.with_hidden(run_block(block, inputs))
        records.extend(done[name] for name in linears)
        if progress:
            progress((i + 1) / len(blocks), f"block {i + 1}/{len(blocks)} pruned")
    return records


def needs_calibration(method: str, allocation: str = "uniform", refine: str = "none") -> bool:
    """Whether pruning with these settings reads calibration inputs: every data-aware method, OWL's allocation
    (Wanda's scores of the dense blocks) and DSnoT's refinement (the inputs' statistics)."""
    return method not in DATA_FREE_METHODS or allocation != "uniform" or refine != "none"


class _StopBlock(Exception):
    """Raised in the statistics pass at the input of the block's last linear: the rest of the block is not needed."""


def collect_stats(block: nn.Module, linears: dict[str, nn.Module], inputs: BlockInputs, hessian: bool,
                  moments: bool = False) -> dict[str, LayerStats]:
    """Run the block on the calibration inputs and accumulate one LayerStats per distinct linear input.

    The block's output is not needed here (it is recomputed with the pruned weights), so once the first chunk
    has shown that the linear registered last is also called last, later chunks stop at its input: its own
    product and whatever follows it (down_proj and the residual in a LLaMA block) are skipped.
    """
    owners = InputOwners(hessian, moments)
    last = next(reversed(linears))
    calls: list[str] = []  # linears called in the current chunk, in order
    stop_after: list[str] = []  # a whole chunk's calls, once one ended with the last registered linear
    sequences = [0]  # calibration sequences in the current chunk

    def make_hook(name: str, module: nn.Module):
        def hook(_module, args):
            x = args[0]
            if owners.owner_of(name, module, x) == name:  # OPT's MLP reads the chunk flattened: say how many sequences
                owners.stats[name].add_batch(x.detach(), sequences=sequences[0])
            calls.append(name)
            if stop_after and calls == stop_after:
                raise _StopBlock

        return hook

    handles = [m.register_forward_pre_hook(make_hook(n, m)) for n, m in linears.items()]
    try:
        with torch.no_grad():
            for hidden, kwargs in zip(inputs.hidden, inputs.kwargs):
                sequences[0] = hidden.shape[0]
                try:
                    block_forward(block, hidden, kwargs)
                except _StopBlock:
                    pass
                if not stop_after and calls[-1:] == [last] and set(calls) == set(linears):
                    stop_after.extend(calls)
                calls.clear()
                owners.end_chunk()
    finally:
        for h in handles:
            h.remove()
    return {name: owners.stats_of(name) for name in linears}
