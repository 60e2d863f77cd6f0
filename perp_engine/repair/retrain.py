"""Retraining with the causal-LM loss, through the one training loop (:mod:`perp_engine.repair.training_loop`):
gradient accumulation over micro-batches of seeded windows, optional activation checkpointing, the lean norm and
MLP forwards, the model in train mode (dropout on where the model has it, as in the paper's training).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..errors import PerpError
from ..model.lm_loss import CausalLMLoss
from ..model.parameters import count_parameters
from .mask_keeper import MaskKeeper
from .training_loop import Optimisation, Probe, TrainOutcome, backward_if_finite, check_whole, train, training_mode

# A rollback copy of the trainable weights is kept (refreshed before every step) only when they are at most this
# share of the model: PERP's subsets and adapters (0.5-3.4% of the embedded model) yes, full retraining no (a
# copy of every weight would cost as much memory as the model; such a run that goes non-finite ends diverged).
SNAPSHOT_MAX_SHARE = 0.10


def retrain(model: nn.Module, samples: torch.Tensor, *, steps: int, lr: float, batch_size: int = 4, grad_accum: int = 1,
            warmup_ratio: float = 0.1, weight_decay: float = 0.0, max_grad_norm: float = 1.0,
            grad_checkpointing: bool = False, master_weights: bool = True, seed: int = 0,
            keeper: MaskKeeper | None = None, progress: Callable[[int, int, float], None] | None = None,
            probe: Probe | None = None) -> TrainOutcome:
    """Train the parameters that require grad on ``samples`` (N, seqlen) token windows, labels = inputs.

    Each of ``steps`` optimizer steps averages ``grad_accum`` micro-batches of ``batch_size`` windows, drawn
    from a seeded permutation of the samples that is renewed each time it runs out. The loop's guard rolls the
    weights back after a non-finite loss when the trainables are small (``SNAPSHOT_MAX_SHARE`` of the model).
    ``probe``: the learning curve (it draws no random numbers, so the trained weights do not depend on it).
    """
    if not isinstance(samples, torch.Tensor) or samples.dim() != 2 or samples.dtype != torch.long or len(samples) == 0:
        raise PerpError("train_samples", "need a non-empty LongTensor of token windows shaped (N, seqlen)")
    check_whole("batch_size", batch_size)
    check_whole("grad_accum", grad_accum)
    how = Optimisation(steps=steps, lr=lr, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                       max_grad_norm=max_grad_norm, master_weights=master_weights)
    params = [p for p in model.parameters() if p.requires_grad]
    rollback = sum(p.numel() for p in params) <= SNAPSHOT_MAX_SHARE * count_parameters(model)
    device = next(model.parameters()).device
    restore_checkpointing = _enable_checkpointing(model) if grad_checkpointing else None
    try:
        with training_mode(model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # dropout (OPT, GPT-2) is reproducible too
            batches = _batches(samples, batch_size, seed)
            loss_of = CausalLMLoss(model)
            return train(params, lambda: _accumulate(loss_of, batches, grad_accum, device), how, rollback=rollback,
                         keeper=keeper, progress=progress, probe=probe)
    finally:
        if restore_checkpointing is not None:
            restore_checkpointing()


def _accumulate(loss_of: CausalLMLoss, batches: Iterator[torch.Tensor], grad_accum: int, device: torch.device) -> float:
    """Forward and backward ``grad_accum`` micro-batches; the mean loss (non-finite: stop before backward)."""
    total = 0.0
    for _ in range(grad_accum):
        value = backward_if_finite(loss_of(next(batches).to(device)), grad_accum)
        if not math.isfinite(value):
            return value
        total += value
    return total / grad_accum


def _batches(samples: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless micro-batches over seeded permutations of the samples (a batch may span two permutations)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    while True:
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(samples), generator=generator)])
        yield samples[order[:batch_size]]
        order = order[batch_size:]


def _enable_checkpointing(model: nn.Module) -> Callable[[], None]:
    """Turn activation checkpointing on; returns the function that restores the previous state.

    ``activation_checkpointing_enable`` is the transformers 5 name of ``gradient_checkpointing_enable``; it uses
    non-reentrant checkpointing and makes the input embeddings' output require grad, so checkpointed blocks
    still backpropagate when the embeddings are frozen.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise PerpError("grad_checkpointing", f"{type(model).__name__} does not support gradient checkpointing; turn it off")
    if model.is_activation_checkpointing:
        return lambda: None
    had_input_hooks = bool(getattr(model, "_require_grads_hooks", None))
    model.activation_checkpointing_enable()

    def restore() -> None:
        model.activation_checkpointing_disable()
        if not had_input_hooks:
            model.disable_input_require_grads()

    return restore
