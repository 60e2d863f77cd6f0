"""Comparing a layer's zero pattern before and after a change (a merge, an optimizer step)."""

from __future__ import annotations

import torch


def mask_change(name: str, was_zero: torch.Tensor, weight: torch.Tensor) -> str | None:
    """None when ``weight`` is zero exactly where ``was_zero`` is True; else a one-line description."""
    is_zero = weight == 0
    if torch.equal(was_zero, is_zero):
        return None
    revived = int((was_zero & ~is_zero).sum())
    lost = int((~was_zero & is_zero).sum())
    return f"{name}: sparsity mask changed: {revived:,} pruned weights became nonzero and {lost:,} kept weights became zero"
