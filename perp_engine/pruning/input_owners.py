"""InputOwners: which linears of a block read the same tensor, and one LayerStats per distinct input.

Linears that read one tensor (q/k/v, gate/up in a LLaMA block) share the statistics of the first of them, its
owner, and with them SparseGPT's factored inverse Hessian. Sharing is seen, not guessed from names: at a linear's
first call, its input is compared (by identity) with the input the chunk's last owner read, so it holds for any
family where such linears are called one after another. Both statistics passes, the two-pass block mode
(:func:`perp_engine.pruning.sequential.collect_stats`) and the one-pass layer mode
(:mod:`perp_engine.pruning.one_pass`), decide owners here.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.blocks import in_features
from .stats import LayerStats


class InputOwners:
    """Owners and their statistics for one block; ``hessian``/``moments``: what the statistics gather."""

    def __init__(self, hessian: bool, moments: bool = False):
        self.hessian = hessian
        self.moments = moments
        self.owner: dict[str, str] = {}  # linear name -> the linear whose statistics it shares (itself for an owner)
        self.stats: dict[str, LayerStats] = {}  # owner name -> its statistics
        # per chunk, the last input an owner read, kept alive so that its id is not reused: a paused chunk holds no
        # other linear's input
        self._last: dict[int, tuple[torch.Tensor, str]] = {}

    def owner_of(self, name: str, module: nn.Module, x: torch.Tensor, chunk: int = 0) -> str:
        """The owner of linear ``name``, called on ``x`` in calibration chunk ``chunk``. Decided at its first call:
        the owner whose input was this same tensor, just before it in the chunk, or else ``name`` itself, with new
        statistics."""
        if name not in self.owner:
            last = self._last.get(chunk)
            if last is not None and last[0] is x:
                self.owner[name] = last[1]
            else:
                self.owner[name] = name
                self.stats[name] = LayerStats(in_features(module), hessian=self.hessian, device=x.device,
                                              moments=self.moments)
        owner = self.owner[name]
        if owner == name:
            self._last[chunk] = (x, name)
        return owner

    def end_chunk(self, chunk: int = 0) -> None:
        """The chunk's forward is over: let go of the last input it read."""
        self._last.pop(chunk, None)

    def stats_of(self, name: str) -> LayerStats:
        """The statistics linear ``name`` uses: its owner's."""
        return self.stats[self.owner[name]]
