"""MaskLoRA: ``W + s (B A) * M`` with ``M = 1[W != 0]``, so the update never touches a pruned weight.

``M`` is read off ``W`` wherever it is needed instead of being stored (``W`` is frozen, or re-zeroed after every
step when whole weights train too, so its zeros are the pruned positions throughout): a stored mask costs one
byte per weight for the whole run, half as much again as a bf16 model's weights; the comparison costs one pass
over ``W`` beside the product that reads it anyway.
"""

from __future__ import annotations

import torch

from ...model.sparsity import kept_positions
from .base import AdapterLinear


class MaskLoRA(AdapterLinear):
    """Starts as every AdapterLinear (A Kaiming-uniform, B = 0): as the pruned layer itself."""

    kind = "masklora"

    def combine(self, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        merged = (lora_b @ lora_a).mul_(kept_positions(weight)).mul_(self.scaling).add_(weight)  # in place: one dense temporary
        return merged.to(weight.dtype)

    def grad_product(self, g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (g * kept_positions(weight)).mul_(self.scaling)

    def grad_weight(self, g: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return g
