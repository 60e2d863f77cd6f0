"""The frozen results of official pruning code (tests/pruning/references/*.safetensors, written by
scripts/reference_owl.py, reference_ria.py, reference_dsnot.py and reference_sparsegpt.py): the tiny model each file
holds, and its official masks, for the tests that compare PERP Lab's pruning with them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM

from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight

REFERENCES = Path(__file__).parent / "pruning" / "references"


def load_reference(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict[str, str]]:
    """The dense model of ``references/<name>.safetensors`` (float32, eval mode, LM head tied to the embedding), all
    the file's tensors and its metadata.

    The model is built from the metadata's "config" (its "model_type", or else the metadata's "family") and loads the
    weights stored as ``weight.<key>`` (OWL, DSnoT) or ``weight/<key>`` (RIA); every key but the tied LM head.
    """
    with safe_open(REFERENCES / f"{name}.safetensors", "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    model_type = config.pop("model_type", meta["family"])
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config))
    weights = {k[len("weight."):]: v.float() for k, v in tensors.items() if k.startswith(("weight.", "weight/"))}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # tied to the embedding
    model.tie_weights()
    return model.eval(), tensors, meta


def unpack(packed: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """Boolean tensors of ``shapes`` from the bits numpy.packbits packed: each row-major, one after another."""
    bits = np.unpackbits(packed.numpy()).astype(bool)
    masks, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        masks.append(torch.from_numpy(bits[start : start + size]).reshape(shape))
        start += size
    assert start <= bits.size < start + 8  # only the last byte's padding is left over
    return masks


def block_linears(model) -> dict[str, torch.nn.Module]:
    """Every linear of every decoder block, by "<block index>.<name in the block>"."""
    _, blocks = find_decoder_blocks(model)
    return {f"{i}.{name}": linear for i, block in enumerate(blocks) for name, linear in find_linears(block).items()}


def assert_pruned_as_official(model, ref: dict[str, torch.Tensor], case: str) -> None:
    """Every block linear of ``model`` is zero exactly where the official mask ``<case>.pruned.<module name>`` of
    ``ref`` (packed bits, row-major, True = pruned) says."""
    path, _ = find_decoder_blocks(model)
    for name, module in block_linears(model).items():
        w = get_weight(module)
        (pruned,) = unpack(ref[f"{case}.pruned.{path}.{name}"], [w.shape])
        assert torch.equal(w == 0, pruned), f"{path}.{name}"
