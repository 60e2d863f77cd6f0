"""What the linears of one decoder block see in the dense model, captured once and reused for every analysis.

Block 0's inputs are captured (all decoder kwargs, :func:`perp_engine.model.capture.capture_block_inputs`), pushed
through the dense blocks before the chosen one, and the chosen block is run with a pre-hook on each linear that
records the linear's inputs. Linears that read the same tensor (q/k/v, gate/up) share one capture. This is done
for calibration windows (statistics for Wanda, SparseGPT, RIA and DSnoT, raw inputs for the adapter demo) and for
held-out windows (statistics for the local error), so moving a slider afterwards only re-prunes one matrix.
A :class:`DenseWalk` keeps what entered some of the blocks it ran, so capturing another block of the same model
and windows runs only the blocks between the nearest kept input and that block.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..data.corpora import load_corpus
from ..data.sampling import calibration_samples, measure_windows
from ..errors import PerpError
from ..model.blocks import find_decoder_blocks, find_linears, get_weight
from ..model.capture import BlockInputs, block_forward, capture_block_inputs, run_block
from ..pruning import LayerStats
from ..resources.memory_meter import MIB

KEPT_INPUTS_BUDGET = 320 * MIB  # about how much of earlier blocks' inputs a DenseWalk keeps


@dataclass(frozen=True)
class LayerCapture:
    """One linear of the dense model and what it sees.

    ``weight`` is a float32 (out, in) copy of the dense weight; ``calib_inputs`` the (tokens, in) inputs of the
    calibration windows, ``calib`` their statistics (with the Hessian), ``heldout`` the statistics of the
    inputs of the held-out windows. All on the model's device.
    """

    name: str  # full module name, e.g. model.layers.15.self_attn.q_proj
    block: int
    linear: str  # name inside the block, e.g. self_attn.q_proj
    weight: torch.Tensor
    calib_inputs: torch.Tensor
    calib: LayerStats
    heldout: LayerStats


def block_count(model: nn.Module) -> int:
    return len(find_decoder_blocks(model)[1])


def linear_shapes(model: nn.Module, block: int = 0) -> dict[str, tuple[int, int]]:
    """The (out, in) shape of each linear of one decoder block, by its name inside the block, in module order."""
    _, blocks = find_decoder_blocks(model)
    linears = find_linears(blocks[_check_block(block, len(blocks))])
    return {name: tuple(get_weight(module).shape) for name, module in linears.items()}


def layer_windows(tokenizer, dataset: str, n: int, seqlen: int, seed: int = 0,
                  home: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(calibration, held_out)`` token windows of ``dataset``'s calibration text: ``n`` random calibration
    windows drawn as a run draws them, and ``n`` held-out windows spread over the same text that none of the
    calibration windows overlaps (the layer-wise errors of a run are measured the same way)."""
    source = load_corpus(dataset, home).calib_source
    calib = calibration_samples(tokenizer, source, n, seqlen, seed, home, held_out=n)
    return calib, measure_windows(tokenizer, source, seqlen, n=n, home=home)


def capture_block(model: nn.Module, block: int, calib_samples: torch.Tensor, heldout_samples: torch.Tensor,
                  batch_size: int = 8) -> dict[str, LayerCapture]:
    """Every linear of decoder block ``block`` with its dense inputs; by name inside the block, in module order."""
    return DenseWalk(model, calib_samples, heldout_samples, batch_size, budget=0).capture(block)


