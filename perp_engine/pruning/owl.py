"""OWL (Yin et al., "Outlier Weighed Layerwise Sparsity", ICML 2024; official code luuyin/OWL, lib/prune_all.py):
a per-block sparsity from each block's share of outlier weights, averaging to the target.

OWL is an allocation, not a score: it decides how sparse each block is, and the method (magnitude, Wanda,
SparseGPT, RIA) then prunes the block at that sparsity. One pass over the dense model, block by block on the
calibration inputs that the dense blocks produce (as the official code's first pass), scores every weight of a
block with Wanda's |W_ij| ||X_j|| and counts the share (in %) of the block's scores above M times their mean (all
its linears together). The shares are scaled to [0, 2 lambda]; block l keeps the density
``(1 - sparsity) + scaled_l - mean(scaled)``, so blocks with more outliers are pruned less and the block
sparsities average to the target exactly. The arithmetic follows the official code's order in float64.

The official code clamps a block sparsity that falls to 0 or below to 0.01 (which breaks the average); here the
configuration refuses a lambda that could get there (:class:`perp_engine.config.RunConfig`). When every block has
the same share, the official min-max scaling divides by zero; here every block gets the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..model.blocks import find_decoder_blocks, find_linears, get_weight
from ..model.capture import BlockInputs, run_block
from ..offload.placement import BlockPlacement, each_block
from .sequential import collect_stats
from .wanda import wanda_score


@dataclass(frozen=True)
class Allocation:
    """Each block's sparsity and the outlier share (in %) it was derived from."""

    sparsity: list[float]
    outlier_share: list[float]


def owl_allocation(
    model: nn.Module,
    inputs: BlockInputs,
    *,
    sparsity: float,
    m: float,
    lam: float,
    progress: Callable[[float, str], None] | None = None,
    placement: BlockPlacement | None = None,
) -> Allocation:
    """OWL's block sparsities for ``model`` (dense, not modified) on block 0's calibration ``inputs``."""
    _, blocks = find_decoder_blocks(model)
    shares = []
    for i, block in each_block(blocks, placement, writes=False):
        linears = find_linears(block)
        stats = collect_stats(block, linears, inputs, hessian=False)
        weights = {name: get_weight(mod).detach() for name, mod in linears.items()}
        scores = [wanda_score(w.float(), stats[name].sq_mean.to(w.device)) for name, w in weights.items()]
        shares.append(outlier_share(scores, m))
        del stats, weights, scores
        if i + 1 < len(blocks):
            inputs = inputs.with_hidden(run_block(block, inputs))
        if progress:
            progress((i + 1) / len(blocks), f"block {i + 1}/{len(blocks)}: {shares[-1]:.2f}% outliers")
    return Allocation(block_sparsities(shares, sparsity, lam), shares)


def outlier_share(scores: list[torch.Tensor], m: float) -> float:
    """The share, in %, of all of a block's scores that lie above ``m`` times their mean."""
    flat = torch.cat([s.flatten() for s in scores])
    return float((flat > flat.mean() * m).sum()) / flat.numel() * 100


def block_sparsities(shares: list[float], sparsity: float, lam: float) -> list[float]:
    """Each block's sparsity from the outlier shares: the target minus the block's share, scaled to [0, 2 lam],
    above the mean of the scaled shares."""
    d = np.asarray(shares, dtype=np.float64)
    spread = d.max() - d.min()
    if spread == 0:
        return [float(sparsity)] * len(shares)
    scaled = (d - d.min()) * (1 / spread * lam * 2)
    density = scaled - np.mean(scaled) + (1 - sparsity)
    return [float(1 - x) for x in density]
