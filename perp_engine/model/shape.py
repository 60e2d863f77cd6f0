"""ModelShape: the sizes the cost and memory models need, read from a model (a meta-device skeleton will do)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import find_decoder_blocks, find_linears, get_weight
from .load import context_limit
from .parameters import count_parameters


@dataclass(frozen=True)
class ModelShape:
    total_params: int  # every parameter once (a tied head counted once)
    block_params: int  # parameters inside the decoder blocks
    largest_block_params: int
    block_linear_params: int  # weights of the linears inside the decoder blocks (what is pruned)
    head_params: int  # the output head's matrix (vocabulary x hidden), used once per token
    tied_head: bool  # the head shares its matrix with the token embeddings
    n_blocks: int
    hidden: int
    vocab: int
    widest: int  # the widest linear input or output inside a block (LLaMA: the MLP's intermediate size)
    linears: tuple[tuple[int, int], ...]  # (out, in) of every block linear
    saved_itemsize: int | None = None  # bytes per weight in the checkpoint (its config's dtype), if it says
    heads: int = 0  # attention heads per block
    attention_dropout: float = 0.0  # dropout of the attention probabilities in training (GPT-2's attn_pdrop)
    context: int | None = None  # the longest input the model takes (its position table), if it has one

    @classmethod
    def of(cls, model: nn.Module) -> "ModelShape":
        _, blocks = find_decoder_blocks(model)
        linears = tuple(tuple(get_weight(m).shape) for block in blocks for m in find_linears(block).values())
        head = model.get_output_embeddings()
        embeddings = model.get_input_embeddings()
        in_blocks = [count_parameters(block) for block in blocks]
        return cls(
            total_params=count_parameters(model),
            block_params=sum(in_blocks),
            largest_block_params=max(in_blocks),
            block_linear_params=sum(o * i for o, i in linears),
            head_params=head.weight.numel() if head is not None else 0,
            tied_head=head is not None and head.weight is embeddings.weight,
            n_blocks=len(blocks),
            hidden=embeddings.weight.shape[1],
            vocab=embeddings.weight.shape[0],
            widest=max(max(o, i) for o, i in linears),
            linears=linears,
            saved_itemsize=_itemsize(getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)),
            heads=getattr(model.config, "num_attention_heads", 0),
            attention_dropout=float(getattr(model.config, "attention_dropout", None)
                                    or getattr(model.config, "attn_pdrop", None) or 0.0),
            context=context_limit(model.config),
        )

    @property
    def first_block_linears(self) -> tuple[tuple[int, int], ...]:
        """(out, in) of the first block's linears (the memory model takes every block to be like it)."""
        return self.linears[: len(self.linears) // self.n_blocks]

    def forward_flops(self, seqlen: int, with_head: bool = True) -> float:
        """FLOPs of one token's forward pass at context ``seqlen`` (causal attention sees seqlen / 2 on average)."""
        attention = 2 * self.n_blocks * seqlen * self.hidden
        return 2 * (self.block_linear_params + (self.head_params if with_head else 0)) + attention


def _itemsize(dtype) -> int | None:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype.itemsize if isinstance(dtype, torch.dtype) else None
