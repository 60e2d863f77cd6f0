"""The causal-LM training loss without the full logits tensor.

``model(input_ids, labels=...)`` builds the logits of every position (batch x seqlen x vocabulary, 4 bytes each:
200 MB for 4 x 256 tokens over SmolLM2's 49,152 words) and autograd keeps them and their log-softmax for the
backward pass. Here the model runs with its output head bypassed, so it returns the last hidden states, and the
loss is summed over chunks of positions, each chunk's logits computed under activation checkpointing: only one
chunk's logits exist at a time, in the forward and again in the backward pass, at the price of one more head
product per token. Same value and gradients as the model's own loss (mean over the predicted tokens).

The bypass is checked once on a two-token probe: a model that transforms its logits after the head (Gemma's
soft-capping, Cohere's logit scale, ...) fails the check and keeps the model's own loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

CHUNK_LOGITS = 2**22  # logits entries per chunk: 16 MiB in float32 (85 positions of a 49,152-word vocabulary)


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
        vocab = self.model.get_input_embeddings().num_embeddings
        rows = max(1, self.chunk_logits // vocab)
        total = sum(checkpoint(_chunk_nll, self.head, hidden[i: i + rows], labels[i: i + rows], use_reentrant=False)
                    for i in range(0, labels.numel(), rows))
        return total / labels.numel()


def _chunk_nll(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), labels, reduction="sum")


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
