"""RIA, Relative Importance and Activations (Zhang et al., "Plug-and-Play: An Efficient Post-training Pruning
Method for Large Language Models", ICLR 2024). Official code: lib/prune.py ``prune_ria`` of
github.com/biomedical-cybernetics/Relative-importance-and-activation-pruning.

A weight's score is its relative importance, |W_ij| over the sum of |W| in its column plus |W_ij| over the sum in
its row, times its input channel's activation norm ||X_j|| to the power ``a`` (0.5 by default). Unstructured:
one threshold for the whole matrix (the official default; ``--per_outneuron`` is not offered). N:M: N of every M
inputs of a row, optionally after the official channel permutation (``--reallocation``, ``--lsa``): the inputs
are regrouped so that the groups keep more score, and the mask, returned in the original column order, has N of
M pruned in every row of each regrouped set of M inputs (not of M consecutive inputs). The weight is not
permuted, as in the official code.

Differences from the official code (tests/pruning/test_pruning_ria.py checks every mask against it):
- Unstructured prunes exactly floor(numel * sparsity) weights, as the package's other per-matrix methods; the
  official threshold (the sorted score at that index, compared with <=) prunes one more. With that one count
  changed, the masks are equal.
- The official ||X_j||^2 is divided by the number of calibration sequences, ours (``sq_mean``) by the number of
  tokens: every score is scaled by the same constant (seqlen^(a/2)), so no ranking, column sum ordering or
  assignment changes.
- The score is computed in float32 (the official computes the relative importance in the model's dtype), a
  column or row whose |W| sums to zero scores 0 instead of NaN, and ties break toward the lowest column index.
- The official LSA options ``--fast`` (the assignment within blocks of groups) and ``--importance_score`` other
  than its default "sum" are not offered.
"""

from __future__ import annotations

import torch

from ..config import RIA_PERMUTATIONS
from .patterns import nm_mask, select_mask, zero_pruned_

LSA_CHUNK = 1 << 24  # elements of the (rows, g, groups) differences built per step of an LSA round (64 MiB)


def prune_ria(
    w: torch.Tensor,
    sq_mean: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None,
    power: float = 0.5,
    permute: str = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``w`` (float32, the caller's own copy, pruned in place) by RIA score; returns it and the kept mask.

    ``sq_mean`` (in,) is mean_t x_tj^2; ``power`` is the exponent of the activation norm sqrt(sq_mean) (0: relative
    importance alone). ``permute`` (N:M only, ignored otherwise): "none"; "reallocation", the official heuristic
    channel reallocation; or "lsa", the reallocation refined by M rounds of linear sum assignment.
    """
    if permute not in RIA_PERMUTATIONS:
        raise ValueError(f"permute={permute!r}; use one of {', '.join(RIA_PERMUTATIONS)}")
    score = ria_score(w, sq_mean, power)
    if nm is None or permute == "none":
        mask = select_mask(score, sparsity, nm, per_row=False)
    else:
        order = _channel_order(score, *nm, lsa=permute == "lsa")
        mask = torch.empty_like(score, dtype=torch.bool)
        mask[:, order] = nm_mask(score[:, order], *nm)
    return zero_pruned_(w, mask), mask


def ria_score(w: torch.Tensor, sq_mean: torch.Tensor, power: float) -> torch.Tensor:
    """(|W_ij| / sum_i |W_ij| + |W_ij| / sum_j |W_ij|) * sqrt(sq_mean_j) ** power, (out, in)."""
    magnitude = w.abs()
    col_sum, row_sum = magnitude.sum(0), magnitude.sum(1, keepdim=True)
    relative = magnitude / col_sum.masked_fill_(col_sum == 0, 1.0) + magnitude / row_sum.masked_fill_(row_sum == 0, 1.0)
    return relative.mul_(sq_mean.sqrt().pow(power))


def _channel_order(score: torch.Tensor, n: int, m: int, lsa: bool) -> torch.Tensor:
    """The official channel permutation: position p of the regrouped matrix holds input column ``order[p]``.

    Heuristic reallocation: the inputs sorted by ascending column sum of the score are cut into M runs of in/M;
    run r fills position r of every group, in order for even r and reversed for odd r (so group g gets the g-th
    lowest input, the g-th highest of the second run, ...). LSA then reassigns, for each position r in turn, the
    inputs at position r among the groups so that the score kept by the N:M mask is the largest.
    """
    ranked = score.sum(0).argsort(stable=True)
    runs = ranked.reshape(m, -1)
    runs[1::2] = runs[1::2].flip(1)
    order = runs.T.reshape(-1)
    if lsa:
        for position in range(m):
            order = _assign_position(score, order, n, m, position)
    return order


def _assign_position(score: torch.Tensor, order: torch.Tensor, n: int, m: int, position: int) -> torch.Tensor:
    """One LSA round of the official code: the inputs at ``position`` move between groups by the assignment that
    keeps the most score under the N:M mask (the M - N highest of every row of a group, summed over rows).

    Group g keeping group h's input c at ``position`` keeps, in each row, the top M - N of its other M - 1 inputs
    plus max(0, c - b), where b is the lowest of that top. The first part does not depend on h, so it is left
    out of ``gain[g, h]``: the optimal assignment is the official one, without building and sorting every trial
    group as the official code does. The assignment itself is scipy's solver, the one the official code calls.
    """
    from scipy.optimize import linear_sum_assignment

    rows = score.shape[0]
    grouped = score[:, order].reshape(rows, -1, m)
    groups = grouped.shape[1]
    candidates = grouped[:, :, position]  # (rows, groups): every group's input at ``position``
    rest = grouped[:, :, [j for j in range(m) if j != position]]
    bar = rest.topk(m - n, dim=2).values[:, :, -1]  # (rows, groups): what a candidate has to beat to be kept
    gain = torch.empty(groups, groups, dtype=score.dtype, device=score.device)
    step = max(1, LSA_CHUNK // (rows * groups))
    for g in range(0, groups, step):
        gain[g : g + step] = (candidates[:, None, :] - bar[:, g : g + step, None]).clamp_min_(0).sum(0)
    _, picked = linear_sum_assignment(gain.cpu().numpy(), maximize=True)
    slots = torch.arange(groups, device=order.device) * m + position
    new_order = order.clone()
    new_order[slots] = order[torch.as_tensor(picked, device=order.device) * m + position]
    return new_order
