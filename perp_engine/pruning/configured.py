"""Pruning a whole model as a RunConfig says: capture the calibration inputs where the settings read them, allocate
the sparsity among the blocks (uniform or OWL), then prune block by block with the method and the refinement.

The pipeline's prune stage and the methods bench both call :func:`prune_as_configured`, so what the bench times is
what a run does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import RunConfig
from ..model.blocks import find_decoder_blocks
from ..model.capture import capture_block_inputs
from ..offload.placement import BlockPlacement
from ..progress import part
from ..result import LayerRecord
from .owl import owl_allocation
from .sequential import needs_calibration, prune_model

OWL_SHARE = 0.3  # of the stage's progress bar: OWL's pass over the dense blocks (statistics and outputs)


@dataclass
class Pruned:
    """One LayerRecord per pruned linear, each block's target sparsity and OWL's outlier share per block (in %)."""

    layers: list[LayerRecord]
    block_sparsity: list[float]
    outlier_share: list[float]


def prune_as_configured(
    model: nn.Module,
    calib: torch.Tensor,
    config: RunConfig,
    *,
    progress: Callable[[float, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    placement: BlockPlacement | None = None,
) -> Pruned:
    """Prune ``model`` in place on the calibration ids ``calib`` (windows x seqlen) with ``config``'s settings."""
    calibrated = needs_calibration(config.method, config.allocation, config.refine)
    inputs = capture_block_inputs(model, calib, config.batch_size) if calibrated else None
    blocks = len(find_decoder_blocks(model)[1])
    shares: list[float] = []
    if config.allocation == "owl":
        allocation = owl_allocation(model, inputs, sparsity=config.sparsity, m=config.owl_m, lam=config.owl_lambda,
                                    progress=part(progress, 0.0, OWL_SHARE), placement=placement)
        if log:
            log("OWL block sparsities " + " ".join(f"{s:.3f}" for s in allocation.sparsity))
        targets, shares = allocation.sparsity, allocation.outlier_share
        progress = part(progress, OWL_SHARE, 1.0)
    else:
        targets = [float(config.sparsity)] * blocks
    layers = prune_model(model, inputs, method=config.method, sparsity=config.sparsity, pattern=config.pattern,
                         blocksize=config.blocksize, percdamp=config.percdamp, seed=config.seed, progress=progress,
                         log=log, placement=placement, block_sparsity=targets, ria_power=config.ria_power,
                         ria_permute=config.ria_permute, refine=config.refine, dsnot=config.dsnot_options,
                         sequential=config.sequential)
    return Pruned(layers, targets, shares)
