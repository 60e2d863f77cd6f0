"""The one training loop of every repair: retraining, block-wise reconstruction and the Inside-a-layer adapter demo.

Each caller supplies what differs: the trainable tensors and a ``step_loss`` function that runs the forward and
backward passes of one optimizer step and returns its loss. The loop owns the rest: AdamW, the learning-rate
schedule (linear with warm-up, or constant), float32 master copies of half-precision tensors
(:mod:`perp_engine.repair.master`), gradient-norm clipping, the pruning masks re-applied after each step, the guard
against non-finite losses and gradients with a real rollback, the loss record, progress, and the learning curve: a
held-out measurement (:class:`Probe`) taken before the first step, every ``every`` steps and after the last, timed
apart from the training it interrupts.

A plain loop rather than ``transformers.Trainer``: the mask must be re-applied right after each optimizer step,
the loss and gradient checked before each step, and progress reported per step, without the Trainer's output
directory, logging integrations and data-collator machinery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from transformers import get_constant_schedule, get_linear_schedule_with_warmup

from ..errors import PerpError
from .lean_activations import use_lean_activations
from .mask_keeper import MaskKeeper
from .master import MasterCopies

SCHEDULES = ("linear", "constant")


@dataclass(frozen=True)
class Optimisation:
    """How the loop updates the trainables: ``steps`` AdamW steps at ``lr`` (``schedule`` ``linear``: warm-up over
    ``warmup_ratio`` of the steps, then linear decay to 0, as the paper's HF Trainer runs; ``constant``: ``lr``
    throughout), the gradient's global norm clipped at ``max_grad_norm`` (0: no clipping), float32 master copies of
    half-precision trained tensors when ``master_weights``."""

    steps: int
    lr: float
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    master_weights: bool = True
    schedule: str = "linear"

    def __post_init__(self):
        check_whole("steps", self.steps)
        if not 0 < self.lr < 1:
            raise PerpError("lr", f"{self.lr!r} is not allowed; use a learning rate in (0, 1), e.g. 2e-3")
        if not 0 <= self.warmup_ratio < 1:
            raise PerpError("warmup_ratio", f"{self.warmup_ratio!r} is not allowed; use a fraction in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise PerpError("weight_decay", f"{self.weight_decay!r} is not allowed; use a finite number >= 0")
        if not 0 <= self.max_grad_norm < math.inf:
            raise PerpError("max_grad_norm",
                            f"{self.max_grad_norm!r} is not allowed; use a number >= 0 (0 = no clipping)")
        if self.schedule not in SCHEDULES:
            raise PerpError("schedule", f"{self.schedule!r} is not allowed; use {' or '.join(SCHEDULES)}")

    def scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        if self.schedule == "constant":
            return get_constant_schedule(optimizer)
        return get_linear_schedule_with_warmup(optimizer, round(self.warmup_ratio * self.steps), self.steps)


@dataclass(frozen=True)
class Probe:
    """A held-out measurement during training (the caller's ``measure()``: a perplexity, a block's error, on
    windows the training never sees), taken at step 0, after every ``every``-th step and after the last step."""

    every: int
    measure: Callable[[], float]

    def __post_init__(self):
        check_whole("eval_every", self.every)

    def due(self, step: int, steps: int) -> bool:
        return step == 0 or step % self.every == 0 or step == steps


@dataclass(frozen=True)
class CurvePoint:
    """One point of a learning curve: after ``step`` optimizer steps and ``seconds`` of training (the
    measurements before it not counted), the probe measured ``value``."""

    step: int
    seconds: float
    value: float


@dataclass
class TrainOutcome:
    losses: list[float]  # the loss of each step that was applied, in order
    stopped: str | None  # why training ended early, None when all steps ran
    seconds: float  # training only: the probe's measurements are in probe_seconds
    curve: list[CurvePoint] = field(default_factory=list)
    probe_seconds: float = 0.0  # what the learning curve cost


def check_whole(field: str, value) -> None:
    """PerpError naming ``field`` unless ``value`` is an integer >= 1 (a count of steps, windows, batches)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PerpError(field, f"{value!r} is not allowed; use an integer >= 1")


