"""Generic discovery of decoder blocks and their linear layers, for any decoder-only transformer.

No architecture names are hard-coded: the decoder blocks are the largest ``nn.ModuleList`` whose entries hold
linear layers (LLaMA/Mistral/Qwen2 ``model.layers``, OPT ``model.decoder.layers``, GPT-2 ``transformer.h``).
GPT-2's ``Conv1D`` stores its weight as (in, out); :func:`get_weight` / :func:`set_weight` always speak
(out, in) so pruning code sees one orientation.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..errors import PerpError
from .parameters import count_parameters

LINEAR_TYPES = (nn.Linear, Conv1D)


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, LINEAR_TYPES)


def find_decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return ``(dotted_path, module_list)`` of the decoder blocks; PerpError if the model has none."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if not all(any(is_linear(m) for m in block.modules()) for block in module):
            continue
        size = count_parameters(module)
        if best is None or size > best[0]:
            best = (size, name, module)
    if best is None:
        raise PerpError("model", f"{type(model).__name__} has no decoder blocks (no ModuleList of blocks with linear layers); a decoder-only transformer is needed")
    return best[1], best[2]


def find_linears(block: nn.Module) -> dict[str, nn.Module]:
    """Linear layers of one block, by their dotted name inside the block, in module order.

    A layer wrapped by an adapter (a module holding it as ``base_layer``, as peft's LoRA layers and PERP Lab's
    adapters do) is listed under the adapter's name, and the adapter's own factor layers are not listed: they
    are not weights of the model that were pruned."""
    found: dict[str, nn.Module] = {}
    inside: str | None = None  # name prefix of the adapter being skipped
    for name, module in block.named_modules():
        if inside is not None and name.startswith(inside):
            continue
        base = getattr(module, "base_layer", None)
        if isinstance(base, nn.Module) and is_linear(base):
            found[name] = base
            inside = name + "."
        elif is_linear(module):
            found[name] = module
    return found


def get_weight(module: nn.Module) -> torch.Tensor:
    """The weight as an (out_features, in_features) tensor (a view of the parameter's data)."""
    w = module.weight.data
    return w.t() if isinstance(module, Conv1D) else w


def set_weight(module: nn.Module, weight: torch.Tensor) -> None:
    """Copy an (out, in) weight into the module in place, keeping the parameter object."""
    target = module.weight.data
    target.copy_(weight.t() if isinstance(module, Conv1D) else weight)


def in_features(module: nn.Module) -> int:
    return get_weight(module).shape[1]


def linear_kind(name: str) -> str:
    """Short type of a linear from its name in the block: ``self_attn.q_proj`` -> ``q_proj``."""
    return name.rsplit(".", 1)[-1]
