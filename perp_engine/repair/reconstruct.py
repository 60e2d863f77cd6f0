"""Layer-wise reconstruction: repair a pruned model block by block against the dense model.

For block i the target is the dense block's output on the block's current inputs (pruned and already
reconstructed upstream); the loss is the relative MSE of the pruned block's output; only the chosen
parameters of that block (subsets and/or sparsity-preserving adapters) train, in train mode (dropout on where
the model has it, as in retraining), through the one training loop (:mod:`perp_engine.repair.training_loop`):
the same schedule, clipping, master copies and non-finite guard with rollback as retraining. Adapters are merged
into the block before moving on, and the block's outputs become the next block's inputs. Memory is bounded by one
block plus its calibration activations, not the whole model.

With ``held_out`` inputs (block 0's inputs of windows neither pruning nor reconstruction use) each block also
gets a learning curve: its relative error against the dense block on those windows, every ``eval_every`` steps;
the held-out inputs travel through the reconstructed blocks as the calibration inputs do.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..evaluation.relative_error import chunked_relative_error, relative_error
from ..model.blocks import find_decoder_blocks
from ..model.capture import BlockInputs, block_forward, run_block
from ..offload.dense_reference import DenseReference
from ..offload.placement import BlockPlacement, each_block
from .adapters import attach_adapters, merge_adapters
from .mask_keeper import MaskKeeper
from .subsets import select_trainable
from .training_loop import CurvePoint, Optimisation, Probe, TrainOutcome, backward_if_finite, train, training_mode


@dataclass
class BlockLoss:
    block: int
    before: float
    after: float
    trainable: int
    seconds: float  # training steps of this block (what a block-step costs; targets, attach, merge, curve apart)
    curve: list[CurvePoint] = field(default_factory=list)  # held-out error by step (with held_out inputs)


@dataclass
class ReconstructOutcome:
    blocks: list[BlockLoss] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # every step of every block, in order
    trainable: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    tensors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    probe_seconds: float = 0.0  # what the learning curves cost


@dataclass(frozen=True)
class BlockRecipe:
    """What trains in each block (``subsets``, ``adapter`` of ``rank`` and ``alpha`` on ``target_modules``) and how
    (the training loop's settings, applied to each block in turn)."""

    subsets: tuple[str, ...]
    adapter: str
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    how: Optimisation


def reconstruct(model: nn.Module, dense: DenseReference, inputs: BlockInputs, recipe: BlockRecipe, *, seed: int = 0,
                progress: Callable[[float, str], None] | None = None, placement: BlockPlacement | None = None,
                held_out: BlockInputs | None = None, eval_every: int = 0) -> ReconstructOutcome:
    """Reconstruct every block in place; ``inputs`` are block 0's calibration inputs of ``model``;
    ``placement``: the run's offloading (one block on the device at a time); ``held_out``: block 0's inputs of
    the windows each block's learning curve is measured on, every ``eval_every`` steps (0: no curves)."""
    start = time.perf_counter()
    _, blocks = find_decoder_blocks(model)
    outcome = ReconstructOutcome()
    generator = torch.Generator().manual_seed(seed)
    device = inputs.hidden[0].device
    for i, block in each_block(blocks, placement, writes=True):
        keeper = MaskKeeper(model, scope=block, reapply="full" in recipe.subsets)
        dense_block = dense.block(i, device)
        targets = run_block(dense_block, inputs)
        before = chunked_relative_error(targets, run_block(block, inputs))
        trainable = _prepare_block(model, block, recipe, seed + i, outcome, first=i == 0)
        held_targets = run_block(dense_block, held_out) if held_out is not None and eval_every else None
        probe = Probe(eval_every, lambda: _held_out_error(block, held_out, held_targets)) if held_targets else None
        trained = _train_block(block, inputs, targets, recipe, generator, keeper if "full" in recipe.subsets else None,
                               probe)
        outcome.probe_seconds += trained.probe_seconds
        if trained.stopped:
            outcome.warnings.append(f"block {i}: {trained.stopped}")
        outcome.losses.extend(trained.losses)
        _merge_block(model, block, recipe, outcome)
        keeper.verify()
        outputs = run_block(block, inputs)
        outcome.blocks.append(BlockLoss(block=i, before=before, after=chunked_relative_error(targets, outputs),
                                        trainable=trainable, seconds=trained.seconds, curve=trained.curve))
        inputs = inputs.with_hidden(outputs)
        if held_out is not None:
            held_out = held_out.with_hidden(run_block(block, held_out))
        if progress:
            progress((i + 1) / len(blocks), f"block {i + 1}/{len(blocks)}: error {before:.4g} -> {outcome.blocks[-1].after:.4g}")
    outcome.seconds = time.perf_counter() - start
    return outcome


def _prepare_block(model: nn.Module, block: nn.Module, recipe: BlockRecipe, seed: int, outcome: ReconstructOutcome,
                   first: bool) -> int:
    """Attach the block's adapters and make exactly its chosen parameters trainable; returns their count."""
    if recipe.adapter != "none":
        attach_adapters(model, recipe.adapter, rank=recipe.rank, alpha=recipe.alpha,
                        target_modules=recipe.target_modules, scope=block, seed=seed)
    report = select_trainable(model, recipe.subsets, untie=False, scope=block)
    if first:
        outcome.warnings.extend(report.warnings)
    outcome.trainable += report.trainable
    for k, v in report.by_category.items():
        outcome.by_category[k] = outcome.by_category.get(k, 0) + v
    outcome.tensors.extend(report.tensors)
    return report.trainable


def _merge_block(model: nn.Module, block: nn.Module, recipe: BlockRecipe, outcome: ReconstructOutcome) -> None:
    """Fold the block's adapters back (zeros verified by merge_adapters) and freeze everything again."""
    if recipe.adapter != "none":
        for note in merge_adapters(model, scope=block):
            if note not in outcome.notes:
                outcome.notes.append(note)
    model.requires_grad_(False)


def _held_out_error(block: nn.Module, held_out: BlockInputs, targets: list[torch.Tensor]) -> float:
    """The block's relative error against the dense block on the held-out inputs, in eval mode (no dropout)."""
    was_training = block.training
    block.eval()
    try:
        return chunked_relative_error(targets, run_block(block, held_out))
    finally:
        block.train(was_training)


def _train_block(block: nn.Module, inputs: BlockInputs, targets: Sequence[torch.Tensor], recipe: BlockRecipe,
                 generator: torch.Generator, keeper: MaskKeeper | None, probe: Probe | None) -> TrainOutcome:
    """The block's trainable parameters through the training loop, one calibration chunk per step (in a seeded
    order), loss = the relative error of the block's output against the dense block's; ``keeper`` re-zeroes the
    block's pruned weights after each step (needed only when whole weights train)."""
    params = [p for p in block.parameters() if p.requires_grad]
    if not params:
        return TrainOutcome(losses=[], stopped=None, seconds=0.0)
    chunks = itertools.cycle(torch.randperm(len(inputs), generator=generator).tolist())

    def step_loss() -> float:
        j = next(chunks)
        return backward_if_finite(relative_error(targets[j], block_forward(block, inputs.hidden[j], inputs.kwargs[j])))

    with training_mode(block), torch.enable_grad():
        return train(params, step_loss, recipe.how, rollback=True, keeper=keeper, probe=probe)
