"""MaskLoRA: ``W + s (B A) * M`` with ``M = 1[W != 0]``, so the update never touches a pruned weight."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import AdapterLinear


class MaskLoRA(AdapterLinear):
    """A Kaiming-uniform (as peft's LoRA), B = 0: the layer starts as the pruned layer itself."""

    kind = "masklora"

    def __init__(self, base: nn.Module, rank: int, alpha: float, generator: torch.Generator):
        super().__init__(base, rank, alpha)
        self.register_buffer("mask", self.weight.detach() != 0, persistent=False)
        lora_a = torch.empty(self.lora_A.shape)
        nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5), generator=generator)
        self._set_factors(lora_a, torch.zeros(self.lora_B.shape))

    def combine(self, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        merged = (lora_b @ lora_a).mul_(self.mask).mul_(self.scaling).add_(weight)  # in place: one dense temporary
        return merged.to(weight.dtype)

    def grad_product(self, g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (g * self.mask).mul_(self.scaling)

    def grad_weight(self, g: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return g
