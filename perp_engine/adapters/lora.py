"""Plain LoRA (``W + s B A``) through peft: a dense update, kept unmerged on pruned layers."""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers.pytorch_utils import Conv1D

ADAPTER_NAME = "perp"


def attach_lora(model: nn.Module, targets: dict[str, nn.Module], rank: int, alpha: float, seed: int) -> dict[str, nn.Module]:
    """Inject peft LoRA layers at the given full module names; returns them by name.

    peft freezes every other parameter of the model on injection; the previous ``requires_grad`` flags are
    restored so that attaching an adapter only freezes the wrapped weights (the subset selection decides the
    rest). The factors are drawn from a seeded, forked RNG, so the caller's random state is untouched.
    """
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=list(targets),
                        fan_in_fan_out=any(isinstance(m, Conv1D) for m in targets.values()))
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    # The layers are tracked by their type, not by a config on the model; leaving it would make the next
    # injection (the head LoRA after the block LoRA) warn about "multiple adapters".
    del model.peft_config
    for param, flag in flags:
        param.requires_grad_(flag)
    for module in targets.values():
        module.weight.requires_grad_(False)
    return {name: model.get_submodule(name) for name in targets}
