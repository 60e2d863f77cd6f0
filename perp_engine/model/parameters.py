"""How many parameters a model (or any module) has."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Parameters of the model, a tensor shared by several modules (a tied head) counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
