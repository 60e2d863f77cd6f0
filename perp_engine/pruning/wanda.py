"""Wanda (Sun et al., locuslab/wanda): prune by |W_ij| * ||X_j||, compared per output row."""

from __future__ import annotations

import torch

from .patterns import select_mask, zero_pruned_


def prune_wanda(
    w: torch.Tensor, sq_mean: torch.Tensor, sparsity: float, nm: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score |W_ij| * sqrt(mean_t x_tj^2); each row loses floor(in * sparsity) weights, or N of every M for N:M.
    ``w`` (float32, the caller's own copy) is pruned in place and returned with the kept mask.

    The reference scales the column norm by 1/sqrt(n); the per-row ranking is the same.
    """
    mask = select_mask(wanda_score(w, sq_mean), sparsity, nm, per_row=True)
    return zero_pruned_(w, mask), mask


def wanda_score(w: torch.Tensor, sq_mean: torch.Tensor) -> torch.Tensor:
    """Wanda's importance of each weight, (out, in): |W_ij| * sqrt(mean_t x_tj^2), i.e. |W_ij| * ||X_j|| / sqrt(n)."""
    return w.abs() * sq_mean.sqrt().unsqueeze(0)
