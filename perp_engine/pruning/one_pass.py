"""True-sequential pruning of one block in one forward pass (``sequential="layer"``).

The calibration chunks pass through the block together, in lock step. A forward pre-hook on each linear adds the
chunk's inputs to that linear's statistics and hands over to the next chunk; the chunk that completes the statistics
prunes the weight (``prune``) and hands back to the first chunk, which goes on with the pruned weight. So every
linear is pruned on inputs that already reflect the pruning of the linears before it (SparseGPT's
``--true-sequential``: q/k/v, then o, then gate/up, then down in a LLaMA block), and the same forward yields the
block's outputs for the next block: one pass per block where gathering statistics and recomputing outputs took two.
Linears that read the same tensor (q/k/v, gate/up) share the statistics of the first of them (and with them
SparseGPT's factored inverse Hessian; :class:`~perp_engine.pruning.input_owners.InputOwners`): they are pruned when
reached, without another hand-over.

Each chunk runs in its own greenlet: a forward cannot be paused from inside a hook otherwise (a hook can only
return or raise, and raising loses the forward's state). Greenlets switch on one OS thread, so only the chunk whose
turn it is runs, the chunks add their inputs in chunk order (the statistics are those of one pass over the chunks in
order), one chunk's transient activations are alive at a time, and torch keeps one thread pool: OS threads would
each bring their own OpenMP team, whose idle spinning slowed a 2-core machine down by a third. The paused chunks hold
what their forward keeps at the current linear. Thread-local state (grad mode) is shared by the chunks: the caller's
``torch.no_grad`` covers them all, and no chunk enters a context of its own around a switch.
"""

from __future__ import annotations

from typing import Callable

import torch
from greenlet import GreenletExit, getcurrent, greenlet
from torch import nn

from ..errors import PerpError
from ..model.capture import BlockInputs, block_forward
from .input_owners import InputOwners
from .stats import LayerStats


def prune_block_in_one_pass(
    block: nn.Module,
    linears: dict[str, nn.Module],
    inputs: BlockInputs,
    prune: Callable[[str, nn.Module, LayerStats], None],
    *,
    hessian: bool,
    moments: bool = False,
) -> list[torch.Tensor]:
    """Run ``inputs`` through ``block`` once, calling ``prune(name, module, stats)`` for every linear of ``linears``
    as soon as its inputs over all chunks are gathered (the forward goes on with the pruned weight); returns the
    block's outputs per chunk. ``hessian``/``moments``: what the statistics gather (:class:`LayerStats`)."""
    chunks = len(inputs)
    workers: list[greenlet] = []
    owners = InputOwners(hessian, moments)
    gathered: dict[str, int] = {}  # owner -> chunks added so far
    pruned: set[str] = set()

    def finish(name: str, module: nn.Module) -> None:
        prune(name, module, owners.stats_of(name))
        pruned.add(name)

    def make_hook(name: str, module: nn.Module):
        def hook(_module, args):
            if name in pruned:
                return
            chunk, x = workers.index(getcurrent()), args[0]
            if owners.owner_of(name, module, x, chunk) != name:  # reads a tensor its owner gathered, over every chunk
                finish(name, module)
                return
            owners.stats[name].add_batch(x.detach(), sequences=inputs.hidden[chunk].shape[0])
            gathered[name] = gathered.get(name, 0) + 1
            if gathered[name] == chunks:
                finish(name, module)
            after = (chunk + 1) % chunks if gathered[name] < chunks else 0
            if after != chunk:
                workers[after].switch()

        return hook

    outputs: list[torch.Tensor | None] = [None] * chunks

    def run(chunk: int) -> None:
        outputs[chunk] = block_forward(block, inputs.hidden[chunk], inputs.kwargs[chunk])
        owners.end_chunk(chunk)

    handles = [m.register_forward_pre_hook(make_hook(n, m)) for n, m in linears.items()]
    try:
        with torch.no_grad():
            workers.extend(greenlet(lambda c=c: run(c)) for c in range(chunks))
            for worker in workers:  # each ends after the one before it: resume it where it waits, or start it
                worker.switch()
    finally:
        for h in handles:
            h.remove()
        for worker in workers:  # after a failure: unwind the chunks still waiting
            if not worker.dead:
                worker.throw(GreenletExit)
    missed = [name for name in linears if name not in pruned]
    if missed:
        raise PerpError("sequential", f"the block's forward never called {', '.join(missed)}; use sequential=block")
    return outputs
