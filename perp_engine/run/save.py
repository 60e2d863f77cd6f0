"""Save a pruned (and repaired) model in Hugging Face format, with its masks and the run config.

Weights go through ``save_pretrained`` (safetensors); ``masks.safetensors`` holds one bool tensor per pruned
linear (True = kept) under the linear's full name, so the sparsity pattern survives any later dense storage
and can be handed to sparse kernels (2:4 on GPUs is what turns sparsity into speed). A plain LoRA kept unmerged
on the pruned layers (merging it would make them dense) is saved apart, in peft's format under ``adapter/``:
the folder itself loads as the sparse pruned model, and ``PeftModel.from_pretrained(model, folder / "adapter")``
adds the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file
from torch import nn

from ..config import RunConfig
from ..model.blocks import find_decoder_blocks, find_linears, get_weight
from ..model.sparsity import kept_positions
from ..paths import ADAPTER_DIR, MASKS_FILE
from ..repair.adapters import adapter_modules, block_linears
from ..repair.adapters.base import AdapterLinear
from ..repair.adapters.lora import save_lora


def pruned_masks(model) -> dict[str, torch.Tensor]:
    """Bool masks (True = kept, in (out, in) orientation) of every linear of the decoder blocks."""
    path, blocks = find_decoder_blocks(model)
    return {
        f"{path}.{i}.{name}": kept_positions(get_weight(module)).cpu().contiguous()
        for i, block in enumerate(blocks)
        for name, module in find_linears(block).items()
    }


def save_model(model, tokenizer, output_dir: str, config: RunConfig, log: Callable[[str], None] | None = None) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = kept_lora(model)
    with _base_layers_only(model, kept):
        model.save_pretrained(out, safe_serialization=True)
    if kept:
        save_lora(kept, out / ADAPTER_DIR)
    tokenizer.save_pretrained(out)
    save_file(pruned_masks(model), str(out / MASKS_FILE))
    (out / "perp_config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    if log:
        log(f"model saved to {out}" + (f" (the unmerged LoRA in {out / ADAPTER_DIR}, peft format)" if kept else ""))
    return out


def kept_lora(model: nn.Module) -> dict[str, nn.Module]:
    """The plain (peft) LoRA layers left unmerged on the decoder-block linears, by full name."""
    blocks = block_linears(model)
    return {name: m for name, m in adapter_modules(model).items() if name in blocks and not isinstance(m, AdapterLinear)}


@contextmanager
def _base_layers_only(model: nn.Module, adapters: dict[str, nn.Module]) -> Iterator[None]:
    """Put each adapter's base layer in its place for the duration (saving the pruned model alone)."""
    for name, adapter in adapters.items():
        model.set_submodule(name, adapter.base_layer)
    try:
        yield
    finally:
        for name, adapter in adapters.items():
            model.set_submodule(name, adapter)
