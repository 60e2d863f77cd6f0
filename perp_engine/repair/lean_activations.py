"""Training-time forwards of the RMSNorm and the SiLU-gated MLP that keep fewer activations for backward.

Plain autograd keeps, per LLaMA-style block, the normalised hidden states of both norms (beside their inputs)
and the MLP's ``silu(gate)`` (beside ``gate`` and ``up``): a third of what retraining keeps on the embedded model. The
functions here keep only each norm's input and its per-token ``1/rms``, and the MLP's ``gate`` and ``up``, and
recompute the rest in backward (elementwise work, a few passes over tensors the backward reads anyway). The
forward values are the modules' own, operation for operation. Liger Kernel patches the same modules for the same
reason, with Triton kernels for CUDA only; these are plain torch and run on every device.

Only the module classes whose forward is known to be exactly this computation are changed, on the given model
instance only, and the returned function puts their own forwards back.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MethodType

import torch
from torch import nn
from transformers.activations import SiLUActivation

# transformers' classes whose forward is ``weight * (x * rsqrt(mean(x^2) + eps)).to(dtype)`` in float32 (checked
# against their source), and whose MLP is ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``.
RMS_NORMS = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"})
GATED_MLPS = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"})
SILU = (nn.SiLU, SiLUActivation)


class RMSNormFunction(torch.autograd.Function):
    """``weight * x / rms(x)``, keeping ``x`` and ``1/rms`` (one value per token) for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x32 = x.to(torch.float32)
        inv_rms = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, inv_rms)
        return weight * (x32 * inv_rms).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, inv_rms = ctx.saved_tensors
        normed = x.to(torch.float32) * inv_rms
        grad_x = grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * normed).reshape(-1, normed.shape[-1]).sum(0).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            g = (grad * weight).to(torch.float32)
            grad_x = (g - normed * (g * normed).mean(-1, keepdim=True)).mul_(inv_rms).to(x.dtype)
        return grad_x, grad_weight, None


class SwiGLUFunction(torch.autograd.Function):
    """``silu(gate) * up``, keeping ``gate`` and ``up`` (not ``silu(gate)``) for backward."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return nn.functional.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[0]:
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        if ctx.needs_input_grad[1]:
            grad_up = grad * nn.functional.silu(gate)
        return grad_gate, grad_up


def _rms_norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    return RMSNormFunction.apply(hidden_states, self.weight, self.variance_epsilon)


def _gated_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SwiGLUFunction.apply(self.gate_proj(x), self.up_proj(x)))


def _lean_forward(module: nn.Module):
    """The lean forward for ``module``, or None when it has none or already carries an instance forward (an
    offloading hook wraps ``forward`` on the instance: replacing it would skip the hook)."""
    if "forward" in vars(module):
        return None
    name = type(module).__name__
    if name in RMS_NORMS:
        return _rms_norm_forward
    if name in GATED_MLPS and isinstance(getattr(module, "act_fn", None), SILU):
        return _gated_mlp_forward
    return None


def use_lean_activations(model: nn.Module) -> Callable[[], None]:
    """Give the known norms and gated MLPs in ``model`` their lean forwards; returns the function that restores
    their own."""
    changed = []
    for module in model.modules():
        forward = _lean_forward(module)
        if forward is not None:
            module.forward = MethodType(forward, module)
            changed.append(module)

    def restore() -> None:
        for module in changed:
            del module.forward

    return restore
