"""Mask helpers shared by the pruning methods: exact counts per matrix, per row or per N:M group."""

from __future__ import annotations

import math

import torch


def prune_count(n: int, sparsity: float) -> int:
    """floor(n * sparsity), robust to binary round-off (0.29 * 100 is 28.999999999999996 in floating point)."""
    return math.floor(round(n * sparsity, 6))


def lowest_k_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (True = kept) of a 2-D ``score``: in every row exactly the ``k`` lowest scores are pruned.

    Ties at the threshold go to the lowest column index, so the count is exact and the result deterministic.
    One k-th value per row (O(n)) instead of a full sort.
    """
    cols = score.shape[1]
    if k <= 0:
        return torch.ones_like(score, dtype=torch.bool)
    if k >= cols:
        return torch.zeros_like(score, dtype=torch.bool)
    threshold = score.kthvalue(k, dim=1, keepdim=True).values
    below = score < threshold
    tied = score == threshold
    still_needed = k - below.sum(dim=1, keepdim=True)
    pruned = below | (tied & (tied.cumsum(dim=1) <= still_needed))
    return ~pruned


def select_mask(score: torch.Tensor, sparsity: float, nm: tuple[int, int] | None, per_row: bool) -> torch.Tensor:
    """Keep the highest scores of an (out, in) matrix; prune the lowest.

    N:M: N of every M consecutive inputs of a row are pruned. Otherwise floor(in * sparsity) per output row
    (``per_row``) or floor(numel * sparsity) in the whole matrix, i.e. one threshold per matrix.
    """
    rows, cols = score.shape
    if nm is not None:
        n, m = nm
        return lowest_k_mask(score.reshape(-1, m), n).reshape(rows, cols)
    if per_row:
        return lowest_k_mask(score, prune_count(cols, sparsity))
    return lowest_k_mask(score.reshape(1, -1), prune_count(score.numel(), sparsity)).reshape(rows, cols)
