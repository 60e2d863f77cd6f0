"""ScaleLoRA: a multiplicative low-rank update of each weight, so the zeros of ``W`` stay zero by construction.

Two forms, both the identity at the start and both merged into a weight with exactly ``W``'s zeros:

- ``scalelora``: ``W * (1 + s B A)``, ``A`` Kaiming-uniform, ``B = 0``, ``s = alpha / r`` (as LoRA). Its update
  ``B A`` can reach any rank up to ``r``.
- ``scalelora-paper``: ``W * (B A)`` with ``A = B = 1/sqrt(r)`` in every entry (``B A`` all ones), as in the PERP
  paper's code, without scaling. Measured: with this symmetric start every row of ``A`` and every column of
  ``B`` receive identical gradients forever (AdamW keeps the symmetry), so ``B A`` stays rank 1 whatever ``r``;
  it is kept to reproduce the paper.
"""

from __future__ import annotations

import math

import torch

from .base import AdapterLinear


class ScaleLoRA(AdapterLinear):
    """``W * (1 + s B A)``: a full-rank-capable multiplicative update; B = 0 makes it start as the pruned layer."""

    kind = "scalelora"

    def scale(self, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        """``1 + s B A``, the factor each weight is multiplied by (built in place: one dense temporary)."""
        return (lora_b @ lora_a).mul_(self.scaling).add_(1.0)

    def combine(self, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return self.scale(lora_a, lora_b).mul_(weight).to(weight.dtype)

    def grad_product(self, g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (g * weight.to(g.dtype)).mul_(self.scaling)

    def grad_weight(self, g: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return g * self.scale(lora_a, lora_b)


class ScaleLoRAPaper(AdapterLinear):
    """``W * (B A)`` with A = B = 1/sqrt(r) everywhere (``B A`` all ones); ``alpha`` has no effect."""

    kind = "scalelora-paper"

    def initial_factors(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        value = 1.0 / math.sqrt(self.rank)
        return torch.full(self.lora_A.shape, value), torch.full(self.lora_B.shape, value)

    def combine(self, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return (lora_b @ lora_a).mul_(weight).to(weight.dtype)  # in place: one dense temporary

    def grad_product(self, g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return g * weight.to(g.dtype)

    def grad_weight(self, g: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        return g * (lora_b @ lora_a)
