"""LayerStats: running statistics of one linear layer's inputs (what Wanda and SparseGPT need)."""

from __future__ import annotations

import torch

from ..errors import PerpError


class LayerStats:
    """Running means over every token given to :meth:`add_batch`, accumulated in float32.

    ``sq_mean[j]`` is mean_t x_tj^2 (Wanda's squared column norm divided by the token count) and ``H`` is
    (2/n) sum_t x_t x_t^T, SparseGPT's Hessian of the layer-wise squared error. Both are running means over
    tokens, so the result does not depend on how the inputs were split into batches or on their order.
    ``hessian=False`` skips H (in_features^2 floats) when only Wanda's statistics are needed.
    ``device=None`` keeps the statistics on the device of the first batch.
    """

    def __init__(self, in_features: int, hessian: bool = True, device: torch.device | str | None = None):
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise PerpError("in_features", f"{in_features!r} is not allowed; use the layer's input width, an integer >= 1")
        self.in_features = in_features
        self.device = torch.device(device) if device is not None else None
        where = self.device or torch.device("cpu")
        self.nsamples = 0
        self.sq_mean = torch.zeros(in_features, dtype=torch.float32, device=where)
        self.H: torch.Tensor | None = (
            torch.zeros(in_features, in_features, dtype=torch.float32, device=where) if hessian else None
        )

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor) -> None:
        """Add the inputs ``x`` of shape (..., in_features); every leading index is one token."""
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise PerpError("x", f"layer inputs of shape {shape} do not fit; expected (..., {self.in_features})")
        x = x.detach().reshape(-1, self.in_features)
        tokens = x.shape[0]
        if tokens == 0:
            return
        if self.device is None and self.nsamples == 0 and self.sq_mean.device != x.device:
            self.sq_mean = self.sq_mean.to(x.device)
            self.H = self.H.to(x.device) if self.H is not None else None
        x = x.to(device=self.sq_mean.device, dtype=torch.float32)
        total = self.nsamples + tokens
        old_share = self.nsamples / total
        self.sq_mean.mul_(old_share).add_(x.square().sum(0), alpha=1.0 / total)
        if self.H is not None:
            self.H.mul_(old_share).addmm_(x.T, x, alpha=2.0 / total)
        self.nsamples = total

    def __repr__(self) -> str:
        return f"LayerStats(in_features={self.in_features}, nsamples={self.nsamples}, hessian={self.H is not None})"
