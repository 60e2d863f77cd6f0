"""DSnoT: training-free refinement of a pruning mask by swapping pruned and kept weights, row by row.

DSnoT ("Dynamic Sparse No Training", Zhang et al., ICLR 2024; official code github.com/zyxxmu/DSnoT, lib/prune.py
and lib/prune_opt.py) takes the mask a pruning method gave and, in each output row, repeatedly regrows one pruned
weight and prunes one kept weight so that the row's expected output moves back toward the dense one. With
D_ij = W_ij * s_j, s_j the sum of input j over a calibration sequence averaged over the sequences, the row's error
is e = sum_j (W_ij - C_ij) s_j (C the current weights). While |e| > ``update_threshold``, one cycle:

- regrows, of the pruned weights whose D has e's sign, the one with the largest |D| / var^p (p =
  ``pow_of_var_regrowing``; var the variance of the input within a sequence, averaged over tokens);
- prunes, unstructured, the kept weight with the lowest Wanda score |C_ij| * ||x_j|| among those whose D has the
  opposite sign (pruning it reduces |e| too); with an N:M pattern, the kept weight of the regrown weight's own
  group with the lowest score of the initial method (so every group keeps its count);
- is not made, and the row stops for good, when it would flip e's sign and ``same_sign`` asks to keep it.

A row whose |e| is at most the threshold stops for good; there are at most ``max_cycles`` cycles. Every swap keeps
the row's count of pruned weights. By default (``skip_layer`` "mlp", as the official code) only the attention
linears are refined. The official knobs and defaults: --max_cycle_time 50, --update_threshold 0.1,
--pow_of_var_regrowing 1, --without_same_sign True, --skip_layer mlp; --skip_sub_layer (one more linear kind to
skip, default none) is not offered, and --pow_of_var_pruning is parsed but never read.

The official masks are matched exactly (tests/pruning/test_pruning_dsnot.py, against frozen outputs of the official
code). How, and where we differ:
- Its error is summed over a sequence's tokens and averaged over sequences, so ``update_threshold`` is in those
  units (and means more with the official 2048-token sequences than with shorter ones): s_j = mean_t x_tj *
  tokens / sequences here (LayerStats ``mean``, ``nsamples``, ``sequences``). Its variance is the mean of the
  variance within each sequence, not the variance over all tokens; the two order the candidates differently, so
  LayerStats keeps the official one (``seq_var``).
- It walks each candidate list with a pointer per direction that keeps moving for rows that have stopped, and
  past the end of the candidates of the needed sign: it then "regrows" a kept weight or re-prunes a regrown
  one, which changes the row's count of pruned weights, or fails with an index error when a pointer leaves the
  row. At real widths (thousands of candidates, 50 cycles) this never happens; on layers a few dozen inputs wide
  it does. Here a row stops when it has no candidate of the needed sign left (with N:M also when the group has no
  kept weight left to prune), and a stopped row is never written again.
- Pruned weights of inputs that were zero in every calibration token (D = 0 and a zero variance, 0/0) are not
  candidates; the official code sorts the NaN last, where its pointer for e > 0 starts, and regrows them first.
- Its "sparsegpt" start never accumulates the Hessian (its wrapper's add_batch does not), so its SparseGPT score
  is zero everywhere and it prunes the first columns of every row; it never updates weights either. Here DSnoT
  refines whatever the method gave, SparseGPT's updated weights included: C is the method's weights, a regrown
  weight comes back with its dense value W_ij, and pruning a weight adds C_ij * s_j to e. For Wanda and
  magnitude C = W on the kept weights, which is the official definition. With N:M, methods other than magnitude
  pick the weight to prune in a group by Wanda's score.
- Its N:M loop always keeps e's sign and its unstructured loop never does by default (``--without_same_sign`` has
  type=bool and default True: any non-empty value parses as True); ``same_sign=None`` follows it, True or False
  forces it for both.
- Its magnitude start selects per output row (PERP Lab's magnitude method selects per matrix); any mask is
  refined here, each row keeping its own count.
"""

from __future__ import annotations

import math

import torch

from ..config import DSNOT_SKIP_LAYERS
from ..errors import PerpError, check_choice
from .stats import LayerStats
from .wanda import wanda_score


