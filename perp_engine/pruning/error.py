"""Layer-wise reconstruction error of a pruned (or retrained) weight on its calibration inputs."""

from __future__ import annotations

import torch

from ..errors import PerpError
from .stats import LayerStats


@torch.no_grad()
def reconstruction_error(w_dense: torch.Tensor, w_new: torch.Tensor, stats: LayerStats) -> float:
    """Relative ||W X - W' X||^2 / ||W X||^2 over the inputs in ``stats``, exactly, without the inputs.

    Uses ||A X^T||_F^2 = (n/2) tr(A H A^T); the factor cancels in the ratio. The bias is left out since it
    is the same in both. Returns 0.0 when nothing changed and inf when the dense output is zero.
    """
    if not isinstance(stats, LayerStats) or stats.H is None:
        raise PerpError("stats", "reconstruction_error needs LayerStats built with hessian=True")
    if stats.nsamples == 0:
        raise PerpError("stats", "no layer inputs were added; call add_batch with calibration inputs first")
    for name, t in (("w_dense", w_dense), ("w_new", w_new)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[1] != stats.in_features:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise PerpError(name, f"shape {shape} does not fit; expected (out, {stats.in_features})")
    if w_new.shape != w_dense.shape:
        raise PerpError("w_new", f"shape {tuple(w_new.shape)} differs from the dense weight's {tuple(w_dense.shape)}")
    H = stats.H.to(w_dense.device)
    dense = w_dense.detach().to(torch.float32)
    delta = dense - w_new.detach().to(device=dense.device, dtype=torch.float32)
    numerator = float(((delta @ H) * delta).sum().clamp_min(0.0))
    denominator = float(((dense @ H) * dense).sum().clamp_min(0.0))
    if numerator == 0.0:
        return 0.0
    return numerator / denominator if denominator > 0.0 else float("inf")
