"""Finding the layers adapters go on, and seeing through adapters to the layer they wrap."""

from __future__ import annotations

from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ...errors import PerpError
from ...model.blocks import find_decoder_blocks, is_linear, linear_kind
from .base import AdapterLinear


def is_adapter(module: nn.Module) -> bool:
    """One of our adapters or a peft tuner layer (both wrap a ``base_layer``)."""
    return isinstance(module, (AdapterLinear, BaseTunerLayer))


def base_of(module: nn.Module) -> nn.Module:
    """The plain layer under an adapter, or the module itself."""
    return module.get_base_layer() if is_adapter(module) else module


def adapter_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every adapter in the model (blocks and head) by full name, outermost only."""
    return {name: m for name, m in _outer_modules(model) if is_adapter(m)}


def adapter_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters an adapter adds (its factors), not those of the layer it wraps."""
    wrapped = {id(p) for p in base_of(module).parameters()}
    return [p for p in module.parameters() if id(p) not in wrapped]


def block_linears(model: nn.Module, scope: nn.Module | None = None) -> dict[str, nn.Module]:
    """The linear layers of the decoder blocks (only those inside ``scope`` when given) by full name.

    An adapted layer is listed once, as its adapter, under the name the plain layer had.
    """
    _, blocks = find_decoder_blocks(model)
    inside = {id(m) for m in blocks.modules()}
    if scope is not None:
        inside &= {id(m) for m in scope.modules()}
    return {name: m for name, m in _outer_modules(model) if id(m) in inside and (is_adapter(m) or is_linear(m))}


def select_targets(model: nn.Module, target_modules: tuple[str, ...] = (), scope: nn.Module | None = None) -> dict[str, nn.Module]:
    """The block linears an adapter goes on, filtered by short names (``q_proj``) or dotted suffixes
    (``attn.c_proj``). PerpError for a name the model lacks or a layer that already has an adapter."""
    every = block_linears(model)
    present = sorted({linear_kind(name) for name in every})
    for wanted in target_modules:
        if not any(_matches(name, wanted) for name in every):
            raise PerpError("target_modules", f"{wanted!r} is not a linear layer of the decoder blocks; present: {', '.join(present)}")
    chosen = {name: m for name, m in block_linears(model, scope).items()
              if not target_modules or any(_matches(name, t) for t in target_modules)}
    if not chosen:
        raise PerpError("target_modules", f"no linear layer inside the given scope matches {', '.join(target_modules) or 'any name'}")
    adapted = [name for name, m in chosen.items() if is_adapter(m)]
    if adapted:
        raise PerpError("adapter", f"{adapted[0]} already has an adapter; merge the adapters before attaching new ones")
    return chosen


def _matches(name: str, wanted: str) -> bool:
    return name == wanted or name.endswith("." + wanted)


def _outer_modules(model: nn.Module):
    """``named_modules`` without the insides of adapters (their base layer and factor layers)."""
    adapter_prefix = None
    for name, module in model.named_modules():
        if adapter_prefix is not None and name.startswith(adapter_prefix):
            continue
        adapter_prefix = name + "." if is_adapter(module) else adapter_prefix
        yield name, module
