"""Mask helpers shared by the pruning methods: exact counts per matrix, per row or per N:M group.

Every helper breaks ties at the threshold toward the lowest column index (those weights are pruned first), so
counts are exact and masks deterministic on every device, and none builds an int64 tensor of the matrix's
size (8 bytes a weight): ranks within N:M groups are int8, running counts of ties are int32 over bounded
chunks.
"""

from __future__ import annotations

import math

import numpy
import torch

TIE_CHUNK = 1 << 20  # elements per chunk of the running count of ties (4 MiB of int32)


def prune_count(n: int, sparsity: float) -> int:
    """floor(n * sparsity), robust to binary round-off (0.29 * 100 is 28.999999999999996 in floating point)."""
    return math.floor(round(n * sparsity, 6))


def lowest_k_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (True = kept) of a 2-D ``score``: in every row exactly the ``k`` lowest scores are pruned.

    One k-th value per row (:func:`row_thresholds`, O(n)) instead of a full sort; everything at or below it is
    pruned. Only rows with more ties at the threshold than they may lose (rare with real scores) take a running
    count of their ties, which keeps the first ones (lowest column index) pruned and the rest.
    """
    cols = score.shape[1]
    if k <= 0:
        return torch.ones_like(score, dtype=torch.bool)
    if k >= cols:
        return torch.zeros_like(score, dtype=torch.bool)
    threshold = row_thresholds(score, k)
    pruned = score <= threshold
    surplus = pruned.sum(dim=1) - k
    tie_rows = surplus.nonzero().squeeze(1)
    if tie_rows.numel():
        _spare_last_ties(pruned, score, threshold, tie_rows, surplus[tie_rows])
    return pruned.logical_not_()


def lowest_k_transposed(score_t: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (True = pruned) of the ``k`` lowest of a matrix given transposed, ``score_t`` = score.T.

    Equal to ``~lowest_k_mask(score.reshape(1, -1), k)`` transposed, ties included (broken in the row-major
    order of ``score``), without transposing: the k-th value does not depend on the order, and only when
    there are more ties at it than may go is the row-major order built.
    """
    n = score_t.numel()
    if k <= 0 or k >= n:
        return torch.full_like(score_t, k > 0, dtype=torch.bool)
    pruned = score_t <= row_thresholds(score_t.reshape(1, -1), k)
    if int(pruned.sum()) > k:
        return lowest_k_mask(score_t.T.reshape(1, -1), k).logical_not_().reshape(score_t.shape[1], -1).T
    return pruned


def row_thresholds(score: torch.Tensor, k: int) -> torch.Tensor:
    """(rows, 1): the k-th lowest (1-based) score of every row of a 2-D ``score``, exactly, in its dtype.

    On CPU numpy's introselect (``numpy.partition``, on a copy): about 3x faster than torch's top-k at Wanda's rows
    and 8-12x faster than ``torch.kthvalue`` on one long row, which runs on one thread (a sampled bracket of the k-th
    value made that 2-4x; bench/sparsegpt_kernels_bench.py).
    Elsewhere torch's selection: the largest of the k lowest from an unsorted top-k.
    """
    if score.device.type == "cpu":
        values = score.detach()
        if values.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bfloat16 exactly
            values = values.float()
        selected = numpy.partition(values.numpy(), k - 1, axis=1)[:, k - 1:k]
        return torch.from_numpy(selected).to(score.dtype)
    if score.shape[0] == 1:
        return score[0].kthvalue(k).values.reshape(1, 1)
    cols = score.shape[1]
    if 2 * k <= cols + 1:
        return score.topk(k, dim=1, largest=False, sorted=False).values.amax(dim=1, keepdim=True)
    return score.topk(cols - k + 1, dim=1, sorted=False).values.amin(dim=1, keepdim=True)


