"""SparseGPT (Frantar & Alistarh 2023, IST-DASLab/sparsegpt): OBS pruning with lazy batched updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy
import torch

from ..errors import PerpError
from .halves import split_point
from .patterns import group_pruned, group_ties, lowest_k_transposed, prune_count, zero_pruned_

MAX_RELATIVE_DAMPING = 1.0
# Columns per panel inside a block (see _propagate_within_block): a column step's product grows with the panel, a
# panel's closing matrix product shrinks with it; 16 was the fastest of 8, 16, 32 and 48 on one block of the embedded
# model. With N:M, panels and blocks hold whole groups of M (see _whole_groups).
PANEL = 16
TRIANGLE_LEAF = 256  # widest diagonal block reverse_cholesky factors and upper_triangular_inverse solves directly


@dataclass(frozen=True)
class InverseFactor:
    """What SparseGPT needs of one input's Hessian H, the same for every linear reading that input.

    ``scaled`` is U, the upper Cholesky factor of (H + damp I)^-1 (dead columns' H_jj set to 1), with each row
    divided by its diagonal entry ``diag``: the error of pruning weight j is w_j / U_jj and moves later weights
    by -(w_j / U_jj) U_jk = -w_j * scaled_jk, so the column loop needs no division.
    """

    dead: torch.Tensor  # (in,) bool: input columns never active in calibration (H_jj = 0)
    n_dead: int
    diag: torch.Tensor | None  # (in,); None when factoring failed
    scaled: torch.Tensor | None  # (in, in), upper triangular with a unit diagonal
    notes: tuple[str, ...]  # what factoring had to say (damping retries), repeated in every linear's log
    failure: str | None = None  # why no damping made H definite: every linear reading it fails alike


def inverse_factor(H: torch.Tensor, percdamp: float, device: torch.device) -> InverseFactor:
    """Factor a Hessian for :func:`prune_sparsegpt` (a failure is recorded, and raised there). Only H's lower
    triangle is read (:attr:`LayerStats.H_lower`)."""
    H = H.to(device=device, dtype=torch.float32)
    dead = torch.diag(H) == 0
    n_dead = int(dead.sum())
    if n_dead:
        H = H.clone()
        H[dead, dead] = 1.0
    notes: list[str] = []
    try:
        upper = upper_cholesky_of_inverse(H, percdamp, notes.append)
    except PerpError as error:
        return InverseFactor(dead, n_dead, None, None, tuple(notes), failure=error.message)
    diag = upper.diagonal().clone()
    return InverseFactor(dead, n_dead, diag, upper.div_(diag.unsqueeze(1)), tuple(notes))


def prune_sparsegpt(
    w: torch.Tensor,
    factor: InverseFactor,
    sparsity: float,
    nm: tuple[int, int] | None,
    blocksize: int = 128,
    log: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune an (out, in) weight (read, not modified) with the factored inverse Hessian of its inputs; returns
    (new float32 weight, kept mask), both transposed views of (in, out) tensors.

    Columns are processed left to right in blocks of ``blocksize``. Unstructured: the mask of a block is the
    lowest w^2 / [U]_jj^2 over all its rows and columns, with the block's share of the budget so the matrix loses
    exactly floor(numel * sparsity) weights. N:M: per row, the N lowest of every M columns, chosen when the
    group is reached, on weights updated by every earlier column (blocks and panels hold whole groups, so a
    ``blocksize`` that is not a multiple of M is rounded down to one, at least M: the result is the official
    code's for any blocksize that is a multiple of M). Each pruned column's error is propagated to the rest of
    its block column by column, and to the later blocks in one matrix product per block.
    Input columns never active in calibration (H_jj = 0) carry no information: their weights are zeroed, like
    the reference does, and count as pruned only where the budget selects them.
    The work is done on a transposed copy, where an input column is one contiguous row: a column step is one
    product and one rank-1 update of the contiguous rows below it.
    """
    log = log or _quiet
    rows, cols = w.shape
    if factor.n_dead:
        log(f"sparsegpt: {factor.n_dead} of {cols} input columns were never active in calibration; their weights are zeroed")
    for note in factor.notes:
        log(note)
    if factor.failure is not None:
        raise PerpError("stats", factor.failure)
    Wt = torch.empty((cols, rows), dtype=torch.float32, device=w.device).copy_(w.T)  # (in, out), float32
    if factor.n_dead:
        Wt[factor.dead] = 0.0
    d2 = factor.diag.square()
    if nm is not None:
        blocksize = _whole_groups(blocksize, nm[1])
    pruned = torch.zeros_like(Wt, dtype=torch.bool)
    xp = _namespace(Wt.device)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, pruned1 = Wt[i1:i2], pruned[i1:i2]
        if nm is None:
            share = prune_count(rows * i2, sparsity) - prune_count(rows * i1, sparsity)
            pruned1.copy_(lowest_k_transposed(W1.square().div_(d2[i1:i2].unsqueeze(1)), share))
        errors = _propagate_within_block(W1, pruned1, factor.scaled[i1:i2, i1:i2], d2[i1:i2], nm, xp)
        Wt[i2:].addmm_(factor.scaled[i1:i2, i2:].T, errors, alpha=-1.0)
    kept = pruned.logical_not_()
    return zero_pruned_(Wt, kept).T, kept.T  # transposed views: whoever stores them copies them once anyway


def _propagate_within_block(W1, pruned1, scaled1, d2, nm, xp) -> torch.Tensor:
    """Column by column: the pruned weights of column i (N:M: chosen first, when i starts a group) move the later
    columns of the block by -w * scaled[i, later]. Returns the pruned weights (zero where kept), (block, out).

    Within a panel of PANEL columns the moves are applied lazily: column i's value when it is reached is its value
    at the panel's start minus the moves of the panel's earlier columns, one short product with their pruned
    weights (``coef`` row i: -scaled[j, i] for the earlier j, 1 at i); each finished panel then moves itself and the
    rest of the block in one matrix product (the same lazy batching as across blocks, one level down). A column
    step is two calls, a product and a mask; an N:M group's values when it is reached are one product too (``G``:
    ``coef`` without the moves among the group's own members). The loop runs ~150,000 times on the embedded model, so
    its calls run in the namespace ``xp`` of :func:`_namespace` (numpy on CPU).
    """
    width, rows = W1.shape
    panel = PANEL if nm is None else _whole_groups(PANEL, nm[1])
    chosen = pruned1.to(W1.dtype)  # a float 0/1 factor: a product with it is faster than with a bool mask
    errors = torch.empty_like(W1)
    coef = scaled1.T.neg().contiguous()
    coef.diagonal().fill_(1.0)
    step = torch.empty(rows, dtype=W1.dtype, device=W1.device)
    W, C, E, K, S = _views(xp, W1, chosen, errors, coef, step)
    if nm is not None:
        m = nm[1]
        member = torch.arange(width, device=W1.device) // m
        apart = (member.unsqueeze(1) != member.unsqueeze(0)) | torch.eye(width, dtype=torch.bool, device=W1.device)
        G, current, D = _views(xp, coef * apart, torch.empty(m, rows, dtype=W1.dtype, device=W1.device), d2)
        ties, D = group_ties(m, W), D[:, None]
    for p1 in range(0, width, panel):
        p2 = min(p1 + panel, width)
        E[p1:p2] = W[p1:p2]  # each row turns into its column's pruned weights when the column is reached
        for i in range(p1, p2):
            if nm is not None and i % m == 0:
                group = slice(i, i + m)
                scores = xp.matmul(G[group, p1:i + m], E[p1:i + m], out=current)
                xp.divide(xp.square(scores, out=scores), D[group], out=scores)
                group_pruned(scores, nm[0], ties, out=C[group])
            xp.multiply(xp.matmul(E[p1:i + 1].T, K[i, p1:i + 1], out=S), C[i], out=E[i])
        W1[p1:].addmm_(scaled1[p1:p2, p1:].T, errors[p1:p2], alpha=-1.0)
    if nm is not None:
        pruned1.copy_(chosen)
    return errors


def _namespace(device: torch.device):
    """Where the column loop's small calls run: numpy on CPU, where a call on a few hundred floats costs ~0.4 us
    against torch's ~1.5-2.5 us of dispatch (``prune_sparsegpt`` over one block's seven linears 1.7x faster,
    bench/sparsegpt_kernels_bench.py); torch elsewhere."""
    return numpy if device.type == "cpu" else torch


def _views(xp, *tensors):
    """The tensors as arrays of ``xp``, sharing their memory."""
    return tuple(t.numpy() for t in tensors) if xp is numpy else tensors


def _whole_groups(columns: int, m: int) -> int:
    """The widest run of whole N:M groups within ``columns`` (at least one group): a group must not straddle a
    block or a panel, or its mask would be chosen before the updates of the columns before it arrive."""
    return max(m, columns // m * m)


def upper_cholesky_of_inverse(H: torch.Tensor, percdamp: float, log: Callable[[str], None]) -> torch.Tensor:
    """U with U^T U = (H + damp I)^-1, damp = percdamp * mean(diag H), retried with 10x damping on failure. Only
    H's lower triangle is read.

    The official code factors H, inverts it from the factor and factors the inverse (about 5/3 n^3 flops). The
    same U comes from one factorisation and one triangular inverse (2/3 n^3): with H + damp I = R R^T for an upper
    R (:func:`reverse_cholesky`), (H + damp I)^-1 = (R^-1)^T R^-1, so U = R^-1 (upper, with a positive diagonal: the
    unique factor). It is closer to a float64 computation than the official chain, and 3x faster on the
    embedded model's 1536-wide inputs (54 -> 18 ms; 1.4x at 576; bench/sparsegpt_kernels_bench.py).
    """
    mean_diag = torch.diag(H).mean()
    relative = percdamp
    while True:
        factor = reverse_cholesky(H, float(relative * mean_diag))
        if factor is not None:
            upper = upper_triangular_inverse(factor)
            if bool(torch.isfinite(upper.sum())) or bool(torch.isfinite(upper).all()):  # a finite sum: all finite
                return upper
        if relative >= MAX_RELATIVE_DAMPING:
            raise PerpError(
                "stats", f"the Hessian is not positive definite even with damping {relative:g} x mean(diag H); the calibration inputs are degenerate"
            )
        retry = min(relative * 10, MAX_RELATIVE_DAMPING)
        log(f"sparsegpt: Cholesky failed with damping {relative:g} x mean(diag H); retrying with {retry:g}")
        relative = retry


def reverse_cholesky(A: torch.Tensor, shift: float) -> torch.Tensor | None:
    """The upper R with R R^T = A + shift I, reading A's lower triangle; None when A + shift I is not positive
    definite. By halves: with A = [[A11, .], [A21, A22]], R22 = reverse_cholesky(A22), R12 = (R22^-1 A21)^T and R11
    = reverse_cholesky(A11 - R12 R12^T), down to blocks of at most TRIANGLE_LEAF, each factored by LAPACK as
    J B J = V^T V (J the reversal permutation, so R = J V^T J). Most of the work is then one triangular solve and
    one matrix product per level: 2x faster than LAPACK's factorisation of the whole 1536-wide matrix on 2 cores
    (17.8 -> 8.9 ms), which runs far below the matrix-product rate at this size; at 576 (above the leaf too) it is
    slower, 0.75 -> 1.2 ms, which costs 0.04 s over the embedded model against 0.27 s saved at 1536
    (bench/sparsegpt_kernels_bench.py)."""
    n = A.shape[0]
    if n <= TRIANGLE_LEAF:
        flipped = A.flip(0, 1)
        flipped.diagonal().add_(shift)
        V, info = torch.linalg.cholesky_ex(flipped, upper=True)
        return V.T.flip(0, 1) if int(info) == 0 else None
    half = split_point(n)
    R22 = reverse_cholesky(A[half:, half:], shift)
    if R22 is None:
        return None
    R12_t = torch.linalg.solve_triangular(R22, A[half:, :half], upper=True)
    R11 = reverse_cholesky(torch.addmm(A[:half, :half], R12_t.T, R12_t, alpha=-1.0), shift)
    if R11 is None:
        return None
    R = torch.zeros_like(A)
    R[:half, :half], R[:half, half:], R[half:, half:] = R11, R12_t.T, R22
    return R


def upper_triangular_inverse(R: torch.Tensor) -> torch.Tensor:
    """R^-1 of an upper triangular R, by halves: [[A, B], [0, C]]^-1 = [[A^-1, -A^-1 B C^-1], [0, C^-1]], down to
    blocks of at most TRIANGLE_LEAF solved against the identity. Most of the work is then two matrix products per
    level, where one solve against the whole identity (``solve_triangular``) ignores that the identity, and so the
    inverse, is triangular: 1.6x faster on a 1536-wide factor (24 -> 15 ms on 2 cores)."""
    n = R.shape[0]
    if n <= TRIANGLE_LEAF:
        return torch.linalg.solve_triangular(R, torch.eye(n, dtype=R.dtype, device=R.device), upper=True)
    half = split_point(n)
    top, bottom = upper_triangular_inverse(R[:half, :half]), upper_triangular_inverse(R[half:, half:])
    inverse = torch.zeros_like(R)
    inverse[:half, :half], inverse[half:, half:] = top, bottom
    inverse[:half, half:] = (top @ R[:half, half:]).matmul(bottom).neg_()
    return inverse


def _quiet(_message: str) -> None:
    """Default log: say nothing."""
