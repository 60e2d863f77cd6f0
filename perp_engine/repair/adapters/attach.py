"""attach_adapters: put one kind of adapter on the linear layers of the decoder blocks, in place."""

from __future__ import annotations

import torch
from torch import nn

from ...config import ADAPTERS
from ...errors import PerpError, check_choice
from ...presets import DEFAULT_ALPHA, DEFAULT_RANK
from .base import oriented_weight
from .lora import attach_lora
from .loraprune import LoRAPrune
from .masklora import MaskLoRA
from .scalelora import ScaleLoRA, ScaleLoRAPaper
from .targets import select_targets

SPARSE_ADAPTERS = {cls.kind: cls for cls in (LoRAPrune, MaskLoRA, ScaleLoRA, ScaleLoRAPaper)}
ADAPTER_KINDS = tuple(kind for kind in ADAPTERS if kind != "none")


def attach_adapters(model: nn.Module, kind: str, rank: int = DEFAULT_RANK, alpha: float = DEFAULT_ALPHA,
                    target_modules: tuple[str, ...] = (), scope: nn.Module | None = None,
                    seed: int = 0) -> dict[str, nn.Module]:
    """Replace each target linear (every block linear, or those inside ``scope``, optionally filtered by
    ``target_modules``) by an adapter of ``kind``; base weights frozen, factors trainable. Returns them by name."""
    check_choice("adapter", kind, ADAPTER_KINDS)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise PerpError("rank", f"{rank!r} is not allowed; use an integer >= 1")
    if not float(alpha) > 0:
        raise PerpError("alpha", f"{alpha!r} is not allowed; use a positive number (scaling is alpha / rank)")
    targets = check_adapter_fits(model, rank, target_modules, scope)
    if kind == "lora":
        return attach_lora(model, targets, rank, float(alpha), seed)
    generator = torch.Generator().manual_seed(seed)
    adapters = {}
    for name, layer in targets.items():
        adapters[name] = SPARSE_ADAPTERS[kind](layer, rank, float(alpha), generator)
        model.set_submodule(name, adapters[name])
    return adapters


def check_adapter_fits(model: nn.Module, rank: int, target_modules: tuple[str, ...] = (),
                       scope: nn.Module | None = None) -> dict[str, nn.Module]:
    """The target layers, after checking that they exist and that ``rank`` fits each (PerpError otherwise).

    The pipeline calls this right after loading, so a bad rank fails in seconds, not after pruning."""
    targets = select_targets(model, tuple(target_modules), scope)
    for name, layer in targets.items():
        limit = min(oriented_weight(layer).shape)
        if rank > limit:
            raise PerpError("rank", f"{rank} exceeds min(in, out) = {limit} of {name}; use a rank from 1 to {limit} or fewer target_modules")
    return targets
