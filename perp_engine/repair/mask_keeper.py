"""MaskKeeper: record the zero pattern of every decoder-block linear once, re-apply it, verify it later."""

from __future__ import annotations

import torch
from torch import nn

from ..model.sparsity import mask_change, pruned_positions, zero_count
from .adapters.targets import base_of, block_linears

_SPREAD = 1_000_003  # a prime: each zero's position is weighted by it in the pattern's fingerprint


class MaskKeeper:
    """The pruned positions (``W == 0``) of each block linear, by full name.

    With ``reapply`` (whole weights train and must be re-zeroed after each step) the masks themselves are kept,
    one bool per weight; otherwise only a fingerprint of each layer's pattern (the count of zeros and a checksum
    of their positions), which is enough to verify the pattern and costs no memory. A layer without zeros is
    recorded as dense. Names stay valid while adapters wrap the layers: the weight is looked up through the
    adapter. ``scope`` (one block) limits the record to the layers inside it.
    """

    def __init__(self, model: nn.Module, scope: nn.Module | None = None, reapply: bool = True):
        self.model = model
        self.reapply = reapply
        self.zeros: dict[str, torch.Tensor | None] = {}
        self.fingerprints: dict[str, tuple[int, int]] = {}
        for name, layer in block_linears(model, scope).items():
            zeros = pruned_positions(base_of(layer).weight.detach())
            self.fingerprints[name] = _fingerprint(zeros)
            self.zeros[name] = zeros if reapply and self.fingerprints[name][0] else None

    @property
    def pruned(self) -> list[str]:
        """Names of the layers whose masks are kept (those with zeros, when kept for re-applying)."""
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
        for name, (count, checksum) in self.fingerprints.items():
            weight = self._weight(name).detach()
            if self.reapply:
                was_zero = self.zeros[name] if self.zeros[name] is not None else torch.zeros_like(weight, dtype=torch.bool)
                problem = mask_change(name, was_zero, weight)
            elif _fingerprint(pruned_positions(weight)) != (count, checksum):
                now = zero_count(weight)
                problem = (f"{name}: sparsity mask changed: {count:,} zeros before, {now:,} now"
                           + (" (at other positions)" if now == count else ""))
            else:
                problem = None
            if problem:
                raise RuntimeError(problem)


def _fingerprint(zeros: torch.Tensor, chunk: int = 2**22) -> tuple[int, int]:
    """(number of zeros, sum of their flat positions times a prime, modulo 2^61 - 1), read in chunks so the
    positions of one chunk at most are alive: equal patterns give equal fingerprints; a changed one is caught
    unless its checksum collides (about one chance in 2^61)."""
    modulus = 2**61 - 1
    count = checksum = 0
    for offset, part in zip(range(0, zeros.numel(), chunk), zeros.reshape(-1).split(chunk)):
        positions = torch.nonzero(part).reshape(-1) + offset
        count += positions.numel()
        checksum = (checksum + int(((positions * _SPREAD) % modulus).sum())) % modulus
    return count, checksum