class DenseWalk:
    """The dense model run block by block on calibration and held-out windows, for :meth:`capture` of any block.

    It keeps what entered block 0, every ``stride``-th block it ran through and the block captured last, so a
    later capture starts from the nearest kept input at or below its block. ``stride`` is the smallest that keeps
    one input per ``stride`` blocks of the model within about ``budget`` bytes (1, every block, for the
    embedded model at the Inside a layer page's defaults: 9 MiB a block in float32, 270 MiB for its 30);
    ``budget=0`` keeps block 0's and the last one's only.
    Not thread-safe: one capture at a time (its hooks are on the shared model)."""

    def __init__(self, model: nn.Module, calib_samples: torch.Tensor, heldout_samples: torch.Tensor,
                 batch_size: int = 8, budget: int = KEPT_INPUTS_BUDGET):
        for field, samples in (("calib_samples", calib_samples), ("heldout_samples", heldout_samples)):
            if not isinstance(samples, torch.Tensor) or samples.ndim != 2 or samples.numel() == 0:
                raise PerpError(field, "expected a non-empty (windows, seqlen) tensor of token ids")
        self.path, self.blocks = find_decoder_blocks(model)
        self.windows = (calib_samples.shape[0], heldout_samples.shape[0])
        start = tuple(capture_block_inputs(model, samples, batch_size) for samples in (calib_samples, heldout_samples))
        per_block = sum(h.numel() * h.element_size() for inputs in start for h in inputs.hidden)
        count = len(self.blocks)
        self.stride = count if budget <= 0 else min(count, max(1, math.ceil(count * per_block / budget)))
        self.kept: dict[int, tuple[BlockInputs, BlockInputs]] = {0: start}
        self.blocks_run = 0  # blocks run (calibration and held-out together) so far

    @torch.no_grad()
    def capture(self, block: int) -> dict[str, LayerCapture]:
        """Every linear of decoder block ``block`` with its dense inputs; by name inside the block, in module order."""
        block = _check_block(block, len(self.blocks))
        calib_in, heldout_in = self._inputs(block)
        linears = find_linears(self.blocks[block])
        calib = _linear_inputs(self.blocks[block], linears, calib_in)
        heldout = _linear_inputs(self.blocks[block], linears, heldout_in)
        calib_stats = _stats_by_input(calib, self.windows[0])
        heldout_stats = _stats_by_input(heldout, self.windows[1])
        return {name: LayerCapture(name=f"{self.path}.{block}.{name}", block=block, linear=name,
                                   weight=get_weight(module).detach().to(torch.float32, copy=True),
                                   calib_inputs=calib[name], calib=calib_stats[name], heldout=heldout_stats[name])
                for name, module in linears.items()}

    def _inputs(self, block: int) -> tuple[BlockInputs, BlockInputs]:
        """What enters ``block``: from the nearest kept input, through the blocks between; keeps it as the last."""
        start = max(b for b in self.kept if b <= block)
        inputs = self.kept[start]
        for earlier in range(start, block):
            inputs = tuple(x.with_hidden(run_block(self.blocks[earlier], x)) for x in inputs)
            self.blocks_run += 1
            if (earlier + 1) % self.stride == 0:
                self.kept[earlier + 1] = inputs
        self.kept = {b: x for b, x in self.kept.items() if b % self.stride == 0}
        self.kept[block] = inputs
        return inputs


def _check_block(block: int, count: int) -> int:
    if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < count:
        raise PerpError("block", f"{block!r} is not allowed; this model has blocks 0 to {count - 1}")
    return block


def _linear_inputs(block: nn.Module, linears: dict[str, nn.Module], inputs: BlockInputs) -> dict[str, torch.Tensor]:
    """(tokens, in) float32 inputs of each linear of ``block`` when it runs on ``inputs``.

    Linears fed the same tensor get the same (identical) result tensor."""
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in linears}
    owner: dict[str, str] = {}  # linear -> the first linear that read the same tensor
    seen: dict[int, tuple[torch.Tensor, str]] = {}  # id(input) -> (input kept alive so ids are not reused, owner)

    def make_hook(name: str):
        def hook(module, args):
            x = args[0]
            entry = seen.get(id(x))
            if entry is not None and entry[0] is x:
                owner[name] = entry[1]
                return
            owner[name] = name
            seen[id(x)] = (x, name)
            chunks[name].append(x.detach().reshape(-1, x.shape[-1]).to(torch.float32))

        return hook

    handles = [module.register_forward_pre_hook(make_hook(name)) for name, module in linears.items()]
    try:
        for hidden, kwargs in zip(inputs.hidden, inputs.kwargs):
            block_forward(block, hidden, kwargs)
            seen.clear()
    finally:
        for handle in handles:
            handle.remove()
    joined = {name: torch.cat(parts) for name, parts in chunks.items() if parts}
    return {name: joined[owner[name]] for name in linears}


def _stats_by_input(inputs: dict[str, torch.Tensor], windows: int) -> dict[str, LayerStats]:
    """One LayerStats (with the Hessian) per distinct input tensor, shared by the linears that read it. Each
    tensor holds the tokens of ``windows`` sequences in order, as DSnoT's per-sequence statistics read them."""
    made: dict[int, LayerStats] = {}
    for x in inputs.values():
        if id(x) not in made:
            made[id(x)] = LayerStats(x.shape[1], device=x.device, moments=True)
            made[id(x)].add_batch(x, sequences=windows)
    return {name: made[id(x)] for name, x in inputs.items()}
