"""MaskKeeper: record the zero pattern of every decoder-block linear once, re-apply it, verify it later."""

from __future__ import annotations

import torch
from torch import nn

from .adapters.sparsity import mask_change
from .adapters.targets import base_of, block_linears


class MaskKeeper:
    """The pruned positions (``W == 0``) of each block linear, by full name.

    A layer without zeros is recorded as dense (``None``, no mask kept in memory). Names stay valid while
    adapters wrap the layers: the weight is looked up through the adapter. ``scope`` (one block) limits the
    record to the layers inside it.
    """

    def __init__(self, model: nn.Module, scope: nn.Module | None = None):
        self.model = model
        self.zeros: dict[str, torch.Tensor | None] = {}
        for name, layer in block_linears(model, scope).items():
            zeros = base_of(layer).weight.detach() == 0
            self.zeros[name] = zeros if bool(zeros.any()) else None

    @property
    def pruned(self) -> list[str]:
        """Names of the layers that have zeros."""
        return [name for name, zeros in self.zeros.items() if zeros is not None]

    def _weight(self, name: str) -> torch.Tensor:
        return base_of(self.model.get_submodule(name)).weight

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned positions again (after an optimizer step that trained the weights)."""
        for name in self.pruned:
            self._weight(name).masked_fill_(self.zeros[name], 0)

    def verify(self) -> None:
        """RuntimeError naming the first layer whose zero pattern differs from the recorded one."""
        for name, zeros in self.zeros.items():
            weight = self._weight(name).detach()
            problem = mask_change(name, torch.zeros_like(weight, dtype=torch.bool) if zeros is None else zeros, weight)
            if problem:
                raise RuntimeError(problem)
