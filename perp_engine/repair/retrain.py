"""Retraining with the causal-LM loss: AdamW over whatever requires grad, linear schedule with warm-up,
gradient accumulation, gradient-norm clipping (as the paper's HF Trainer runs), optional activation
checkpointing, lean norm and MLP forwards (perp_engine.repair.lean_activations), masks re-applied after every step.
The model trains in train mode (dropout on where the model has it, as in the paper's training); block-wise
reconstruction does the same.

A plain loop rather than ``transformers.Trainer``: the mask must be re-applied right after each optimizer step,
the loss and gradient checked before each step, and progress reported per step, without the Trainer's output
directory, logging integrations and data-collator machinery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from transformers import get_linear_schedule_with_warmup

from ..errors import PerpError
from ..model.lm_loss import CausalLMLoss
from .lean_activations import use_lean_activations
from .mask_keeper import MaskKeeper
from .master import MasterCopies

# A rollback copy of the trainable weights is kept (refreshed before every step) only when they are at most this
# share of the model: PERP's subsets and adapters (0.5-3.4% of the embedded model) yes, full retraining no (a
# copy of every weight would cost as much memory as the model; such a run that goes non-finite ends diverged).
SNAPSHOT_MAX_SHARE = 0.10


@dataclass
class TrainOutcome:
    losses: list[float]  # mean loss of each optimizer step
    stopped: str | None  # why training ended early, None when all steps ran
    seconds: float


def retrain(model: nn.Module, samples: torch.Tensor, *, steps: int, lr: float, batch_size: int = 4, grad_accum: int = 1,
            warmup_ratio: float = 0.1, weight_decay: float = 0.0, max_grad_norm: float = 1.0,
            grad_checkpointing: bool = False, master_weights: bool = True, seed: int = 0,
            keeper: MaskKeeper | None = None, progress: Callable[[int, int, float], None] | None = None) -> TrainOutcome:
    """Train the parameters that require grad on ``samples`` (N, seqlen) token windows, labels = inputs.

    Each of ``steps`` optimizer steps averages ``grad_accum`` micro-batches of ``batch_size`` windows, drawn
    from a seeded permutation of the samples that is renewed each time it runs out. The gradient's global norm
    is clipped at ``max_grad_norm`` before each step (0: no clipping). Before each optimizer step
    the loss and the gradient norm are checked: a NaN/inf one at step k stops training before that step changes
    anything. A non-finite loss means the last update already broke the weights: when the trainables are small
    (``SNAPSHOT_MAX_SHARE``) the weights step k-1 was evaluated with are restored from a copy refreshed before
    every step; otherwise they stay as they are and the caller's end check (the final perplexity) judges them.
    ``master_weights``: half-precision trained tensors get float32 master copies (perp_engine.repair.master).
    """
    _check(samples, steps, lr, batch_size, grad_accum, warmup_ratio, weight_decay, max_grad_norm)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise PerpError("train", "no parameter requires grad; select subsets or attach an adapter before retraining")
    device = params[0].device
    masters = MasterCopies(params, master_weights)
    optimizer = torch.optim.AdamW(masters.params, lr=lr, weight_decay=weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * steps), steps)
    trainable = sum(p.numel() for p in params)
    snapshot = trainable <= SNAPSHOT_MAX_SHARE * sum(p.numel() for p in model.parameters())
    good = [p.detach().clone() for p in params] if snapshot else None
    losses: list[float] = []
    stopped = None
    start = time.perf_counter()
    was_training = model.training
    restore_checkpointing = _enable_checkpointing(model) if grad_checkpointing else None
    restore_forwards = use_lean_activations(model)
    model.train()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # dropout (OPT, GPT-2) is reproducible too
            batches = _batches(samples, batch_size, seed)
            loss_of = CausalLMLoss(model)
            for step in range(1, steps + 1):
                loss = _accumulate(loss_of, batches, grad_accum, device)
                if not math.isfinite(loss):
                    if good is not None:
                        _copy(good, params)
                    stopped = f"loss became {loss} at step {step}; " + (
                        f"kept the weights of step {step - 1}" if good is not None else
                        f"stopped with the weights that produced it ({trainable:,} trainable parameters are too many "
                        "to keep a rollback copy)")
                    break
                masters.take_grads()
                norm = get_total_norm([p.grad for p in masters.params if p.grad is not None])
                if not math.isfinite(float(norm)):
                    stopped = f"the gradient norm became {float(norm)} at step {step}; stopped before applying it"
                    break
                if good is not None:
                    _copy(params, good)
                if max_grad_norm > 0:
                    clip_grads_with_norm_(masters.params, max_grad_norm, norm)
                optimizer.step()
                masters.write_back()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if keeper is not None:
                    keeper.apply()
                losses.append(loss)
                if progress is not None:
                    progress(step, steps, loss)
    finally:
        optimizer.zero_grad(set_to_none=True)
        restore_forwards()
        if restore_checkpointing is not None:
            restore_checkpointing()
        model.train(was_training)
    return TrainOutcome(losses=losses, stopped=stopped, seconds=time.perf_counter() - start)


def _accumulate(loss_of: CausalLMLoss, batches: Iterator[torch.Tensor], grad_accum: int, device: torch.device) -> float:
    """Forward and backward ``grad_accum`` micro-batches; the mean loss (non-finite: stop before backward)."""
    total = 0.0
    for _ in range(grad_accum):
        batch = next(batches).to(device)
        loss = loss_of(batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        (loss / grad_accum).backward()
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


@torch.no_grad()
def _copy(sources: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
    for source, target in zip(sources, targets):
        target.copy_(source)


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


def _check(samples: torch.Tensor, steps: int, lr: float, batch_size: int, grad_accum: int, warmup_ratio: float,
           weight_decay: float, max_grad_norm: float) -> None:
    if not isinstance(samples, torch.Tensor) or samples.dim() != 2 or samples.dtype != torch.long or len(samples) == 0:
        raise PerpError("train_samples", "need a non-empty LongTensor of token windows shaped (N, seqlen)")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("grad_accum", grad_accum)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PerpError(name, f"{value!r} is not allowed; use an integer >= 1")
    if not 0 < lr < 1:
        raise PerpError("lr", f"{lr!r} is not allowed; use a learning rate in (0, 1), e.g. 2e-3")
    if not 0 <= warmup_ratio < 1:
        raise PerpError("warmup_ratio", f"{warmup_ratio!r} is not allowed; use a fraction in [0, 1)")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise PerpError("weight_decay", f"{weight_decay!r} is not allowed; use a finite number >= 0")
    if not 0 <= max_grad_norm < math.inf:
        raise PerpError("max_grad_norm", f"{max_grad_norm!r} is not allowed; use a number >= 0 (0 = no clipping)")
