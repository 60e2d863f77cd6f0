"""The pruning kernels against the implementation they replaced (kept here, in the tests only, as the reference).

The reference is the straightforward code of the first release: a kthvalue / compare / cumsum mask per row or
N:M group, and SparseGPT's column loop with about seven strided ops per column on an (out, in) working copy, one
Cholesky chain per linear (the chain itself is unchanged and imported). The package's kernels must choose the same masks (ties included) and, for
SparseGPT, weights within 1e-6 of it, on every method x pattern, on the tiny models and on hand-made ties.
"""

from __future__ import annotations

import numpy
import pytest
import torch
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight
from perp_engine.model.capture import capture_block_inputs
from perp_engine.pruning import LayerStats, prune_weight
from perp_engine.pruning.patterns import lowest_k_mask, lowest_k_transposed, nm_mask, prune_count
from perp_engine.pruning.sequential import collect_stats
from perp_engine.pruning.sparsegpt import upper_cholesky_of_inverse

METHODS = ["magnitude", "wanda", "sparsegpt", "random"]
PATTERNS = [("unstructured", 0.3), ("unstructured", 0.5), ("2:4", 0.5), ("4:8", 0.5)]


# ---- the reference implementation -------------------------------------------------------------------------------

def ref_lowest_k_mask(score, k):
    cols = score.shape[1]
    if k <= 0:
        return torch.ones_like(score, dtype=torch.bool)
    if k >= cols:
        return torch.zeros_like(score, dtype=torch.bool)
    threshold = score.kthvalue(k, dim=1, keepdim=True).values
    below = score < threshold
    tied = score == threshold
    still_needed = k - below.sum(dim=1, keepdim=True)
    pruned = below | (tied & (tied.cumsum(dim=1) <= still_needed))
    return ~pruned


def ref_select_mask(score, sparsity, nm, per_row):
    rows, cols = score.shape
    if nm is not None:
        n, m = nm
        return ref_lowest_k_mask(score.reshape(-1, m), n).reshape(rows, cols)
    if per_row:
        return ref_lowest_k_mask(score, prune_count(cols, sparsity))
    return ref_lowest_k_mask(score.reshape(1, -1), prune_count(score.numel(), sparsity)).reshape(rows, cols)


def ref_prune_sparsegpt(w, H, sparsity, nm, blocksize, percdamp):
    W = w.clone()
    H = H.to(device=W.device, dtype=torch.float32, copy=True)
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    if int(dead.sum()):
        H[dead, dead] = 1.0
        W[:, dead] = 0.0
    Hinv = upper_cholesky_of_inverse(H, percdamp, lambda _message: None)  # unchanged: shared, not copied
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
            pruned1.copy_(~ref_lowest_k_mask(score, share).reshape(W1.shape))
        for i in range(i2 - i1):
            if nm is not None and i % m == 0:
                pruned1[:, i : i + m] = ~ref_lowest_k_mask(W1[:, i : i + m].square() / d2[i : i + m], n)
            column = W1[:, i]
            q = column.masked_fill(pruned1[:, i], 0.0)
            Q1[:, i] = q
            err = (column - q) / Hinv1[i, i]
            W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1.0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:].addmm_(Err1, Hinv[i1:i2, i2:], alpha=-1.0)
    return W, ~pruned


def ref_prune(w, method, sparsity, pattern, stats=None, blocksize=128, percdamp=0.01, seed=0):
    """prune_weight as the first release computed it, for float32 weights and sparsity > 0."""
    nm = None if pattern == "unstructured" else tuple(int(v) for v in pattern.split(":"))
    w = w.detach().to(torch.float32, copy=True)
    if method == "sparsegpt":
        return ref_prune_sparsegpt(w, stats.H, sparsity, nm, blocksize, percdamp)
    if method == "magnitude":
        mask = ref_select_mask(w.abs(), sparsity, nm, per_row=False)
    elif method == "wanda":
        mask = ref_select_mask(w.abs() * stats.sq_mean.sqrt().unsqueeze(0), sparsity, nm, per_row=True)
    else:
        score = torch.rand(w.shape, generator=torch.Generator().manual_seed(seed))
        mask = ref_select_mask(score, sparsity, nm, per_row=False)
    return w.masked_fill(~mask, 0.0), mask


