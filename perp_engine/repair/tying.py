"""Tied output heads: a head that shares its matrix with the token embeddings, and giving it its own copy."""

from __future__ import annotations

import torch
from torch import nn

from .adapters.targets import base_of


def untie_head(model: nn.Module, weight: torch.Tensor | None = None) -> bool:
    """Give the output head its own weight where it shares one with the token embeddings: ``weight`` (a new
    tensor, e.g. a merged one: no copy is made), else a copy of the shared one; True if it did.

    The config flag is cleared and the tied-key map recomputed so that ``tie_weights`` / ``save_pretrained``
    do not tie them again or drop the head's weight from a checkpoint.
    """
    head = base_of(model.get_output_embeddings())
    embeddings = model.get_input_embeddings()
    if head.weight is not embeddings.weight:
        return False
    own = embeddings.weight.detach().clone() if weight is None else weight
    head.weight = nn.Parameter(own, requires_grad=embeddings.weight.requires_grad)
    model.config.tie_word_embeddings = False
    model.config.get_text_config().tie_word_embeddings = False
    model.all_tied_weights_keys = model.get_expanded_tied_weights_keys(all_submodels=True)
    return True
