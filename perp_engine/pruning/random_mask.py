"""Random pruning: the baseline every method must beat."""

from __future__ import annotations

import torch

from .patterns import select_mask, zero_pruned_


def prune_random(
    w: torch.Tensor, sparsity: float, nm: tuple[int, int] | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniformly random mask with the exact count per matrix (unstructured) or per group (N:M); ``w`` (the
    caller's own copy) is pruned in place.

    The scores are drawn on the CPU from ``seed`` so the mask is the same on every device.
    """
    generator = torch.Generator().manual_seed(seed)
    score = torch.rand(w.shape, generator=generator).to(w.device)
    mask = select_mask(score, sparsity, nm, per_row=False)
    return zero_pruned_(w, mask), mask
