"""One decoder block's tensors in a safetensors file: written out, read back onto a device, or dropped.

What offloading to disk (perp_engine.offload.placement) and a dense reference on disk (perp_engine.offload.dense_reference) are
made of. A dropped block keeps its parameters (same objects, shapes and dtypes, so counting and optimizers'
references stay valid) on the meta device, holding no memory; reading them before the block is read back fails
loudly instead of returning stale numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def block_tensors(block: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the block (non-persistent buffers too), by name."""
    return {**dict(block.named_parameters()), **dict(block.named_buffers())}


def write_block(block: nn.Module, path: Path) -> None:
    """Save the block's tensors to ``path`` (written beside it, then renamed into place)."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in block_tensors(block).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial))
    partial.replace(path)


def read_block(block: nn.Module, path: Path, device: torch.device | str) -> None:
    """Put the tensors saved at ``path`` into the block, on ``device`` (the parameter objects are kept)."""
    loaded = load_file(str(path), device=str(torch.device(device)))
    for name, target in block_tensors(block).items():
        replace_tensor(target, loaded[name])


def drop_block(block: nn.Module) -> None:
    """Release the block's memory: every tensor becomes a meta tensor of the same shape and dtype."""
    for target in block_tensors(block).values():
        replace_tensor(target, torch.empty_like(target, device="meta"))


def replace_tensor(target: torch.Tensor, data: torch.Tensor) -> None:
    """Give the tensor object ``target`` the contents, device and dtype of ``data``. ``swap_tensors`` keeps the
    Python object (references to a parameter stay valid) where ``.data =`` refuses a change to or from meta."""
    new = nn.Parameter(data, requires_grad=target.requires_grad) if isinstance(target, nn.Parameter) else data
    torch.utils.swap_tensors(target, new)
