"""Capture what the first decoder block receives, then push it through blocks one at a time.

A forward pre-hook on block 0 records the hidden states *and every keyword argument* the model passes to its
decoder layers (attention mask, position ids, ``position_embeddings``, cache flags, ...), so new
transformers releases that add decoder-layer kwargs keep working. Memory stays bounded by one block's
activations over the calibration set instead of the whole model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .blocks import find_decoder_blocks


class _StopForward(Exception):
    """Raised by the capture hook once block 0's inputs are recorded: the rest of the model is not run."""


@dataclass
class BlockInputs:
    """Calibration activations entering one block: one (hidden, kwargs) pair per batch chunk."""

    hidden: list[torch.Tensor] = field(default_factory=list)
    kwargs: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hidden)

    def with_hidden(self, hidden: list[torch.Tensor]) -> "BlockInputs":
        return BlockInputs(hidden=hidden, kwargs=self.kwargs)


@torch.no_grad()
def capture_block_inputs(model: nn.Module, samples: torch.Tensor, batch_size: int = 8) -> BlockInputs:
    """Run the model's embedding part on ``samples`` (N, seqlen) and record block 0's inputs per chunk."""
    _, blocks = find_decoder_blocks(model)
    device = next(model.parameters()).device
    captured = BlockInputs()

    def hook(module, args, kwargs):
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.hidden.append(hidden.detach())
        captured.kwargs.append({k: _detach(v) for k, v in kwargs.items()})
        raise _StopForward

    # prepend: runs before any hook that would bring block 0 onto the device (perp_engine.offload.placement)
    handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True, prepend=True)
    try:
        for start in range(0, samples.shape[0], batch_size):
            chunk = samples[start : start + batch_size].to(device)
            try:
                model(input_ids=chunk, use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    return captured


def _detach(value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    return value


def block_forward(block: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """One decoder block's output hidden states (blocks return a tensor or a tuple, by family and version)."""
    out = block(hidden, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs) -> list[torch.Tensor]:
    """Outputs of ``block`` for every chunk of ``inputs`` (no gradients)."""
    return [block_forward(block, h, kw) for h, kw in zip(inputs.hidden, inputs.kwargs)]
