"""Layer-level pruning: input statistics, one-matrix pruning by magnitude / Wanda / SparseGPT / random, error."""

from .error import reconstruction_error
from .prune import prune_weight
from .stats import LayerStats

__all__ = ["LayerStats", "prune_weight", "reconstruction_error"]
