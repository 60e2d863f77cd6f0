"""MaskKeeper: record the zero pattern of every decoder-block linear once, re-apply it, verify it later."""

from __future__ import annotations

import hashlib

import numpy
import torch
from torch import nn

from ..model.sparsity import mask_change, pruned_positions, zero_count
from .adapters.targets import base_of, block_linears


class MaskKeeper:
    """The pruned positions (``W == 0``) of each block linear, by full name.

    With ``reapply`` (whole weights train and must be re-zeroed after each step) the masks themselves are kept,
    one bool per weight; otherwise only a fingerprint of each layer's pattern (the count of zeros and a SHA-256
    of the packed mask bits), which verifies the pattern exactly and costs no memory. A layer without zeros is
    recorded as dense. Names stay valid while adapters wrap the layers: the weight is looked up through the
    adapter. ``scope`` (one block) limits the record to the layers inside it.
    """

    def __init__(self, model: nn.Module, scope: nn.Module | None = None, reapply: bool = True):
        self.model = model
        self.reapply = reapply
        self.zeros: dict[str, torch.Tensor | None] = {}
        self.fingerprints: dict[str, tuple[int, str]] = {}
        for name, layer in block_linears(model, scope).items():
            weight = base_of(layer).weight.detach()
            self.fingerprints[name] = _fingerprint(weight)
            self.zeros[name] = pruned_positions(weight) if reapply and self.fingerprints[name][0] else None

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
        for name, (count, digest) in self.fingerprints.items():
            weight = self._weight(name).detach()
            if self.reapply:
                was_zero = self.zeros[name] if self.zeros[name] is not None else torch.zeros_like(weight, dtype=torch.bool)
                problem = mask_change(name, was_zero, weight)
            elif _fingerprint(weight) != (count, digest):
                now = zero_count(weight)
                problem = (f"{name}: sparsity mask changed: {count:,} zeros before, {now:,} now"
                           + (" (at other positions)" if now == count else ""))
            else:
                problem = None
            if problem:
                raise RuntimeError(problem)


def _fingerprint(weight: torch.Tensor, chunk: int = 2**22) -> tuple[int, str]:
    """(number of zeros, SHA-256 of the zero pattern packed eight positions to a byte), read in chunks of
    ``chunk`` weights (a multiple of 8, so chunks pack like the whole) so one chunk's mask at most is alive. Two
    patterns get the same fingerprint only if they are equal (up to a SHA-256 collision)."""
    digest = hashlib.sha256()
    count = 0
    for part in weight.reshape(-1).split(chunk):
        zeros = pruned_positions(part)
        count += int(zeros.sum())
        digest.update(numpy.packbits(zeros.cpu().numpy()).tobytes())
    return count, digest.hexdigest()
