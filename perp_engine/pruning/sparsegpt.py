"""SparseGPT (Frantar & Alistarh 2023, IST-DASLab/sparsegpt): OBS pruning with lazy batched updates."""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import PerpError
from .patterns import lowest_k_mask, prune_count

MAX_RELATIVE_DAMPING = 1.0


def prune_sparsegpt(
    w: torch.Tensor,
    H: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    log: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune a float32 (out, in) weight with the Hessian ``H`` of its inputs; returns (new weight, kept mask).

    Columns are processed left to right in blocks of ``blocksize``. Unstructured: the mask of a block is the
    lowest w^2 / [U]_jj^2 over all its rows and columns (U = upper Cholesky factor of H^-1), with the block's
    share of the budget so the matrix loses exactly floor(numel * sparsity) weights. N:M: per row, the N lowest
    of every M columns, chosen when the group is reached. Each pruned column's error is propagated to the rest
    of its block column by column, and to the later blocks in one matrix product per block.
    Input columns never active in calibration (H_jj = 0) carry no information: their weights are zeroed, like
    the reference does, and count as pruned only where the budget selects them.
    """
    log = log or _quiet
    W = w.clone()
    H = H.to(device=W.device, dtype=torch.float32, copy=True)
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    n_dead = int(dead.sum())
    if n_dead:
        H[dead, dead] = 1.0
        W[:, dead] = 0.0
        log(f"sparsegpt: {n_dead} of {cols} input columns were never active in calibration; their weights are zeroed")
    Hinv = upper_cholesky_of_inverse(H, percdamp, log)
    if nm is not None:
        n, m = nm
        blocksize = max(m, blocksize // m * m)
    pruned = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d2 = torch.diag(Hinv1).square()
        pruned1 = pruned[:, i1:i2]
        if nm is None:
            share = prune_count(rows * i2, sparsity) - prune_count(rows * i1, sparsity)
            score = (W1.square() / d2).reshape(1, -1)
            pruned1.copy_(~lowest_k_mask(score, share).reshape(W1.shape))
        for i in range(i2 - i1):
            if nm is not None and i % m == 0:
                pruned1[:, i : i + m] = ~lowest_k_mask(W1[:, i : i + m].square() / d2[i : i + m], n)
            column = W1[:, i]
            q = column.masked_fill(pruned1[:, i], 0.0)
            Q1[:, i] = q
            err = (column - q) / Hinv1[i, i]
            W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1.0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:].addmm_(Err1, Hinv[i1:i2, i2:], alpha=-1.0)
    return W, ~pruned


def upper_cholesky_of_inverse(H: torch.Tensor, percdamp: float, log: Callable[[str], None]) -> torch.Tensor:
    """U with U^T U = (H + damp I)^-1, damp = percdamp * mean(diag H), retried with 10x damping on failure."""
    mean_diag = torch.diag(H).mean()
    relative = percdamp
    while True:
        damped = H.clone()
        damped.diagonal().add_(relative * mean_diag)
        lower, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if int(info) == 0 and bool(torch.isfinite(upper).all()):
                return upper
        if relative >= MAX_RELATIVE_DAMPING:
            raise PerpError(
                "stats", f"the Hessian is not positive definite even with damping {relative:g} x mean(diag H); the calibration inputs are degenerate"
            )
        retry = min(relative * 10, MAX_RELATIVE_DAMPING)
        log(f"sparsegpt: Cholesky failed with damping {relative:g} x mean(diag H); retrying with {retry:g}")
        relative = retry


def _quiet(_message: str) -> None:
    """Default log: say nothing."""
