"""The relative squared error, ||reference - value||^2 / ||reference||^2, in its three uses: one tensor pair
(differentiable: reconstruction's loss and the adapter demo's), and summed over chunks (the local and drift errors of
layers and blocks). The Hessian form of a linear's local error, which needs no outputs, is
:func:`perp_engine.pruning.reconstruction_error`.

Every sum is taken in float32 on the tensors' device (float64 does not exist on every device: MPS); sums over
chunks add up in Python floats.
"""

from __future__ import annotations

import torch


def squared_norm(x: torch.Tensor) -> torch.Tensor:
    """sum x^2, in float32 on ``x``'s device."""
    return x.float().pow(2).sum()


def relative_error(reference: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """||value - reference||^2 / ||reference||^2 as a float32 scalar that backpropagates into ``value``; against a
    zero reference, the squared norm of ``value`` itself."""
    denominator = squared_norm(reference)
    return squared_norm(value.float() - reference.float()) / torch.where(denominator > 0, denominator, 1.0)


class ErrorSums:
    """Running ``sum ||reference - value||^2`` and ``sum ||reference||^2`` over chunks of outputs."""

    def __init__(self):
        self.numerator = 0.0
        self.denominator = 0.0

    @torch.no_grad()
    def add(self, reference: torch.Tensor, value: torch.Tensor) -> None:
        self.numerator += float(squared_norm(reference.float() - value.float()))
        self.denominator += float(squared_norm(reference))

    @property
    def value(self) -> float:
        """The relative error of everything added (0 against a zero reference)."""
        return self.numerator / self.denominator if self.denominator > 0 else 0.0


def chunked_relative_error(reference: list[torch.Tensor], other: list[torch.Tensor]) -> float:
    """The relative error of ``other`` against ``reference`` over all their chunks (a block's outputs)."""
    sums = ErrorSums()
    for r, o in zip(reference, other):
        sums.add(r, o)
    return sums.value