def train(params: list[nn.Parameter], step_loss: Callable[[], float], how: Optimisation, *, rollback: bool,
          keeper: MaskKeeper | None = None, progress: Callable[[int, int, float], None] | None = None,
          probe: Probe | None = None) -> TrainOutcome:
    """Run ``how.steps`` optimizer steps on ``params``; ``step_loss()`` runs one step's forward and backward passes
    and returns its loss (when the loss is not finite it returns it without a backward pass).

    Before each optimizer step the loss and the gradient's norm are checked. A non-finite gradient norm at step k
    stops training before the step changes anything. A non-finite loss at step k means the last update broke the
    weights: with ``rollback`` the weights step k-1 was evaluated with come back from a copy refreshed before every
    step; without it (a copy would cost as much memory as the trainables: full retraining) they stay as they are
    and the caller's end check judges them. ``keeper`` re-zeroes the pruned weights after each step (needed when
    whole weights train). ``progress(step, steps, loss)`` after each applied step. ``probe``: the learning curve,
    with the weights as the step left them (masks re-applied); after a stop, the curve ends where training did.
    """
    if not params:
        raise PerpError("train", "no parameter requires grad; select subsets or attach an adapter before retraining")
    masters = MasterCopies(params, how.master_weights)
    optimizer = torch.optim.AdamW(masters.params, lr=how.lr, weight_decay=how.weight_decay)
    scheduler = how.scheduler(optimizer)
    good = [p.detach().clone() for p in params] if rollback else None
    losses: list[float] = []
    stopped = None
    curve = _Curve(probe, how.steps)
    start = time.perf_counter()
    try:
        curve.take(0)
        for step in range(1, how.steps + 1):
            loss = step_loss()
            if not math.isfinite(loss):
                if good is not None:
                    _copy(good, params)
                stopped = f"loss became {loss} at step {step}; " + (
                    f"kept the weights of step {step - 1}" if good is not None else
                    f"stopped with the weights that produced it ({sum(p.numel() for p in params):,} trainable "
                    "parameters are too many to keep a rollback copy)")
                break
            masters.take_grads()
            norm = get_total_norm([p.grad for p in masters.params if p.grad is not None])
            if not math.isfinite(float(norm)):
                stopped = f"the gradient norm became {float(norm)} at step {step}; stopped before applying it"
                break
            if good is not None:
                _copy(params, good)
            if how.max_grad_norm > 0:
                clip_grads_with_norm_(masters.params, how.max_grad_norm, norm)
            optimizer.step()
            masters.write_back()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if keeper is not None:
                keeper.apply()
            losses.append(loss)
            if progress is not None:
                progress(step, how.steps, loss)
            curve.take(step)
    finally:
        optimizer.zero_grad(set_to_none=True)
        for param in params:
            param.grad = None
    return TrainOutcome(losses=losses, stopped=stopped, seconds=time.perf_counter() - start - curve.seconds,
                        curve=curve.points, probe_seconds=curve.seconds)


class _Curve:
    """The probe's points as training goes, each with the training seconds so far (its own time kept apart)."""

    def __init__(self, probe: Probe | None, steps: int):
        self.probe, self.steps = probe, steps
        self.points: list[CurvePoint] = []
        self.seconds = 0.0
        self.start = time.perf_counter()

    def take(self, step: int) -> None:
        if self.probe is None or not self.probe.due(step, self.steps):
            return
        began = time.perf_counter()
        value = float(self.probe.measure())
        self.points.append(CurvePoint(step=step, seconds=round(began - self.start - self.seconds, 4), value=value))
        self.seconds += time.perf_counter() - began


def backward_if_finite(loss: torch.Tensor, divisor: int = 1) -> float:
    """The value of ``loss``; when it is finite, ``loss / divisor`` is backpropagated (a micro-batch's share of
    an accumulated step). A non-finite loss gets no backward pass: the loop stops on it."""
    value = float(loss.detach())
    if math.isfinite(value):
        (loss / divisor).backward()
    return value


@contextmanager
def training_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in train mode (dropout on where the model has it, as in the paper's training) with the lean norm
    and MLP forwards (:mod:`perp_engine.repair.lean_activations`) for the duration; its previous mode after."""
    was_training = module.training
    restore_forwards = use_lean_activations(module)
    module.train()
    try:
        yield
    finally:
        restore_forwards()
        module.train(was_training)


@torch.no_grad()
def _copy(sources: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
    for source, target in zip(sources, targets):
        target.copy_(source)