def _spare_last_ties(pruned, score, threshold, rows, surplus) -> None:
    """In ``rows`` of ``pruned``, un-prune the last ``surplus`` ties at the threshold: one pass from the right end
    over chunks of columns, counting the ties seen so far."""
    spare = surplus.to(torch.int32).unsqueeze(1)  # ties each row still has to spare
    limit = threshold[rows]
    step = max(1, TIE_CHUNK // len(rows))
    for stop in range(score.shape[1], 0, -step):
        start = max(0, stop - step)
        tied = score[rows, start:stop] == limit
        from_right = tied.flip(1).cumsum(dim=1, dtype=torch.int32).flip(1)  # ties at or right of each column
        pruned[rows, start:stop] &= ~(tied & (from_right <= spare))
        spare -= from_right[:, :1]


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask (True = kept) of an (out, in) ``score``: in every group of ``m`` consecutive inputs of a row the
    ``n`` lowest are pruned.

    The groups are laid out as m contiguous rows of one score each, and every weight's rank in its group (how many
    of its group come before it: lower, or equal at a lower column) is counted with m (m - 1) / 2 vectorised
    comparisons; the weights ranked below n are pruned.
    """
    rows, cols = score.shape
    by_member = score.reshape(-1, m).T.contiguous()  # (m, groups)
    rank = torch.zeros(by_member.shape, dtype=torch.int8 if m <= 127 else torch.int32, device=score.device)
    for a in range(m):
        for b in range(a + 1, m):
            b_first = by_member[b] < by_member[a]
            rank[a] += b_first
            rank[b] += b_first.logical_not_()
    return (rank >= n).T.reshape(rows, cols)


def group_ties(m: int, like):
    """(m, m, 1) int32, 1 where member b of a group of m comes before member a ([a, b, 0]): the tie-break of
    :func:`group_pruned`; a numpy array or a tensor on ``like``'s device, as ``like`` is."""
    if isinstance(like, numpy.ndarray):
        return numpy.tril(numpy.ones((m, m), dtype=numpy.int32), -1)[:, :, None]
    return torch.ones(m, m, dtype=torch.int32, device=like.device).tril_(-1)[:, :, None]


def group_pruned(scores, n: int, ties, out):
    """Into ``out`` (m, width; bool, or float for a 0/1 factor): of the m non-negative float32 ``scores`` in each
    column the n lowest (ties: the earlier) are True (1), pruned. ``ties`` is :func:`group_ties` of m. Numpy
    arrays or tensors alike (SparseGPT's column loop runs in numpy on CPU).

    For one small group at a time (SparseGPT's N:M step), where :func:`nm_mask` favours whole matrices. The bits of a
    non-negative float32 read as an int32 rise with its value, so member b ranks below member a when bits_b <
    bits_a + 1 for an earlier b (lower or equal) and bits_b < bits_a for a later one: one broadcast comparison of
    every pair counts how many rank below each one. 2.2-2.9x faster than comparing the floats with a tie rule (five
    ops on (m, m, width)); bench/sparsegpt_kernels_bench.py.
    """
    xp = numpy if isinstance(scores, numpy.ndarray) else torch
    bits = scores.view(xp.int32)
    count = xp.int16 if scores.shape[0] < 2**15 else xp.int64  # a narrow sum is faster
    below = (bits[None] < bits[:, None] + ties).sum(1, dtype=count)  # members ranked below each one
    return xp.less(below, n, out=out)


def zero_pruned_(w: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Zero ``w`` where ``kept`` is False, in place: pruned weights become +0.0, kept ones keep their value.

    A product with the mask, since on CPU masked_fill_ and where with a bool mask are ~7x slower; adding 0.0
    turns the -0.0 that negative pruned weights get from it into +0.0 (and leaves every nonzero float as is).
    """
    return w.mul_(kept).add_(0.0)


def select_mask(score: torch.Tensor, sparsity: float, nm: tuple[int, int] | None, per_row: bool) -> torch.Tensor:
    """Keep the highest scores of an (out, in) matrix; prune the lowest.

    N:M: N of every M consecutive inputs of a row are pruned. Otherwise floor(in * sparsity) per output row
    (``per_row``) or floor(numel * sparsity) in the whole matrix, i.e. one threshold per matrix.
    """
    rows, cols = score.shape
    if nm is not None:
        return nm_mask(score, *nm)
    if per_row:
        return lowest_k_mask(score, prune_count(cols, sparsity))
    return lowest_k_mask(score.reshape(1, -1), prune_count(score.numel(), sparsity)).reshape(rows, cols)
