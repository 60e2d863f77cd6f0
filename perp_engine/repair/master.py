"""Float32 master copies of the trained tensors of a half-precision model (mixed-precision training).

The optimizer updates the float32 copies; after each step the model's bfloat16 / float16 tensors take the copies'
values, rounded. Without them, AdamW's small updates to weights near 1 (norm scales) round away in bfloat16
(its step near 1.0 is 2^-7): the tensor never moves. Float32 tensors (and adapters, which are float32 in any
model) train as they are, without a copy.
"""

from __future__ import annotations

import torch
from torch import nn

HALF = (torch.bfloat16, torch.float16)


class MasterCopies:
    """Pairs (model tensor, what the optimizer updates): a float32 copy of each half-precision tensor when
    ``enabled``, else the tensor itself."""

    def __init__(self, params: list[nn.Parameter], enabled: bool):
        self.pairs = [(p, p.detach().float().requires_grad_(True) if enabled and p.dtype in HALF else p) for p in params]

    @property
    def params(self) -> list[torch.Tensor]:
        """What the optimizer updates."""
        return [master for _, master in self.pairs]

    def take_grads(self) -> None:
        """Move each copied tensor's gradient onto its copy, in float32 (before clipping and the step)."""
        for param, master in self.pairs:
            if master is not param:
                master.grad = None if param.grad is None else param.grad.float()
                param.grad = None

    @torch.no_grad()
    def write_back(self) -> None:
        """Give the model's tensors the updated copies' values (after the step)."""
        for param, master in self.pairs:
            if master is not param:
                param.copy_(master)
