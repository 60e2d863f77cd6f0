"""LoRAPrune: trains as plain LoRA (``W + s B A``, the update also reaches pruned weights) and merges
``W + s (B A) * M``, dropping the part of the update that would revive pruned weights.

The merged layer therefore differs from the trained one; :func:`perp_engine.repair.adapters.merge_adapters` measures
and reports how much.
"""

from __future__ import annotations

import torch
from torch import nn

from .masklora import MaskLoRA


class LoRAPrune(MaskLoRA):
    """Same factors, initialisation and merge as MaskLoRA; only the training-time forward is unmasked."""

    kind = "loraprune"
    exact_merge = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = nn.functional.linear(nn.functional.linear(x.to(self.lora_A.dtype), self.lora_A), self.lora_B)
        return self.base_layer(x) + (self.scaling * update).to(x.dtype)
