"""Why a plain LoRA merge fills the pruned zeros back in while MaskLoRA keeps them, on one pruned linear.

The pruned weight goes into a one-layer model; the project's adapters are attached to it (plain LoRA through
peft, MaskLoRA as every run attaches it), trained for a few AdamW steps (the repair's training loop) towards the dense layer's outputs on the
calibration inputs, then merged: MaskLoRA by :func:`perp_engine.repair.adapters.merge_adapters` (which verifies the
zeros), LoRA by peft's own ``merge`` (what ``merge_and_unload`` does; a run keeps such a LoRA unmerged instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PerpError
from ..evaluation.relative_error import relative_error
from ..model.sparsity import kept_positions, pruned_positions
from ..pruning import reconstruction_error
from ..repair.adapters import adapter_parameters, attach_adapters, merge_adapters
from ..repair.training_loop import Optimisation, backward_if_finite, check_whole, train
from .capture import LayerCapture

DEMO_KINDS = ("lora", "masklora")
DEMO_RANK, DEMO_ALPHA = 8, 16.0  # the demo's adapters: small, as befits one layer (a run's default is r 16)
_NAME = "blocks.0.linear"  # where the layer sits in the one-layer model


@dataclass(frozen=True)
class AdapterOutcome:
    """One adapter trained on one pruned layer and merged. ``merged`` is the (out, in) merged weight on the CPU;
    ``losses`` the relative output error on the calibration inputs before each step; ``revived`` how many of the
    ``pruned`` zero weights are non-zero after the merge; local errors on held-out inputs, before (the pruned
    weight) and after (the merged weight)."""

    kind: str
    merged: torch.Tensor
    losses: tuple[float, ...]
    pruned: int
    revived: int
    local_error_before: float
    local_error_after: float


def adapter_zeros(layer: LayerCapture, pruned_weight: torch.Tensor, kinds: tuple[str, ...] = DEMO_KINDS,
                  rank: int = DEMO_RANK, alpha: float = DEMO_ALPHA, steps: int = 30, lr: float = 3e-3, seed: int = 0) -> dict[str, AdapterOutcome]:
    """Train and merge each adapter kind on ``pruned_weight`` (the (out, in) weight of ``layer`` after pruning)."""
    if pruned_weight.shape != layer.weight.shape:
        raise PerpError("pruned_weight", f"shape {tuple(pruned_weight.shape)} differs from the layer's "
                                         f"{tuple(layer.weight.shape)}")
    for kind in kinds:
        if kind not in DEMO_KINDS:
            raise PerpError("adapter", f"{kind!r} is not allowed here; use {' or '.join(DEMO_KINDS)}")
    check_whole("steps", steps)
    start = pruned_weight.detach().to(device=layer.weight.device, dtype=torch.float32)
    zeros = pruned_positions(start)
    target = layer.calib_inputs @ layer.weight.T
    before = reconstruction_error(layer.weight, start, layer.heldout)
    outcomes = {}
    for kind in kinds:
        model = _one_layer_model(start)
        adapter = attach_adapters(model, kind, rank=rank, alpha=alpha, seed=seed)[_NAME]
        losses = _train(adapter, layer.calib_inputs, target, steps, lr)
        merged = _merge(model, kind, adapter)
        outcomes[kind] = AdapterOutcome(
            kind=kind, merged=merged.cpu(), losses=losses, pruned=int(zeros.sum()),
            revived=int((zeros & kept_positions(merged)).sum()), local_error_before=before,
            local_error_after=reconstruction_error(layer.weight, merged, layer.heldout))
    return outcomes


def _one_layer_model(weight: torch.Tensor) -> nn.Module:
    """A model whose only decoder block holds one bias-free linear with ``weight``: what the adapters attach to."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device)
    with torch.no_grad():
        linear.weight.copy_(weight)
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.ModuleDict({"linear": linear})])
    return model


def _train(adapter: nn.Module, inputs: torch.Tensor, target: torch.Tensor, steps: int, lr: float) -> tuple[float, ...]:
    """Full-batch AdamW on the adapter's factors at a constant learning rate, through the training loop; loss = the
    relative error of the layer's output against the dense layer's."""

    def step_loss() -> float:
        return backward_if_finite(relative_error(target, adapter(inputs)))

    how = Optimisation(steps=steps, lr=lr, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0, schedule="constant")
    with torch.enable_grad():
        return tuple(train(adapter_parameters(adapter), step_loss, how, rollback=True).losses)


@torch.no_grad()
def _merge(model: nn.Module, kind: str, adapter: nn.Module) -> torch.Tensor:
    if kind == "lora":
        adapter.merge()
        return adapter.get_base_layer().weight.detach().clone()
    merge_adapters(model)
    return model.get_submodule(_NAME).weight.detach().clone()
