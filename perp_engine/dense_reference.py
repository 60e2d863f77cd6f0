"""The dense decoder blocks, kept while the model is pruned and repaired: the reference of the layer-wise errors
and of the reconstruction targets.

Costs one copy of the decoder blocks' weights in CPU memory (the bytes of the blocks, whatever the run's
device); only the block being worked on is copied to the device, so the device never holds a second model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .blocks import find_decoder_blocks


class DenseReference:
    """A CPU copy of every decoder block of ``model``, made one block at a time, frozen."""

    def __init__(self, model: nn.Module):
        _, blocks = find_decoder_blocks(model)
        self._blocks = [copy.deepcopy(block).to("cpu").requires_grad_(False) for block in blocks]

    def __len__(self) -> int:
        return len(self._blocks)

    def block(self, index: int, device: torch.device) -> nn.Module:
        """Dense block ``index`` on ``device``: the CPU copy itself, or a copy of it on another device."""
        block = self._blocks[index]
        return block if torch.device(device).type == "cpu" else copy.deepcopy(block).to(device)
