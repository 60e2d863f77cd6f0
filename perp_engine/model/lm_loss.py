"""The causal-LM training loss without the full logits tensor, and without computing the head twice.

``model(input_ids, labels=...)`` builds the logits of every position (batch x seqlen x vocabulary, 4 bytes each:
200 MB for 4 x 256 tokens over SmolLM2's 49,152 words) and autograd keeps them and their log-softmax for the
backward pass. Here the model runs with its output head bypassed, so it returns the last hidden states, and
:class:`_HeadLoss` goes over chunks of positions: each chunk's logits, its loss, and that loss's gradients with
respect to the chunk's hidden states and the head's trainable tensors, all at once in the forward pass (the way
fused linear-cross-entropy kernels such as Liger's do it); the backward pass only scales the kept gradients. One
chunk's logits exist at a time and the head product runs twice per token (forward and its input gradient), not
three times as with a checkpointed chunk. Same value and gradients as the model's own loss (mean over the
predicted tokens).

The bypass is checked once on a two-token probe: a model that transforms its logits after the head (Gemma's
soft-capping, Cohere's logit scale, ...) fails the check and keeps the model's own loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# Logits entries per chunk: 8 MiB in float32, 42 positions of a 49,152-word vocabulary. In exploratory runs on the
# embedded model (perp, 4 x 256 tokens, 3 steps, CPU, three each; not a bench) 16 MiB chunks peaked ~100 MiB higher
# (the allocator keeps more of them) at the same time per step within the runs' spread.
CHUNK_LOGITS = 2**21


def chunk_positions(vocabulary: int, chunk_logits: int = CHUNK_LOGITS) -> int:
    """Positions per chunk of logits: ``chunk_logits`` entries, at least one position."""
    return max(1, chunk_logits // vocabulary)


class CausalLMLoss:
    """``loss(input_ids)``: the mean next-token cross-entropy of ``model`` on ``input_ids`` (labels = inputs)."""

    def __init__(self, model: nn.Module, chunk_logits: int = CHUNK_LOGITS):
        self.model = model
        self.head = model.get_output_embeddings()
        self.chunk_logits = chunk_logits
        self.chunked = self.head is not None and _head_is_last(model, self.head)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not self.chunked:
            return self.model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
        with _head_bypassed(self.model):
            hidden = self.model(input_ids=input_ids, use_cache=False).logits
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        labels = input_ids[:, 1:].reshape(-1)
        rows = chunk_positions(self.model.get_input_embeddings().num_embeddings, self.chunk_logits)
        trained = [p for p in self.head.parameters() if p.requires_grad]
        return _HeadLoss.apply(hidden, labels, self.head, rows, *trained)


class _HeadLoss(torch.autograd.Function):
    """``mean cross-entropy(head(hidden), labels)`` over chunks of ``rows`` positions; the gradients with respect
    to ``hidden`` and the head's trainable tensors ``trained`` are found in forward, chunk by chunk, and kept."""

    @staticmethod
    def forward(ctx, hidden, labels, head, rows, *trained):
        wants_hidden = ctx.needs_input_grad[0]
        grad_hidden = torch.zeros_like(hidden) if wants_hidden else None
        # the trained tensors' gradients, summed over the chunks in float32 whatever their dtype (in a bfloat16
        # model hundreds of chunk gradients summed in bfloat16 would lose their low bits), rounded once in backward
        sums = [torch.zeros_like(p, dtype=torch.float32) for p in trained]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, labels.numel(), rows):
            with torch.enable_grad():
                chunk = hidden[start: start + rows].detach().requires_grad_(wants_hidden)
                loss = F.cross_entropy(head(chunk).float(), labels[start: start + rows], reduction="sum")
                wrt = ([chunk] if wants_hidden else []) + list(trained)
                found = torch.autograd.grad(loss, wrt) if wrt else ()
            total += loss.detach()
            if wants_hidden:
                grad_hidden[start: start + rows] = found[0]
            for acc, grad in zip(sums, found[int(wants_hidden):]):
                acc += grad
        ctx.save_for_backward(*([] if grad_hidden is None else [grad_hidden]), *sums)
        ctx.count = labels.numel()
        ctx.dtypes = [p.dtype for p in trained]
        return total / ctx.count

    @staticmethod
    def backward(ctx, grad_loss):
        saved = list(ctx.saved_tensors)
        scale = grad_loss / ctx.count
        grad_hidden = saved.pop(0) * scale if ctx.needs_input_grad[0] else None
        return (grad_hidden, None, None, None, *[(acc * scale).to(dtype) for acc, dtype in zip(saved, ctx.dtypes)])
@contextmanager
def _head_bypassed(model: nn.Module) -> Iterator[None]:
    """The model's output head replaced by the identity for the duration: its forward returns hidden states."""
    head = model.get_output_embeddings()
    model.set_output_embeddings(nn.Identity())
    try:
        yield
    finally:
        model.set_output_embeddings(head)


@torch.no_grad()
def _head_is_last(model: nn.Module, head: nn.Module) -> bool:
    """True when the model's logits are exactly its head applied to what the bypassed model returns."""
    device = next(model.parameters()).device
    probe = torch.tensor([[1, 2]], device=device) % model.get_input_embeddings().num_embeddings
    was_training = model.training
    model.eval()
    try:
        logits = model(input_ids=probe, use_cache=False).logits
        with _head_bypassed(model):
            hidden = model(input_ids=probe, use_cache=False).logits
        return torch.equal(head(hidden), logits)
    except RuntimeError:  # the head cannot be swapped, or what came out was not hidden states
        return False
    finally:
        model.train(was_training)
