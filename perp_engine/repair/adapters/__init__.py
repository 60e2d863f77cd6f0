"""Adapters on the pruned linears that keep sparsity: MaskLoRA, ScaleLoRA, LoRAPrune, and plain LoRA (peft).

``attach_adapters`` wraps the decoder-block linears in place; ``merge_adapters`` folds them back into plain
layers and verifies every layer's zero pattern.
"""

from .attach import ADAPTER_KINDS, attach_adapters, check_adapter_fits
from .merge import merge_adapters
from .targets import adapter_modules, adapter_parameters, base_of, block_linears, is_adapter

__all__ = ["ADAPTER_KINDS", "attach_adapters", "check_adapter_fits", "merge_adapters", "adapter_modules", "adapter_parameters", "base_of",
           "block_linears", "is_adapter"]
