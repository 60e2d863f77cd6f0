"""merge_adapters: fold adapters into plain layers, verifying that no layer's sparsity changes."""

from __future__ import annotations

import torch
from torch import nn

from ...model.parameters import count_parameters
from ...model.sparsity import mask_change, pruned_positions
from .. import tying
from .base import AdapterLinear, oriented_weight
from .targets import adapter_modules, adapter_parameters, base_of, block_linears

PROBE_ROWS = 8
# Rows of a peft LoRA's merged weight built at a time. peft's ``get_delta_weight`` returns the whole update B A in
# float32, and adding it to a half-precision weight makes a float32 sum before the cast: beside the merged head, one
# float32 head matrix more for a float32 model (108 MiB on the embedded model), two for a half-precision one (four
# times its merged head), at the end of every head-LoRA run (the train stage's peak when retraining is
# checkpointed). Built by rows, only the merged weight and one slice of the update exist.
MERGE_ROWS = 4096


def merge_adapters(model: nn.Module, scope: nn.Module | None = None, untie_head: bool = True) -> list[str]:
    """Replace every adapter (inside ``scope`` only, when given: one block) by its base layer carrying the merged
    weight; returns notes for the run record. An adapter on an output head tied to the token embeddings gives
    the head its merged weight as its own (``untie_head``; the embeddings keep theirs), or, with
    ``untie_head=False``, merges into the shared matrix (the embeddings change too).

    Each merged decoder-block linear must have exactly the zeros it had (RuntimeError naming the layer
    otherwise) and every layer whose merge is exact must compute what its adapter computed on a random probe.
    Plain LoRA on a pruned block linear stays unmerged (merging would make it dense); outside the blocks (the
    head LoRA) the layer is dense by design and is merged normally.
    """
    merged: dict[str, list[str]] = {}
    changes: dict[str, list[float]] = {}
    kept: list[nn.Module] = []
    in_blocks = block_linears(model)
    adapters = adapter_modules(model)
    if scope is not None:
        inside = block_linears(model, scope)
        adapters = {name: module for name, module in adapters.items() if name in inside}
    pruned = {name for name in adapters if name in in_blocks and bool(pruned_positions(base_of(in_blocks[name]).weight).any())}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None  # any nn.Module merges
    for name, module in adapters.items():
        if not isinstance(module, AdapterLinear) and name in pruned:
            kept.append(module)
            continue
        kind = getattr(module, "kind", "lora")
        change = _merge_one(model, name, module, keep_zeros=name in in_blocks, untie=untie_head and module is head)
        merged.setdefault(kind, []).append(name)
        if not _exact(module):
            changes.setdefault(kind, []).append(change)
    notes = []
    for kind, names in merged.items():
        where = ", ".join(names[:2]) + (", ..." if len(names) > 2 else "")
        if kind in changes:
            drift = changes[kind]
            notes.append(f"{kind}: merged {len(names)} layer(s) ({where}); zeros verified unchanged; masking the update "
                         f"changed layer outputs by up to {max(drift):.2%} (mean {sum(drift) / len(drift):.2%}, relative, "
                         "on a random probe): the merged model is not the trained one")
        else:
            notes.append(f"{kind}: merged {len(names)} layer(s) ({where}); zeros verified unchanged, outputs equal to the adapter outputs")
    if kept:
        extra = sum(p.numel() for m in kept for p in adapter_parameters(m))
        total = count_parameters(model)
        notes.append(f"lora: kept unmerged: merging would make {len(kept)} layers dense; extra parameters {extra:,} "
                     f"({extra / total:.2%} of the model), a dense low-rank product computed beside each sparse layer")
    return notes


def _merged_weight(module: nn.Module) -> torch.Tensor:
    """The new base weight, in the base layer's orientation and dtype: for a peft LoRA, ``weight + sum of
    get_delta_weight`` computed :data:`MERGE_ROWS` rows at a time."""
    if isinstance(module, AdapterLinear):
        return module.merged_weight()
    weight = module.get_base_layer().weight
    merged = torch.empty_like(weight)
    with torch.no_grad():
        for start in range(0, weight.shape[0], MERGE_ROWS):
            rows = slice(start, start + MERGE_ROWS)
            merged[rows] = weight[rows] + sum(_lora_delta_rows(module, adapter, rows) for adapter in module.active_adapters)
    return merged


def _lora_delta_rows(module: nn.Module, adapter: str, rows: slice) -> torch.Tensor:
    """``module.get_delta_weight(adapter)[rows]`` (peft's ``scaling * B A``, transposed for ``fan_in_fan_out``,
    computed in float32 for half-precision factors on a CPU), without the rest of the matrix."""
    lora_a, lora_b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
    dtype = lora_b.dtype
    if lora_b.device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        lora_a, lora_b = lora_a.float(), lora_b.float()
    part = (lora_b @ lora_a[:, rows]).t() if module.fan_in_fan_out else lora_b[rows] @ lora_a
    return (part * module.scaling[adapter]).to(dtype)


def _merge_one(model: nn.Module, name: str, module: nn.Module, keep_zeros: bool, untie: bool) -> float:
    """Merge one adapter in place; returns the relative output change on a probe (0 up to rounding when exact).

    The merged weight is checked (zeros, probe) before it is written, so a refused merge leaves the layer as it
    was without a copy of it. ``untie``: the layer is an output head tied to the embeddings; the merged weight
    becomes its own (the embeddings keep theirs)."""
    base = base_of(module)
    new_weight = _merged_weight(module)
    problem = mask_change(name, pruned_positions(base.weight), new_weight) if keep_zeros else None
    if problem:
        raise RuntimeError(f"merge refused, adapter left in place: {problem}")
    probe = torch.randn(PROBE_ROWS, oriented_weight(base).shape[1], generator=torch.Generator().manual_seed(0))
    probe = probe.to(device=base.weight.device, dtype=base.weight.dtype)
    with torch.no_grad():
        expected = module(probe)
        got = torch.func.functional_call(base, {"weight": new_weight}, (probe,))
    change = float((got - expected).float().norm() / expected.float().norm().clamp_min(1e-30))
    if _exact(module) and change > _tolerance(base.weight.dtype):
        raise RuntimeError(f"merge refused, adapter left in place: {name}: merged layer output differs from the adapter's by {change:.2e} (relative)")
    if not (untie and tying.untie_head(model, new_weight)):
        with torch.no_grad():
            base.weight.copy_(new_weight)
    model.set_submodule(name, base)
    return change


def _exact(module: nn.Module) -> bool:
    """Whether the merged layer must compute what the adapter computed (all but LoRAPrune; peft LoRA too)."""
    return getattr(module, "exact_merge", True)


def _tolerance(dtype: torch.dtype) -> float:
    """Relative output tolerance: 1e-5 in float32, a few rounding steps in half precision."""
    return max(1e-5, 4 * torch.finfo(dtype).eps)