@torch.no_grad()
def refine_dsnot(
    w: torch.Tensor,
    new_w: torch.Tensor,
    mask: torch.Tensor,
    stats: LayerStats,
    *,
    nm: tuple[int, int] | None = None,
    name: str,
    method: str = "wanda",
    skip_layer: str = "mlp",
    max_cycles: int = 50,
    update_threshold: float = 0.1,
    pow_of_var_regrowing: float = 1.0,
    same_sign: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine a pruned (out, in) weight with DSnoT; returns (new weight in ``new_w``'s dtype, bool mask, True = kept).

    ``w`` is the dense weight (never modified), ``new_w`` / ``mask`` what the pruning method gave, ``stats`` the
    layer's input statistics. ``nm``: the N:M pattern the mask follows (None = unstructured). ``method``: the
    initial method; with N:M its score picks the weight to prune in a group (|W| for magnitude, Wanda's score
    otherwise). ``name``: the linear's dotted name in its block (``self_attn.q_proj``, ``fc1``); ``skip_layer``
    "mlp" returns the input unchanged for the MLP linears, "self_attn" for the attention ones (names whose first
    part holds "attn"), "no_skip" refines all. Each row keeps its count of pruned weights.
    """
    _validate(w, new_w, mask, stats, nm, skip_layer, max_cycles, update_threshold, pow_of_var_regrowing, same_sign)
    attention = "attn" in name.split(".")[0] or "attention" in name.split(".")[0]
    if max_cycles == 0 or skip_layer == ("self_attn" if attention else "mlp"):
        return new_w, mask
    device = w.device
    dense = w.detach().to(torch.float32)
    current = new_w.detach().to(device=device, dtype=torch.float32)
    kept = mask.to(device=device, copy=True)
    s = stats.mean.to(device) * (stats.nsamples / stats.sequences)
    dense_d, current_d = dense * s, current * s
    error = (dense_d - current_d).sum(dim=1, keepdim=True)
    sign0 = error.sign()

    regrow = dense_d.masked_fill(kept, 0.0)
    if pow_of_var_regrowing:
        regrow = regrow / stats.seq_var.to(device).pow(pow_of_var_regrowing)
    regrow.masked_fill_(regrow.isnan(), 0.0)
    regrow_order = torch.sort(regrow, dim=1, stable=True).indices  # pointers from both ends
    regrow_up, regrow_down = (regrow > 0).sum(1, keepdim=True), (regrow < 0).sum(1, keepdim=True)

    magnitude = nm is not None and method == "magnitude"
    score = current.abs() if magnitude else wanda_score(current, stats.sq_mean.to(device))
    score.masked_fill_(~kept, math.inf)
    if nm is None:
        negative, positive = kept & (current_d < 0), kept & (current_d > 0)
        prune_neg = torch.sort(score.masked_fill(~negative, math.inf), dim=1, stable=True).indices
        prune_pos = torch.sort(score.masked_fill(~positive, math.inf), dim=1, stable=True).indices
        n_neg, n_pos = negative.sum(1, keepdim=True), positive.sum(1, keepdim=True)
        keep_sign = bool(same_sign)
    else:
        group = torch.arange(nm[1], device=device)
        keep_sign = same_sign is None or same_sign

    cols = w.shape[1]
    active = torch.ones_like(error, dtype=torch.bool)
    used_up, used_down, used_pos, used_neg = (torch.zeros_like(regrow_up) for _ in range(4))  # pointers' steps
    for _ in range(max_cycles):
        up, down = error > 0, error < 0
        slot = torch.where(up, cols - 1 - used_up, used_down).clamp_(0, cols - 1)
        r = regrow_order.gather(1, slot)
        valid = torch.where(up, used_up < regrow_up, used_down < regrow_down)
        if nm is None:  # prune a kept weight whose D has e's opposite sign
            slot = torch.where(down, used_pos, used_neg).clamp_(max=cols - 1)
            p = torch.where(down, prune_pos.gather(1, slot), prune_neg.gather(1, slot))
            valid &= torch.where(down, used_pos < n_pos, used_neg < n_neg)
        else:  # prune the kept weight of r's group with the lowest score
            start = r - r % nm[1]
            lowest, at = score.gather(1, start + group).min(dim=1, keepdim=True)
            p = start + at
            valid &= lowest < math.inf
            score.scatter_(1, p, math.inf)
        d_r, d_p = dense_d.gather(1, r), current_d.gather(1, p)
        active &= valid & (error.abs() > update_threshold)
        if keep_sign:
            active &= sign0 == (error + d_p - d_r).sign()
        if not active.any():
            break
        kept.scatter_(1, p, kept.gather(1, p) & ~active)
        kept.scatter_(1, r, kept.gather(1, r) | active)
        error = error + torch.where(active, d_p, 0.0)
        error = error - torch.where(active, d_r, 0.0)
        used_up += active & up
        used_down += active & ~up
        used_pos += active & down
        used_neg += active & ~down
    refined = torch.where(kept, torch.where(mask.to(device), current, dense), 0.0)
    return refined.to(new_w.dtype), kept


def _validate(w, new_w, mask, stats, nm, skip_layer, max_cycles, update_threshold, pow_of_var, same_sign) -> None:
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or not w.is_floating_point():
        raise PerpError("weight", "expected the dense weight as a 2-D float tensor (out_features, in_features)")
    for label, t in (("new weight", new_w), ("mask", mask)):
        if not isinstance(t, torch.Tensor) or t.shape != w.shape:
            raise PerpError(label, f"expected a tensor of the weight's shape {tuple(w.shape)}")
    if mask.dtype != torch.bool:
        raise PerpError("mask", f"got {mask.dtype}; expected a bool mask with True = kept")
    if nm is not None and w.shape[1] % nm[1]:
        raise PerpError("pattern", f"{nm[0]}:{nm[1]} needs in_features divisible by {nm[1]}, not {w.shape[1]}")
    if not isinstance(stats, LayerStats) or stats.in_features != w.shape[1] or stats.sequences == 0:
        raise PerpError("stats", f"DSnoT needs LayerStats of the layer's {w.shape[1]} inputs, with calibration data")
    if stats.mean is None:
        raise PerpError("stats", "DSnoT needs the inputs' mean and variance: build LayerStats with moments=True")
    check_choice("skip_layer", skip_layer, DSNOT_SKIP_LAYERS)
    if isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 0:
        raise PerpError("max_cycles", f"{max_cycles!r} is not allowed; use an integer >= 0, e.g. 50")
    for label, value in (("update_threshold", update_threshold), ("pow_of_var_regrowing", pow_of_var)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
            raise PerpError(label, f"{value!r} is not allowed; use a finite number >= 0")
    if same_sign not in (None, True, False):
        raise PerpError("same_sign", f"{same_sign!r} is not allowed; use None (as the official code), True or False")
