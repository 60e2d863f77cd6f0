"""What the sparsity-preserving adapters share: a wrapper around one frozen linear layer, and an autograd
function that rebuilds the adapted weight in backward instead of keeping it alive in the graph.

Memory is the point of the custom function. Writing ``F.linear(x, W + s (B A) * M)`` with plain autograd keeps the
dense merged matrix of every adapted layer saved for backward, which measured 0.97x the memory of full
retraining. :class:`RecomputedLinear` saves only ``x``, ``W`` (the frozen parameter itself, no copy), ``A`` and
``B``, builds the merged weight transiently in forward and again in backward, and computes the factor gradients
from ``dY^T X`` directly. peft has no masked or multiplicative LoRA, which is why these adapters are written here.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def oriented_weight(base: nn.Module) -> torch.Tensor:
    """The base weight as (out, in), keeping autograd (``blocks.get_weight`` returns detached ``.data``)."""
    return base.weight.t() if isinstance(base, Conv1D) else base.weight


def kaiming_factor(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A LoRA factor ``A`` as peft initialises it (Kaiming-uniform, a = sqrt(5)), drawn from ``generator`` into a new
    float32 CPU tensor (a seeded CPU generator cannot fill CUDA tensors): one draw of ``shape`` per call."""
    factor = torch.empty(shape)
    nn.init.kaiming_uniform_(factor, a=math.sqrt(5), generator=generator)
    return factor


class RecomputedLinear(torch.autograd.Function):
    """``y = x W_eff^T + b`` with ``W_eff = rule.combine(W, A, B)``; ``W_eff`` is never saved for backward.

    ``rule`` is the adapter module: ``combine`` builds the weight, ``grad_product(G, W)`` maps
    ``G = dL/dW_eff`` to ``dL/d(B A)`` and ``grad_weight(G, A, B)`` maps it to ``dL/dW``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, rule):
        ctx.rule = rule
        ctx.save_for_backward(x, weight, lora_a, lora_b)
        return nn.functional.linear(x, rule.combine(weight, lora_a, lora_b).to(x.dtype), bias)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, lora_a, lora_b = ctx.saved_tensors
        rule = ctx.rule
        grad_x = grad_w = grad_bias = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y @ rule.combine(weight, lora_a, lora_b).to(grad_y.dtype)
        flat_gy = grad_y.reshape(-1, grad_y.shape[-1])
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            dtype = lora_a.dtype
            g = flat_gy.t().to(dtype) @ x.reshape(-1, x.shape[-1]).to(dtype)  # dL/dW_eff, (out, in)
            if ctx.needs_input_grad[1]:
                grad_w = rule.grad_weight(g, lora_a, lora_b).to(weight.dtype)
            if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
                grad_p = rule.grad_product(g, weight)
                grad_a = lora_b.t() @ grad_p
                grad_b = grad_p @ lora_a.t()
        if ctx.needs_input_grad[2]:
            grad_bias = flat_gy.sum(0)
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None


class AdapterLinear(nn.Module):
    """A frozen linear (``nn.Linear`` or GPT-2 ``Conv1D``) plus trainable rank-``r`` factors ``A`` (r, in) and
    ``B`` (out, r). Factors are kept in float32 whatever the base dtype (as peft's ``autocast_adapter_dtype``).

    Subclasses define ``combine`` (the adapted weight) and its gradient rules ``grad_product`` and ``grad_weight``;
    ``forward`` runs :class:`RecomputedLinear` unless overridden; the factors start as :meth:`initial_factors` draws
    them from ``generator``. ``exact_merge`` says whether the merged layer computes exactly what the adapter computed
    (False for LoRAPrune, which trains unmasked and merges masked).
    """

    kind: ClassVar[str]
    exact_merge: ClassVar[bool] = True

    def __init__(self, base: nn.Module, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base_layer = base
        base.weight.requires_grad_(False)
        out_features, in_features = oriented_weight(base).shape
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, device=device, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.empty(out_features, rank, device=device, dtype=torch.float32))
        self._set_factors(*self.initial_factors(generator))

    def initial_factors(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` to start from, on the CPU: A Kaiming-uniform (as peft's LoRA), B = 0, so the adapted layer
        starts as the base layer itself."""
        return kaiming_factor(self.lora_A.shape, generator), torch.zeros(self.lora_B.shape)

    def get_base_layer(self) -> nn.Module:
        """The wrapped layer (same name as peft's ``BaseTunerLayer.get_base_layer``)."""
        return self.base_layer

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight as (out, in)."""
        return oriented_weight(self.base_layer)

    def _set_factors(self, lora_a: torch.Tensor, lora_b: torch.Tensor) -> None:
        """Copy CPU-initialised factors in (a seeded CPU generator cannot fill CUDA tensors); no-op on meta."""
        if self.lora_A.is_meta:
            return
        with torch.no_grad():
            self.lora_A.copy_(lora_a)
            self.lora_B.copy_(lora_b)

    def merged_weight(self) -> torch.Tensor:
        """The weight that replaces the base weight at merge, in the base layer's own orientation and dtype."""
        with torch.no_grad():
            merged = self.combine(self.weight, self.lora_A, self.lora_B)
        return merged.t() if isinstance(self.base_layer, Conv1D) else merged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return RecomputedLinear.apply(x, self.weight, self.base_layer.bias, self.lora_A, self.lora_B, self)

    def combine(self, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        """The adapted (out, in) weight, in ``weight``'s dtype."""
        raise NotImplementedError

    def grad_product(self, g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``dL/d(B A)`` from ``g = dL/dW_eff``."""
        raise NotImplementedError

    def grad_weight(self, g: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
        """``dL/dW`` from ``g = dL/dW_eff`` (only when the base weight is trained too)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"kind={self.kind}, rank={self.rank}, alpha={self.alpha:g}"
