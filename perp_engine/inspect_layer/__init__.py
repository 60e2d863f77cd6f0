"""Inside one linear layer: what magnitude, Wanda, SparseGPT, RIA and Wanda + DSnoT keep, what it costs, how
adapters treat zeros.

``capture_block`` records what a block's linears see in the dense model (slow: run once, cache it; a
``DenseWalk`` captures one block after another, running only the blocks in between);
``inspect_layer`` prunes one of them by each method (fast: what a slider move recomputes); ``error_curves``
sweeps sparsity; ``adapter_zeros`` trains and merges LoRA and MaskLoRA on the pruned layer.
"""

from .adapter_zeros import DEMO_ALPHA, DEMO_KINDS, DEMO_RANK, AdapterOutcome, adapter_zeros
from .analysis import (
    CURVE_SPARSITIES,
    DSNOT,
    INSPECT_METHODS,
    ErrorCurves,
    LayerInspection,
    error_curves,
    inspect_layer,
)
from .capture import DenseWalk, LayerCapture, block_count, capture_block, layer_windows, linear_shapes

__all__ = ["CURVE_SPARSITIES", "DEMO_ALPHA", "DEMO_KINDS", "DEMO_RANK", "DSNOT", "INSPECT_METHODS", "AdapterOutcome",
           "DenseWalk", "ErrorCurves", "LayerCapture", "LayerInspection", "adapter_zeros", "block_count",
           "capture_block", "error_curves", "inspect_layer", "layer_windows", "linear_shapes"]