# ---- comparisons -------------------------------------------------------------------------------------------------

def _nm(pattern):
    return None if pattern == "unstructured" else tuple(int(v) for v in pattern.split(":"))


def _assert_same(method, got, expected):
    (new_w, mask), (ref_w, ref_mask) = got, expected
    assert torch.equal(mask, ref_mask)
    assert not torch.signbit(new_w[~mask]).any()  # +0.0, as masked_fill wrote them
    if method == "sparsegpt":  # the same OBS updates in another order of float operations
        torch.testing.assert_close(new_w, ref_w, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(new_w, ref_w)


def _random_case(shape, seed):
    out, width = shape
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(256, 8, generator=g) @ torch.randn(8, width, generator=g)
    x = (latent + 0.3 * torch.randn(256, width, generator=g)) * torch.logspace(-0.5, 0.5, width)
    stats = LayerStats(width)
    stats.add_batch(x)
    return torch.randn(out, width, generator=g), stats


def _tie_case(shape, seed):
    """Integer weights in -2..2 and inputs whose columns have equal norms and no correlation (H = 2 I), so
    magnitude, Wanda and SparseGPT scores tie in whole runs at every threshold and in most N:M groups."""
    out, width = shape
    g = torch.Generator().manual_seed(seed)
    stats = LayerStats(width)
    stats.add_batch(torch.eye(width) * width**0.5)
    return torch.randint(-2, 3, (out, width), generator=g).float(), stats


@pytest.mark.parametrize("make", [_random_case, _tie_case], ids=["random", "ties"])
@pytest.mark.parametrize("shape", [(16, 32), (7, 40), (33, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("pattern,sparsity", PATTERNS, ids=lambda p: str(p))
@pytest.mark.parametrize("method", METHODS)
def test_equal_to_the_reference(method, pattern, sparsity, shape, make):
    w, stats = make(shape, seed=shape[0])
    for blocksize in (8, 128):
        got = prune_weight(w, method, sparsity, pattern, stats=stats, blocksize=blocksize, seed=3)
        _assert_same(method, got, ref_prune(w, method, sparsity, pattern, stats, blocksize=blocksize, seed=3))


@pytest.fixture(params=["numpy", "torch"])
def column_loop(request, monkeypatch):
    """SparseGPT's column loop in each namespace it runs in: numpy (CPU) and torch (any other device, here on CPU)."""
    from perp_engine.pruning import sparsegpt

    if request.param == "torch":
        monkeypatch.setattr(sparsegpt, "_namespace", lambda _device: torch)
    return request.param


@pytest.mark.parametrize("make", [_random_case, _tie_case], ids=["random", "ties"])
@pytest.mark.parametrize("shape", [(24, 600), (8, 1536)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_sparsegpt_equal_to_the_reference_past_the_leaves(pattern, shape, make, column_loop):
    """Inputs wider than the Hessian's and the factor's leaves (HESSIAN_LEAF, TRIANGLE_LEAF), where both are computed
    by halves (the embedded model's 576 and 1536): the official chain's masks, weights to float32 rounding."""
    w, stats = make(shape, seed=shape[0])
    (new_w, mask), (ref_w, ref_mask) = (prune_weight(w, "sparsegpt", 0.5, pattern, stats=stats),
                                        ref_prune(w, "sparsegpt", 0.5, pattern, stats, blocksize=128))
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(new_w, ref_w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [_random_case, _tie_case], ids=["random", "ties"])
@pytest.mark.parametrize("pattern", ["1:3", "3:6", "2:8", "4:8", "2:4"])
def test_sparsegpt_n_m_equal_to_the_reference_for_any_m(pattern, make, column_loop):
    """Groups of M that straddle the kernel's internal panels of columns (M = 3 or 6 against panels of 16) are
    still chosen on fully updated weights: equal to the reference for blocks of one group, of several groups,
    and of the whole matrix (the official code's blocksize is a multiple of M)."""
    n, m = _nm(pattern)
    w, stats = make((20, 72), seed=m)
    for blocksize in (m, 24, 72):
        got = prune_weight(w, "sparsegpt", n / m, pattern, stats=stats, blocksize=blocksize)
        _assert_same("sparsegpt", got, ref_prune(w, "sparsegpt", n / m, pattern, stats, blocksize=blocksize))


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_equal_to_the_reference_on_tiny_models(family):
    """Every linear of block 0 of each tiny model, on its real calibration statistics."""
    model = TINY_MODELS[family]()
    inputs = capture_block_inputs(model, random_tokens(4, 16), batch_size=2)
    block = find_decoder_blocks(model)[1][0]
    linears = find_linears(block)
    stats = collect_stats(block, linears, inputs, hessian=True)
    for name, module in linears.items():
        w = get_weight(module)
        for method in METHODS:
            for pattern, sparsity in PATTERNS:
                got = prune_weight(w, method, sparsity, pattern, stats=stats[name], blocksize=16)
                _assert_same(method, got, ref_prune(w, method, sparsity, pattern, stats[name], blocksize=16))


def test_every_tie_goes_to_the_lowest_column():
    """All scores equal: the pruned weights are the first k of each row, the first n of each N:M group."""
    score = torch.ones(3, 16)
    assert torch.equal(~lowest_k_mask(score, 5), (torch.arange(16) < 5).expand(3, 16))
    assert torch.equal(~nm_mask(score, 2, 4), (torch.arange(16) % 4 < 2).expand(3, 16))
    assert torch.equal(~nm_mask(score, 3, 8), (torch.arange(16) % 8 < 3).expand(3, 16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_long_rows_select_the_same_kth_value(dtype):
    """One long row (a whole matrix for magnitude, a block for SparseGPT) and many short ones (Wanda's) select their
    k-th values with numpy on CPU, in the scores' own dtype (numpy has no bfloat16): both equal the reference, and
    so does SparseGPT's transposed block mask."""
    g = torch.Generator().manual_seed(0)
    n = 16 * 4096 + 123
    rows = {"spread": torch.randn(1, n, generator=g).exp(), "ties": torch.randint(0, 9, (1, n), generator=g).float(),
            "sorted": torch.arange(n, 0, -1).float().reshape(1, n)}
    for name, score in rows.items():
        score = score.to(dtype)
        for k in (1, n // 3, n // 2, n - 1):
            expected = ref_lowest_k_mask(score, k)
            assert torch.equal(lowest_k_mask(score, k), expected), (name, k)
            as_matrix = score[:, : n - 123].reshape(-1, 64)
            expected = ref_lowest_k_mask(as_matrix.reshape(1, -1), k).reshape(as_matrix.shape)
            assert torch.equal(lowest_k_transposed(as_matrix.T.contiguous(), k), ~expected.T), (name, k)
            assert torch.equal(lowest_k_mask(as_matrix, k % 64), ref_lowest_k_mask(as_matrix, k % 64)), (name, k)


class _IntegerTensors(torch.overrides.TorchFunctionMode):
    """Records the largest int64 tensor any torch call returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in result if isinstance(result, tuple) else (result,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.int64:
                self.largest = max(self.largest, t.numel())
        return result


@pytest.mark.parametrize("nm", [None, (2, 4), (4, 8)], ids=["per-row", "2:4", "4:8"])
def test_tie_break_builds_no_full_size_int64_tensor(nm, monkeypatch):
    """A matrix full of ties: the reference counts them in an int64 tensor as large as the matrix (8 bytes a
    weight); the kernels' counts are int8 ranks or int32 over chunks, never int64 of the matrix's size."""
    from perp_engine.pruning import patterns

    monkeypatch.setattr(patterns, "TIE_CHUNK", 256)
    score = torch.randint(0, 3, (64, 96), generator=torch.Generator().manual_seed(0)).float()
    k = 48
    kernel = (lambda s: patterns.nm_mask(s, *nm)) if nm else (lambda s: patterns.lowest_k_mask(s, k))
    reference = (lambda s: ref_lowest_k_mask(s.reshape(-1, nm[1]), nm[0])) if nm else (lambda s: ref_lowest_k_mask(s, k))
    for fn, full_size in ((reference, True), (kernel, False)):
        with _IntegerTensors() as seen:
            fn(score)
        assert (seen.largest >= score.numel()) == full_size


def test_linears_sharing_inputs_share_one_factor(monkeypatch):
    """q/k/v with one LayerStats: the inverse Hessian is factored once, and each result equals pruning with a
    LayerStats of its own; a new batch (or a new percdamp) factors again."""
    from perp_engine.pruning import prune as prune_module

    factored = []
    real = prune_module.inverse_factor
    monkeypatch.setattr(prune_module, "inverse_factor", lambda *a: factored.append(1) or real(*a))
    x, weights, shared = _calibration_and_weights()
    for pattern, sparsity in (("unstructured", 0.5), ("2:4", 0.5)):
        for w in weights:
            own = LayerStats(x.shape[1])
            own.add_batch(x)
            alone = prune_weight(w, "sparsegpt", sparsity, pattern, stats=own, blocksize=16)
            together = prune_weight(w, "sparsegpt", sparsity, pattern, stats=shared, blocksize=16)
            assert torch.equal(alone[0], together[0]) and torch.equal(alone[1], together[1])
    assert len(factored) == 2 * len(weights) + 1  # one per private LayerStats, one for the shared one
    prune_weight(weights[0], "sparsegpt", 0.5, stats=shared, percdamp=0.1)
    shared.add_batch(x[:5])
    prune_weight(weights[0], "sparsegpt", 0.5, stats=shared)
    assert len(factored) == 2 * len(weights) + 3


def _calibration_and_weights():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(128, 8, generator=g) @ torch.randn(8, 32, generator=g) + 0.1 * torch.randn(128, 32, generator=g)
    shared = LayerStats(32)
    shared.add_batch(x)
    return x, [torch.randn(rows, 32, generator=g) for rows in (24, 8, 8)], shared


@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (3, 4), (2, 8), (5, 8)])
def test_one_group_selection_equals_nm_mask_ties_and_extremes_included(n, m):
    """group_pruned (SparseGPT's N:M step, one group of m columns at a time) against nm_mask over the same scores:
    exact zeros (dead inputs), repeated values, subnormals and the largest floats rank the same way, with tensors and numpy arrays."""
    from perp_engine.pruning.patterns import group_pruned, group_ties

    g = torch.Generator().manual_seed(n * 10 + m)
    width = 300
    scores = torch.rand(m, width, generator=g).mul_(torch.logspace(-6, 6, width))
    scores[:, :20] = 0.0
    scores[:, 20:40] = scores[0, 20:40]  # every member tied
    scores[1::2, 40:60] = scores[0, 40:60]  # some members tied
    scores[:, 60:70] = torch.tensor([1e-44, 3e38, 0.0, 1e-40]).repeat(m)[:m].unsqueeze(1)
    want = ~nm_mask(scores.T.contiguous(), n, m).T
    out = torch.empty(m, width)
    group_pruned(scores, n, group_ties(m, scores), out=out)
    as_arrays = numpy.empty((m, width), dtype=numpy.float32)  # SparseGPT's column loop runs in numpy on CPU
    group_pruned(scores.numpy(), n, group_ties(m, as_arrays), out=as_arrays)
    for got in (out, torch.from_numpy(as_arrays)):
        assert torch.equal(got.bool(), want)
        assert torch.equal(got.sum(0), torch.full((width,), float(n)))
