"""Magnitude pruning: drop the weights with the smallest |W|."""

from __future__ import annotations

import torch

from .patterns import select_mask, zero_pruned_


def prune_magnitude(w: torch.Tensor, sparsity: float, nm: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One threshold on |W| for the whole matrix (unstructured) or the N smallest of every M inputs (N:M); ``w``
    (the caller's own copy) is pruned in place."""
    mask = select_mask(w.abs(), sparsity, nm, per_row=False)
    return zero_pruned_(w, mask), mask
