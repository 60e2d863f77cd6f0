"""The dense decoder blocks, kept while the model is pruned and repaired: the reference of the layer-wise errors
and of the reconstruction targets.

Costs one copy of the decoder blocks' weights, in CPU memory or, with ``folder``, in safetensors files on disk
(one per block, read back one block at a time). Only the block being worked on is put on the device, so the
device never holds a second model. On a CPU device the pipeline keeps the copy on disk: in memory it would
double what the run needs.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..model.blocks import find_decoder_blocks
from .block_files import block_tensors, read_block, write_block
from .placement import BlockPlacement, each_block


class DenseReference:
    """A frozen copy of every decoder block of ``model`` as it is now: in CPU memory, or in ``folder``."""

    def __init__(self, model: nn.Module, folder: str | Path | None = None, placement: BlockPlacement | None = None):
        _, blocks = find_decoder_blocks(model)
        self.folder = Path(folder) if folder is not None else None
        self._blocks: list[nn.Module] = []
        for i, block in each_block(blocks, placement):
            if self.folder is None:
                self._blocks.append(copy.deepcopy(block).to("cpu").requires_grad_(False))
            else:
                write_block(block, self.folder / f"dense-{i}.safetensors")
                self._blocks.append(_meta_copy(block))

    def __len__(self) -> int:
        return len(self._blocks)

    def block(self, index: int, device: torch.device) -> nn.Module:
        """Dense block ``index`` on ``device``: the CPU copy itself, or a new copy on another device (or read
        from its file)."""
        block = self._blocks[index]
        if self.folder is not None:
            block = copy.deepcopy(block)
            read_block(block, self.folder / f"dense-{index}.safetensors", device)
            return block
        return block if torch.device(device).type == "cpu" else copy.deepcopy(block).to(device)


def _meta_copy(block: nn.Module) -> nn.Module:
    """The block's structure with every tensor on the meta device (no memory), frozen: ``deepcopy``'s memo maps
    each tensor to its meta twin, so no data is copied."""
    memo = {}
    for tensor in block_tensors(block).values():
        twin = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(twin, requires_grad=False) if isinstance(tensor, nn.Parameter) else twin
    return copy.deepcopy(block, memo)
