"""Plain LoRA (``W + s B A``) through peft: a dense update, kept unmerged on pruned layers."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from .base import kaiming_factor

ADAPTER_NAME = "perp"


def attach_lora(model: nn.Module, targets: dict[str, nn.Module], rank: int, alpha: float, seed: int) -> dict[str, nn.Module]:
    """Inject peft LoRA layers at the given full module names; returns them by name.

    peft freezes every other parameter of the model on injection; the previous ``requires_grad`` flags are
    restored so that attaching an adapter only freezes the wrapped weights (the subset selection decides the
    rest). peft initialises the factors with the global CPU generator, which is forked around the injection so
    the caller's random state (CPU and CUDA) is untouched; ``A`` is then drawn again from a local generator
    seeded with ``seed``, with peft's initialisation (Kaiming-uniform, a = sqrt(5); B = 0).
    """
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=list(targets),
                        fan_in_fan_out=any(isinstance(m, Conv1D) for m in targets.values()))
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft warns when the LoRA's layer is a tied head: the repair unties it before merging (subsets.py)
        warnings.filterwarnings("ignore", message=".*tied layer is part of the adapter.*")
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    generator = torch.Generator().manual_seed(seed)
    # The layers are tracked by their type, not by a config on the model; leaving it would make the next
    # injection (the head LoRA after the block LoRA) warn about "multiple adapters".
    del model.peft_config
    for param, flag in flags:
        param.requires_grad_(flag)
    for module in targets.values():
        module.weight.requires_grad_(False)
    layers = {name: model.get_submodule(name) for name in targets}
    with torch.no_grad():
        for layer in layers.values():
            weight = layer.lora_A[ADAPTER_NAME].weight
            weight.copy_(kaiming_factor(weight.shape, generator))
    return layers


def save_lora(layers: dict[str, nn.Module], folder: Path) -> None:
    """Write kept LoRA layers in peft's own format: ``adapter_config.json`` + ``adapter_model.safetensors``,
    loadable with ``PeftModel.from_pretrained(base_model, folder)``.

    The keys are written here, as ``PeftModel.save_pretrained`` names them (``base_model.model.<layer>.lora_A.weight``),
    because peft's ``get_peft_model_state_dict`` needs the ``peft_config`` that :func:`attach_lora` removes."""
    first = next(iter(layers.values()))
    config = LoraConfig(r=first.r[ADAPTER_NAME], lora_alpha=first.lora_alpha[ADAPTER_NAME], lora_dropout=0.0,
                        bias="none", target_modules=list(layers),
                        fan_in_fan_out=any(isinstance(layer.base_layer, Conv1D) for layer in layers.values()))
    state = {}
    for name, layer in layers.items():
        for factor in ("lora_A", "lora_B"):
            weight = getattr(layer, factor)[ADAPTER_NAME].weight
            state[f"base_model.model.{name}.{factor}.weight"] = weight.detach().to("cpu").contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    save_file(state, str(folder / "adapter_model.safetensors"))
