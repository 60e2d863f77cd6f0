"""Where the decoder blocks' weights live between uses, and moving a block onto the run's device while it works.

Offload modes (``RunConfig.offload``):

- ``none``: the whole model on the run's device.
- ``cpu``: the blocks' weights in CPU memory; each block visits the device while it is calibrated, pruned,
  measured or reconstructed, and during every full forward (perplexity), then goes back (as the official
  SparseGPT code does for large models). On a CPU device this is ``none``.
- ``disk``: the blocks' weights in safetensors files in a scratch folder; each block is read onto the device
  when used, written back when it was changed (pruning, reconstruction), and dropped (its parameters on the meta
  device) afterwards. Memory holds the parts outside the blocks (embeddings, head) and one block. Loading still
  reads the model into CPU memory once, block files are written from there.

Work that needs every block at once (retraining, saving) asks for :meth:`BlockPlacement.all_resident`.
accelerate's offload hooks are not used: they re-read weights from their own map on every forward and never
write changes back, while pruning and reconstruction change the weights in place.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..model.blocks import find_decoder_blocks
from .block_files import block_tensors, drop_block, read_block, replace_tensor, write_block

OFFLOADED = ("cpu", "disk")


class BlockPlacement:
    """Keep ``model``'s blocks where ``mode`` says; ``device`` is where they work. :meth:`close` (or leaving the
    ``with`` block) removes the hooks and scratch files, with every block back on the device."""

    def __init__(self, model: nn.Module, mode: str, device: torch.device, scratch: str | Path | None = None):
        self.model = model
        self.device = torch.device(device)
        self.mode = "none" if mode == "cpu" and self.device.type == "cpu" else mode
        self.path, self.blocks = find_decoder_blocks(model)
        self._depth = [0] * len(self.blocks)
        self._forwards = [0] * len(self.blocks)  # forwards of each block entered by this placement's hook, not yet left
        self._dirty = [False] * len(self.blocks)
        self._folder = Path(tempfile.mkdtemp(prefix="perp-blocks-", dir=scratch)) if self.mode == "disk" else None
        self._hooks = []
        _outside_blocks_to(model, self.path, self.device)
        if self.mode == "none":
            self.blocks.to(self.device)
            return
        if self.mode == "disk" and self.device.type == "cpu":
            _own_outside_memory(model, self.path)
        for i, block in enumerate(self.blocks):
            self._park(i)
            self._hooks.append(block.register_forward_pre_hook(lambda _m, _a, i=i: self._enter_forward(i)))
            self._hooks.append(block.register_forward_hook(lambda _m, _a, _o, i=i: self._leave_forward(i),
                                                           always_call=True))

    def __enter__(self) -> "BlockPlacement":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def resident(self, index: int, writes: bool = False) -> Iterator[nn.Module]:
        """Block ``index`` on the device for the duration; ``writes``: its weights change and are kept."""
        self._enter(index)
        self._dirty[index] |= writes
        try:
            yield self.blocks[index]
        finally:
            self._leave(index)

    def each_block(self, writes: bool = False) -> Iterator[tuple[int, nn.Module]]:
        """``(index, block)`` of every block in turn, each on the device while the loop body runs."""
        for i in range(len(self.blocks)):
            with self.resident(i, writes) as block:
                yield i, block

    @contextmanager
    def all_resident(self, writes: bool = False) -> Iterator[None]:
        """Every block on the device for the duration (retraining, saving)."""
        for i in range(len(self.blocks)):
            self._enter(i)
            self._dirty[i] |= writes
        try:
            yield
        finally:
            for i in range(len(self.blocks)):
                self._leave(i)

    def close(self, restore: bool = True) -> None:
        """Remove the hooks and the scratch files. ``restore``: every block back on the device for good first;
        without it, blocks waiting on disk are lost (a finished run's model is not used again)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        if self.mode != "none" and restore:
            for i in range(len(self.blocks)):
                if self._depth[i] == 0:
                    self._fetch(i)
        self.mode = "none"
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    # -- moving one block ---------------------------------------------------------------------------------------

    def _enter(self, index: int) -> None:
        if self._depth[index] == 0 and self.mode != "none":
            self._fetch(index)
        self._depth[index] += 1

    def _leave(self, index: int) -> None:
        self._depth[index] -= 1
        if self._depth[index] == 0 and self.mode != "none":
            self._park(index)

    def _enter_forward(self, index: int) -> None:
        self._enter(index)
        self._forwards[index] += 1

    def _leave_forward(self, index: int) -> None:
        """After the block's forward, also one that raised (``always_call``): pruning's statistics pass stops a
        block early by raising from inside it, and a block whose forward did not come back would otherwise stay on
        the device for the rest of the run. A hook placed before this placement's (calibration's stop at block 0)
        may raise before the block was entered: then there is nothing to leave."""
        if self._forwards[index]:
            self._forwards[index] -= 1
            self._leave(index)

    def _fetch(self, index: int) -> None:
        if self.mode == "disk":
            read_block(self.blocks[index], self._file(index), self.device)
        else:
            self.blocks[index].to(self.device)

    def _park(self, index: int) -> None:
        block = self.blocks[index]
        if self.mode == "cpu":
            block.to("cpu")
            return
        if self._dirty[index] or not self._file(index).exists():
            write_block(block, self._file(index))
            self._dirty[index] = False
        drop_block(block)

    def _file(self, index: int) -> Path:
        return self._folder / f"block-{index}.safetensors"


def _outside_blocks_to(model: nn.Module, path: str, device: torch.device) -> None:
    """Move everything but the decoder blocks (embeddings, final norm, head, rotary tables) to ``device``."""
    blocks = model.get_submodule(path)
    model.set_submodule(path, nn.ModuleList())
    try:
        model.to(device)
    finally:
        model.set_submodule(path, blocks)


def _own_outside_memory(model: nn.Module, path: str) -> None:
    """Copy the tensors outside the blocks out of the checkpoint's memory map. A model transformers loaded from
    safetensors (a Hub id: :func:`perp_engine.model.load.load_model` reads local folders into the process's own
    memory) holds its weights as pages of one mapping of the file, alive while any of its tensors is: with the
    embeddings still pointing into it, parking every block on disk would free nothing."""
    blocks = model.get_submodule(path)
    inside = {id(t) for t in block_tensors(blocks).values()}
    for tensor in {id(t): t for t in block_tensors(model).values() if id(t) not in inside}.values():
        replace_tensor(tensor, tensor.detach().clone())


def each_block(blocks: nn.ModuleList, placement: BlockPlacement | None = None,
               writes: bool = False) -> Iterator[tuple[int, nn.Module]]:
    """``(index, block)`` of every block of ``blocks`` in turn, each ready to use while the loop body runs: through
    ``placement`` when the run has one (:meth:`BlockPlacement.each_block`: on the device, ``writes``: its changed
    weights kept; it goes back when the next one is asked for), else the blocks themselves."""
    if placement is None:
        yield from enumerate(blocks)
    else:
        yield from placement.each_block(writes)
