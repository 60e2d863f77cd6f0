"""Layer-wise reconstruction: repair a pruned model block by block against the dense model.

For block i the target is the dense block's output on the block's current inputs (pruned and already
reconstructed upstream); the loss is the relative MSE of the pruned block's output; only the chosen
parameters of that block (subsets and/or sparsity-preserving adapters) train, in train mode (dropout on where
the model has it, as in retraining), through the one training loop (:mod:`perp_engine.repair.training_loop`):
the same schedule, clipping, master copies and non-finite guard with rollback as retraining. Adapters are merged
into the block before moving on, and the block's outputs become the next block's inputs. Memory is bounded by one
block plus its calibration activations, not the whole model.
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
from .training_loop import Optimisation, TrainOutcome, backward_if_finite, train, training_mode


@dataclass
class BlockLoss:
    block: int
    before: float
    after: float
    trainable: int
    seconds: float  # training steps of this block (what a block-step costs; targets, attach and merge apart)


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
                progress: Callable[[float, str], None] | None = None,
                placement: BlockPlacement | None = None) -> ReconstructOutcome:
    """Reconstruct every block in place; ``inputs`` are block 0's calibration inputs of ``model``;
    ``placement``: the run's offloading (one block on the device at a time)."""
    start = time.perf_counter()
    _, blocks = find_decoder_blocks(model)
    outcome = ReconstructOutcome()
    generator = torch.Generator().manual_seed(seed)
    device = inputs.hidden[0].device
    for i, block in each_block(blocks, placement, writes=True):
        keeper = MaskKeeper(model, scope=block, reapply="full" in recipe.subsets)
        targets = run_block(dense.block(i, device), inputs)
        before = chunked_relative_error(targets, run_block(block, inputs))
        trainable = _prepare_block(model, block, recipe, seed + i, outcome, first=i == 0)
        trained = _train_block(block, inputs, targets, recipe, generator, keeper if "full" in recipe.subsets else None)
        if trained.stopped:
            outcome.warnings.append(f"block {i}: {trained.stopped}")
        outcome.losses.extend(trained.losses)
        _merge_block(model, block, recipe, outcome)
        keeper.verify()
        outputs = run_block(block, inputs)
        outcome.blocks.append(BlockLoss(block=i, before=before, after=chunked_relative_error(targets, outputs),
                                        trainable=trainable, seconds=trained.seconds))
        inputs = inputs.with_hidden(outputs)
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


def _train_block(block: nn.Module, inputs: BlockInputs, targets: Sequence[torch.Tensor], recipe: BlockRecipe,
                 generator: torch.Generator, keeper: MaskKeeper | None) -> TrainOutcome:
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
        return train(params, step_loss, recipe.how, rollback=True, keeper=keeper)
