"""The zeros of a pruned weight: a weight is pruned exactly where it is zero.

Pruning writes +0.0 at the pruned positions and the repair keeps them zero, so the mask ``M = 1[W != 0]`` is read
off the weight wherever it is needed instead of being stored: which positions are pruned or kept, how many are
pruned, and whether a change kept them. Each answer is on the weight's device; the position masks are bool tensors
of the weight's shape.
"""

from __future__ import annotations

import torch


def pruned_positions(weight: torch.Tensor) -> torch.Tensor:
    """True where ``weight`` is pruned (zero)."""
    return weight == 0


def kept_positions(weight: torch.Tensor) -> torch.Tensor:
    """True where ``weight`` is kept (non-zero): the mask ``M = 1[W != 0]``."""
    return weight != 0


def zero_count(weight: torch.Tensor) -> int:
    """How many weights of ``weight`` are pruned."""
    return int(pruned_positions(weight).sum())


def mask_change(name: str, was_zero: torch.Tensor, weight: torch.Tensor) -> str | None:
    """None when ``weight`` is zero exactly where ``was_zero`` is True; else a one-line description."""
    is_zero = pruned_positions(weight)
    if torch.equal(was_zero, is_zero):
        return None
    revived = int((was_zero & ~is_zero).sum())
    lost = int((~was_zero & is_zero).sum())
    return f"{name}: sparsity mask changed: {revived:,} pruned weights became nonzero and {lost:,} kept weights became zero"
