"""Layer-wise reconstruction: repair a pruned model block by block against the dense model.

For block i the target is the dense block's output on the block's current inputs (pruned and already
reconstructed upstream); the loss is the relative MSE of the pruned block's output; only the chosen
parameters of that block (subsets and/or sparsity-preserving adapters) train, in train mode (dropout on where
the model has it, as in retraining), with the gradient norm clipped as in retraining. Adapters are merged into
the block before moving on, and the block's outputs become the next block's inputs. Memory is bounded by one
block plus its calibration activations, not the whole model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from ..model.blocks import find_decoder_blocks
from ..model.capture import BlockInputs, block_forward, relative_error, run_block
from ..offload.dense_reference import DenseReference
from ..offload.placement import BlockPlacement, block_in_use
from .adapters import attach_adapters, merge_adapters
from .lean_activations import use_lean_activations
from .mask_keeper import MaskKeeper
from .master import MasterCopies
from .subsets import select_trainable


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
    """What trains in each block and how."""

    subsets: tuple[str, ...]
    adapter: str = "none"
    rank: int = 16
    alpha: float = 32.0
    target_modules: tuple[str, ...] = ()
    steps: int = 30
    lr: float = 2e-3
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    master_weights: bool = True  # float32 master copies of a half-precision block's trained tensors


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
    for i in range(len(blocks)):
        with block_in_use(placement, blocks, i, writes=True) as block:
            keeper = MaskKeeper(model, scope=block, reapply="full" in recipe.subsets)
            targets = run_block(dense.block(i, device), inputs)
            before = relative_error(targets, run_block(block, inputs))
            trainable = _prepare_block(model, block, recipe, seed + i, outcome, first=i == 0)
            started = time.perf_counter()
            losses = _train_block(block, inputs, targets, recipe, generator, keeper if "full" in recipe.subsets else None)
            seconds = time.perf_counter() - started
            if not all(math.isfinite(v) for v in losses):
                outcome.warnings.append(f"block {i}: loss became non-finite; kept the last good weights of this block")
            outcome.losses.extend(v for v in losses if math.isfinite(v))
            _merge_block(model, block, recipe, outcome)
            keeper.verify()
            outputs = run_block(block, inputs)
        outcome.blocks.append(BlockLoss(block=i, before=before, after=relative_error(targets, outputs),
                                        trainable=trainable, seconds=seconds))
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
                 generator: torch.Generator, keeper: MaskKeeper | None) -> list[float]:
    """AdamW on the block's trainable parameters, one calibration chunk per step; stops at a non-finite loss
    and restores the weights of the last good step. ``keeper`` re-zeroes the block's pruned weights after each
    step (needed only when whole weights train)."""
    params = [p for p in block.parameters() if p.requires_grad]
    if not params:
        return []
    masters = MasterCopies(params, recipe.master_weights)
    optimizer = torch.optim.AdamW(masters.params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, round(recipe.warmup_ratio * recipe.steps), recipe.steps)
    scales = [float(t.float().pow(2).mean()) or 1.0 for t in targets]
    order = torch.randperm(len(inputs), generator=generator).tolist()
    good = [p.detach().clone() for p in params]
    losses: list[float] = []
    was_training = block.training
    restore_forwards = use_lean_activations(block)
    block.train()
    try:
        with torch.enable_grad():
            for step in range(recipe.steps):
                j = order[step % len(order)]
                out = block_forward(block, inputs.hidden[j], inputs.kwargs[j])
                loss = (out.float() - targets[j].float()).pow(2).mean() / scales[j]
                value = float(loss.detach())
                losses.append(value)
                if not math.isfinite(value):
                    with torch.no_grad():
                        for p, g in zip(params, good):
                            p.copy_(g)
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                masters.take_grads()
                if recipe.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(masters.params, recipe.max_grad_norm)
                optimizer.step()
                masters.write_back()
                schedule.step()
                if keeper is not None:
                    keeper.apply()
                with torch.no_grad():
                    for p, g in zip(params, good):
                        g.copy_(p)
    finally:
        restore_forwards()
        block.train(was_training)
    return losses
