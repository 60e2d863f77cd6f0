"""ScaleLoRA: ``W * (B A)``, a multiplicative low-rank update; zeros of ``W`` stay zero by construction.

There is no ``alpha / r`` scaling in the product (``B A`` is itself the scale), so ``alpha`` has no effect here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import AdapterLinear


class ScaleLoRA(AdapterLinear):
    """A = B = 1/sqrt(r) everywhere, so ``B A`` is all ones and the layer starts as the pruned layer."""

    kind = "scalelora"

    def __init__(self, base: nn.Module, rank: int, alpha: float, generator: torch.Generator):
        super().__init__(base, rank, alpha)
        value = 1.0 / math.sqrt(rank)
        self._set_factors(torch.full(self.lora_A.shape, value), torch.full(self.lora_B.shape, value))

    def combine(self, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return (lora_b @ lora_a).mul_(weight).to(weight.dtype)  # in place: one dense temporary

    def grad_product(self, g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return g * weight.to(g.dtype)

    def grad_weight(self, g: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return g * (lora_b @ lora_a)
