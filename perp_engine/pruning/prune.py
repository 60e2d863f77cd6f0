"""prune_weight: validate one request, run the chosen method on one weight matrix, return new tensors."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import METHODS, RIA_PERMUTATIONS, parse_pattern
from ..errors import PerpError, check_choice
from .magnitude import prune_magnitude
from .random_mask import prune_random
from .ria import prune_ria
from .sparsegpt import inverse_factor, prune_sparsegpt
from .stats import LayerStats
from .wanda import prune_wanda

NEEDS_STATS = ("wanda", "sparsegpt", "ria")


def prune_weight(
    w: torch.Tensor,
    method: str,
    sparsity: float = 0.5,
    pattern: str = "unstructured",
    stats: LayerStats | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    ria_power: float = 0.5,
    ria_permute: str = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune an (out, in) weight; returns (new weight in w's dtype and device, bool mask with True = kept), which
    may be non-contiguous views (SparseGPT works on the transpose).

    ``w`` is never modified; the new weight is exactly zero where the mask is False. Work is done in float32.
    Counts are exact: magnitude and random lose floor(numel * sparsity) per matrix, wanda floor(in * sparsity)
    per output row, sparsegpt and ria floor(numel * sparsity) per matrix; with an N:M pattern every group of M
    consecutive inputs of a row loses exactly N (with a ``ria_permute``, M inputs of RIA's channel permutation). ``stats`` (the layer's inputs) is required by wanda and
    sparsegpt (with its Hessian) and ria; ``ria_power`` is the power of the activation norm in RIA's score. ``log`` receives one-line notes (damping retries, dead input columns).
    SparseGPT's factored inverse Hessian is memoised on ``stats`` per ``percdamp`` and device, so linears that
    share their LayerStats factor it once.
    """
    nm = _validate(w, method, sparsity, pattern, stats, blocksize, percdamp, seed, log)
    if method == "ria" and not (isinstance(ria_power, (int, float)) and math.isfinite(ria_power) and ria_power >= 0):
        raise PerpError("ria_power", f"{ria_power!r} is not allowed; use a finite number >= 0, e.g. 0.5")
    check_choice("ria_permute", ria_permute, RIA_PERMUTATIONS)
    if ria_permute != "none" and (method != "ria" or nm is None):
        raise PerpError("ria_permute", "is RIA's channel permutation for N:M; use it with method 'ria' and e.g. '2:4'")
    if sparsity == 0:
        return w.detach().clone(), torch.ones_like(w, dtype=torch.bool)
    if method == "sparsegpt":
        factor = stats.derived(("sparsegpt", float(percdamp), w.device), lambda: inverse_factor(stats.H_lower, percdamp, w.device))
        new_w, mask = prune_sparsegpt(w.detach(), factor, sparsity, nm, blocksize, log)
        return new_w.to(w.dtype), mask
    w32 = w.detach().to(torch.float32, copy=True)
    if method == "magnitude":
        new_w, mask = prune_magnitude(w32, sparsity, nm)
    elif method == "random":
        new_w, mask = prune_random(w32, sparsity, nm, seed)
    elif method == "ria":
        new_w, mask = prune_ria(w32, stats.sq_mean.to(w32.device), sparsity, nm, power=ria_power, permute=ria_permute)
    else:
        new_w, mask = prune_wanda(w32, stats.sq_mean.to(w32.device), sparsity, nm)
    return new_w.to(w.dtype), mask


def _validate(w, method, sparsity, pattern, stats, blocksize, percdamp, seed, log) -> tuple[int, int] | None:
    """Check every argument; returns the parsed N:M pattern (None for unstructured)."""
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or not w.is_floating_point() or w.numel() == 0:
        what = f"a {w.dtype} tensor of shape {tuple(w.shape)}" if isinstance(w, torch.Tensor) else type(w).__name__
        raise PerpError("weight", f"got {what}; expected a non-empty 2-D float tensor (out_features, in_features)")
    if not _all_finite(w):
        raise PerpError("weight", "contains NaN or inf values; prune a finite weight")
    check_choice("method", method, METHODS)
    nm = parse_pattern(pattern)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise PerpError("sparsity", f"{sparsity!r} is not allowed; use a number in [0, 1), e.g. 0.5")
    in_features = w.shape[1]
    if nm is not None:
        n, m = nm
        if abs(float(sparsity) - n / m) > 1e-9:
            raise PerpError("sparsity", f"{sparsity} does not match pattern {pattern}; an N:M pattern needs sparsity N/M = {n / m:g}")
        if in_features % m:
            raise PerpError("pattern", f"{pattern} needs in_features divisible by {m}; this weight has {in_features}")
    if stats is None and method in NEEDS_STATS:
        raise PerpError("stats", f"method {method!r} needs LayerStats of the layer's inputs (calibration data)")
    if stats is not None:
        _validate_stats(stats, method, in_features)
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1:
        raise PerpError("blocksize", f"{blocksize!r} is not allowed; use an integer >= 1, e.g. 128")
    if isinstance(percdamp, bool) or not isinstance(percdamp, (int, float)) or not 0.0 < float(percdamp) <= 1.0:
        raise PerpError("percdamp", f"{percdamp!r} is not allowed; use a number in (0, 1], e.g. 0.01")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PerpError("seed", f"{seed!r} is not allowed; use an integer >= 0")
    if log is not None and not callable(log):
        raise PerpError("log", f"{log!r} is not callable; pass a function taking one string, or None")
    return nm


def _validate_stats(stats, method: str, in_features: int) -> None:
    if not isinstance(stats, LayerStats):
        raise PerpError("stats", f"got {type(stats).__name__}; expected LayerStats")
    if stats.in_features != in_features:
        raise PerpError("stats", f"collected for {stats.in_features} input features, but the weight has {in_features}")
    if method not in NEEDS_STATS:
        return
    if stats.nsamples == 0:
        raise PerpError("stats", "no layer inputs were added; call add_batch with calibration inputs first")
    if method == "sparsegpt" and stats.H_lower is None:
        raise PerpError("stats", "sparsegpt needs the Hessian; build LayerStats with hessian=True")
    used = stats.H_lower if method == "sparsegpt" else stats.sq_mean  # a NaN in the lower triangle is a NaN in H
    if not _all_finite(used):
        raise PerpError("stats", "contain NaN or inf values; the layer inputs overflowed (calibrate in float32)")


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in ``t``. A finite sum proves it in one cheap pass (a NaN or inf anywhere makes the sum NaN or
    inf); only a sum that overflowed needs the element-wise check."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())
