"""LayerStats: running statistics of one linear layer's inputs (what Wanda, SparseGPT and DSnoT need)."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import PerpError
from .halves import split_point

HESSIAN_LEAF = 192  # widest diagonal block of the Hessian computed as one full product (a narrower input: one product)


class LayerStats:
    """Running means over every token given to :meth:`add_batch`, accumulated in float32.

    ``sq_mean[j]`` is mean_t x_tj^2 (Wanda's squared column norm divided by the token count) and ``H`` is
    (2/n) sum_t x_t x_t^T, SparseGPT's Hessian of the layer-wise squared error. Both are running means over
    tokens, so the result does not depend on how the inputs were split into batches or on their order.
    ``hessian=False`` skips H (in_features^2 floats) when only Wanda's statistics are needed.

    ``device=None`` keeps the statistics on the device of the first batch.
    :meth:`derived` memoises what is computed from the statistics (SparseGPT's factored inverse Hessian), so the
    linears that read the same inputs (q/k/v, gate/up) share it; adding a batch or assigning H drops it.

    For DSnoT (``moments=True``; None otherwise, sparing every batch their passes), ``mean[j]`` is mean_t x_tj and
    ``seq_var[j]`` the mean over tokens of (x_tj - m_sj)^2, with m_sj the
    mean of x_j over the token's own sequence: the token-weighted mean of the variance within each sequence, not
    the variance over all tokens. ``sequences`` counts the sequences seen. A sequence never straddles two batches:
    :meth:`add_batch` reads its leading dimensions (before the token axis) as sequences, or is told how many
    sequences a flattened batch holds. All three therefore do not depend on the batch split or order either.

    H is symmetric, so a batch only adds its lower triangle, by halves: [[A, .], [C, B]] gets C in one product and
    A and B the same way, down to diagonal blocks of at most HESSIAN_LEAF inputs, which are full products (about
    0.56 of the multiply-adds at width 1536, as the 192-wide tiles this replaced; but its large products run at
    0.75 of a full product's rate where the tiles ran at 0.61: 88 -> 72 ms for 8 chunks of 1024 tokens on 2 cores,
    against 96 ms for the full product; bench/sparsegpt_kernels_bench.py). The upper triangle is mirrored in when
    H is next read. Each entry sums the same products as a full product does, though not always in the same order
    (float32 rounding; SparseGPT's Cholesky factorisation reads only the lower triangle).
    """

    def __init__(self, in_features: int, hessian: bool = True, device: torch.device | str | None = None,
                 moments: bool = False):
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise PerpError("in_features", f"{in_features!r} is not allowed; use the layer's input width, an integer >= 1")
        self.in_features = in_features
        self.device = torch.device(device) if device is not None else None
        where = self.device or torch.device("cpu")
        self.nsamples = 0
        self.sequences = 0
        self._H = torch.zeros(in_features, in_features, dtype=torch.float32, device=where) if hessian else None
        self._symmetric = True
        # with the Hessian kept, mean_t x_tj^2 is half its diagonal (see sq_mean) and is not summed a second time
        self._sq_mean = None if hessian else torch.zeros(in_features, dtype=torch.float32, device=where)
        self.mean = torch.zeros(in_features, dtype=torch.float32, device=where) if moments else None
        self.seq_var = torch.zeros(in_features, dtype=torch.float32, device=where) if moments else None
        self._derived: dict = {}

    @property
    def sq_mean(self) -> torch.Tensor:
        """mean_t x_tj^2, (in_features,): read from the Hessian's diagonal (H_jj = 2 mean_t x_tj^2) when it is kept."""
        return self._sq_mean if self._H is None else self._H.diagonal() / 2

    @property
    def H_lower(self) -> torch.Tensor | None:
        """H with its lower triangle (diagonal included) current and the upper one possibly stale, for readers of one
        triangle (SparseGPT's Cholesky factorisation): it skips the mirroring that reading :attr:`H` may need."""
        return self._H

    @property
    def H(self) -> torch.Tensor | None:
        if not self._symmetric:
            self._H.copy_(self._H.tril().add_(self._H.tril(-1).T))
            self._symmetric = True
        return self._H

    @H.setter
    def H(self, value: torch.Tensor | None) -> None:
        self._H = value
        self._symmetric = True
        self._derived.clear()

    def derived(self, key, compute: Callable[[], object]):
        """``compute()``, memoised under ``key`` until the statistics change; it lives as long as they do."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor, sequences: int | None = None) -> None:
        """Add the inputs ``x`` of shape (..., in_features); every leading index is one token.

        ``sequences``: how many sequences ``x`` holds, as equal runs of consecutive tokens (a (batch, seqlen)
        activation flattened to (batch * seqlen, in), as OPT's MLP reads it, holds ``batch``). By default the
        dimensions before the next-to-last are the sequences: (batch, seqlen, in) holds batch, (seqlen, in) one.
        """
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise PerpError("x", f"layer inputs of shape {shape} do not fit; expected (..., {self.in_features})")
        if sequences is None:
            sequences = math.prod(x.shape[:-2])
        x = x.detach().reshape(-1, self.in_features)
        tokens = x.shape[0]
        if tokens == 0:
            return
        if isinstance(sequences, bool) or not isinstance(sequences, int) or sequences < 1 or tokens % sequences:
            raise PerpError("sequences", f"{sequences!r} is not allowed; use a positive divisor of the {tokens} tokens")
        home = (self._H if self._H is not None else self._sq_mean).device
        if self.device is None and self.nsamples == 0 and home != x.device:
            self._sq_mean, self.mean, self.seq_var = (t if t is None else t.to(x.device)
                                                      for t in (self._sq_mean, self.mean, self.seq_var))
            self.H = self._H.to(x.device) if self._H is not None else None
            home = x.device
        x = x.to(device=home, dtype=torch.float32)
        total = self.nsamples + tokens
        old_share = self.nsamples / total
        if self._sq_mean is not None:
            self._sq_mean.mul_(old_share).add_(x.square().sum(0), alpha=1.0 / total)
        if self.mean is not None:
            self.mean.mul_(old_share).add_(x.sum(0), alpha=1.0 / total)
            runs = x.reshape(sequences, -1, self.in_features)
            deviation = (runs - runs.mean(dim=1, keepdim=True)).square_().sum(dim=(0, 1))
            self.seq_var.mul_(old_share).add_(deviation, alpha=1.0 / total)
        self.sequences += sequences
        if self._H is not None:
            _add_lower_halves(self._H, x, old_share, 2.0 / total)
            self._symmetric = self.in_features <= HESSIAN_LEAF  # one leaf is the full product
        self.nsamples = total
        self._derived.clear()

    def __repr__(self) -> str:
        return f"LayerStats(in_features={self.in_features}, nsamples={self.nsamples}, hessian={self._H is not None})"


def _add_lower_halves(H: torch.Tensor, x: torch.Tensor, beta: float, alpha: float) -> None:
    """H = beta H + alpha x^T x on and below the diagonal, by halves (the upper triangle outside the diagonal leaves
    is left stale); each product scales its own block, so the running mean costs no pass of its own over H."""
    width = H.shape[0]
    if width <= HESSIAN_LEAF:
        H.addmm_(x.T, x, beta=beta, alpha=alpha)
        return
    half = split_point(width)
    H[half:, :half].addmm_(x[:, half:].T, x[:, :half], beta=beta, alpha=alpha)
    _add_lower_halves(H[:half, :half], x[:, :half], beta, alpha)
    _add_lower_halves(H[half:, half:], x[:, half:], beta, alpha)
