"""Layer-wise reconstruction: repair a pruned model block by block against the dense model.

For block i the target is the dense block's output on the block's current inputs (pruned and already
reconstructed upstream); the loss is the relative MSE of the pruned block's output; only the chosen
parameters of that block (subsets and/or sparsity-preserving adapters) train. Adapters are merged into the
block before moving on, and the block's outputs become the next block's inputs. Memory is bounded by one block
plus its calibration activations, not the whole model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from .adapters import attach_adapters, merge_adapters
from .blocks import find_decoder_blocks
from .calibrate import BlockInputs, block_forward, relative_error, run_block
from .masks import MaskKeeper
from .measure import on_device
from .subsets import select_trainable


@dataclass
class BlockLoss:
    block: int
    before: float
    after: float
    trainable: int


@dataclass
class ReconstructOutcome:
    blocks: list[BlockLoss] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # every step of every block, in order
    trainable: int = 0  # summed over blocks
    by_category: dict[str, int] = field(default_factory=dict)
    tensors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def reconstruct(
    model: nn.Module,
    dense_blocks: nn.ModuleList,
    inputs: BlockInputs,
    *,
    subsets: Sequence[str],
    adapter: str = "none",
    rank: int = 16,
    alpha: float = 32.0,
    target_modules: Sequence[str] = (),
    steps: int = 30,
    lr: float = 2e-3,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> ReconstructOutcome:
    """Reconstruct every block in place; ``inputs`` are block 0's calibration inputs of ``model``."""
    start = time.perf_counter()
    _, blocks = find_decoder_blocks(model)
    keeper = MaskKeeper(model)
    outcome = ReconstructOutcome()
    generator = torch.Generator().manual_seed(seed)
    device = inputs.hidden[0].device
    for i, block in enumerate(blocks):
        dense = on_device(dense_blocks[i], device)
        targets = run_block(dense, inputs)
        del dense
        before = relative_error(targets, run_block(block, inputs))
        if adapter != "none":
            attach_adapters(model, adapter, rank=rank, alpha=alpha, target_modules=target_modules, scope=block, seed=seed + i)
        report = select_trainable(model, subsets, untie=False, scope=block)
        if i == 0:
            outcome.warnings.extend(report.warnings)
        params = [p for p in block.parameters() if p.requires_grad]
        losses = _train_block(block, params, inputs, targets, keeper if "full" in subsets else None, steps=steps, lr=lr, warmup_ratio=warmup_ratio,
                              weight_decay=weight_decay, generator=generator)
        finite = all(math.isfinite(v) for v in losses)
        if not finite:
            outcome.warnings.append(f"block {i}: loss became non-finite; kept the last good weights of this block")
        outcome.losses.extend(v for v in losses if math.isfinite(v))
        outcome.trainable += report.trainable
        for k, v in report.by_category.items():
            outcome.by_category[k] = outcome.by_category.get(k, 0) + v
        outcome.tensors.extend(report.tensors)
        if adapter != "none":
            for note in merge_adapters(model):
                if note not in outcome.notes:
                    outcome.notes.append(note)
        model.requires_grad_(False)
        outputs = run_block(block, inputs)
        outcome.blocks.append(BlockLoss(block=i, before=before, after=relative_error(targets, outputs), trainable=report.trainable))
        inputs = inputs.with_hidden(outputs)
        if progress:
            progress((i + 1) / len(blocks), f"block {i + 1}/{len(blocks)}: error {before:.4g} -> {outcome.blocks[-1].after:.4g}")
    keeper.verify()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _train_block(block, params, inputs: BlockInputs, targets, keeper: MaskKeeper | None, *, steps, lr, warmup_ratio,
                 weight_decay, generator) -> list[float]:
    """AdamW on the block's trainable params, one calibration chunk per step; stops at a non-finite loss.

    ``keeper`` re-zeroes pruned weights after each step (needed only when whole weights train)."""
    if not params:
        return []
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * steps), steps)
    scales = [float(t.pow(2).mean()) or 1.0 for t in targets]
    order = torch.randperm(len(inputs), generator=generator).tolist()
    good = [p.detach().clone() for p in params]
    losses: list[float] = []
    with torch.enable_grad():
        for step in range(steps):
            j = order[step % len(order)]
            out = block_forward(block, inputs.hidden[j], inputs.kwargs[j])
            loss = (out - targets[j]).pow(2).mean() / scales[j]
            value = float(loss.detach())
            losses.append(value)
            if not math.isfinite(value):
                with torch.no_grad():
                    for p, g in zip(params, good):
                        p.copy_(g)
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if keeper is not None:
                keeper.apply()
            with torch.no_grad():
                for p, g in zip(params, good):
                    g.copy_(p)
    return losses
