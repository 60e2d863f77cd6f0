"""Save a pruned (and repaired) model in Hugging Face format, with its masks and the run config.

Weights go through ``save_pretrained`` (safetensors); ``masks.safetensors`` holds one bool tensor per pruned
linear (True = kept) under the linear's full name, so the sparsity pattern survives any later dense storage
and can be handed to sparse kernels (2:4 on GPUs is what turns sparsity into speed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from .blocks import find_decoder_blocks, find_linears, get_weight
from .config import RunConfig


def pruned_masks(model) -> dict[str, torch.Tensor]:
    """Bool masks (True = kept, in (out, in) orientation) of every linear of the decoder blocks."""
    path, blocks = find_decoder_blocks(model)
    return {
        f"{path}.{i}.{name}": (get_weight(module) != 0).cpu().contiguous()
        for i, block in enumerate(blocks)
        for name, module in find_linears(block).items()
    }


def save_model(model, tokenizer, output_dir: str, config: RunConfig, log: Callable[[str], None] | None = None) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    save_file(pruned_masks(model), str(out / "masks.safetensors"))
    (out / "perp_config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    if log:
        log(f"model saved to {out}")
    return out
